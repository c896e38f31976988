"""GeoTIFF georeferencing: read from a TIFF page, scaled for a coarser output, written back as TIFF tags.

A GeoTIFF places its raster with ModelPixelScale and ModelTiepoint, or with
ModelTransformation (a 4 x 4 matrix from raster (column, row) to model
coordinates), and names its coordinate system in the GeoKeyDirectory (with
its double and ASCII parameters). GDAL adds GDAL_NODATA and GDAL_METADATA.
Raster coordinates refer to pixel corners (GTRasterTypeGeoKey PixelIsArea,
the default) or to pixel centres (PixelIsPoint).
"""

import dataclasses
import math
import xml.etree.ElementTree as ElementTree

__all__ = ["GeoReference", "parse_nodata", "format_nodata", "MODEL_PIXEL_SCALE", "MODEL_TIEPOINT",
           "MODEL_TRANSFORMATION", "GEO_KEY_DIRECTORY", "GEO_DOUBLE_PARAMS", "GEO_ASCII_PARAMS", "GDAL_METADATA",
           "GDAL_NODATA"]

MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION = 33550, 33922, 34264
GEO_KEY_DIRECTORY, GEO_DOUBLE_PARAMS, GEO_ASCII_PARAMS = 34735, 34736, 34737
GDAL_METADATA, GDAL_NODATA = 42112, 42113
_RASTER_TYPE_KEY = 1025
PIXEL_IS_AREA, PIXEL_IS_POINT = 1, 2


def _floats(value, count=None):
    if value is None:
        return None
    out = tuple(float(v) for v in (value if isinstance(value, (tuple, list)) else tuple(value)))
    if count is not None and len(out) != count:
        raise ValueError(f"expected {count} numbers, got {len(out)}")
    return out


