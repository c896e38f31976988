"""The bookkeeping shared by the volume writers: blocks held until complete, every voxel written once."""

import math
import os

import numpy as np

from .._files import check_not_an_input, check_output_path
from .._validate import as_positive_int
from ..dtypes import as_output_dtype, to_output_dtype
from ._common import OutputFile, _check_box, _check_fill
from ._volume import check_shape3

__all__ = ["BlockWriter", "volume_writer"]


def check_positive_floats(values, name, *, positive=True):
    """`values` as 3 finite floats (positive ones unless `positive` is False), else a ValueError."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in out):
        what = "positive" if positive else "finite"
        raise ValueError(f"{name}={values!r}: expected (z, y, x), three {what} numbers")
    return out


def check_source(source, shape):
    """`source` if it is None or a VolumeReader of `shape` (whose voxels its spacing and affine describe),
    else a ValueError."""
    from ._volume import VolumeReader

    if source is not None and not isinstance(source, VolumeReader):
        raise ValueError(f"source={source!r} is not a VolumeReader")
    if source is not None and tuple(source.shape) != tuple(shape):
        raise ValueError(f"source has shape {source.shape} but the output {tuple(shape)}: its spacing and affine "
                         "describe other voxels; pass the output's own instead of source")
    return source


class BlockWriter(OutputFile):
    """A volume cut into blocks (chunks or z-planes), each held from its first write until complete,
    then handed to ``_flush`` once; subclasses write them and finish the file.

    Blocks are flushed as they complete, or, with ``ordered``, in flat (z, y, x) order, complete blocks
    waiting for the earlier ones.
    """

    kind = "BlockWriter"
    ordered = False

    def __init__(self, path, shape, block, *, channels, dtype, fill=None, folder=False):
        self._path = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
        if not isinstance(self._path, str):
            raise ValueError(f"path={path!r} is not a path")
        self._shape = check_shape3(shape)
        self._channels = None if channels is None else as_positive_int(channels, "channels")
        if dtype is None:
            raise ValueError("dtype=None: expected one of uint8, uint16, uint32 (labels), float16 or float32")
        self._dtype = as_output_dtype(dtype)
        self._fill = None if fill is None else _check_fill(fill, self._dtype)
        if folder == "group":  # an earlier OME-Zarr image, replaced at close; _files knows zarr arrays only
            check_not_an_input(self._path, ())
            if not os.access(os.path.dirname(os.path.abspath(self._path)), os.W_OK | os.X_OK):
                raise ValueError(f"path={self._path!r}: its folder is not writable")
        else:
            check_output_path(self._path, name="path", folder_ok=folder)
        self._block = tuple(block)
        self._grid = tuple(math.ceil(n / b) for n, b in zip(self._shape, self._block))
        self._held = {}  # block index -> [data, written mask, voxels still unwritten]
        self._flushed = np.zeros(self._grid, bool)
        self._next = 0  # ordered: flat index of the first block not yet flushed
        self._written = 0
        self._peak = 0
        self._state = "open"

    path = property(lambda self: self._path, doc="Final name.")
    shape = property(lambda self: self._shape, doc="``(D, H, W)``.")
    channels = property(lambda self: self._channels, doc="None for labels, else C.")
    dtype = property(lambda self: self._dtype, doc="Stored data type.")
    block_shape = property(lambda self: self._block, doc="``(z, y, x)`` of the unit written at once.")
    missing = property(lambda self: math.prod(self._shape) - self._written, doc="Voxels not yet written.")

    @property
    def held_bytes(self):
        """Bytes held now in incomplete blocks (data and written-masks)."""
        return sum(entry[0].nbytes + entry[1].nbytes for entry in self._held.values())

    @property
    def peak_held_bytes(self):
        """The most :attr:`held_bytes` seen after a write."""
        return self._peak

    def write(self, box, data):
        """Write `data` into `box`; blocks that this completes are written out.

        Parameters
        ----------
        box : (int, int, int, int, int, int)
            ``(zlo, ylo, xlo, zhi, yhi, xhi)`` inside the volume, no voxel written before.
        data : array-like, shape (d, h, w) or (d, h, w, channels)
            (d, h, w) for a writer without channels (labels), else (d, h, w, channels).

        Raises
        ------
        ValueError
            A bad box or shape, a voxel written before, or data the dtype cannot
            hold; nothing of this write is kept and the writer stays usable.
        """
        if self._state != "open":
            raise ValueError(f"{self.kind} for {self._path!r} is {self._state}; no more writes")
        box = _check_box(box, axes="zyx")
        lo, hi = box[:3], box[3:]
        if min(lo) < 0 or any(h > n for h, n in zip(hi, self._shape)):
            raise ValueError(f"box={box!r} reaches outside the volume of shape {self._shape}")
        size = tuple(h - l for l, h in zip(lo, hi))
        data = np.asarray(data)
        expected = size if self._channels is None else size + (self._channels,)
        if data.shape != expected:
            raise ValueError(f"data has shape {data.shape}; expected {expected} for box {box}")
        data = to_output_dtype(data, self._dtype, name="data")
        parts = list(self._parts(lo, hi))
        for index, inner, _ in parts:  # check all before pasting any, so that a refused write keeps nothing
            if self._flushed[index] or (index in self._held and self._held[index][1][inner].any()):
                raise ValueError(f"box={box!r} writes voxels already written")
        for index, inner, outer in parts:
            entry = self._held.get(index)
            if entry is None:
                entry = self._held[index] = self._new_block(index)
            entry[0][inner] = data[outer]
            entry[1][inner] = True
            entry[2] -= math.prod(s.stop - s.start for s in inner)
        self._written += math.prod(size)
        self._peak = max(self._peak, self.held_bytes)
        try:
            self._flush_complete([index for index, _, _ in parts])
        except BaseException:
            self.abort()
            raise

    def _parts(self, lo, hi):
        """(block index, slices inside the block, slices inside the data) of each block the box meets."""
        ranges = [range(l // b, (h - 1) // b + 1) for l, h, b in zip(lo, hi, self._block)]
        for index in np.ndindex(*(len(r) for r in ranges)):
            index = tuple(r[i] for r, i in zip(ranges, index))
            start = [i * b for i, b in zip(index, self._block)]
            a = [max(l, s) for l, s in zip(lo, start)]
            b = [min(h, s + n) for h, s, n in zip(hi, start, self._block)]
            yield (index, tuple(slice(i - s, j - s) for i, j, s in zip(a, b, start)),
                   tuple(slice(i - l, j - l) for i, j, l in zip(a, b, lo)))

    def _new_block(self, index):
        extent = [min(b, n - i * b) for i, b, n in zip(index, self._block, self._shape)]
        extra = () if self._channels is None else (self._channels,)
        return [np.zeros(self._block + extra, self._dtype), np.zeros(self._block, bool), math.prod(extent)]

    def _flush_complete(self, touched):
        if self.ordered:
            while self._next < self._flushed.size:
                index = np.unravel_index(self._next, self._grid)
                entry = self._held.get(index)
                if entry is None or entry[2]:
                    break
                self._flush_one(index)
                self._next += 1
            return
        for index in touched:
            if index in self._held and self._held[index][2] == 0:
                self._flush_one(index)

    def _flush_one(self, index):
        block = self._held.pop(index)[0]
        self._flushed[index] = True
        self._flush(index, block)

    def close(self):
        """Finish the file and put it under its final name; only when every voxel was written.

        Raises
        ------
        ValueError
            Naming how many voxels were never written (unless the writer has
            a `fill`, which they then take); the partial file is removed and
            nothing appears under the final name.
        """
        if self._state == "closed":
            return
        if self._state != "open":
            raise ValueError(f"{self.kind} for {self._path!r} is {self._state}; nothing to close")
        missing = self.missing
        if missing and self._fill is not None:
            try:
                self._fill_missing()
            except BaseException:
                self.abort()
                raise
            missing = 0
        if missing:
            self.abort()
            raise ValueError(f"{self.kind} for {self._path!r}: {missing} of {math.prod(self._shape)} voxels were "
                             "never written; no file was made")
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def _fill_missing(self):
        """Give every voxel not written the fill and write out the blocks, in flat order."""
        for flat in range(self._flushed.size):
            index = tuple(int(i) for i in np.unravel_index(flat, self._grid))
            if self._flushed[index]:
                continue
            entry = self._held.get(index)
            if entry is None:
                entry = self._held[index] = self._new_block(index)
            entry[0][~entry[1]] = self._fill
            entry[2] = 0
            self._flush_complete([index])
        self._written = math.prod(self._shape)

    def abort(self):
        """Abandon the output: remove the partial file. Safe to call twice."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._held.clear()
        self._discard()

    def __repr__(self):
        channels = "" if self._channels is None else f", channels={self._channels}"
        return f"{self.kind}({self._path!r}, shape={self._shape}{channels}, dtype={self._dtype}, {self._state})"

    def _flush(self, index, block):
        raise NotImplementedError

    def _finish(self):
        raise NotImplementedError

    def _discard(self):
        raise NotImplementedError


