"""Windows of one level of a TIFF file's first series, decoding only the tiles or strips they meet."""

import math
import os
import threading

import numpy as np

from ._common import _check_fill, _import_tifffile
from ._levels import _LevelChoice, level0_mpp, make_levels, pick_level
from ._geo import GeoReference

_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}
# Axes a TIFF series may have: Y, X and those read as channels (samples, channels, tifffile's
# unnamed axis of shaped files, a sequence of pages); Z, T and the rest are refused.
_CHANNEL_AXES = "SCQI"
_AXES = "YX" + _CHANNEL_AXES
# A segment decoded at open to check the file decodes at all, unless it is larger than this.
_PROBE_BYTES = 2**24
_TIFF_UNITS = {1: None, 2: "INCH", 3: "CENTIMETER", 4: "MILLIMETER", 5: "MICROMETER"}


class _Refused(ValueError):
    """A file this reader will not read: one line naming the path and the problem."""


def _refuse(path, problem, exc=None):
    message = f"source={path!r} {problem}"
    if exc is not None:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        message += f" ({detail[:200]})"
    return _Refused(message)


def _codec_hint(page):
    """What to install when imagecodecs, which most TIFF codecs need, is missing; else nothing."""
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        compression = getattr(page.compression, "name", page.compression)
        return f"; its compression {compression} may need imagecodecs: pip install imagecodecs"
    return ""