@dataclasses.dataclass(frozen=True)
class GeoReference:
    """Where a raster lies on the Earth: the GeoTIFF tags of a page, immutable.

    Parameters
    ----------
    pixel_scale : (float, float, float), optional
        ModelPixelScale ``(ScaleX, ScaleY, ScaleZ)``.
    tiepoints : tuple of float, optional
        ModelTiepoint, ``(I, J, K, X, Y, Z)`` for each tiepoint.
    transformation : tuple of 16 floats, optional
        ModelTransformation, row-major.
    geokeys : tuple of int, optional
        GeoKeyDirectory.
    geo_doubles : tuple of float, optional
        GeoDoubleParams.
    geo_ascii : str, optional
        GeoAsciiParams.
    gdal_metadata : str, optional
        GDAL_METADATA XML, its dataset items only (per-band items describe
        the input's bands, not the output's).
    nodata : str, optional
        GDAL_NODATA as written in the file (kept for reading; the writer
        writes its own `nodata`).

    Examples
    --------
    >>> geo = GeoReference(pixel_scale=(10.0, 10.0, 0.0), tiepoints=(0, 0, 0, 500000.0, 4e6, 0),
    ...                    geokeys=(1, 1, 0, 1, 3072, 0, 1, 32633))
    >>> geo.scaled((2, 4)).pixel_scale, geo.scaled((2, 4)).tiepoints
    ((40.0, 20.0, 0.0), (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0))
    >>> geo.affine()
    (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
    """

    pixel_scale: tuple = None
    tiepoints: tuple = None
    transformation: tuple = None
    geokeys: tuple = None
    geo_doubles: tuple = None
    geo_ascii: str = None
    gdal_metadata: str = None
    nodata: str = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "pixel_scale", _floats(self.pixel_scale, 3))
        set_(self, "tiepoints", _floats(self.tiepoints))
        set_(self, "transformation", _floats(self.transformation, 16))
        set_(self, "geo_doubles", _floats(self.geo_doubles))
        if self.geokeys is not None:
            set_(self, "geokeys", tuple(int(k) for k in self.geokeys))
        if self.tiepoints is not None and (not self.tiepoints or len(self.tiepoints) % 6):
            raise ValueError(f"tiepoints has {len(self.tiepoints)} numbers; expected 6 per tiepoint")

    # ---- reading

    @classmethod
    def from_page(cls, page):
        """The georeference of a tifffile page, or None when it has neither GeoTIFF tags nor GDAL_NODATA."""
        tags = page.tags
        if not any(code in tags for code in (MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION,
                                             GEO_KEY_DIRECTORY, GDAL_NODATA)):
            return None

        def value(code):
            tag = tags.get(code)
            return None if tag is None else tag.value

        return cls(pixel_scale=value(MODEL_PIXEL_SCALE), tiepoints=value(MODEL_TIEPOINT),
                   transformation=value(MODEL_TRANSFORMATION), geokeys=value(GEO_KEY_DIRECTORY),
                   geo_doubles=value(GEO_DOUBLE_PARAMS), geo_ascii=_text(value(GEO_ASCII_PARAMS)),
                   gdal_metadata=_dataset_items(_text(value(GDAL_METADATA))), nodata=_text(value(GDAL_NODATA)))

    @property
    def raster_type(self):
        """1 (PixelIsArea: raster coordinates at pixel corners, the default) or 2 (PixelIsPoint)."""
        keys = self.geokeys or ()
        for i in range(4, len(keys) - 3, 4):
            if keys[i] == _RASTER_TYPE_KEY and keys[i + 1] == 0:
                return keys[i + 3]
        return PIXEL_IS_AREA

    @property
    def nodata_value(self):
        """GDAL_NODATA as a number (int when integral text), or None."""
        return parse_nodata(self.nodata)

    def affine(self):
        """GDAL's geotransform as ``(a, b, c, d, e, f)`` (rasterio's Affine order: x = a * col + b * row + c)
        with pixel corners at integer raster coordinates; None for tiepoints without a scale (GCPs)."""
        if self.transformation is not None:
            m = self.transformation
            a, b, c, d, e, f = m[0], m[1], m[3], m[4], m[5], m[7]
        elif self.pixel_scale is not None and self.tiepoints is not None and len(self.tiepoints) == 6:
            i, j, _, x, y, _ = self.tiepoints
            sx, sy = self.pixel_scale[:2]
            a, b, c, d, e, f = sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy
        else:
            return None
        if self.raster_type == PIXEL_IS_POINT:  # the point of pixel (0, 0) is its centre
            c, f = c - 0.5 * (a + b), f - 0.5 * (d + e)
        return (a, b, c, d, e, f)

    # ---- scaling

    def scaled(self, scale):
        """The georeference of an image whose pixel is `scale` = ``(sy, sx)`` pixels of this one.

        Pixel (0, 0) of the scaled image covers the same corner as pixel
        (0, 0) here (its top-left `sy` x `sx` block): the pixel size grows by
        the scale, the model position of that corner stays. With
        PixelIsPoint the raster coordinates name pixel centres, which move
        to the centre of the block.

        Parameters
        ----------
        scale : (float, float)
            Positive; e.g. a pyramid level's size ratio times an output scale.
        """
        fy, fx = _check_scale(scale)
        if fy == 1 and fx == 1:
            return self
        point = self.raster_type == PIXEL_IS_POINT
        oy, ox = ((fy - 1) / 2, (fx - 1) / 2) if point else (0.0, 0.0)
        changes = {}
        if self.pixel_scale is not None:
            px, py, pz = self.pixel_scale
            changes["pixel_scale"] = (px * fx, py * fy, pz)
        if self.tiepoints is not None:
            points = list(self.tiepoints)
            for t in range(0, len(points), 6):
                points[t] = (points[t] - ox) / fx
                points[t + 1] = (points[t + 1] - oy) / fy
            changes["tiepoints"] = tuple(points)
        if self.transformation is not None:
            m = list(self.transformation)
            for row in range(4):  # M' = M @ [[fx, 0, 0, ox], [0, fy, 0, oy], [0, 0, 1, 0], [0, 0, 0, 1]]
                r = 4 * row
                m[r + 3] += m[r] * ox + m[r + 1] * oy
                m[r], m[r + 1] = m[r] * fx, m[r + 1] * fy
            changes["transformation"] = tuple(m)
        return dataclasses.replace(self, **changes)

    # ---- writing

    def extratags(self):
        """tifffile ``extratags`` for the first page of an output (GDAL_NODATA excluded: the writer's own)."""
        tags = []
        if self.pixel_scale is not None:
            tags.append((MODEL_PIXEL_SCALE, "d", 3, self.pixel_scale, True))
        if self.tiepoints is not None:
            tags.append((MODEL_TIEPOINT, "d", len(self.tiepoints), self.tiepoints, True))
        if self.transformation is not None:
            tags.append((MODEL_TRANSFORMATION, "d", 16, self.transformation, True))
        if self.geokeys is not None:
            tags.append((GEO_KEY_DIRECTORY, "H", len(self.geokeys), self.geokeys, True))
        if self.geo_doubles is not None:
            tags.append((GEO_DOUBLE_PARAMS, "d", len(self.geo_doubles), self.geo_doubles, True))
        if self.geo_ascii is not None:
            tags.append((GEO_ASCII_PARAMS, "s", 0, self.geo_ascii, True))
        if self.gdal_metadata is not None:
            tags.append((GDAL_METADATA, "s", 0, self.gdal_metadata, True))
        return tags


def _check_scale(scale):
    try:
        fy, fx = (float(s) for s in scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale={scale!r} is not a (sy, sx) pair of numbers") from None
    if not all(math.isfinite(f) and f > 0 for f in (fy, fx)):
        raise ValueError(f"scale={scale!r}: expected two positive finite numbers")
    return fy, fx


def _text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value)


def _dataset_items(xml):
    """GDAL_METADATA with its per-band items (``sample=``) removed; None when nothing is left or it is not XML."""
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml.strip("\x00"))
    except ElementTree.ParseError:
        return None
    for item in [i for i in root if i.get("sample") is not None]:
        root.remove(item)
    if not len(root):
        return None
    return ElementTree.tostring(root, encoding="unicode")


def parse_nodata(text):
    """GDAL_NODATA text as a number: an int when integral, else a float (nan and inf included); None if unreadable.

    Examples
    --------
    >>> parse_nodata("255"), parse_nodata("-9999.5"), parse_nodata("nan")
    (255, -9999.5, nan)
    """
    if text is None:
        return None
    text = text.strip().strip("\x00").strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def format_nodata(value):
    """GDAL_NODATA text of a nodata value.

    Examples
    --------
    >>> format_nodata(255), format_nodata(-9999.5), format_nodata(float("nan"))
    ('255', '-9999.5', 'nan')
    """
    if isinstance(value, float) or hasattr(value, "dtype") and value.dtype.kind == "f":
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(int(value))
