"""The volume blend: 3-D tiles through the 2-D engine, one z-layer of tiles at a time.

A z-layer k of tiles (depth d) is blended as a 2-D plan (the volume plan's
`plane_plan`) whose tiles have d x C channels: each tile (d, h, w, C), or
(C, d, h, w) channel first, is copied to (h, w, d * C) in the accumulator
dtype and pushed into a 2-D :class:`~seamless_fast.engine.blender.Blender`
(one per layer). Each 2-D cell it emits holds the layer's y/x-normalised sums
over the layer's whole depth; a kernel (`_volume_kernels`) weights them by
the layer's normalised z taper, adds what earlier layers left in the slab,
emits the z-range no later layer reaches and keeps the rest in the slab.

Memory: the slab (H x W x `slab_depth` x C, the deepest z-overlap), one
layer's 2-D band (y-overlap x W x d x C) and one tile's copy, whatever the
depth (``profiling/volume_memory.py``); :func:`~seamless_fast.analyse_plan`
predicts it.

Both cores: the tile's copy and the z-combine have ``_parallel`` variants
that split rows over numba's threads; as the 2-D blend does, each call runs
serially or split, whichever recent calls of its kind found faster (a
:class:`~seamless_fast.engine._adaptive.Chooser` per kernel and size),
split only under `parallel_lock` and once the variant is compiled (in the
background, see `seamless_fast.engine._background`). The layer's 2-D
Blender gets the same `parallel` and chooses for its own pushes.
"""


import time

import numba
import numpy as np

from . import _volume_kernels
from ._adaptive import Chooser, chooser_for
from ._arrays import accumulator_dtype, label_dtype, new_array
from ._background import compile_in_background
from ._jit import parallel_lock
from ._tiles import check_tile_count
from .._validate import as_positive_int, check_bool, check_callable
from .blender import PARALLEL_MIN_ELEMENTS, Blender, OutputCell
from ..plan._volume import VolumePlan

__all__ = ["VolumeBlender", "VolumeCell", "blend_volume", "run_volume"]

_END = object()  # what next() gives for an exhausted iterator of tiles


class VolumeCell(OutputCell):
    """One finished piece of a volume: grid index (k, i, j), box ``(zlo, ylo, xlo, zhi, yhi, xhi)`` and data."""

    __slots__ = ()

    @property
    def slices(self):
        """``(slice(zlo, zhi), slice(ylo, yhi), slice(xlo, xhi))`` into the full volume."""
        b = self.box
        return slice(b[0], b[3]), slice(b[1], b[4]), slice(b[2], b[5])

    @property
    def geom(self):
        raise AttributeError("a volume cell has no shapely geometry; use .box or .slices")


