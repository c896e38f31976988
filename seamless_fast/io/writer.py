"""TiffWriter: stream an image into a tiled (Big)TIFF, cell by cell, in bounded memory."""

import math
import os

import numpy as np

from .._files import check_output_path, make_partial, publish
from .._validate import as_pair, as_positive_int
from ..dtypes import OUTPUT_DTYPES, as_output_dtype, to_output_dtype
from . import _stream
from ._common import OutputFile, _check_box, _import_tifffile
from ._geo import GDAL_NODATA, GeoReference, format_nodata
from ._nodata import check_fill_and_nodata, mask_outside, prepared_area
from ._pyramid import Pyramid, check_resampling, level_sizes

__all__ = ["TiffWriter", "to_output_dtype", "WRITER_DTYPES"]

WRITER_DTYPES = OUTPUT_DTYPES
COMPRESSIONS = (None, "zlib", "zstd")
RESOLUTION_UNITS = (None, "CENTIMETER", "INCH")
# Above this many uncompressed bytes a classic TIFF may overflow its 32-bit offsets.
BIGTIFF_THRESHOLD = 2**32 - 2**25


class TiffWriter(OutputFile):
    """Stream an image into a tiled (Big)TIFF, cell by cell, in bounded memory.

    Parameters
    ----------
    path : str or os.PathLike
        Final file name (not an existing folder). The data go to a temporary
        file beside it (``.{name}.partial-HOST-PID-*``) that replaces `path`
        only when :meth:`close` succeeds; an existing file at `path` is left
        alone until then. Partials of `path` left by killed processes of this
        host are removed.
    image_size : (int, int)
        ``(height, width)`` of the image.
    channels : int, optional, keyword-only
        None for a 2-D image (e.g. labels); else C for (H, W, C) stored as
        contiguous samples.
    dtype : {uint8, uint16, uint32, float16, float32}, keyword-only
        Stored data type (see :mod:`seamless_fast.dtypes`). Integer data
        (labels) must fit it. Float data written to a uint8 or uint16 file
        are probabilities in [0, 1], quantised as ``rint(p * 255)`` or
        ``rint(p * 65535)``. :meth:`write` refuses, with a ValueError, any
        value the file would not hold exactly (a label too large, a negative
        value, NaN or values outside [0, 1] for quantised probabilities, a
        finite value beyond float16); nothing is ever wrapped or clipped.
    tile : (int, int), keyword-only
        TIFF tile ``(height, width)``, multiples of 16.
    compression : {None, "zlib", "zstd"}, keyword-only
        "zstd" needs the imagecodecs package.
    resolution : (float, float), optional, keyword-only
        ``(x, y)`` pixels per `resolution_unit`.
    resolution_unit : {None, "CENTIMETER", "INCH"}, keyword-only
    ome : bool, keyword-only
        Write OME-TIFF metadata instead of tifffile's shaped description
        (with a `resolution` per centimetre or inch, its physical pixel size
        in micrometres too).
    bigtiff : bool, optional, keyword-only
        None: BigTIFF when the uncompressed image exceeds ``BIGTIFF_THRESHOLD``.
    fill : number, optional, keyword-only
        Value of pixels never written (default 0, or `nodata`).
    nodata : number, optional, keyword-only
        A stored value that means "no data": recorded in the file as GDAL's
        GDAL_NODATA tag (GDAL, rasterio and QGIS mask it) and used as the
        fill, so pixels never written, and pixels outside `area`, are
        nodata. `fill`, if given too, must equal it. For quantised
        probabilities it is a stored value (e.g. 255 in a uint8 file), not
        a probability.
    area : shapely.Geometry, optional, keyword-only
        In (y, x), as a plan's area: written pixels whose centre lies outside
        it are stored as the fill (`nodata`) instead of their value, so the
        file is nodata outside the area, also inside the cells the area
        touches.
    georeference : GeoReference, optional, keyword-only
        GeoTIFF tags to write (see :func:`~seamless_fast.io.metadata_for_output`,
        which scales an input's to the output's pixel size): GDAL then reads
        the same coordinate system and transform.
    pyramid : bool or int, keyword-only
        Also write reduced-resolution levels, each half the size of the one
        above (sizes rounded up): True halves until a level fits in one
        tile, an int writes that many levels. They are reduced as the tile
        rows of the full image complete (see Notes). With a `georeference`
        (and not `ome`) they are GeoTIFF overviews: reduced-resolution pages
        after the image, as ``gdaladdo`` writes them (GDAL's
        ``overviews()`` lists them; the layout is not a strict COG, whose
        overviews come first); otherwise SubIFDs of the image, as OME-TIFF
        pyramids are (tifffile's ``series[0].levels``; GDAL reads them too).
    resampling : {"mode", "nearest", "mean"}, optional, keyword-only
        How a level's pixel summarises the 2 x 2 pixels above it (fewer at
        an odd border; for "mode" and "mean", `nodata` pixels take no part
        unless all are nodata). None: "mean" for a
        float dtype, "mode" for an integer one. "mode" (labels): the most
        frequent value, a tie to the smallest, so a class keeps the pixels
        where it dominates rather than those a sampling grid happens to hit
        ("nearest", the top-left pixel). "mean" (probabilities): the mean
        of the stored values in float64, stored as the nearest value of
        the dtype (quantised uint8/uint16: rounded half to even); pass it
        for quantised probabilities, which are integers.

    Notes
    -----
    Boxes may come in any order, but memory stays bounded only when they come
    roughly in row-major order, as a blend emits cells. The writer holds the
    rows of the TIFF tile rows ("bands") that some write has touched and that
    are not yet complete: with cells of height ch and tiles of height th,
    arriving row after row, at most ``ch + 2 * th`` rows of the full
    (tile-padded) width (see :attr:`held_rows`). Up to three complete bands
    more wait for or are in encoding (tifffile, encoding with several threads,
    takes at most one tile row, or as many tiles as it has threads, at a time).
    A band is complete when every one of its pixels is written, which is
    counted per band (no pixel can be written twice, so counts are exact);
    bands are handed to tifffile in order, which encodes them in a
    background thread. A plan run in vertical stripes completes no band
    until its last stripe arrives, and one that walks tile columns
    (``traverse="columns"``) none until its last column: the writer then
    holds every band. Plan with ``traverse="rows"`` for this writer.

    With `pyramid`, each level holds one band of its own width (half the
    previous one), so the levels add less than the rows of one band of the
    full image (see :attr:`pyramid_held_rows`); their encoded tiles wait in
    temporary files beside the output (partials, removed on success,
    failure or abort) and are copied after the image on :meth:`close`.

    The writer is not thread-safe: call :meth:`write` from one thread.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from seamless_fast.io import ImageReader
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
                 resolution=None, resolution_unit=None, ome=False, bigtiff=None, fill=None, nodata=None,
                 area=None, georeference=None, pyramid=False, resampling=None):
        self._path = os.fspath(path)
        self._size = _check_size(image_size)
        self._channels = None if channels is None else as_positive_int(channels, "channels")
        self._dtype = as_output_dtype(dtype)
        self._tile = _check_tile(tile)
        compression = _check_compression(compression)
        self._fill, self._nodata = check_fill_and_nodata(fill, nodata, self._dtype)
        self._area = prepared_area(area, self._size)
        self._georeference = _check_georeference(georeference)
        self._level_sizes = level_sizes(self._size, self._tile, pyramid)
        self._resampling = check_resampling(resampling, self._dtype)
        tiff_kwargs = self._tiff_kwargs(compression, resolution, resolution_unit, ome)
        self._extra_tags(tiff_kwargs, nodata)
        self._is_bigtiff = bigtiff = self._bigtiff(bigtiff)
        check_output_path(self._path, name="path")
        tifffile = _import_tifffile()
        self._setup_bands()
        self._temp_path = make_partial(self._path)
        self._pyramid = None
        try:
            self._start_pyramid(tiff_kwargs, ome)
            self._start(tifffile, bigtiff, ome, tiff_kwargs)
        except BaseException:
            if self._pyramid is not None:
                self._pyramid.abort()
            os.remove(self._temp_path)
            raise

    # ---- setup

    def _tiff_kwargs(self, compression, resolution, resolution_unit, ome):
        if not isinstance(ome, (bool, np.bool_)):
            raise ValueError(f"ome={ome!r} must be True or False")
        two_d = self._channels is None or self._channels == 1
        axes = "YX" if two_d else "YXS"
        kwargs = {"shape": self._size + (() if two_d else (self._channels,)),
                  "dtype": self._dtype, "tile": self._tile, "compression": compression,
                  "photometric": "minisblack", "metadata": {"axes": axes} if ome else {},
                  # tifffile encodes with several threads (half the cores) as many tiles as fit in `buffersize`
                  # (512 MiB by default) at a time, taking them all from the stream first: one tile row at most
                  "buffersize": math.ceil(self._size[1] / self._tile[1]) * math.prod(self._tile)
                  * (self._channels or 1) * self._dtype.itemsize}
        if not two_d:
            kwargs["planarconfig"] = "contig"
        if resolution is not None:
            kwargs["resolution"] = _check_resolution(resolution)
        unit = _check_resolution_unit(resolution_unit)
        if unit is not None:
            kwargs["resolutionunit"] = unit
        micrometres = {"CENTIMETER": 1e4, "INCH": 25_400.0}.get(unit)
        if ome and resolution is not None and micrometres is not None:  # OME readers take the physical size
            x, y = kwargs["resolution"]
            kwargs["metadata"].update(PhysicalSizeX=micrometres / x, PhysicalSizeXUnit="µm",
                                      PhysicalSizeY=micrometres / y, PhysicalSizeYUnit="µm")
        return kwargs

    def _extra_tags(self, kwargs, nodata):
        tags = [] if self._georeference is None else self._georeference.extratags()
        if nodata is not None:
            stored = nodata if self._dtype.kind == "f" else self._nodata  # "255", not "255.0", in an integer file
            tags.append((GDAL_NODATA, "s", 0, format_nodata(stored), True))
        if tags:
            kwargs["extratags"] = tags
        if self._georeference is not None and not kwargs["metadata"]:
            kwargs["metadata"] = None  # a GeoTIFF as GDAL writes it: tifffile lists its overviews as levels
        if self._level_sizes and not self._overviews(kwargs):
            kwargs["subifds"] = len(self._level_sizes)

    def _overviews(self, kwargs):
        """Whether the levels are GDAL overviews (reduced pages after the image) rather than SubIFDs."""
        return self._georeference is not None and kwargs["metadata"] is None

    def _start_pyramid(self, kwargs, ome):
        if not self._level_sizes:
            return
        shared = {key: kwargs[key] for key in ("dtype", "tile", "compression", "photometric", "planarconfig",
                                               "buffersize") if key in kwargs}
        self._level_metadata = None if self._overviews(kwargs) or ome else {}
        self._pyramid = Pyramid(self._path, self._level_sizes, tile=self._tile, channels=self._channels,
                                dtype=self._dtype, fill=self._fill, nodata=self._nodata,
                                resampling=self._resampling, page_kwargs=shared)

    def _bigtiff(self, bigtiff):
        if bigtiff is None:
            levels = sum(h * w for h, w in self._level_sizes) * (self._channels or 1) * self._dtype.itemsize
            return self.nbytes + levels > BIGTIFF_THRESHOLD
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
        self._queue, self._errors, self._taken, self._thread, self._finalizer = _stream.start(
            self, self._tiff, kwargs, f"TiffWriter({self._path})", self._temp_path)

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
    def nodata(self):
        """The nodata value recorded in the file (a 0-d array of the dtype), or None."""
        return self._nodata

    @property
    def level_sizes(self):
        """Sizes of the reduced levels written with `pyramid` (empty without)."""
        return list(self._level_sizes)

    @property
    def pyramid_held_rows(self):
        """Rows held now in each reduced level's incomplete tile row (each at most one tile height, of
        that level's width), or () without a pyramid."""
        return () if self._pyramid is None else self._pyramid.held_rows

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

        Raises
        ------
        ValueError
            For a bad box or shape, or data the file's dtype cannot hold
            (nothing of this write is kept; the writer stays usable).
        """
        self._check_open()
        ylo, xlo, yhi, xhi = self._check_write_box(box)
        data = self._convert(data, (yhi - ylo, xhi - xlo))
        self._check_unwritten((ylo, xlo, yhi, xhi))
        if self._area is not None:
            data = mask_outside(self._area, (ylo, xlo, yhi, xhi), data, self._fill)
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
        return to_output_dtype(data, self._dtype, name="data")

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
        tiles = buffer[..., 0] if self._channels == 1 else buffer  # 2-D (tifffile refuses one contiguous sample)
        self._put([tiles[:, i * tile_w:(i + 1) * tile_w] for i in range(self._n_tile_cols)])
        if self._pyramid is not None:
            top = self._next_band * self._tile[0]
            self._pyramid.push(buffer[:min(self._tile[0], self._size[0] - top), :self._size[1]])
        self._next_band += 1

    def _put(self, item):
        _stream.put(self._queue, item, self._raise_background_error)

    def _raise_background_error(self):
        if self._pyramid is not None and not self._errors:
            try:
                self._pyramid.raise_error()
            except RuntimeError:
                self.abort()
                raise
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
            _stream.finish(self._queue, self._thread, self._raise_background_error, self._taken,
                           self._n_bands * self._n_tile_cols, f"writing {self._path!r}")
            if self._pyramid is not None:
                self._pyramid.append_to(self._tiff, self._level_metadata)
            self._tiff.close()
            publish(self._temp_path, self._path)
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
        if self._pyramid is not None:
            self._pyramid.abort()
        self._release("aborted")

    def _release(self, state):
        self._state = state
        self._bands.clear()
        self._live_boxes = np.empty((0, 4), np.int64)

    def __repr__(self):
        channels = "" if self._channels is None else f", channels={self._channels}"
        return (f"TiffWriter({self._path!r}, image_size={self._size}{channels}, dtype={self._dtype}, "
                f"tile={self._tile}, {self._state})")


# --------------------------------------------------------------------------- validation

def _check_size(image_size):
    return as_pair(image_size, "image_size", minimum=1)


def _check_georeference(georeference):
    if georeference is not None and not isinstance(georeference, GeoReference):
        raise ValueError(f"georeference={georeference!r} is not a GeoReference (see metadata_for_output)")
    return georeference


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
