"""Windows of a TIFF file's first series at full resolution, decoding only the tiles or strips they meet."""

import math
import threading

import numpy as np

from ._common import _import_tifffile

_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}


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