class VolumeBlender(Blender):
    """:class:`~seamless_fast.Blender` of a :class:`~seamless_fast.plan.VolumePlan` (``Blender(volume_plan)``
    gives one).

    Tiles are (d, h, w, C), or (C, d, h, w) with `channel_first`; cells are
    :class:`VolumeCell` with data (d, h, w, C), (C, d, h, w) or labels
    (d, h, w). Options as for the 2-D Blender; `out` is (D, H, W, C),
    (C, D, H, W) or labels (D, H, W); `buffer_on_disk` is refused (the slab
    is small) and `cache_dir` is unused.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import Blender, plan_regular_grid
    >>> plan, _ = plan_regular_grid((20, 40, 30), 16, 4)
    >>> out = np.zeros((20, 40, 30, 2), np.float32)
    >>> with Blender(plan) as blender:
    ...     for _ in range(plan.n_loads):
    ...         for cell in blender.push(np.ones(blender.next_tile_shape + (2,), np.float32)):
    ...             out[cell.slices] = cell.data
    >>> bool(np.allclose(out, 1.0)), type(blender).__name__
    (True, 'VolumeBlender')
    """

    def __init__(self, plan, *, labels=False, channel_first=False, dtype=None, check_finite=False,
                 cache_dir=None, buffer_on_disk=False, parallel=None, out=None):
        if not isinstance(plan, VolumePlan):
            raise ValueError(f"plan must be a VolumePlan from plan_regular_grid or plan_from_grid; "
                             f"got {type(plan).__name__}")
        self._take_options(plan, labels, channel_first, check_finite, dtype, cache_dir, parallel)
        if check_bool(buffer_on_disk, "buffer_on_disk"):
            raise ValueError("buffer_on_disk=True is not available for a volume plan; its slab is one "
                             "overlap deep (see analyse_plan)")
        self._parallel = parallel  # for each layer's 2-D Blender
        self.out = _check_out(out, plan.image_size, self.labels, self.channel_first)
        self.step = 0
        self.channels = None
        self._dtype = self._slab = self._layer = None
        self._per_layer = plan.grid_shape[1] * plan.grid_shape[2]
        self._closed = False
        self._failed = None

    # -- introspection ---------------------------------------------------
    @property
    def next_tile_shape(self):
        """(depth, height, width) of the tile the next :meth:`push` expects."""
        self._check_not_done()
        box = self.plan.tile_boxes[self.plan.load_order[self.step]]
        return tuple((box[3:] - box[:3]).tolist())

    # -- pushing ---------------------------------------------------------
    def push(self, tile):
        """Blend the next tile; return the list of :class:`VolumeCell` that became final.

        A tile refused by a check changes nothing and may be pushed again corrected.
        """
        self._check_open()
        self._check_not_done()
        k = self.step
        d, h, w = self.next_tile_shape
        arr = self._checked(tile, d, h, w)
        if self._dtype is None:
            self._start(arr)
        try:
            cells = self._blend(arr, k, d, h, w)
        except BaseException as exc:
            self._fail(k, exc)
            raise
        self.step = k + 1
        return cells

    def push_batch(self, tiles):
        """Push several tiles (a sequence, or an array with a leading batch axis); return all finished cells."""
        cells = []
        for tile in tiles:
            cells.extend(self.push(tile))
        return cells

    def _checked(self, tile, d, h, w):
        describe = f"tile {self.step} (grid index {self.next_index})"
        try:
            arr = np.asarray(tile)
        except Exception as exc:
            raise ValueError(f"{describe} could not be converted to an array: {exc}") from exc
        if arr.dtype.kind not in "fiub" or (arr.dtype.kind == "f" and arr.dtype.itemsize > 8):
            raise ValueError(f"{describe} has dtype {arr.dtype}; expected a real float of at most 64 bits, "
                             "an integer or a bool dtype")
        c = self.channels or "C"
        expect = "({}, {}, {}, {})".format(*((c, d, h, w) if self.channel_first else (d, h, w, c)))
        if arr.ndim != 4:
            raise ValueError(f"{describe} has shape {arr.shape}; expected {expect} (channel_first={self.channel_first})")
        spatial, channels = (arr.shape[1:], arr.shape[0]) if self.channel_first else (arr.shape[:3], arr.shape[3])
        if spatial != (d, h, w) or channels == 0 or (self.channels is not None and channels != self.channels):
            raise ValueError(f"{describe} has shape {arr.shape}; expected {expect} (channel_first={self.channel_first})")
        if self.check_finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{describe} contains NaN or inf (check_finite=True)")
        return arr

    def _start(self, arr):
        """The accumulator dtype, the output's last checks and the slab, from the first tile."""
        c = arr.shape[0] if self.channel_first else arr.shape[3]
        dtype = self.dtype or accumulator_dtype(arr.dtype)
        out_dtype = label_dtype(c) if self.labels else dtype
        if self.out is not None:
            if self.out.dtype != out_dtype:
                raise ValueError(f"out has dtype {self.out.dtype}; this run produces {out_dtype}")
            if not self.labels and self.out.shape[0 if self.channel_first else 3] != c:
                raise ValueError(f"out has shape {self.out.shape}, which does not fit tiles with {c} channel(s) "
                                 f"(channel_first={self.channel_first})")
        _, height, width = self.plan.image_size
        boxes = self.plan.tile_boxes
        largest = int((boxes[:, 3:] - boxes[:, :3]).prod(axis=1).max())
        self._slab = new_array(np.empty, (height, width, self.plan.slab_depth, c), dtype, "the slab of the blend")
        self._copy = new_array(np.empty, (largest * c,), dtype, "the copy of a tile")
        cells = self.plan.plane_plan.cell_boxes
        depth = int((boxes[:, 3] - boxes[:, 0]).max())
        largest_cell = int(((cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])).max(initial=0)) * depth
        self._cells = new_array(np.empty, (largest_cell * c,), dtype, "the cell of a layer's 2-D blend")
        self._wz = self.plan.weight_z.astype(dtype)
        self.channels, self._dtype, self._out_dtype = c, dtype, out_dtype
        self._no_out = np.empty((1, 1, 1) if self.labels else (1, 1, 1, 1), out_dtype)
        self._dropped = None
        if self.plan.selected is not None:
            self._zeros = new_array(np.zeros, (largest * c,), dtype, "the zero tile of a masked plan")
            self._rank = np.argsort(self.plan.plane_plan.load_order)  # a layer's tile -> its step in the 2-D plan

    def _blend(self, arr, k, d, h, w):
        plan, c = self.plan, self.channels
        flat = int(plan.load_order[k])
        layer, position = divmod(flat, self._per_layer)
        planes = self._copy[:d * h * w * c].reshape(h, w, d, c)
        if arr.dtype == self._dtype and arr.flags.c_contiguous:
            self._call(_volume_kernels.to_layer_planes_first if self.channel_first else _volume_kernels.to_layer_planes,
                       (arr, planes), arr.size)
        else:
            np.copyto(planes, arr.transpose(2, 3, 1, 0) if self.channel_first else arr.transpose(1, 2, 0, 3),
                      casting="unsafe")
        if self._layer is None:
            self._layer = _LayerBlender(plan.plane_plan, dtype=self._dtype, parallel=self._parallel)
            self._layer._cell_buffer = self._cells
            if self._policy == "numba":
                self._layer._policy = "numba"
        emitted = []
        if plan.selected is not None:  # a masked plan: the tiles of the layer it does not load count as zeros
            self._push_zeros(layer, self._rank[position], d, emitted)
        self._combine(layer, self._layer.push(planes.reshape(h, w, d * c)), d, emitted)
        last = k + 1 == plan.n_loads or int(plan.load_order[k + 1]) // self._per_layer != layer
        if last:
            if plan.selected is not None:
                self._push_zeros(layer, self._per_layer, d, emitted)
            self._layer.close()
            self._layer = None
        return emitted

    def _push_zeros(self, layer, until, d, emitted):
        """Masked plans: push zero tiles into the layer's 2-D blend until its step `until` (tiles no
        written cell needs: they add nothing, and the layer's 2-D plan expects every one of its tiles)."""
        plane = self.plan.plane_plan
        while self._layer.step < until:
            ylo, xlo, yhi, xhi = plane.tile_boxes[plane.load_order[self._layer.step]].tolist()
            zeros = self._zeros[:(yhi - ylo) * (xhi - xlo) * d * self.channels]
            self._combine(layer, self._layer.push(zeros.reshape(yhi - ylo, xhi - xlo, d * self.channels)), d,
                          emitted)

    def _combine(self, layer, cells, d, emitted):
        """Weight the layer's 2-D cells by z, add the slab, write the final z-range, keep the tail."""
        plan, c, nx = self.plan, self.channels, self.plan.grid_shape[2]
        first = layer * self._per_layer
        zlo, zhi = int(plan.tile_boxes[first, 0]), int(plan.tile_boxes[first, 3])
        t0 = int(plan.tile_boxes[first + self._per_layer, 0]) if layer + 1 < plan.grid_shape[0] else zhi
        held = int(plan.tile_boxes[first - self._per_layer, 3]) if layer > 0 else zlo
        wz = self._wz[plan.z_offsets[layer]:plan.z_offsets[layer] + zhi - zlo]
        for (i, j), (ylo, xlo, yhi, xhi), data in cells:
            index = first + i * nx + j
            c0, c1 = (int(v) for v in plan.cell_boxes[index, [0, 3]])
            if plan.selected is None or plan.selected[index]:
                target, oz, oy, ox, result = self._target(c0, ylo, xlo, c1, yhi, xhi)
            else:  # computed for the tail it leaves in the slab, then dropped
                result = None
                target, oz, oy, ox = self._scratch(c1 - c0, yhi - ylo, xhi - xlo), 0, 0, 0
            cell = data.reshape(yhi - ylo, xhi - xlo, d, c)
            args = (cell, wz, self._slab, zlo, c0, c1, t0, zhi, held, ylo, xlo, target, oz, oy, ox)
            # what the call does, for its chooser: its time per element depends on it (a first layer's tails
            # set the slab, a middle layer's may be the first to touch its pages, a last layer's reads it)
            kind = (c1 > c0, held > c0, zhi > t0, held > t0)
            if self.labels:
                self._call(_volume_kernels.combine_labels, args, cell.size, kind)
            else:
                self._call(_volume_kernels.combine_values, args + (self.channel_first,), cell.size, kind)
            if c1 > c0 and result is not None:
                emitted.append(VolumeCell((layer, i, j), (c0, ylo, xlo, c1, yhi, xhi), result))

    def _call(self, kernel, args, size, kind=()):
        """`kernel` on `args`, or its parallel variant where this call's chooser picks it and it can run
        (compiled, `parallel_lock` free); `size`: the elements the call reads; calls of one `kernel`, `kind`
        and size class share a chooser."""
        if self._policy == "serial" or size < PARALLEL_MIN_ELEMENTS:
            kernel(*args)
            return
        parallel = _volume_kernels.PARALLEL[kernel]
        chooser = None if self._policy == "numba" else chooser_for(
            ("volume", kernel.py_func.__name__, self._dtype.char, size.bit_length(), *kind), numba.get_num_threads(),
            _VolumeChooser)
        way = 1 if chooser is None else chooser.choose()
        start = time.perf_counter()
        if not (way and self._split(parallel, args + (numba.get_num_threads(),))):
            way = 0
            kernel(*args)
        if chooser is not None:
            chooser.record(way, (time.perf_counter() - start) / size)

    def _split(self, kernel, args):
        """Run the parallel `kernel`; False, having done nothing, while it is compiled in the background or
        another thread holds `parallel_lock`."""
        if not compile_in_background(kernel, args).ready(wait=True if self._policy == "numba" else None):
            return False
        lock = parallel_lock()
        if not lock.acquire(blocking=False):
            return False
        try:
            kernel(*args)
        finally:
            lock.release()
        return True

    def _scratch(self, d, h, w):
        """Where the kernels write a cell that is not written out: big enough for any (d, h, w)."""
        shape = (max(d, 1), h, w) if self.labels else \
            (self.channels, max(d, 1), h, w) if self.channel_first else (max(d, 1), h, w, self.channels)
        if self._dropped is None or any(a < b for a, b in zip(self._dropped.shape, shape)):
            self._dropped = np.empty(shape, self._out_dtype)
        return self._dropped

    def _target(self, zlo, ylo, xlo, zhi, yhi, xhi):
        """(array the kernel writes, its z, y, x offsets for the cell, the cell's data for the caller)."""
        if zhi <= zlo:
            return self._no_out, 0, 0, 0, None
        if self.out is not None:
            if self.labels or not self.channel_first:
                return self.out, zlo, ylo, xlo, self.out[zlo:zhi, ylo:yhi, xlo:xhi]
            return self.out, zlo, ylo, xlo, self.out[:, zlo:zhi, ylo:yhi, xlo:xhi]
        spatial = (zhi - zlo, yhi - ylo, xhi - xlo)
        shape = spatial if self.labels else (self.channels, *spatial) if self.channel_first else (*spatial, self.channels)
        data = np.empty(shape, self._out_dtype)
        return data, 0, 0, 0, data

    def _release(self):  # what Blender.close and a failed push call
        if self._layer is not None:
            self._layer._closed = True  # unfinished: dropped without its missing-tiles error
            self._layer._release()
        self._layer = self._slab = self._copy = self._cells = None