def volume_writer(path, shape, **options):
    """A volume writer chosen by the extension of `path`: ``.zarr`` (:class:`ZarrWriter`),
    ``.nii`` / ``.nii.gz`` (:class:`NiftiWriter`) or ``.tif`` / ``.tiff`` (:class:`TiffVolumeWriter`).

    Parameters
    ----------
    path : str or os.PathLike
    shape : (int, int, int)
        ``(D, H, W)``.
    **options
        Keyword arguments of the writer (dtype, channels, ...).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     writer = volume_writer(os.path.join(folder, "out.zarr"), (1, 2, 2), dtype="float32", channels=2)
    ...     writer.write((0, 0, 0, 1, 2, 2), np.zeros((1, 2, 2, 2), np.float32))
    ...     writer.close()
    ...     sorted(os.listdir(folder))
    ['out.zarr']
    """
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    lower = name.lower().rstrip("/" + os.sep) if isinstance(name, str) else ""
    if lower.endswith(".zarr"):
        from ._zarr import ZarrWriter

        return ZarrWriter(path, shape, **options)
    if lower.endswith((".nii", ".nii.gz")):
        from ._nifti import NiftiWriter

        return NiftiWriter(path, shape, **options)
    if lower.endswith((".tif", ".tiff")):
        from ._tiffvol import TiffVolumeWriter

        return TiffVolumeWriter(path, shape, **options)
    raise ValueError(f"path={path!r}: expected a .zarr, .nii, .nii.gz, .tif or .tiff name")
