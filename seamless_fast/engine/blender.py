"""Streaming blend: take tiles as they arrive, hand back output cells as they become final.

Dtype policy
------------
Tiles may be float16, float32, float64, any integer type or bool, in (H, W, C)
layout, (C, H, W) with ``channel_first=True``, or (H, W) for one channel.
Anything ``np.asarray`` accepts works (a CPU torch tensor, a memmap, a list).
The accumulator, and so the float output, is float64 for float64 tiles and
for integers wider than 16 bits, and float32 otherwise; ``dtype=`` overrides
this for the whole run. Labels are uint8 for up to 256 channels, uint16 up to
65536, uint32 beyond (:func:`seamless_fast.dtypes.label_dtype`).

Non-finite values
-----------------
NaN and inf propagate, as the blend formula says: every output pixel a bad
tile value contributes to is NaN or inf, so a broken model shows instead of
being averaged away. ``check_finite=True`` rejects such a tile with an error
naming it instead (costs one extra pass over each tile).
"""

import functools
import os
import time
import weakref
from typing import NamedTuple

import numba
import numpy as np

from .._validate import check_bool
from ..geometry import box_to_geom
from ..plan import Plan, VolumePlan
from ..plan._traverse import transpose_window
from ..windows import window_2d
from . import _kernels
from ._adaptive import Chooser, chooser_for
from ._arrays import check_accumulator, check_out
from ._background import compile_in_background
from ._buffers import Buffers
from ._jit import parallel_is_safe, parallel_lock
from ._records import RECORDS_AT_ONCE, _step_records
from ._seams import owned_cleanup, remove_files
from ._tile_input import TileInput
from ._transpose import frame_tile

__all__ = ["Blender", "OutputCell"]

# Below this many elements per tile, splitting rows over threads costs more than it saves.
PARALLEL_MIN_ELEMENTS = 1 << 15


class OutputCell(NamedTuple):
    """One finished piece of output: grid index, box ``(ylo, xlo, yhi, xhi)`` and values."""

    index: tuple
    box: tuple
    data: np.ndarray

    @property
    def geom(self):
        """The box as a shapely geometry in the seed's (y, x) convention."""
        return box_to_geom(self.box)

    @property
    def slices(self):
        """``(slice(ylo, yhi), slice(xlo, xhi))`` into the full image."""
        return slice(self.box[0], self.box[2]), slice(self.box[1], self.box[3])


# OutputCell((index, box, data)) without the Python-level __new__ of a named tuple, for the push path
_new_cell = functools.partial(tuple.__new__, OutputCell)


