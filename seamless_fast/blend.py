"""Streaming blend: take tiles as they arrive, hand back output cells as they become final.

Dtype policy
------------
Tiles may be float16, float32, float64, any integer type or bool, in (H, W, C)
layout, (C, H, W) with ``channel_first=True``, or (H, W) for one channel.
Anything ``np.asarray`` accepts works (a CPU torch tensor, a memmap, a list).
The accumulator, and so the float output, is float64 for float64 tiles and
for integers wider than 16 bits, and float32 otherwise; ``dtype=`` overrides
this for the whole run. Labels are uint8 for up to 256 channels, uint16 up to
65536, int32 beyond.

Non-finite values
-----------------
NaN and inf propagate, as the blend formula says: every output pixel a bad
tile value contributes to is NaN or inf, so a broken model shows instead of
being averaged away. ``check_finite=True`` rejects such a tile with an error
naming it instead (costs one extra pass over each tile).
"""

import os
import tempfile
from typing import NamedTuple

import numpy as np

from . import _kernels
from ._validate import check_bool
from .geometry import boxes_to_geoms
from .plan import Plan
from .windows import window_2d

__all__ = ["Blender", "OutputCell", "blend", "accumulator_dtype", "label_dtype"]


class OutputCell(NamedTuple):
    """One finished piece of output: grid index, box ``(ylo, xlo, yhi, xhi)`` and values."""

    index: tuple
    box: tuple
    data: np.ndarray

    @property
    def geom(self):
        """The box as a shapely geometry in the seed's (y, x) convention."""
        return boxes_to_geoms(np.array(self.box))

    @property
    def slices(self):
        """``(slice(ylo, yhi), slice(xlo, xhi))`` into the full image."""
        return slice(self.box[0], self.box[2]), slice(self.box[1], self.box[3])


def accumulator_dtype(tile_dtype):
    """The float dtype tiles of `tile_dtype` are blended in (see the dtype policy)."""
    tile_dtype = np.dtype(tile_dtype)
    if tile_dtype.kind == "f":
        return np.dtype(np.float64) if tile_dtype.itemsize > 4 else np.dtype(np.float32)
    if tile_dtype.kind in "iu":
        return np.dtype(np.float64) if tile_dtype.itemsize > 2 else np.dtype(np.float32)
    if tile_dtype.kind == "b":
        return np.dtype(np.float32)
    raise ValueError(f"tile dtype {tile_dtype} is not supported; expected a real float, integer or bool dtype")


def label_dtype(channels):
    """Smallest label dtype for `channels` classes."""
    if channels <= 256:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if channels <= 65536 else np.dtype(np.int32)


