"""ImageReader: windows of a TIFF or an array-like, padded beyond the image border."""

import os
import weakref

import numpy as np

from .._validate import as_pair
from ._common import PAD_MODES, InputFile, _check_box, _check_fill
from ._levels import check_choice, make_levels, pick_level
from ._tiff import _TiffSource

__all__ = ["ImageReader", "metadata_for_output"]


def _pad_index(lo, hi, size, mode):
    """Source index of each position in ``[lo, hi)`` along an axis of length `size`."""
    index = np.arange(lo, hi)
    if mode == "edge" or size == 1:  # numpy's reflect is undefined on a length-1 axis
        return np.clip(index, 0, size - 1)
    # Reflection without repeating the edge is periodic with period 2 * (size - 1);
    # this equals np.pad(mode="reflect") for pads of any width.
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index < size, index, period - index)


class _ArraySource:
    """Windows of an in-memory array-like: (H, W), (H, W, C) or (C, H, W)."""

    def __init__(self, array, channel_axis, level=0, mpp=None):
        shape = tuple(int(n) for n in array.shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"source has shape {shape}; expected (H, W), (H, W, C) or, "
                             f"with channel_axis=0, (C, H, W)")
        self.array = array
        self.channels_first = len(shape) == 3 and channel_axis == 0
        if len(shape) == 2:
            self.shape, self.channels = shape, 1
        elif self.channels_first:
            self.shape, self.channels = shape[1:], shape[0]
        else:
            self.shape, self.channels = shape[:2], shape[2]
        if 0 in shape:
            raise ValueError(f"source has shape {shape}; expected no empty axis")
        self.dtype = np.dtype(array.dtype).newbyteorder("=")
        self.axes = "YX" if len(shape) == 2 else ("CYX" if self.channels_first else "YXC")
        self.levels = make_levels([self.shape], None)
        self.level = pick_level(self.levels, level, mpp, f"the {type(array).__name__} source")

    def region(self, y0, y1, x0, x1):
        if self.channels_first:
            window = np.moveaxis(np.asarray(self.array[:, y0:y1, x0:x1]), 0, -1)
        else:
            window = np.asarray(self.array[y0:y1, x0:x1])
        window = window.reshape(y1 - y0, x1 - x0, self.channels)
        # Always a copy: a caller writing into a window must not change the source.
        return np.array(window, dtype=self.dtype, order="C", copy=True)

    def close(self):
        self.array = None