def _check_file(path):
    if not os.path.exists(path):
        raise _refuse(path, "does not exist")
    if os.path.isdir(path):
        raise _refuse(path, "is a folder; expected a TIFF file")
    if not os.access(path, os.R_OK):
        raise _refuse(path, "is not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise _refuse(path, "is empty; expected a TIFF file")


def _check_segments(path, pages):
    """Refuse a file whose tiles or strips reach beyond its end (a truncated copy)."""
    for number, page in enumerate(pages):
        size = page.parent.filehandle.size
        offsets = np.asarray(page.dataoffsets, dtype=np.uint64)
        counts = np.asarray(page.databytecounts, dtype=np.uint64)
        if offsets.shape != counts.shape:
            raise _refuse(path, f"is damaged: page {number} has {offsets.size} tile or strip offsets but "
                          f"{counts.size} byte counts")
        present = counts > 0
        # offset + count > size, written so that neither side can overflow
        beyond = present & ((counts > size) | (offsets > np.uint64(size) - np.minimum(counts, size)))
        if beyond.any():
            first = int(np.argmax(beyond))
            where = "" if page.parent is pages[0].parent else f" (in {page.parent.filehandle.path!r})"
            raise _refuse(path, f"is truncated or damaged: tile or strip {first} of page {number}{where} ends at "
                          f"byte {int(offsets[first]) + int(counts[first])}, beyond the end of the file ({size} "
                          "bytes)")


def _empty_value(page):
    """Value of a sparse (empty) segment: GDAL's nodata if the file has one, else 0 (as tifffile reads it;
    tifffile ignores a nodata tag its dtype cannot hold)."""
    return _check_fill(page.nodata or 0, np.dtype(page.dtype), name="nodata")


class _TiffSegments:
    """Windows of a tiled or striped TIFF series, decoding only the segments they meet."""

    def __init__(self, path, tif, series, pages, shape):
        page = series.keyframe
        height, width = shape
        self.path, self.tif, self.pages, self.keyframe = path, tif, pages, page
        self.samples = page.samplesperpixel
        self.planes = self.samples if page.planarconfig == 2 else 1
        if page.is_tiled:
            self.seg_h, self.seg_w = page.tilelength, page.tilewidth
        else:
            self.seg_h, self.seg_w = min(page.rowsperstrip or height, height), width
        self.n_y, self.n_x = math.ceil(height / self.seg_h), math.ceil(width / self.seg_w)
        expected = self.planes * self.n_y * self.n_x
        for p in self.pages:
            if p is None or len(p.dataoffsets) != expected:
                raise _refuse(path, f"has a segment layout this reader does not support (series axes "
                              f"{series.axes!r}; expected {expected} tiles or strips per page)")
        self.decode_args = {}
        if page.compression in _JPEG_COMPRESSIONS:
            self.decode_args["jpegheader"] = page.jpegheader
        self.lock = threading.Lock()
        # tifffile's cached decoder is not thread-safe on first access; asking for it here also
        # refuses a compression, predictor or subsampling it cannot decode (it decodes no pixel
        # for an empty segment, but raises for those).
        try:
            page.decode(None, 0, **self.decode_args)
        except (ValueError, NotImplementedError) as exc:
            raise _refuse(path, "is stored in a way this reader cannot decode" + _codec_hint(page), exc) from None
        self.empty = _empty_value(page)
        self._probe()

    def _probe(self):
        """Decode the first stored segment once (if small), so that a codec that fails on this file
        (e.g. JPEG in separate RGB planes) is refused at open rather than at the first read."""
        page = self.pages[0]
        counts = page.databytecounts
        first = next((i for i, count in enumerate(counts) if count > 0), None)
        depth = 1 if self.planes > 1 else self.samples
        if first is None or self.seg_h * self.seg_w * depth * self.keyframe.dtype.itemsize > _PROBE_BYTES:
            return
        args = dict(self.decode_args)
        if "jpegheader" in args:
            args["jpegtables"] = page.jpegtables
        data, = (data for data, _ in page.parent.filehandle.read_segments(
            [page.dataoffsets[first]], [counts[first]], [first], lock=self.lock, flat=True))
        try:
            self.keyframe.decode(data, first, **args)
        except Exception as exc:  # noqa: BLE001 -- codecs raise their own kinds
            problem = f"cannot be decoded (tile or strip {first} of page 0)" + _codec_hint(self.keyframe)
            raise _refuse(self.path, problem, exc) from None

    def _indices(self, y0, y1, x0, x1):
        rows = range(y0 // self.seg_h, (y1 - 1) // self.seg_h + 1)
        cols = range(x0 // self.seg_w, (x1 - 1) // self.seg_w + 1)
        return [(plane * self.n_y + sy) * self.n_x + sx for plane in range(self.planes) for sy in rows for sx in cols]

    def region(self, y0, y1, x0, x1, out):
        indices = self._indices(y0, y1, x0, x1)
        decode = self.keyframe.decode
        for page_number, page in enumerate(self.pages):
            offsets = [page.dataoffsets[i] for i in indices]
            counts = [page.databytecounts[i] for i in indices]
            args = dict(self.decode_args)
            if "jpegheader" in args:
                args["jpegtables"] = page.jpegtables
            # an OME-TIFF may keep planes in other files: each page is read from its own file
            segments = page.parent.filehandle.read_segments(offsets, counts, indices, lock=self.lock, flat=True)
            for data, index in segments:
                try:
                    segment, position, _ = decode(data, index, **args)
                except Exception as exc:  # noqa: BLE001 -- codecs raise their own kinds
                    raise _refuse(self.path, f"tile or strip {index} of page {page_number} cannot be "
                                  "decoded", exc) from None
                channel = page_number * self.samples + (position[0] if self.planes > 1 else 0)
                self._paste(segment, position, channel, (y0, y1, x0, x1), out)

    def _paste(self, segment, position, channel, window, out):
        y0, y1, x0, x1 = window
        sy, sx = position[2], position[3]
        ya, yb = max(y0, sy), min(y1, sy + self.seg_h)
        xa, xb = max(x0, sx), min(x1, sx + self.seg_w)
        depth = 1 if self.planes > 1 else self.samples
        target = out[ya - y0:yb - y0, xa - x0:xb - x0, channel:channel + depth]
        if segment is None:  # a sparse (empty) segment: GDAL's nodata value or 0, as tifffile and GDAL read it
            target[...] = self.empty
        else:
            target[...] = segment[0, ya - sy:yb - sy, xa - sx:xb - sx]


class _TiffSource:
    """Windows of one level of the first series of a TIFF.

    Everything that can be checked without decoding pixels is checked at
    open: the file is a TIFF, the level exists, its series is a 2-D image
    (with channels) in a layout and compression this reader decodes, and
    every tile or strip of the level lies inside the file (a truncated
    download is refused here, not halfway through a run). No other level
    is decoded or checked.
    """

    def __init__(self, path, level=0, mpp=None):
        tifffile = _import_tifffile()
        self.path = os.fspath(path)
        _check_file(self.path)
        try:
            self.tif = tifffile.TiffFile(self.path)
        except Exception as exc:  # noqa: BLE001 -- tifffile raises many kinds on a damaged header
            raise _refuse(self.path, "is not a TIFF file or its header is damaged", exc) from None
        try:
            self._open(level, mpp)
        except (_Refused, _LevelChoice):
            self.tif.close()
            raise
        except Exception as exc:  # noqa: BLE001 -- a damaged IFD fails deep inside tifffile
            self.tif.close()
            raise _refuse(self.path, "is a damaged TIFF", exc) from None
        except BaseException:
            self.tif.close()
            raise

    def _open(self, level, mpp):
        if not self.tif.series:
            raise _refuse(self.path, "holds no image (its header may be truncated or damaged)")
        base = self.tif.series[0]
        self._check_series(base)
        axes, pyramid = base.axes, _pyramid(base)
        # the level-0 page: its metadata (resolution, georeference) hold for every level, scaled
        self.metadata = _tiff_metadata(self.tif, base.keyframe, axes)
        self.georeference = GeoReference.from_page(base.keyframe)  # or None
        shapes = [_yx_shape(s, axes) for s in pyramid]
        self.levels = make_levels(shapes, level0_mpp(self.tif, base.keyframe, self.metadata))
        self.level = pick_level(self.levels, level, mpp, repr(self.path))
        if len(self.levels) > 1:
            self.metadata.update(_level_metadata(self.metadata, self.level, self.levels[self.level]))
        series = pyramid[self.level]
        self._check_series(series)
        self._open_series(series, axes)

    def _check_series(self, series):
        axes, shape, page = series.axes, tuple(series.shape), series.keyframe
        if "Y" not in axes or "X" not in axes or page.imagedepth > 1 or set(axes) - set(_AXES):
            raise _refuse(self.path, f"holds a series of axes {axes!r} and shape {shape}, not a 2-D image; "
                          f"expected axes Y and X with channels along {_CHANNEL_AXES}")
        if page.dtype is None:
            raise _refuse(self.path, f"holds samples of a data type this reader does not decode "
                          f"(SampleFormat {page.sampleformat}, {page.bitspersample}-bit)")

    def _open_series(self, series, axes):
        shape, page = tuple(series.shape), series.keyframe
        self.axes = axes
        self.shape = _yx_shape(series, axes)
        self.channels = math.prod(shape) // math.prod(self.shape)
        self.dtype = np.dtype(page.dtype).newbyteorder("=")
        pages = list(series.pages)
        for handle in {id(p.parent.filehandle): p.parent.filehandle for p in pages}.values():
            if handle.closed:  # tifffile closes an OME-TIFF's other files after parsing; TiffFile.close closes them
                handle.open()
        _check_segments(self.path, pages)
        one_file = all(p.parent is self.tif for p in pages)
        if series.dataoffset is not None and one_file:  # uncompressed and contiguous: memory-map it
            stored = np.dtype(self.tif.byteorder + page.dtype.char)
            end = series.dataoffset + math.prod(shape) * stored.itemsize
            if end > self.tif.filehandle.size:
                raise _refuse(self.path, f"is truncated: its pixels end at byte {end}, the file at "
                              f"{self.tif.filehandle.size}")
            mapped = self.tif.filehandle.memmap_array(stored, shape, series.dataoffset)
            yx_first = np.moveaxis(mapped, [axes.index("Y"), axes.index("X")], [0, 1])
            self.segments, self.mapped = None, _MappedSource(yx_first, self.channels, self.dtype)
        else:
            self.segments, self.mapped = _TiffSegments(self.path, self.tif, series, pages, self.shape), None

    def region(self, y0, y1, x0, x1):
        if self.mapped is not None:
            return self.mapped.region(y0, y1, x0, x1)
        out = np.empty((y1 - y0, x1 - x0, self.channels), self.dtype)
        self.segments.region(y0, y1, x0, x1, out)
        return out

    def close(self):
        self.mapped = self.segments = None
        self.tif.close()


class _MappedSource:
    """A memory-mapped series with Y, X first; any further axes are flattened into channels."""

    def __init__(self, array, channels, dtype):
        self.array, self.channels, self.dtype = array, channels, dtype

    def region(self, y0, y1, x0, x1):
        window = self.array[y0:y1, x0:x1].reshape(y1 - y0, x1 - x0, self.channels)
        return np.array(window, dtype=self.dtype, order="C", copy=True)


def _pyramid(base):
    """The levels tifffile finds for the series `base` (itself first), up to the first that is not a level of
    the same image: other axes, channels or dtype."""
    def channels(series):
        return math.prod(series.shape) // math.prod(_yx_shape(series, series.axes))

    levels = [base]
    for series in base.levels[1:]:
        if series.axes != base.axes or series.dtype != base.dtype or channels(series) != channels(base):
            break
        levels.append(series)
    return levels


def _yx_shape(series, axes):
    shape = tuple(series.shape)
    return shape[axes.index("Y")], shape[axes.index("X")]


def _level_metadata(metadata, level, info):
    """The entries of a pyramid's metadata that say which level is read: its number, its scale, and the
    level-0 resolution (pixels per unit, (x, y)) divided by its downsample."""
    scale_y, scale_x = info.downsample
    out = {"level": level, "level_scale": (scale_y, scale_x)}
    if metadata["resolution"] is not None:
        out["resolution"] = (metadata["resolution"][0] / scale_x, metadata["resolution"][1] / scale_y)
    return out


def _tiff_metadata(tif, page, axes):
    """Resolution, its unit, OME and axes of a TIFF page (tifffile gives the unit as an enum or an int).

    `page` is the level-0 page of a pyramid, whichever level is read: the reader scales what it gives to the
    level read (:func:`_level_metadata`)."""
    resolution = unit_name = None
    if "XResolution" in page.tags and "YResolution" in page.tags:
        try:
            resolution = tuple(float(r) for r in page.resolution)
        except (ArithmeticError, TypeError, ValueError):  # e.g. a zero denominator
            resolution = (math.nan, math.nan)
        # TIFF 6: ResolutionUnit defaults to 2 (inch) when absent; an unknown value counts as no unit
        unit_name = _TIFF_UNITS.get(int(page.tags.valueof(296, default=2)))
        if unit_name is None and resolution == (1.0, 1.0):  # tifffile's placeholder
            resolution = None
        if resolution is not None and not all(math.isfinite(r) and r > 0 for r in resolution):
            resolution = unit_name = None  # a zero denominator or a negative value says nothing
    return {"resolution": resolution, "resolution_unit": unit_name, "ome": bool(tif.is_ome), "axes": axes}