class _VolumeChooser(Chooser):
    """The volume's calls write fresh memory (new cells, the slab's first layers), whose first touch makes a
    call now and then 4 - 6 x slower on a quiet machine; one such split call, at the 2-D blend's `SLOW` of 3,
    ended the split for the rest of a run (in 1 to 2 runs of 3 of the MONAI scenario). Here only a split
    call 10 x serial does so at once; the trimmed mean of the last calls takes care of the rest. The layers'
    2-D blends use it too (their pushes of tiles of d x C channels meet the same first touches)."""

    SLOW = 10


class _LayerBlender(Blender):
    """The 2-D blend of one z-layer, its cells written to one buffer of the VolumeBlender (`_cell_buffer`), each
    over the last: `_combine` is done with a cell before the next push, which emits at most one (the fast path
    of a normalised plan, which every volume's layer is). A new array per cell (tens of MiB for large tiles)
    would cost the system's first touch of its pages every time."""

    _fresh_cells = False
    _chooser_kind = _VolumeChooser

    def _cell_output(self, box):
        if self.out is not None or self.labels or not self._normalised:
            return super()._cell_output(box)
        h, w = box[2] - box[0], box[3] - box[1]
        shape = self._tile_shape(h, w)
        data = self._cell_buffer[:h * w * shape[2]].reshape(shape)
        return data, data.reshape((-1, h, w * self._group)), 0, 0


