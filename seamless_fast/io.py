"""Reading windows of huge images and streaming outputs into tiled TIFFs.

:class:`ImageReader` reads any window of a TIFF (or of an in-memory array)
without loading the image: only the TIFF tiles or strips that meet the window
are decoded. Windows may reach beyond the image; the outside is padded.

:class:`TiffWriter` streams an output image into a tiled (Big)TIFF as cells
arrive, holding only the TIFF tile rows that are not yet complete, and only
puts the file under its final name once it is complete.

tifffile is an optional dependency (``pip install 'seamless_fast[tiff]'``);
it is imported only when a TIFF is opened or written.
"""

import math
import numbers
import os
import queue
import tempfile
import threading
import weakref

import numpy as np

from ._validate import as_int, as_pair, as_positive_int

__all__ = ["ImageReader", "TiffWriter", "metadata_for_output"]

PAD_MODES = ("reflect", "edge", "constant")
WRITER_DTYPES = ("uint8", "uint16", "float16", "float32")
COMPRESSIONS = (None, "zlib", "zstd")
RESOLUTION_UNITS = (None, "CENTIMETER", "INCH")
# Above this many uncompressed bytes a classic TIFF may overflow its 32-bit offsets.
BIGTIFF_THRESHOLD = 2**32 - 2**25
_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}


def _import_tifffile():
    try:
        import tifffile
    except ImportError:
        raise ImportError("reading or writing TIFF files needs tifffile: "
                          "pip install 'seamless_fast[tiff]'") from None
    return tifffile


def _check_box(box, name="box"):
    """``box`` as a tuple of 4 ints ``(ylo, xlo, yhi, xhi)`` with a non-empty extent."""
    try:
        items = tuple(box)
    except TypeError:
        raise ValueError(f"{name}={box!r} is not a box; expected (ylo, xlo, yhi, xhi)") from None
    if len(items) != 4:
        raise ValueError(f"{name}={box!r} has {len(items)} items; expected 4: (ylo, xlo, yhi, xhi)")
    try:
        ylo, xlo, yhi, xhi = (as_int(v, name) for v in items)
    except ValueError:
        raise ValueError(f"{name}={box!r} has a non-integer entry; expected 4 ints (ylo, xlo, yhi, xhi)") from None
    if yhi <= ylo or xhi <= xlo:
        raise ValueError(f"{name}={box!r} is empty; expected yhi > ylo and xhi > xlo")
    return ylo, xlo, yhi, xhi


def _check_fill(fill, dtype, name="fill"):
    """``fill`` as a 0-d array of ``dtype``, refusing values the dtype cannot hold."""
    if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (numbers.Real, np.number)):
        raise ValueError(f"{name}={fill!r} is not a number")
    with np.errstate(all="ignore"):
        value = np.asarray(fill).astype(dtype)
    same = value == fill or (np.isnan(fill) and np.isnan(value))
    if not same:
        raise ValueError(f"{name}={fill!r} cannot be stored exactly as {dtype}")
    return value


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


# --------------------------------------------------------------------------- sources

class _ArraySource:
    """Windows of an in-memory array-like: (H, W), (H, W, C) or (C, H, W)."""

    def __init__(self, array, channel_axis):
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


class _TiffSegments:
    """Windows of a tiled or striped TIFF series, decoding only the segments they meet."""

    def __init__(self, tif, series, height, width):
        page = series.keyframe
        self.tif, self.pages, self.keyframe = tif, list(series.pages), page
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
                raise ValueError(f"TIFF series with axes {series.axes!r} has a segment layout this reader "
                                 f"does not support (expected {expected} tiles or strips per page)")
        self.decode_args = {}
        if page.compression in _JPEG_COMPRESSIONS:
            self.decode_args["jpegheader"] = page.jpegheader
        page.decode  # noqa: B018 -- tifffile's cached decoder is not thread-safe on first access
        self.lock = threading.Lock()

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
            segments = self.tif.filehandle.read_segments(offsets, counts, indices, lock=self.lock, flat=True)
            for data, index in segments:
                segment, position, _ = decode(data, index, **args)
                channel = page_number * self.samples + (position[0] if self.planes > 1 else 0)
                self._paste(segment, position, channel, (y0, y1, x0, x1), out)

    def _paste(self, segment, position, channel, window, out):
        y0, y1, x0, x1 = window
        sy, sx = position[2], position[3]
        ya, yb = max(y0, sy), min(y1, sy + self.seg_h)
        xa, xb = max(x0, sx), min(x1, sx + self.seg_w)
        depth = 1 if self.planes > 1 else self.samples
        target = out[ya - y0:yb - y0, xa - x0:xb - x0, channel:channel + depth]
        if segment is None:  # a sparse (empty) segment reads as zeros, as in tifffile
            target[...] = 0
        else:
            target[...] = segment[0, ya - sy:yb - sy, xa - sx:xb - sx]