class Blender(TileInput, Buffers):
    """Push-style streaming blend of one plan.

    Hand tiles over in ``plan.load_order`` with :meth:`push` (or several with
    :meth:`push_batch`); each call returns the output cells that became final.
    No tile is kept: its buffer may be reused as soon as the call returns.

    Parameters
    ----------
    plan : Plan
        A :class:`~seamless_fast.plan.VolumePlan` gives a
        :class:`~seamless_fast.engine._volume.VolumeBlender` (a subclass) for (d, h, w, C) tiles.
    labels : bool, keyword-only
        Emit the arg-max over channels as integer labels instead of values.
    channel_first : bool, keyword-only
        Tiles (and emitted cells) are (C, H, W) instead of (H, W, C).
    dtype : float dtype, optional, keyword-only
        Accumulator dtype; by default chosen from the first tile.
    check_finite : bool, keyword-only
        Reject tiles holding NaN or inf instead of propagating them.
    cache_dir : path, optional, keyword-only
        Folder for the run's files: the partial sums at stripe seams of a plan
        made with `max_buffer_bytes` (a private temporary folder by default),
        and the buffer itself with `buffer_on_disk`. They get their full size
        on disk with the first tile, so a disk too small fails then, and are
        removed on :meth:`close`, on an error, or when an unclosed Blender is
        collected or the interpreter exits.
    buffer_on_disk : bool, keyword-only
        Hold the blend buffer in a memory-mapped file in `cache_dir` instead of RAM.
    parallel : bool, optional, keyword-only
        Whether large tiles (32768 elements or more) may have their rows
        split over numba's threads. By default (and with True) each tile runs
        serially or split, whichever is faster at the moment: the blend times
        its tiles and tries the other way now and then (`seamless_fast.engine._adaptive`).
        Split, a canonical tile takes about 0.6 x the serial time on idle
        cores, but 2 to 50 x beside a CPU-bound model in a thread or another
        busy process, since numba's threads spin while they wait; so the
        blend uses the idle cores of a quiet machine and keeps the serial
        speed on a busy one (``profiling/contention.py``). False: always one
        thread. By default the split is on only where numba's threading layer
        is tbb or omp; True allows it under "workqueue" too (a tile is split
        only while no other thread of the process is in a split kernel, see
        `seamless_fast.engine._jit.parallel_lock`). Every setting gives the same
        result, bit for bit, and several threads may blend at once.
    out : ndarray, optional, keyword-only
        A full-size output, (H, W, C), (C, H, W) with `channel_first`, or
        (H, W) for labels and 2-D tiles (a ``numpy.memmap`` works). Cells are
        then written straight into it and the emitted cells' data are views
        of it; otherwise each cell gets a fresh array.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import plan_regular_grid
    >>> plan, _ = plan_regular_grid((100, 120), 64, 16)
    >>> out = np.zeros((100, 120, 2), np.float32)
    >>> with Blender(plan) as blender:
    ...     for _ in range(plan.n_loads):
    ...         for cell in blender.push(np.ones(blender.next_tile_shape + (2,), np.float32)):
    ...             out[cell.slices] = cell.data
    >>> bool(np.allclose(out, 1.0))
    True
    """

    def __new__(cls, plan=None, *args, **kwargs):
        if cls is Blender and isinstance(plan, VolumePlan):  # a volume: see `seamless_fast.engine._volume`
            from ._volume import VolumeBlender
            cls = VolumeBlender
        return super().__new__(cls)

    def __init__(self, plan, *, labels=False, channel_first=False, dtype=None, check_finite=False,
                 cache_dir=None, buffer_on_disk=False, parallel=None, out=None):
        if not isinstance(plan, Plan):
            raise ValueError(f"plan must be a Plan from plan_regular_grid or plan_from_grid; got {type(plan).__name__}")
        self._take_options(plan, labels, channel_first, check_finite, dtype, cache_dir, parallel)
        self.buffer_on_disk = check_bool(buffer_on_disk, "buffer_on_disk")
        if self.buffer_on_disk and cache_dir is None:
            raise ValueError("buffer_on_disk=True needs a cache_dir to put the buffer in")
        self._seams = None
        self._lock = parallel_lock()  # taken around numba's parallel kernels
        self.out = check_out(out, plan.image_size, self.labels, self.channel_first)
        self.step = 0
        self.channels = None
        self._ndim = None
        self._chw = False  # tiles have a leading channel axis (channel_first and 3-D)
        self._acc = self._wsum = None
        self._dtype = None  # set with the buffers; until then every tile takes the fully checked path
        self._files = []
        self._finalizer = weakref.finalize(self, owned_cleanup(remove_files, self._files))
        self._live = 0
        self._emit_bounds = np.searchsorted(plan.emit_after, np.arange(plan.n_loads + 1), side="left")
        # plain Python copies of what every push reads, to keep its overhead low
        self._n_loads, self._normalised = plan.n_loads, plan.normalised
        # walking columns, the kernels see every tile and cell transposed (see `seamless_fast.plan._traverse`)
        self._columns = plan.traverse == "columns"
        self._window = transpose_window(plan.window) if self._columns else plan.window
        self._records, self._records_from = [], 0
        self._weight_maps = {}
        self._closed = False
        self._failed = None  # what stopped the run, once an error left the buffer in an unknown state

    def _take_options(self, plan, labels, channel_first, check_finite, dtype, cache_dir, parallel):
        """The options an image's and a volume's blend share, each checked."""
        self.plan = plan
        # "auto" (see `_adaptive`) or "serial"; "numba", numba's parallel kernels for every large call, is set
        # by tests and profiling for comparisons
        if parallel is None:
            self._policy = "auto" if parallel_is_safe() else "serial"
        elif check_bool(parallel, "parallel"):
            self._policy = "auto" if numba.get_num_threads() >= 2 else "serial"
        else:
            self._policy = "serial"
        self.labels = check_bool(labels, "labels")
        self.channel_first = check_bool(channel_first, "channel_first")
        self.check_finite = check_bool(check_finite, "check_finite")
        self.dtype = check_accumulator(dtype)
        if cache_dir is not None and not os.path.isdir(cache_dir):
            raise ValueError(f"cache_dir={str(cache_dir)!r} is not an existing directory")
        self.cache_dir = cache_dir

    # -- introspection ---------------------------------------------------
    @property
    def done(self):
        """True once every tile of the plan has been pushed."""
        return self.step >= self.plan.n_loads

    @property
    def next_index(self):
        """Grid index of the tile the next :meth:`push` expects."""
        self._check_not_done()
        return self.plan.grid_index(self.plan.load_order[self.step])

    @property
    def next_tile_shape(self):
        """(height, width) of the tile the next :meth:`push` expects."""
        self._check_not_done()
        h, w = self.plan.steps[self.step, 2:4].tolist()
        return (w, h) if self._columns else (h, w)

    # -- pushing ---------------------------------------------------------
    def push(self, tile):
        """Blend the next tile; return the list of :class:`OutputCell` that became final.

        A tile refused by a check (shape, dtype, ...) changes nothing and may
        be pushed again corrected. Any other error (a seam file that cannot be
        written, an allocation) may leave part of the tile in the buffer: it
        stops the Blender, whose files are removed at once, and every later
        push raises.
        """
        k = self.step
        if self._closed or k >= self._n_loads:
            self._check_open()
            self._check_not_done()
        try:  # steps only move forward, so the index is never negative
            record = self._records[k - self._records_from]
        except IndexError:
            record = self._record(k)
        if (type(tile) is np.ndarray and tile.dtype is self._dtype and tile.shape == record[5]
                and tile.flags.c_contiguous and not self.check_finite):
            planes = tile  # the common case, checked in full below otherwise
        else:
            planes, ndim, channels = self._checked_tile(tile, record[0], record[1])
            if self._acc is None:
                self._start(planes, ndim, channels, k)
                self._records = []  # made again with the shapes now known
        if self._columns:
            planes = frame_tile(planes, record[0], record[1], self._group, self._tile_frame)
        try:
            if self._normalised:
                cells = self._push_fast(planes, k, record)
            else:
                cells = self._push_general(planes, k)
        except BaseException as exc:  # the buffer may hold part of this tile: no push may follow
            self._fail(k, exc)
            raise
        self.step = k + 1
        return cells

    def _record(self, k):
        """The record of step k (see `_step_records`), with those of the steps after it made at once."""
        layout = None
        if self._acc is not None:
            fresh = self._fresh_cells and self.out is None and not self.labels  # new arrays of the tiles' layout
            layout = (self._ndim, self._chw, self.channels, self._group, fresh)
        self._records, self._records_from = _step_records(self.plan, k, RECORDS_AT_ONCE, layout), k
        return self._records[0]

    def push_batch(self, tiles):
        """Push several tiles (a sequence, or an array with a leading batch axis); return all finished cells.

        With `out` given and a batch array of same-shaped tiles, the whole
        batch is blended in one kernel call: the lowest overhead per tile.
        """
        if self._batch_fits(tiles):
            return self._push_batch_into_out(tiles)
        cells = []
        for tile in tiles:
            cells.extend(self.push(tile))
        return cells

    def _batch_fits(self, tiles):
        k, n = self.step, len(tiles) if hasattr(tiles, "__len__") else 0
        if not (self.out is not None and self.plan.normalised and self._dtype is not None and n > 1
                and self._seams is None and not self._columns
                and type(tiles) is np.ndarray and tiles.dtype is self._dtype and tiles.flags.c_contiguous
                and not self.check_finite and not self._closed and k + n <= self.plan.n_loads):
            return False
        sizes = self.plan.steps[k:k + n, 2:4]
        h, w = sizes[0].tolist()
        return bool((sizes == sizes[0]).all()) and tiles.shape[1:] == self._tile_shape(h, w)

    def _push_batch_into_out(self, tiles):
        """A batch into `out`: tile by tile through numba's parallel kernels while the tiles' chooser (see
        `_push_fast`) picks the split for each, the rest in one call of the batch kernel (serial)."""
        plan, k, n = self.plan, self.step, len(tiles)
        records = _step_records(plan, k, n)
        size = tiles[0].size
        chooser = None
        if self._policy == "auto" and size >= PARALLEL_MIN_ELEMENTS:
            chooser = self._choosers.get(size) or self._chooser(tiles[0])
        b = 0
        try:
            while chooser is not None and b < n and chooser.choose():
                start = time.perf_counter()
                if not self._split_one(tiles[b], k + b, records[b]):
                    break
                chooser.record(1, (time.perf_counter() - start) / size)
                b += 1
            if b < n:
                start = time.perf_counter()
                self._batch_serial(tiles[b:], k + b)
                if chooser is not None:
                    chooser.record(0, (time.perf_counter() - start) / (size * (n - b)))
        except BaseException as exc:
            self._fail(k + b, exc)
            raise
        self.step = k + n
        return [_new_cell((index, box, self._cell_output(box)[0])) for _, _, cell, index, box, *_ in records
                if cell >= 0]

    def _batch_serial(self, tiles, k):
        plan, g = self.plan, self._group
        x_origin = plan.buffer_cols[0]
        if self.labels:
            self._batch_kernel(self._way, *self._bufs, tiles, self._wy, self._wx, plan.steps, k, g, self._scratch,
                               self._label, self.out, x_origin)
        else:
            self._batch_kernel(*self._bufs, tiles, self._wy, self._wx, plan.steps, k, g, self._out_planes, x_origin)

    def _split_one(self, tile, k, record):
        """Tile k of a batch through `_blend_parallel` (False, having done nothing, where it cannot run)."""
        _, _, cell, _, box, *_ = record
        _, target, oy, ox = self._cell_output(box) if cell >= 0 else (None, self._no_cell, 0, 0)
        return self._blend_parallel((*self._bufs, tile, self._wy, self._wx, self.plan.steps, k, self._group), target,
                                    oy, ox)

    def close(self):
        """Release the buffer (and remove its cache file). Raises if tiles are still missing."""
        if self._closed:
            return
        self._closed = True
        missing = self.plan.n_loads - self.step
        self._release()
        if missing:
            raise ValueError(f"blend closed after {self.step} tiles; the plan expects {self.plan.n_loads} "
                             f"({missing} missing)")

    def _release(self):
        """Drop the buffers, close and remove every file of the run."""
        self._acc = self._wsum = self._right = None
        self._bufs = ()
        if self._seams is not None:
            self._seams.close()
        self._finalizer()

    def _fail(self, k, exc):
        """Stop the run after an error that may have left the buffer half-updated, freeing its files now."""
        self._failed = f"tile {k} raised {type(exc).__name__}: {exc}"
        self._closed = True
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # do not mask the original error with a "tiles missing" one
            try:
                self.close()
            except ValueError:
                pass
        return False

    # -- checks ------------------------------------------------------------
    def _check_open(self):
        if self._failed is not None:
            raise ValueError(f"this Blender stopped when {self._failed}; its output is incomplete, "
                             "start a new one")
        if self._closed:
            raise ValueError("this Blender is closed")

    def _check_not_done(self):
        if self.step >= self.plan.n_loads:
            raise ValueError(f"received more tiles than the {self.plan.n_loads} the plan expects")

    # -- the two paths -------------------------------------------------------
    def _push_fast(self, planes, k, record):
        _, _, cell, index, box, _, shape, plane_shape = record
        if self._seams is not None:
            self._load_seam(k)
        if cell < 0:
            out, target, oy, ox = None, self._no_cell, 0, 0
        elif self._columns:
            out, target, oy, ox = None, self._cell_frame, 0, 0
        elif shape is not None:  # a fresh array of values, shapes from the record (as `_cell_output` gives)
            out = target = np.empty(shape, self._dtype)
            if plane_shape is not None:
                target = out.reshape(plane_shape)
            oy = ox = 0
        else:
            out, target, oy, ox = self._cell_output(box)
        args = self._bufs + (planes, self._wy, self._wx, self.plan.steps, k, self._group)
        if self._policy == "serial" or planes.size < PARALLEL_MIN_ELEMENTS:
            self._blend_serial(args, target, oy, ox)
        elif self._policy == "numba":
            if not self._blend_parallel(args, target, oy, ox):
                self._blend_serial(args, target, oy, ox)
        else:
            chooser = self._choosers.get(planes.size) or self._chooser(planes)
            way = chooser.choose()
            start = time.perf_counter()
            if not (way and self._blend_parallel(args, target, oy, ox)):
                way = 0
                self._blend_serial(args, target, oy, ox)
            chooser.record(way, (time.perf_counter() - start) / planes.size)
        if self._seams is not None:
            self._spill_seam(k)
        if self._columns and cell >= 0:
            out = self._cell_from_frame(box, fresh_shape=shape)
        return [] if out is None else [_new_cell((index, box, out))]

    def _blend_serial(self, args, target, oy, ox):
        if self.labels:
            self._serial_kernel(self._way, *args, self._scratch, self._label, target, oy, ox)
        else:
            self._serial_kernel(*args, target, oy, ox)

    def _chooser(self, planes):
        """The process's chooser for tiles like these (see `_adaptive`), remembered by element count."""
        key = (self.labels, planes.shape[0], self._group, planes.dtype.char, planes.size.bit_length())
        if self._chooser_kind is not Chooser:
            key = (self._chooser_kind.__name__,) + key
        chooser = self._choosers[planes.size] = chooser_for(key, self._chunks, self._chooser_kind)
        return chooser

    # the class of the choosers this Blender's tiles share (a volume's layers take their own, see engine._volume)
    _chooser_kind = Chooser

    # False: values cells go where `_cell_output` says, not to new arrays (a volume layer's reused buffer)
    _fresh_cells = True

    # until numba's parallel kernel for this Blender's arguments is compiled (see `_background`), tiles run serially
    _parallel_ready = False

    def _blend_parallel(self, args, target, oy, ox):
        """numba's parallel kernels; False, having done nothing, when another thread is in one, or when the
        kernel is still being compiled in the background (`seamless_fast.engine._background`)."""
        kernel = self._parallel_kernel
        if self.labels:
            args = (self._way, *args, self._scratch, self._label, target, oy, ox, self._chunks)
        else:
            args = (*args, target, oy, ox, self._chunks)
        if not (self._parallel_ready or self._parallel_compiled(kernel, args)):
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            kernel(*args)
        finally:
            self._lock.release()
        return True

    def _parallel_compiled(self, kernel, args):
        """Whether `kernel` is compiled for `args`; a background compile of it starts on the first call.
        The "numba" policy (numba's kernels for every tile, for comparisons) waits for it."""
        ticket = self.__dict__.get("_parallel_ticket")
        if ticket is None:
            ticket = self._parallel_ticket = compile_in_background(kernel, args)
        self._parallel_ready = ticket.ready(wait=True if self._policy == "numba" else None)
        return self._parallel_ready

    def _push_general(self, planes, k):
        plan = self.plan
        y0, x0, h, w, first = plan.steps[k, :5].tolist()
        planes = planes.reshape((-1, h, w * self._group))
        cap = plan.buffer_rows
        live = int(plan.live_from[k])
        if live > self._live:
            _kernels.clear_rows(self._acc, self._live, live, cap)
            _kernels.clear_rows(self._wsum, self._live, live, cap)
            self._live = live
        _kernels.blend_weighted(self._acc, self._wsum[0], planes, self._weight_map(h, w), y0, first, cap,
                                x0 * self._group)
        return [self._emit_general(c) for c in plan.write_cells[self._emit_bounds[k]:self._emit_bounds[k + 1]].tolist()]

    def _weight_map(self, h, w):
        if (h, w) not in self._weight_maps:
            self._weight_maps[h, w] = np.ascontiguousarray(window_2d(self._window, h, w), dtype=self._acc.dtype)
        return self._weight_maps[h, w]

    def _emit_general(self, c):
        plan, g = self.plan, self._group
        box = tuple(plan.cell_boxes[c].tolist())
        ylo, xlo, yhi, xhi = box
        if self._columns:  # the kernels write it transposed; copied to the image frame below
            ylo, xlo, yhi, xhi = xlo, ylo, xhi, yhi
            frame = (np.empty((yhi - ylo, xhi - xlo), self._labels_dtype) if self.labels else
                     np.empty((self._acc.shape[0], yhi - ylo, (xhi - xlo) * g), self._dtype))
            target, oy, ox = frame, 0, 0
        else:
            data, target, oy, ox = self._cell_output(box)
        x0 = (xlo - plan.buffer_cols[0]) * g
        if self.labels:
            _kernels.emit_weighted_labels(self._way, self._acc, ylo, plan.buffer_rows, x0, self._scratch, g,
                                          self._label, target[oy:oy + yhi - ylo, ox:ox + xhi - xlo])
        else:
            view = target[:, oy:oy + yhi - ylo, ox:ox + (xhi - xlo) * g]
            _kernels.emit_weighted(self._acc, self._wsum[0], ylo, plan.buffer_rows, x0, view)
        if self._columns:
            data = self._cell_from_frame(box, frame)
        return OutputCell(plan.grid_index(c), box, data)