class Blender:
    """Push-style streaming blend of one plan.

    Hand tiles over in ``plan.load_order`` with :meth:`push` (or several with
    :meth:`push_batch`); each call returns the output cells that became final.
    No tile is kept: its buffer may be reused as soon as the call returns.

    Parameters
    ----------
    plan : Plan
    labels : bool, keyword-only
        Emit the arg-max over channels as integer labels instead of values.
    channel_first : bool, keyword-only
        Tiles (and emitted cells) are (C, H, W) instead of (H, W, C).
    dtype : float dtype, optional, keyword-only
        Accumulator dtype; by default chosen from the first tile.
    check_finite : bool, keyword-only
        Reject tiles holding NaN or inf instead of propagating them.
    cache_dir : path, optional, keyword-only
        Hold the blend buffer in a memory-mapped file in this folder instead of
        RAM; the file is removed on :meth:`close`.

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

    def __init__(self, plan, *, labels=False, channel_first=False, dtype=None, check_finite=False,
                 cache_dir=None):
        if not isinstance(plan, Plan):
            raise ValueError(f"plan must be a Plan from plan_regular_grid or plan_from_grid; got {type(plan).__name__}")
        self.plan = plan
        self.labels = check_bool(labels, "labels")
        self.channel_first = check_bool(channel_first, "channel_first")
        self.check_finite = check_bool(check_finite, "check_finite")
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.kind != "f" or dtype.itemsize < 4:
                raise ValueError(f"dtype={dtype} is not a supported accumulator; expected float32 or float64")
        self.dtype = dtype
        if cache_dir is not None and not os.path.isdir(cache_dir):
            raise ValueError(f"cache_dir={str(cache_dir)!r} is not an existing directory")
        self.cache_dir = cache_dir
        self.step = 0
        self.channels = None
        self._ndim = None
        self._acc = self._wsum = None
        self._files = []
        self._live = int(plan.live_from[0]) if plan.n_loads else 0
        self._emit_bounds = np.searchsorted(plan.emit_after, np.arange(plan.n_loads + 1), side="left")
        self._weight_maps = {}
        self._closed = False

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
        ylo, xlo, yhi, xhi = self.plan.tile_boxes[self.plan.load_order[self.step]].tolist()
        return yhi - ylo, xhi - xlo

    # -- pushing ---------------------------------------------------------
    def push(self, tile):
        """Blend the next tile; return the list of :class:`OutputCell` that became final."""
        self._check_open()
        self._check_not_done()
        tile, ndim = self._checked_tile(tile)
        if self._acc is None:
            self._allocate(tile, ndim)
        plan, k = self.plan, self.step
        t = int(plan.load_order[k])
        ylo, xlo, yhi, xhi = plan.tile_boxes[t].tolist()
        self._release(int(plan.live_from[k]))
        first = max(0, self._live - ylo)
        x0 = xlo - plan.buffer_cols[0]
        cap = plan.buffer_rows
        if plan.normalised:
            wy = self._wvec[plan.weight_y[t]: plan.weight_y[t] + yhi - ylo]
            wx = self._wvec[plan.weight_x[t]: plan.weight_x[t] + xhi - xlo]
            _kernels.blend_separable(self._acc, tile, wy, wx, ylo, first, cap, x0)
        else:
            _kernels.blend_weighted(self._acc, self._wsum, tile, self._weight_map(t), ylo, first, cap, x0)
        self.step = k + 1
        return self._emit(k)

    def push_batch(self, tiles):
        """Push several tiles (a sequence, or an array with a leading batch axis); return all finished cells."""
        out = []
        for tile in tiles:
            out.extend(self.push(tile))
        return out

    def close(self):
        """Release the buffer (and remove its cache file). Raises if tiles are still missing."""
        if self._closed:
            return
        self._closed = True
        missing = self.plan.n_loads - self.step
        self._acc = self._wsum = None
        for path in self._files:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        self._files = []
        if missing:
            raise ValueError(f"blend closed after {self.step} tiles; the plan expects {self.plan.n_loads} "
                             f"({missing} missing)")

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

    # -- internals -------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise ValueError("this Blender is closed")

    def _check_not_done(self):
        if self.step >= self.plan.n_loads:
            raise ValueError(f"received more tiles than the {self.plan.n_loads} the plan expects")

    def _describe(self):
        return f"tile {self.step} (grid index {self.next_index})"

    def _checked_tile(self, tile):
        try:
            arr = np.asarray(tile)
        except Exception as exc:
            raise ValueError(f"{self._describe()} could not be converted to an array: {exc}") from exc
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{self._describe()} has dtype {arr.dtype}; expected a real float, integer or bool dtype")
        h, w = self.next_tile_shape
        if self._ndim is not None and arr.ndim != self._ndim:
            raise ValueError(f"{self._describe()} has {arr.ndim} dimensions; earlier tiles had {self._ndim}")
        if arr.ndim == 2:
            view = arr[:, :, None]
        elif arr.ndim == 3:
            view = arr.transpose(1, 2, 0) if self.channel_first else arr
        else:
            raise ValueError(f"{self._describe()} has shape {arr.shape}; expected "
                             f"{'(C, H, W)' if self.channel_first else '(H, W, C)'} or (H, W)")
        if view.shape[:2] != (h, w) or (self.channels is not None and view.shape[2] != self.channels):
            expect = (h, w, self.channels or "C")
            if self.channel_first and arr.ndim == 3:
                expect = (self.channels or "C", h, w)
            raise ValueError(f"{self._describe()} has shape {arr.shape}; expected {expect}"
                             + ("" if arr.ndim == 2 else " (channel_first=%s)" % self.channel_first))
        if view.shape[2] == 0:
            raise ValueError(f"{self._describe()} has no channels")
        dtype = self.dtype or (self._acc.dtype if self._acc is not None else accumulator_dtype(arr.dtype))
        if view.dtype != dtype:
            view = view.astype(dtype)
        if self.check_finite and not np.isfinite(view).all():
            raise ValueError(f"{self._describe()} contains NaN or inf (check_finite=True)")
        return view, arr.ndim

    def _allocate(self, tile, ndim):
        plan = self.plan
        self.channels = tile.shape[2]
        self._ndim = ndim
        dtype = tile.dtype
        width = plan.buffer_cols[1] - plan.buffer_cols[0]
        self._acc = self._buffer((plan.buffer_rows, width, self.channels), dtype)
        if not plan.normalised:
            self._wsum = self._buffer((plan.buffer_rows, width), dtype)
        self._wvec = plan.weights.astype(dtype)

    def _buffer(self, shape, dtype):
        if self.cache_dir is None:
            return np.zeros(shape, dtype)
        fd, path = tempfile.mkstemp(prefix="seamless_fast_", suffix=".buf", dir=self.cache_dir)
        os.close(fd)
        self._files.append(path)
        return np.memmap(path, dtype=dtype, mode="w+", shape=shape)

    def _weight_map(self, t):
        ylo, xlo, yhi, xhi = self.plan.tile_boxes[t].tolist()
        key = (yhi - ylo, xhi - xlo)
        if key not in self._weight_maps:
            self._weight_maps[key] = np.ascontiguousarray(window_2d(self.plan.window, *key), dtype=self._acc.dtype)
        return self._weight_maps[key]

    def _release(self, live_from):
        if live_from > self._live:
            cap = self.plan.buffer_rows
            _kernels.clear_rows(self._acc, self._live, live_from, cap)
            if self._wsum is not None:
                _kernels.clear_rows(self._wsum, self._live, live_from, cap)
            self._live = live_from

    def _emit(self, k):
        plan = self.plan
        lo, hi = self._emit_bounds[k], self._emit_bounds[k + 1]
        cap, bx0 = plan.buffer_rows, plan.buffer_cols[0]
        cells = []
        for c in plan.write_cells[lo:hi].tolist():
            ylo, xlo, yhi, xhi = plan.cell_boxes[c].tolist()
            data, view = self._new_output(yhi - ylo, xhi - xlo)
            if self.labels:
                _kernels.emit_labels(self._acc, ylo, cap, xlo - bx0, view)
            elif plan.normalised:
                _kernels.emit_values(self._acc, ylo, cap, xlo - bx0, view)
            else:
                _kernels.emit_values_weighted(self._acc, self._wsum, ylo, cap, xlo - bx0, view)
            cells.append(OutputCell(plan.grid_index(c), (ylo, xlo, yhi, xhi), data))
        return cells

    def _new_output(self, h, w):
        if self.labels:
            data = np.empty((h, w), label_dtype(self.channels))
            return data, data
        if self._ndim == 2:
            data = np.empty((h, w), self._acc.dtype)
            return data, data[:, :, None]
        if self.channel_first:
            data = np.empty((self.channels, h, w), self._acc.dtype)
            return data, data.transpose(1, 2, 0)
        data = np.empty((h, w, self.channels), self._acc.dtype)
        return data, data


def blend(plan, tiles, *, out=None, labels=False, channel_first=False, dtype=None, check_finite=False,
          cache_dir=None):
    """Blend all tiles of a plan into one full-size array.

    For images that fit in memory, or with ``out`` a ``numpy.memmap`` for
    those that do not. Pixels outside the written cells are left as they
    are in `out` (zero when it is allocated here).

    Parameters
    ----------
    plan : Plan
    tiles : iterable of array-like
        Model outputs in ``plan.load_order``.
    out : ndarray, optional, keyword-only
        Where to write: shape ``(H, W, C)`` (``(C, H, W)`` with
        ``channel_first``, ``(H, W)`` for labels or 2-D tiles).
    labels, channel_first, dtype, check_finite, cache_dir
        As for :class:`Blender`.

    Returns
    -------
    ndarray
        `out`, or the array allocated for it.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import get_plan_input_geoms, plan_regular_grid
    >>> plan, _ = plan_regular_grid((90, 70), 32, 8)
    >>> tiles = (np.full((32, 32, 1), 0.5) for _ in get_plan_input_geoms(plan))
    >>> result = blend(plan, tiles)
    >>> result.shape, round(float(result.max()), 6)
    ((90, 70, 1), 0.5)
    """
    from .run import iterate_tiles

    if out is not None:
        spatial = out.shape[1:] if channel_first and not labels and getattr(out, "ndim", 0) == 3 else out.shape[:2]
        if not isinstance(out, np.ndarray) or out.ndim not in (2, 3) or tuple(spatial) != plan.image_size:
            raise ValueError(f"out must be an array whose (H, W) is the plan's image_size {plan.image_size}; "
                             f"got {type(out).__name__} of shape {getattr(out, 'shape', None)}")
    blender = Blender(plan, labels=labels, channel_first=channel_first, dtype=dtype,
                      check_finite=check_finite, cache_dir=cache_dir)
    with blender:
        for _, cells in iterate_tiles(blender, tiles):
            for cell in cells:
                if out is None:
                    out = _allocate_output(plan, cell.data, channel_first)
                target = out[(slice(None),) + cell.slices] if cell.data.ndim == 3 and channel_first \
                    else out[cell.slices]
                if target.shape != cell.data.shape:
                    raise ValueError(f"out has shape {out.shape}, which cannot take cell {cell.index} "
                                     f"of shape {cell.data.shape} at {cell.box}")
                target[...] = cell.data
    return out


def _allocate_output(plan, sample, channel_first):
    h, w = plan.image_size
    if sample.ndim == 2:
        return np.zeros((h, w), sample.dtype)
    c = sample.shape[0] if channel_first else sample.shape[2]
    return np.zeros((c, h, w) if channel_first else (h, w, c), sample.dtype)