class _TiffSource:
    """Windows of the first series of a TIFF, full resolution."""

    def __init__(self, path):
        tifffile = _import_tifffile()
        self.tif = tifffile.TiffFile(path)
        try:
            self._open(self.tif.series[0])
        except BaseException:
            self.tif.close()
            raise

    def _open(self, series):
        axes, shape, page = series.axes, tuple(series.shape), series.keyframe
        if "Y" not in axes or "X" not in axes or page.imagedepth > 1:
            raise ValueError(f"TIFF series with axes {axes!r} is not a 2-D image; expected Y and X axes")
        self.axes = axes
        self.shape = (shape[axes.index("Y")], shape[axes.index("X")])
        self.channels = math.prod(shape) // math.prod(self.shape)
        self.dtype = np.dtype(page.dtype).newbyteorder("=")
        self.metadata = _tiff_metadata(self.tif, page, axes)
        if series.dataoffset is not None:  # uncompressed and contiguous: memory-map it
            stored = np.dtype(self.tif.byteorder + page.dtype.char)
            mapped = self.tif.filehandle.memmap_array(stored, shape, series.dataoffset)
            yx_first = np.moveaxis(mapped, [axes.index("Y"), axes.index("X")], [0, 1])
            self.segments, self.mapped = None, _MappedSource(yx_first, self.channels, self.dtype)
        else:
            self.segments, self.mapped = _TiffSegments(self.tif, series, *self.shape), None

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


def _tiff_metadata(tif, page, axes):
    unit = page.resolutionunit
    unit_name = None if unit is None or unit.value == 1 else unit.name
    resolution = None
    if "XResolution" in page.tags and "YResolution" in page.tags:
        resolution = tuple(float(r) for r in page.resolution)
        if unit_name is None and resolution == (1.0, 1.0):  # tifffile's placeholder
            resolution = None
    return {"resolution": resolution, "resolution_unit": unit_name, "ome": bool(tif.is_ome), "axes": axes}


# --------------------------------------------------------------------------- reader