class ImageReader(InputFile):
    """Read windows of a large image, padding beyond its border.

    Parameters
    ----------
    source : str, os.PathLike or array-like
        Path to a TIFF (tiled or striped, BigTIFF, OME-TIFF, GeoTIFF, SVS,
        NDPI; from tifffile, GDAL, Pillow or other writers; any codec
        tifffile decodes, JPEG and JPEG 2000 through imagecodecs; one or
        several channels as contiguous samples, separate planes or pages;
        the first series is read, at the level asked for), or an array-like
        with ``shape``, ``dtype`` and numpy basic slicing (numpy array,
        memmap, zarr or dask array) of shape (H, W), (H, W, C) or, with
        ``channel_axis=0``, (C, H, W).
    level : int, keyword-only
        Which level of a pyramidal TIFF to read: 0 (full resolution) or a
        reduced level as tifffile finds them (OME-TIFF SubIFDs, the levels
        of an SVS but not its thumbnail, label or macro, NDPI, GDAL's
        internal overviews, tifffile's ``subifds=``). See :attr:`levels`.
    mpp : float, keyword-only
        Instead of `level`: read the level whose resolution is nearest
        `mpp` micrometres per pixel (see :func:`level_for_mpp`); the file
        must give its resolution.
    pad : {"reflect", "edge", "constant"}, keyword-only
        How pixels outside the image are made up: mirrored without repeating
        the edge pixel (like ``numpy.pad(mode="reflect")``; on a 1-pixel axis
        this is "edge"), copies of the nearest edge pixel, or `fill`. The
        border is that of the level read.
    fill : number, keyword-only
        Value of outside pixels with ``pad="constant"``: an integer image
        needs a value it holds exactly; a float image takes the nearest
        float (but no finite value that would become inf).

    Raises
    ------
    ValueError
        At open, before any pixel is read, with one line naming the path:
        a missing, empty or unreadable file, a file that is not a TIFF, a
        truncated or damaged one (its header, or a tile or strip reaching
        beyond the end of its file), a series that is not a 2-D image
        (Z, T or volumetric tiles), a sample type, compression or layout
        tifffile cannot decode. A tile that fails to decode later (damaged
        bytes inside the file) raises a ValueError naming file and tile.
        A `level` the file does not have, or an `mpp` it cannot match (no
        resolution), raises a ValueError naming `level` or `mpp`, the value
        and the number of levels.
    channel_axis : {-1, 2, 0}, keyword-only
        Where a 3-D array source keeps its channels (arrays only).

    Notes
    -----
    Reading a window of a tiled or striped TIFF decodes only the tiles or
    strips of the level read that meet it (no other level is decoded, nor
    checked); an uncompressed contiguous TIFF is memory-mapped.
    The TIFF stays open until :meth:`close`. Reads may come from several
    threads at once.

    Examples
    --------
    >>> import numpy as np
    >>> with ImageReader(np.arange(12).reshape(3, 4)) as reader:
    ...     reader.shape, reader.channels
    ...     reader.read((-1, -1, 2, 2))[..., 0]
    ((3, 4), 1)
    array([[5, 4, 5],
           [1, 0, 1],
           [5, 4, 5]])
    """

    def __init__(self, source, *, level=0, mpp=None, pad="reflect", fill=0, channel_axis=-1):
        level, mpp = check_choice(level, mpp)
        if pad not in PAD_MODES:
            raise ValueError(f"pad={pad!r} is not a pad mode; expected one of {PAD_MODES}")
        if isinstance(channel_axis, bool) or channel_axis not in (-1, 2, 0):
            raise ValueError(f"channel_axis={channel_axis!r} is not supported; expected -1, 2 or 0")
        is_path = isinstance(source, (str, os.PathLike))
        if is_path and channel_axis == 0:
            raise ValueError("channel_axis=0 applies to array sources only; a TIFF's axes come from the file")
        if not is_path and not all(hasattr(source, a) for a in ("shape", "dtype", "__getitem__")):
            raise ValueError(f"source={type(source).__name__} is neither a path nor an array-like "
                             f"with shape, dtype and slicing")
        self._name = os.fspath(source) if is_path else type(source).__name__
        self._source = _TiffSource(source, level, mpp) if is_path else _ArraySource(source, channel_axis, level, mpp)
        self._finalizer = weakref.finalize(self, self._source.close)  # a reader never closed closes its file
        try:
            self._fill = _check_fill(fill, self._source.dtype)
        except ValueError:
            self.close()
            raise
        self._pad = pad

    @property
    def shape(self):
        """``(height, width)`` of the image."""
        return tuple(self._source.shape)

    @property
    def channels(self):
        """Number of channels (1 for a single-channel image)."""
        return int(self._source.channels)

    @property
    def dtype(self):
        """Data type of the image (native byte order)."""
        return self._source.dtype

    @property
    def levels(self):
        """The levels of the image, level 0 (full resolution) first, as a tuple of :class:`Level`:
        ``shape`` (H, W), ``downsample`` (sy, sx) against level 0 and ``mpp`` ((y, x) micrometres per
        pixel, from the OME physical size, an SVS ``MPP =`` or resolution tags with a unit; or None).
        An image that is no pyramid (an array, say) has one level."""
        return self._source.levels

    @property
    def level(self):
        """The number of the level read (0 for full resolution)."""
        return self._source.level

    @property
    def mpp(self):
        """``(y, x)`` micrometres per pixel of the level read, or None where the file does not say."""
        return self._source.levels[self._source.level].mpp

    @property
    def metadata(self):
        """Dict with ``resolution`` ((x, y) pixels per unit, or None), ``resolution_unit``
        ("CENTIMETER", "INCH", "MILLIMETER", "MICROMETER" or None), ``ome`` (bool) and ``axes`` (str).

        Of a pyramid (a TIFF with more than one level) also ``level`` (the
        level read) and ``level_scale`` ((sy, sx) floats: level-0 size /
        size of the level read); its ``resolution`` is then that of the
        level read: level 0's divided by ``level_scale``.
        """
        if isinstance(self._source, _TiffSource):
            return dict(self._source.metadata)
        return {"resolution": None, "resolution_unit": None, "ome": False, "axes": self._source.axes}

    @property
    def georeference(self):
        """The :class:`~seamless_fast.io.GeoReference` of a TIFF with GeoTIFF tags or GDAL_NODATA, else None."""
        return getattr(self._source, "georeference", None)

    def read(self, box):
        """Read the window `box`, padding where it leaves the image.

        Parameters
        ----------
        box : (int, int, int, int)
            ``(ylo, xlo, yhi, xhi)``, exclusive upper bounds; may reach beyond
            the image on any side or lie wholly outside it.

        Returns
        -------
        ndarray, shape (yhi - ylo, xhi - xlo, channels)
            C-contiguous, in the image dtype.
        """
        if self._source is None:
            raise ValueError("reader is closed")
        ylo, xlo, yhi, xhi = _check_box(box)
        if self._pad == "constant":
            return self._read_constant(ylo, xlo, yhi, xhi)
        height, width = self.shape
        rows = _pad_index(ylo, yhi, height, self._pad)
        cols = _pad_index(xlo, xhi, width, self._pad)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        region = self._source.region(int(y0), int(y1), int(x0), int(x1))
        if ylo == y0 and yhi == y1 and xlo == x0 and xhi == x1:  # wholly inside
            return region
        return np.ascontiguousarray(region[np.ix_(rows - y0, cols - x0)])

    def _read_constant(self, ylo, xlo, yhi, xhi):
        out = np.full((yhi - ylo, xhi - xlo, self.channels), self._fill, self.dtype)
        height, width = self.shape
        y0, y1, x0, x1 = max(ylo, 0), min(yhi, height), max(xlo, 0), min(xhi, width)
        if y1 > y0 and x1 > x0:
            out[y0 - ylo:y1 - ylo, x0 - xlo:x1 - xlo] = self._source.region(y0, y1, x0, x1)
        return out

    def _describe(self):
        level = f"level={self.level}, " if self.level else ""
        return f"{level}shape={self.shape}, channels={self.channels}, dtype={self.dtype}, pad={self._pad!r}"