def _check_out(out, size, labels, channel_first):
    """Validate a full-size volume output up front (its channels and dtype are checked at the first tile)."""
    if out is None:
        return None
    expect = "(D, H, W)" if labels else "(C, D, H, W)" if channel_first else "(D, H, W, C)"
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be an array {expect} with (D, H, W) = {tuple(size)}; got {type(out).__name__}")
    spatial = out.shape if labels else out.shape[1:] if channel_first else out.shape[:3]
    if out.ndim != (3 if labels else 4) or tuple(spatial) != tuple(size):
        raise ValueError(f"out has shape {out.shape}; expected {expect} with (D, H, W) = {tuple(size)}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def blend_volume(plan, tiles, *, out=None, **options):
    """:func:`~seamless_fast.blend` of a volume plan: every tile into one (D, H, W, C) array (or `out`).

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import blend, plan_regular_grid
    >>> plan, _ = plan_regular_grid((20, 40, 30), 16, 4)
    >>> tiles = (np.full((*(b[3:] - b[:3]), 2), 0.5) for b in plan.tile_boxes[plan.load_order])
    >>> volume = blend(plan, tiles)
    >>> volume.shape, volume.dtype, round(float(volume.max()), 6)
    ((20, 40, 30, 2), dtype('float64'), 0.5)
    """
    with VolumeBlender(plan, out=out, **options) as blender:
        check_tile_count(tiles, plan.n_loads)
        try:
            iterator = iter(tiles)
        except TypeError:
            raise ValueError(f"tiles must be an iterable of arrays; got {type(tiles).__name__}") from None
        for step in range(plan.n_loads):
            tile = next(iterator, _END)
            if tile is _END:
                raise ValueError(f"tiles ran out after {step} tiles; the plan expects {plan.n_loads}")
            if blender.out is None:
                blender.out = _allocate(plan, blender, tile)
                out = blender.out
            blender.push(tile)
    return out


def _allocate(plan, blender, tile):
    """A zeroed output for tiles like `tile` (None when the tile is malformed: the push reports it)."""
    arr = np.asarray(tile)
    if arr.ndim != 4 or arr.dtype.kind not in "fiub" or 0 in arr.shape:
        return None
    c = arr.shape[0] if blender.channel_first else arr.shape[3]
    if blender.labels:
        shape, dtype = plan.image_size, label_dtype(c)
    else:
        dtype = blender.dtype or accumulator_dtype(arr.dtype)
        shape = (c, *plan.image_size) if blender.channel_first else (*plan.image_size, c)
    return new_array(np.zeros, shape, dtype, "the output", hint="pass out= (a numpy.memmap works) or take the "
                     "cells as they come from a Blender or run_plan")


def run_volume(plan, tiles, max_tiles=None, disk_cache_dir=None, on_load=None, on_unload=None, on_step=None,
               on_disk_evict=None, on_disk_restore=None, **options):
    """:func:`~seamless_fast.run_plan` of a volume plan: yields ``(index, slices, data)`` per cell.

    `index` is the cell's grid index (k, i, j), `slices` three slices (z, y,
    x) into the volume (a volume has no shapely geometry), `data` its values
    (d, h, w, C), (C, d, h, w) or labels (d, h, w). `max_tiles` is checked
    against :func:`~seamless_fast.analyse_plan`; `disk_cache_dir` is refused.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import plan_regular_grid, run_plan
    >>> plan, _ = plan_regular_grid((20, 40, 30), 16, 4)
    >>> volume = np.zeros((20, 40, 30, 1))
    >>> tiles = (np.ones((*(b[3:] - b[:3]), 1)) for b in plan.tile_boxes[plan.load_order])
    >>> for index, slices, data in run_plan(plan, tiles):
    ...     volume[slices] = data
    >>> bool(np.allclose(volume, 1.0))
    True
    """
    from ..plan import analyse_plan

    callbacks = {"on_load": on_load, "on_unload": on_unload, "on_step": on_step,
                 "on_disk_evict": on_disk_evict, "on_disk_restore": on_disk_restore}
    for name, fn in callbacks.items():
        if fn is not None:
            check_callable(fn, name)
    if disk_cache_dir is not None:
        raise ValueError(f"disk_cache_dir={str(disk_cache_dir)!r} is not available for a volume plan; its slab "
                         "is one overlap deep (see analyse_plan)")
    if max_tiles is not None:
        max_tiles = as_positive_int(max_tiles, "max_tiles")
        held = analyse_plan(plan).max_tiles_held
        if held > max_tiles:
            raise ValueError(f"max_tiles={max_tiles} is below the {held} tile-equivalents this plan's blend "
                             "buffers hold; raise max_tiles")
    check_tile_count(tiles, plan.n_loads)
    blender = VolumeBlender(plan, **options)
    return _run(blender, tiles, on_load, on_unload, on_step)


def _run(blender, tiles, on_load, on_unload, on_step):
    plan = blender.plan
    with blender:
        iterator = iter(tiles)
        for step in range(plan.n_loads):
            tile = next(iterator, _END)
            if tile is _END:
                raise ValueError(f"tiles ran out after {step} tiles; the plan expects {plan.n_loads}")
            index = plan.grid_index(plan.load_order[step])
            if on_load is not None:
                on_load(index)
            cells = blender.push(tile)
            if on_unload is not None:
                on_unload(index)
            for cell in cells:
                yield cell.index, cell.slices, cell.data
            if on_step is not None:
                on_step(step)

