"""Pull-style running: the seed's ``run_plan`` generator on top of :class:`Blender`."""

import os

import numpy as np

from ._tiles import check_tile_count, iterate_tiles
from ._validate import as_positive_int, check_callable
from .blend import Blender
from .geometry import box_to_geom, boxes_to_geoms, register_boxes, unregister_boxes
from .plan import Plan, analyse_plan

__all__ = ["run_plan", "CellGeoms"]

CELLS_AT_ONCE = 256  # cell geometries made in one vectorised call


def run_plan(plan, tiles, max_tiles=None, disk_cache_dir=None, on_load=None, on_unload=None, on_step=None,
             on_disk_evict=None, on_disk_restore=None, *, labels=False, channel_first=False, dtype=None,
             check_finite=False, parallel=None):
    """Blend model outputs as they arrive; yield each output cell once it is final.

    Parameters
    ----------
    plan : Plan
        From :func:`plan_regular_grid` or :func:`plan_from_grid`.
    tiles : iterable of array-like
        One model output per tile of :func:`get_plan_input_geoms`, in that
        order: (H, W, C), (C, H, W) with ``channel_first``, or (H, W).
        Exactly ``plan.n_loads`` tiles are taken and no more, so a generator
        may be endless; a list or array of another length is refused when
        `run_plan` is called.
    max_tiles : int, optional
        Memory bound, in tile-equivalents, for the blend buffer (see
        :func:`analyse_plan`). Over it, the run is refused unless
        `disk_cache_dir` is given, in which case the buffer is a
        memory-mapped file there (removed when the run ends).
    disk_cache_dir : path, optional
        Folder for the memory-mapped buffer; created if missing.
    on_load, on_unload : callable(index), optional
        Called with the grid index when a tile is taken from `tiles` and when
        it has been blended (its buffer is then free to reuse).
    on_step : callable(step), optional
        Called after each tile with its arrival step.
    on_disk_evict, on_disk_restore : callable, optional
        Accepted for compatibility with the seed and never called: no tile is
        ever evicted, since tiles are blended on arrival.
    labels, channel_first, dtype, check_finite, parallel : keyword-only
        As for :class:`Blender`.

    Returns
    -------
    generator of (index, out_geom, out_tile)
        Grid index, shapely box of the cell (y, x order) and its blended values.
        Arguments are checked when `run_plan` is called, before any tile is read.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import get_plan_input_geoms, plan_regular_grid, shape_to_slices
    >>> plan, grid = plan_regular_grid((200, 150), 64, 16)
    >>> tiles = (np.ones((64, 64, 3)) for _ in get_plan_input_geoms(plan))
    >>> image = np.zeros((200, 150, 3))
    >>> for index, out_geom, out_tile in run_plan(plan, tiles):
    ...     image[shape_to_slices(out_geom)] = out_tile
    >>> bool(np.allclose(image, 1.0))
    True
    """
    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be a Plan from plan_regular_grid or plan_from_grid; got {type(plan).__name__}")
    callbacks = {"on_load": on_load, "on_unload": on_unload, "on_step": on_step,
                 "on_disk_evict": on_disk_evict, "on_disk_restore": on_disk_restore}
    for name, fn in callbacks.items():
        if fn is not None:
            check_callable(fn, name)
    held = analyse_plan(plan).max_tiles_held
    if max_tiles is not None:
        max_tiles = as_positive_int(max_tiles, "max_tiles")
        if held > max_tiles and disk_cache_dir is None:
            raise ValueError(f"max_tiles={max_tiles} is below the {held} tile-equivalents this plan's blend "
                             "buffer holds; raise max_tiles or pass disk_cache_dir to keep the buffer on disk")
    elif disk_cache_dir is not None:
        raise ValueError("disk_cache_dir is set but max_tiles is not; set max_tiles as well")
    if disk_cache_dir is not None and not isinstance(disk_cache_dir, (str, os.PathLike)):
        raise ValueError(f"disk_cache_dir={disk_cache_dir!r} is not a path; expected a str or pathlib.Path")
    if disk_cache_dir is not None:
        if os.path.exists(disk_cache_dir) and not os.path.isdir(disk_cache_dir):
            raise ValueError(f"disk_cache_dir={str(disk_cache_dir)!r} exists and is not a directory")
    check_tile_count(tiles, plan.n_loads)
    if disk_cache_dir is not None:
        os.makedirs(disk_cache_dir, exist_ok=True)
        if held <= max_tiles:
            disk_cache_dir = None  # the buffer fits the budget: keep it in RAM
    blender = Blender(plan, labels=labels, channel_first=channel_first, dtype=dtype,
                      check_finite=check_finite, cache_dir=disk_cache_dir,
                      buffer_on_disk=disk_cache_dir is not None, parallel=parallel)
    return _run(blender, tiles, on_load, on_unload, on_step)


def _run(blender, tiles, on_load, on_unload, on_step):
    plan = blender.plan
    geoms = CellGeoms(plan)
    with blender, geoms:
        if on_load is not None:
            tiles = _announce(plan, tiles, on_load)
        for step, cells in iterate_tiles(blender, tiles):
            if on_unload is not None:
                on_unload(plan.grid_index(plan.load_order[step]))
            for index, box, data in cells:
                yield index, geoms.next(index, box), data
            if on_step is not None:
                on_step(step)


class CellGeoms:
    """The shapely boxes of a plan's written cells, in the order a run emits them, built in blocks.

    ``next(index, box)`` gives the geometry of the next emitted cell (grid
    index `index`, integer box `box`): a real ``shapely.box(*box)``, made
    with those of the following cells in one vectorised call, and known to
    :func:`~seamless_fast.shape_to_slices`, which then reads its slices
    without asking shapely for bounds. A block's geometries are forgotten
    by `shape_to_slices` (and stay valid) once the next block is made, and
    when the object is closed or used as a context manager that ends.
    """

    def __init__(self, plan, block=CELLS_AT_ONCE):
        self.plan, self.block = plan, block
        self._n = self._start = self._end = 0  # cells emitted; the block holds cells [start, end)
        self._geoms, self._indices = [], []

    def next(self, index, box):
        """The geometry of the next cell the run emits, given its grid index and integer box."""
        n = self._n
        self._n = n + 1
        if n >= self._end:
            self._make(n)
            if n >= self._end:  # past the plan's cells (never in a run): the cell's own box
                return box_to_geom(box)
        n -= self._start
        # the run emits the plan's write_cells in order; should it not, a cell still gets its own exact box
        return self._geoms[n] if self._indices[n] == index else box_to_geom(box)

    def _make(self, n):
        plan = self.plan
        self.close()
        cells = plan.write_cells[n:n + self.block]
        boxes = plan.cell_boxes[cells]
        i, j = np.divmod(cells, plan.grid_shape[1])
        self._geoms = np.atleast_1d(boxes_to_geoms(boxes)).tolist()
        self._indices = list(zip(i.tolist(), j.tolist()))
        self._start, self._end = n, n + len(cells)
        register_boxes(self._geoms, boxes.tolist())

    def close(self):
        """Let `shape_to_slices` forget the current block."""
        unregister_boxes(self._geoms)
        self._geoms, self._indices = [], []
        self._start = self._end = self._n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _announce(plan, tiles, on_load):
    if on_load is None:
        yield from tiles
        return
    for step, tile in enumerate(tiles):
        if step < plan.n_loads:
            on_load(plan.grid_index(plan.load_order[step]))
        yield tile