def metadata_for_output(reader, *, output_scale=1):
    """TiffWriter keyword arguments that carry an input's metadata over to an output.

    Parameters
    ----------
    reader : ImageReader
    output_scale : int or (int, int), keyword-only
        Input pixels per output pixel, ``(sy, sx)`` or one for both axes
        (a model that predicts at a lower resolution): the output's pixels
        are that many times larger than those of the level read. The
        georeference, which is level 0's, is scaled by the reader's
        ``metadata["level_scale"]`` (a pyramid level read) times it.

    Returns
    -------
    dict
        ``resolution``, ``resolution_unit`` and ``ome``, and, for an input
        that has them, ``georeference`` (its GeoTIFF tags, scaled so that
        the output's pixel (0, 0) covers the same ground as the input's
        level-0 pixel (0, 0) block and each output pixel that many input
        pixels: see :meth:`GeoReference.scaled`) and ``nodata`` (its
        GDAL_NODATA value; a TiffWriter whose dtype cannot hold it refuses
        it). A resolution per millimetre or micrometre (units TiffWriter
        does not write) is given per centimetre; a file whose resolution
        only its description gives (an SVS's ``MPP = ``) gets it per
        centimetre from :attr:`ImageReader.mpp`; the level's resolution is
        divided by `output_scale`.

    Examples
    --------
    >>> import numpy as np
    >>> metadata_for_output(ImageReader(np.zeros((4, 4), np.uint8)))
    {'resolution': None, 'resolution_unit': None, 'ome': False}
    """
    if not isinstance(reader, ImageReader):
        raise ValueError(f"reader={reader!r} is not an ImageReader")
    output_scale = as_pair(output_scale, "output_scale", minimum=1)
    metadata = reader.metadata
    level_scale = metadata.get("level_scale", (1, 1))
    scale = (float(level_scale[0]) * output_scale[0], float(level_scale[1]) * output_scale[1])  # (sy, sx)
    out = {key: metadata[key] for key in ("resolution", "resolution_unit", "ome")}
    if out["resolution"] is None and reader.mpp is not None:  # said elsewhere than the tags (SVS: MPP = ...)
        out["resolution"] = (1e4 / reader.mpp[1], 1e4 / reader.mpp[0])
        out["resolution_unit"] = "CENTIMETER"
    per_centimetre = {"MILLIMETER": 10, "MICROMETER": 10_000}.get(out["resolution_unit"])
    if per_centimetre is not None:
        out["resolution"] = tuple(r * per_centimetre for r in out["resolution"])
        out["resolution_unit"] = "CENTIMETER"
    if out["resolution"] is not None and output_scale != (1, 1):  # the level's resolution, per output pixel
        out["resolution"] = (out["resolution"][0] / output_scale[1], out["resolution"][1] / output_scale[0])
    geo = metadata.get("georeference", reader.georeference)
    if geo is not None:  # level 0's tags: scaled by the level read and the output scale
        out["georeference"] = geo.scaled(scale)
        if geo.nodata_value is not None:
            out["nodata"] = geo.nodata_value
    return out
