"""The arrays a part writes into its store, and the outputs a merge writes (see :mod:`seamless_fast.scale.store`)."""

import shutil

import numpy as np

from .._files import make_partial, publish
from ..dtypes import label_dtype, to_output_dtype
from . import _manifest


def _from_planes(values, channels, group, labels):
    """Planes (P, rows, elements) as channel-last rows (rows, width, C), or their arg-max labels."""
    planes, rows, elements = values.shape
    data = values[0].reshape(rows, elements // group, group) if planes == 1 else np.moveaxis(values, 0, -1)
    if labels:
        return data.argmax(axis=-1).astype(label_dtype(channels))
    return data


class _CropReader:
    """read_crop for :func:`merge_lead_rows`: a tile's crop from the part that handed it over."""

    def __init__(self, root, partition, group):
        self.root, self.partition, self.group = root, partition, group
        self.part_of = np.repeat(np.arange(partition.parts), np.diff(partition.step_bounds))

    def __call__(self, step):
        part = int(self.part_of[step])
        index = int(np.searchsorted(self.partition.crop_steps(part), step))
        rows, length = int(self.partition.crop_rows[step]), int(self.partition.plan.steps[step, 3]) * self.group
        return self.root[f"part{part}/crops"][index, :, :rows, :length]


class _RowsWriter:
    """Cells of one part into its `rows` array, flushed as whole chunk rows once complete.

    Cells arrive with non-decreasing top rows (as a blend emits them), so
    every row above a new cell's top is complete. Every chunk of the array is
    written, rows no cell reaches as zeros, so that each is a file.
    """

    def __init__(self, group, own, width, chunk):
        self.group, self.width, self.chunk = group, width, chunk
        self.lo, self.hi = (int(v) for v in own)
        self.origin = self.lo - self.lo % chunk
        self.top = self.origin  # first row not yet flushed
        self.band = None  # rows [top, top + len(band)) held
        self.array = None
        self.nbytes = 0

    def write(self, box, data):
        ylo, xlo, yhi, xhi = box
        if not (self.lo <= ylo and yhi <= self.hi):
            raise RuntimeError(f"cell {box} lies outside the part's own rows [{self.lo}, {self.hi})")
        if self.array is None:
            self._create(data)
        self._flush(ylo - (ylo - self.origin) % self.chunk)
        if self.band is None or len(self.band) < yhi - self.top:
            grown = np.zeros((yhi - self.top, self.width) + data.shape[2:], data.dtype)
            if self.band is not None:
                grown[:len(self.band)] = self.band
            self.band = grown
        self.band[ylo - self.top:yhi - self.top, xlo:xhi] = data

    def _create(self, data):
        shape = (self.hi - self.origin, self.width) + data.shape[2:]
        chunks = (self.chunk, self.chunk) + data.shape[2:]
        self.array = self.group.create_array("rows", shape=shape, chunks=chunks, dtype=data.dtype, fill_value=0,
                                             attributes={"origin": self.origin},
                                             chunk_key_encoding=_manifest.KEY_ENCODING, config=_manifest.ARRAY_CONFIG)
        self.extra, self.dtype = data.shape[2:], data.dtype
        self.nbytes = int(np.prod(shape[1:])) * (self.hi - self.lo) * data.dtype.itemsize

    def _flush(self, end):
        """Write rows [top, end), a chunk row at a time (zeros where no cell was), and let them go."""
        while self.top < end:
            stop = min(self.top + self.chunk - (self.top - self.origin) % self.chunk, end)
            count = stop - self.top
            block = np.zeros((count, self.width) + self.extra, self.dtype)
            if self.band is not None:
                held = min(count, len(self.band))
                block[:held] = self.band[:held]
                self.band = self.band[count:].copy() if count < len(self.band) else None
            self.array[self.top - self.origin:stop - self.origin] = block
            self.top = stop

    def close(self):
        if self.array is not None:
            self._flush(self.hi)


class _SeamWriter:
    """What a part hands over at its seams: each crop as it arrives, the lead rows at the end."""

    def __init__(self, group, partition, part):
        self.group, self.partition, self.part = group, partition, part
        self.steps = partition.crop_steps(part)
        self.crops = self.lead_array = None
        self.nbytes = 0

    def crop(self, step, planes):
        if self.crops is None:
            widths = self.partition.plan.steps[self.steps, 3]
            group = planes.shape[2] // int(self.partition.plan.steps[step, 3])
            shape = (len(self.steps), planes.shape[0], int(self.partition.crop_rows[self.steps].max()),
                     int(widths.max()) * group)
            self.crops = self.group.create_array("crops", shape=shape, chunks=(1,) + shape[1:], dtype=planes.dtype,
                                                 fill_value=0, chunk_key_encoding=_manifest.KEY_ENCODING,
                                                 config=_manifest.ARRAY_CONFIG)
        index = int(np.searchsorted(self.steps, step))
        self.crops[index, :, :planes.shape[1], :planes.shape[2]] = planes
        self.nbytes += planes.nbytes

    def lead(self, acc):
        self.lead_array = self.group.create_array("lead", data=np.ascontiguousarray(acc), chunks=acc.shape,
                                                  chunk_key_encoding=_manifest.KEY_ENCODING,
                                                  config=_manifest.ARRAY_CONFIG)
        self.nbytes += acc.nbytes


def _output_writer(path, image_size, channels, dtype, compression, chunk):
    """A TiffWriter for .tif/.tiff, a :class:`_ZarrOutput` for .zarr."""
    lower = path.lower()
    if lower.endswith((".tif", ".tiff")):
        from ..io import TiffWriter

        return TiffWriter(path, image_size, channels=channels, dtype=dtype, compression=compression)
    if lower.endswith(".zarr"):
        return _ZarrOutput(path, image_size, channels, dtype, chunk)
    raise ValueError(f"output={path!r}: expected a .tif, .tiff or .zarr name")


class _ZarrOutput:
    """A zarr array written in a partial folder beside `path` (see _files) and renamed to it when complete.

    The caller checks `path` (check_output_path) and `dtype` (output_dtype) first.
    """

    def __init__(self, path, image_size, channels, dtype, chunk):
        self.path, self.dtype = path, np.dtype(dtype)
        self.temp = make_partial(path, directory=True)
        extra = () if channels is None else (channels,)
        try:
            self.array = _import_zarr().create_array(self.temp, shape=tuple(image_size) + extra,
                                                    chunks=(chunk, chunk) + extra, dtype=self.dtype, fill_value=0,
                                                    overwrite=True)
        except BaseException:
            shutil.rmtree(self.temp, ignore_errors=True)
            raise

    def write(self, box, data):
        ylo, xlo, yhi, xhi = box
        data = to_output_dtype(data, self.dtype, name=f"rows {ylo} to {yhi}")
        # One chunk per call: zarr writes the chunks of one call concurrently and, when one write fails
        # (a full disk), leaves the others running, and one of them could make the partial folder again
        # after __exit__ removed it.
        for y0, y1 in _chunk_spans(ylo, yhi, self.array.chunks[0]):
            for x0, x1 in _chunk_spans(xlo, xhi, self.array.chunks[1]):
                self.array[y0:y1, x0:x1] = data[y0 - ylo:y1 - ylo, x0 - xlo:x1 - xlo]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            return False
        try:
            publish(self.temp, self.path)  # an earlier output stays until the new one is complete
        except BaseException:
            shutil.rmtree(self.temp, ignore_errors=True)
            raise
        return False


def _chunk_spans(lo, hi, chunk):
    """[lo, hi) cut at the multiples of `chunk`."""
    cuts = [lo, *range((lo // chunk + 1) * chunk, hi, chunk), hi]
    return list(zip(cuts[:-1], cuts[1:]))


def _import_zarr():
    from .store import import_zarr

    return import_zarr()