class ImageReader:
    """Read windows of a large image, padding beyond its border.

    Parameters
    ----------
    source : str, os.PathLike or array-like
        Path to a TIFF (tiled or striped, BigTIFF, OME-TIFF, one or several
        channels as contiguous samples, separate planes or pages; the first
        series at full resolution is read), or an array-like with ``shape``,
        ``dtype`` and numpy basic slicing (numpy array, memmap, zarr or dask
        array) of shape (H, W), (H, W, C) or, with ``channel_axis=0``, (C, H, W).
    pad : {"reflect", "edge", "constant"}, keyword-only
        How pixels outside the image are made up: mirrored without repeating
        the edge pixel (like ``numpy.pad(mode="reflect")``; on a 1-pixel axis
        this is "edge"), copies of the nearest edge pixel, or `fill`.
    fill : number, keyword-only
        Value of outside pixels with ``pad="constant"``.
    channel_axis : {-1, 2, 0}, keyword-only
        Where a 3-D array source keeps its channels (arrays only).

    Notes
    -----
    Reading a window of a tiled or striped TIFF decodes only the tiles or
    strips that meet it; an uncompressed contiguous TIFF is memory-mapped.
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

    def __init__(self, source, *, pad="reflect", fill=0, channel_axis=-1):
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
        self._source = _TiffSource(source) if is_path else _ArraySource(source, channel_axis)
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
    def metadata(self):
        """Dict with ``resolution`` ((x, y) floats or None), ``resolution_unit``
        ("CENTIMETER", "INCH" or None), ``ome`` (bool) and ``axes`` (str)."""
        if isinstance(self._source, _TiffSource):
            return dict(self._source.metadata)
        return {"resolution": None, "resolution_unit": None, "ome": False, "axes": self._source.axes}

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

    def close(self):
        """Release the source (closes the TIFF). Safe to call twice."""
        if self._source is not None:
            self._source.close()
            self._source = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        if self._source is None:
            return f"ImageReader({self._name!r}, closed)"
        return (f"ImageReader({self._name!r}, shape={self.shape}, channels={self.channels}, "
                f"dtype={self.dtype}, pad={self._pad!r})")


# --------------------------------------------------------------------------- writer

_ABORT = object()


class _Aborted(Exception):
    """Raised inside the tile generator to stop tifffile when a write is abandoned."""


def _tile_stream(tiles):
    """Yield tiles from the queue (lists of tiles per TIFF tile row) until told to stop."""
    while True:
        item = tiles.get()
        if item is _ABORT:
            raise _Aborted
        yield from item


def _write_in_background(tiff, tiles, errors, kwargs):
    try:
        tiff.write(data=_tile_stream(tiles), **kwargs)
    except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
        errors.append(exc)


def _stop(tiles, thread, tiff, temp_path):
    """Stop the background write, close and remove the temporary file (abort, or garbage collection)."""
    while thread.is_alive():
        try:
            tiles.put(_ABORT, timeout=0.05)
            break
        except queue.Full:
            continue
    thread.join()
    try:
        tiff.close()
    except Exception:  # noqa: BLE001 -- an abandoned file may not close cleanly; it is removed anyway
        pass
    try:
        os.remove(temp_path)
    except FileNotFoundError:
        pass


class TiffWriter:
    """Stream an image into a tiled (Big)TIFF, cell by cell, in bounded memory.

    Parameters
    ----------
    path : str or os.PathLike
        Final file name. The data go to a temporary file beside it
        (``.{name}.partial-*``) that replaces `path` only when :meth:`close`
        succeeds; an existing file at `path` is left alone until then.
    image_size : (int, int)
        ``(height, width)`` of the image.
    channels : int, optional, keyword-only
        None for a 2-D image (e.g. labels); else C for (H, W, C) stored as
        contiguous samples.
    dtype : {uint8, uint16, float16, float32}, keyword-only
        Stored data type. Float data written to a uint8 file are quantised as
        probabilities: ``clip(rint(data * 255), 0, 255)``, NaN as 0.
    tile : (int, int), keyword-only
        TIFF tile ``(height, width)``, multiples of 16.
    compression : {None, "zlib", "zstd"}, keyword-only
        "zstd" needs the imagecodecs package.
    resolution : (float, float), optional, keyword-only
        ``(x, y)`` pixels per `resolution_unit`.
    resolution_unit : {None, "CENTIMETER", "INCH"}, keyword-only
    ome : bool, keyword-only
        Write OME-TIFF metadata instead of tifffile's shaped description.
    bigtiff : bool, optional, keyword-only
        None: BigTIFF when the uncompressed image exceeds ``BIGTIFF_THRESHOLD``.
    fill : number, keyword-only
        Value of pixels never written.

    Notes
    -----
    Boxes may come in any order, but memory stays bounded only when they come
    roughly in row-major order, as a blend emits cells. The writer holds the
    rows of the TIFF tile rows ("bands") that some write has touched and that
    are not yet complete: with cells of height ch and tiles of height th,
    arriving row after row, at most ``ch + 2 * th`` rows of the full
    (tile-padded) width (see :attr:`held_rows`). Up to three complete bands
    more wait for or are in encoding, and tifffile buffers some encoded tiles.
    A band is complete when every one of its pixels is written, which is
    counted per band (no pixel can be written twice, so counts are exact);
    bands are handed to tifffile in order, which encodes them in a
    background thread. A plan run in vertical stripes completes no band
    until its last stripe arrives, so the writer then holds every band.

    The writer is not thread-safe: call :meth:`write` from one thread.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "labels.tif")
    ...     with TiffWriter(path, (40, 50), tile=(16, 16), compression="zlib") as writer:
    ...         writer.write((0, 0, 40, 30), np.ones((40, 30), np.uint8))
    ...         writer.write((0, 30, 40, 50), np.full((40, 20), 2, np.uint8))
    ...     with ImageReader(path) as reader:
    ...         reader.read((38, 28, 40, 32))[..., 0]
    array([[1, 1, 2, 2],
           [1, 1, 2, 2]], dtype=uint8)
    """

    def __init__(self, path, image_size, *, channels=None, dtype=np.uint8, tile=(256, 256), compression=None,
                 resolution=None, resolution_unit=None, ome=False, bigtiff=None, fill=0):
        self._path = os.fspath(path)
        self._size = _check_size(image_size)
        self._channels = None if channels is None else as_positive_int(channels, "channels")
        self._dtype = _check_dtype(dtype)
        self._tile = _check_tile(tile)
        compression = _check_compression(compression)
        tiff_kwargs = self._tiff_kwargs(compression, resolution, resolution_unit, ome)
        self._is_bigtiff = bigtiff = self._bigtiff(bigtiff)
        self._fill = _check_fill(fill, self._dtype)
        folder = os.path.dirname(os.path.abspath(self._path))
        if not os.path.isdir(folder):
            raise ValueError(f"path={self._path!r}: folder {folder!r} does not exist")
        tifffile = _import_tifffile()
        self._setup_bands()
        handle, self._temp_path = tempfile.mkstemp(prefix=f".{os.path.basename(self._path)}.partial-", dir=folder)
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes it private; the result should not be
        os.close(handle)
        try:
            self._start(tifffile, bigtiff, ome, tiff_kwargs)
        except BaseException:
            os.remove(self._temp_path)
            raise

    # ---- setup

    def _tiff_kwargs(self, compression, resolution, resolution_unit, ome):
        if not isinstance(ome, (bool, np.bool_)):
            raise ValueError(f"ome={ome!r} must be True or False")
        axes = "YX" if self._channels is None else "YXS"
        kwargs = {"shape": self._size + (() if self._channels is None else (self._channels,)),
                  "dtype": self._dtype, "tile": self._tile, "compression": compression,
                  "photometric": "minisblack", "metadata": {"axes": axes} if ome else {}}
        if self._channels is not None:
            kwargs["planarconfig"] = "contig"
        if resolution is not None:
            kwargs["resolution"] = _check_resolution(resolution)
        unit = _check_resolution_unit(resolution_unit)
        if unit is not None:
            kwargs["resolutionunit"] = unit
        return kwargs

    def _bigtiff(self, bigtiff):
        if bigtiff is None:
            return self.nbytes > BIGTIFF_THRESHOLD
        if not isinstance(bigtiff, (bool, np.bool_)):
            raise ValueError(f"bigtiff={bigtiff!r} must be True, False or None")
        return bool(bigtiff)

    def _setup_bands(self):
        height, width = self._size
        tile_h, tile_w = self._tile
        self._n_bands = math.ceil(height / tile_h)
        self._n_tile_cols = math.ceil(width / tile_w)
        self._bands = {}  # band index -> [buffer, pixels still unwritten]
        self._next_band = 0  # bands before it have gone to tifffile
        self._live_boxes = np.empty((0, 4), np.int64)  # written boxes that reach an unsent band
        self._state = "open"

    def _start(self, tifffile, bigtiff, ome, kwargs):
        self._tiff = tifffile.TiffWriter(self._temp_path, bigtiff=bigtiff, ome=bool(ome))
        self._queue = queue.Queue(maxsize=2)
        self._errors = []
        self._thread = threading.Thread(target=_write_in_background, name=f"TiffWriter({self._path})",
                                        args=(self._tiff, self._queue, self._errors, kwargs), daemon=True)
        self._thread.start()
        # Never leave the thread running or the temporary file behind, even if close() is never called.
        self._finalizer = weakref.finalize(self, _stop, self._queue, self._thread, self._tiff, self._temp_path)

    # ---- properties

    @property
    def path(self):
        """Final file name."""
        return self._path

    @property
    def image_size(self):
        """``(height, width)`` of the image."""
        return self._size

    @property
    def dtype(self):
        """Stored data type."""
        return self._dtype

    @property
    def channels(self):
        """None for a 2-D image, else the number of samples per pixel."""
        return self._channels

    @property
    def bigtiff(self):
        """Whether the file is a BigTIFF."""
        return self._is_bigtiff

    @property
    def nbytes(self):
        """Uncompressed size of the image in bytes."""
        return math.prod(self._size) * (self._channels or 1) * self._dtype.itemsize

    @property
    def held_rows(self):
        """Rows (of the full tile-padded width) held in incomplete TIFF tile rows now."""
        return len(self._bands) * self._tile[0]

    # ---- writing

    def write(self, box, data):
        """Write `data` into `box`.

        Parameters
        ----------
        box : (int, int, int, int)
            ``(ylo, xlo, yhi, xhi)`` inside the image, no pixel written before.
        data : array-like, shape (h, w) or (h, w, channels)
            (h, w) for a 2-D writer, (h, w, channels) otherwise.
        """
        self._check_open()
        ylo, xlo, yhi, xhi = self._check_write_box(box)
        data = self._convert(data, (yhi - ylo, xhi - xlo))
        self._check_unwritten((ylo, xlo, yhi, xhi))
        tile_h = self._tile[0]
        for band in range(ylo // tile_h, (yhi - 1) // tile_h + 1):
            self._paste(band, (ylo, xlo, yhi, xhi), data)
        self._live_boxes = np.vstack([self._live_boxes, [(ylo, xlo, yhi, xhi)]])
        self._send_complete_bands()

    def _check_open(self):
        if self._state != "open":
            raise ValueError(f"TiffWriter for {self._path!r} is {self._state}; no more writes")
        self._raise_background_error()

    def _check_write_box(self, box):
        ylo, xlo, yhi, xhi = _check_box(box)
        height, width = self._size
        if ylo < 0 or xlo < 0 or yhi > height or xhi > width:
            raise ValueError(f"box={box!r} reaches outside the image of size {self._size}")
        return ylo, xlo, yhi, xhi

    def _convert(self, data, size):
        data = np.asarray(data)
        expected = size if self._channels is None else size + (self._channels,)
        if data.shape != expected:
            raise ValueError(f"data has shape {data.shape}; expected {expected} for this box")
        return to_output_dtype(data, self._dtype)

    def _check_unwritten(self, box):
        ylo, xlo, yhi, xhi = box
        if ylo < self._next_band * self._tile[0]:
            raise ValueError(f"box={box!r} writes pixels already written (rows above "
                             f"{self._next_band * self._tile[0]} are complete)")
        live = self._live_boxes
        hit = (live[:, 0] < yhi) & (ylo < live[:, 2]) & (live[:, 1] < xhi) & (xlo < live[:, 3])
        if hit.any():
            raise ValueError(f"box={box!r} writes pixels already written by box {tuple(live[hit][0].tolist())}")

    def _paste(self, band, box, data):
        ylo, xlo, yhi, xhi = box
        if band not in self._bands:
            self._bands[band] = [self._new_band(), self._band_pixels(band)]
        buffer, _ = entry = self._bands[band]
        top = band * self._tile[0]
        y0, y1 = max(ylo, top), min(yhi, top + self._tile[0])
        buffer[y0 - top:y1 - top, xlo:xhi] = data[y0 - ylo:y1 - ylo]
        entry[1] -= (y1 - y0) * (xhi - xlo)

    def _new_band(self):
        width = self._n_tile_cols * self._tile[1]
        shape = (self._tile[0], width) + (() if self._channels is None else (self._channels,))
        return np.full(shape, self._fill, self._dtype)

    def _band_pixels(self, band):
        top = band * self._tile[0]
        return (min(top + self._tile[0], self._size[0]) - top) * self._size[1]

    def _send_complete_bands(self):
        while self._next_band in self._bands and self._bands[self._next_band][1] == 0:
            self._send(self._bands.pop(self._next_band)[0])
        done = self._next_band * self._tile[0]
        self._live_boxes = self._live_boxes[self._live_boxes[:, 2] > done]

    def _send(self, buffer):
        tile_w = self._tile[1]
        tiles = [buffer[:, i * tile_w:(i + 1) * tile_w] for i in range(self._n_tile_cols)]
        while True:  # bounded queue: wait for the encoder, but not on a dead one
            try:
                self._queue.put(tiles, timeout=0.05)
                break
            except queue.Full:
                self._raise_background_error()
        self._next_band += 1

    def _raise_background_error(self):
        if self._errors:
            error = self._errors[0]
            self.abort()
            raise RuntimeError(f"writing {self._path!r} failed in the background: {error!r}") from error

    # ---- completion

    def close(self):
        """Write unwritten pixels as `fill`, finish the file and move it to `path`.

        Safe to call twice. On failure the temporary file is removed and the
        error propagates.
        """
        if self._state == "closed":
            return
        if self._state == "aborted":
            raise ValueError(f"TiffWriter for {self._path!r} was aborted; nothing to close")
        try:
            self._raise_background_error()
            while self._next_band < self._n_bands:
                entry = self._bands.pop(self._next_band, None)
                self._send(self._new_band() if entry is None else entry[0])
            self._thread.join()
            self._raise_background_error()
            self._tiff.close()
            os.replace(self._temp_path, self._path)
        except BaseException:
            self.abort()
            raise
        self._finalizer.detach()
        self._release("closed")

    def abort(self):
        """Abandon the file: stop encoding and remove the temporary file. Safe to call twice."""
        if self._state != "open":
            return
        self._finalizer()
        self._release("aborted")

    def _release(self, state):
        self._state = state
        self._bands.clear()
        self._live_boxes = np.empty((0, 4), np.int64)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self):
        channels = "" if self._channels is None else f", channels={self._channels}"
        return (f"TiffWriter({self._path!r}, image_size={self._size}{channels}, dtype={self._dtype}, "
                f"tile={self._tile}, {self._state})")


def to_output_dtype(data, dtype):
    """`data` as stored in an output of `dtype`: float data into uint8 are quantised as
    probabilities, ``clip(rint(data * 255), 0, 255)`` with NaN as 0; anything else is cast."""
    if dtype == np.uint8 and data.dtype.kind == "f":
        scaled = np.clip(np.rint(data * 255), 0, 255)
        return np.nan_to_num(scaled, copy=False, nan=0).astype(np.uint8)
    return data.astype(dtype, copy=False)


# --------------------------------------------------------------------------- validation

def _check_size(image_size):
    return as_pair(image_size, "image_size", minimum=1)


def _check_dtype(dtype):
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype={dtype!r} is not a data type; expected one of {WRITER_DTYPES}") from None
    if out.name not in WRITER_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of {WRITER_DTYPES}")
    return out.newbyteorder("=")


def _check_tile(tile):
    out = as_pair(tile, "tile", minimum=1)
    if out[0] % 16 or out[1] % 16:
        raise ValueError(f"tile={tile!r}: TIFF tile sides must be multiples of 16")
    return out


def _check_compression(compression):
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression={compression!r} is not supported; expected one of {COMPRESSIONS}")
    if compression == "zstd":
        try:
            from imagecodecs import zstd_encode  # noqa: F401
        except ImportError:
            raise ValueError("compression='zstd' needs imagecodecs: pip install imagecodecs") from None
    return compression


def _check_resolution(resolution):
    try:
        items = tuple(float(r) for r in resolution)
    except (TypeError, ValueError):
        raise ValueError(f"resolution={resolution!r} is not an (x, y) pair of numbers") from None
    if len(items) != 2 or not all(math.isfinite(r) and r > 0 for r in items):
        raise ValueError(f"resolution={resolution!r}: expected (x, y), two positive finite numbers")
    return items


def _check_resolution_unit(unit):
    name = unit.upper() if isinstance(unit, str) else unit
    if name == "NONE":
        name = None
    if name not in RESOLUTION_UNITS:
        raise ValueError(f"resolution_unit={unit!r} is not supported; expected one of {RESOLUTION_UNITS}")
    return name


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def metadata_for_output(reader):
    """TiffWriter keyword arguments that carry an input's metadata over to an output.

    Parameters
    ----------
    reader : ImageReader

    Returns
    -------
    dict
        ``resolution``, ``resolution_unit`` and ``ome``.

    Examples
    --------
    >>> import numpy as np
    >>> metadata_for_output(ImageReader(np.zeros((4, 4), np.uint8)))
    {'resolution': None, 'resolution_unit': None, 'ome': False}
    """
    if not isinstance(reader, ImageReader):
        raise ValueError(f"reader={reader!r} is not an ImageReader")
    metadata = reader.metadata
    return {key: metadata[key] for key in ("resolution", "resolution_unit", "ome")}
