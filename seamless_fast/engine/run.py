"""Driving a :class:`Blender` over all tiles: the seed's ``run_plan`` generator, and ``blend`` into one array."""

import itertools
import os

import numpy as np

from ._arrays import allocate_output
from ._tiles import check_tile_count, iterate_tiles
from .._validate import as_positive_int, check_callable
from .blender import Blender
from ..geometry import box_to_geom, boxes_to_geoms, register_boxes, unregister_boxes
from ..plan import Plan, VolumePlan, analyse_plan

__all__ = ["blend", "run_plan", "cell_geom_blocks"]

_END = object()  # what next() gives for an exhausted iterator of tiles

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

    A :class:`~seamless_fast.plan.VolumePlan` yields ``(index, slices,
    data)`` instead, three slices (z, y, x) in place of the geometry (see
    :func:`seamless_fast.engine._volume.run_volume`).

    Returns
    -------
    generator of (index, out_geom, out_tile)
        Grid index, shapely box of the cell (y, x order) and its blended values.
        The boxes are made 256 at a time in one vectorised call, and
        :func:`shape_to_slices` of one takes its slices from the plan's
        integer box without asking shapely (see :func:`cell_geom_blocks`).
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
    if isinstance(plan, VolumePlan):  # yields (index, slices, data): see `seamless_fast.engine._volume.run_volume`
        from ._volume import run_volume
        return run_volume(plan, tiles, max_tiles, disk_cache_dir, on_load, on_unload, on_step, on_disk_evict,
                          on_disk_restore, labels=labels, channel_first=channel_first, dtype=dtype,
                          check_finite=check_finite, parallel=parallel)
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
    blocks = cell_geom_blocks(plan)
    geoms = itertools.chain.from_iterable(blocks)
    try:
        with blender:
            if on_load is not None:
                tiles = _announce(plan, tiles, on_load)
            iterator, push = iter(tiles), blender.push
            for step in range(plan.n_loads):  # as `iterate_tiles`, without a generator between
                tile = next(iterator, _MISSING)
                if tile is _MISSING:
                    raise ValueError(f"tiles ran out after {step} tiles; the plan expects {plan.n_loads}")
                cells = push(tile)
                if on_unload is not None:
                    on_unload(plan.grid_index(plan.load_order[step]))
                for index, box, data in cells:
                    expected, geom = next(geoms, _NO_CELL)
                    # a run emits the plan's write_cells in order; should it not, a cell gets its own box
                    yield index, geom if expected == index else box_to_geom(box), data
                if on_step is not None:
                    on_step(step)
    finally:
        blocks.close()


_MISSING = object()
_NO_CELL = (None, None)


def cell_geom_blocks(plan, block=CELLS_AT_ONCE):
    """Iterators of ``(grid index, shapely box)`` of the cells the plan writes, `block` cells each, in the
    order a run emits them.

    A block's boxes are made in one vectorised call (each is
    ``shapely.box(*plan.cell_boxes[c])``), and while it is the current block
    :func:`~seamless_fast.shape_to_slices` reads their slices from the plan's
    integer boxes instead of asking shapely for bounds: until the next block
    is asked for or the generator is closed. The geometries stay valid
    shapely geometries either way.
    """
    cols = plan.grid_shape[1]
    for start in range(0, plan.n_writes, block):
        cells = plan.write_cells[start:start + block]
        boxes = plan.cell_boxes[cells]
        i, j = np.divmod(cells, cols)
        geoms = np.atleast_1d(boxes_to_geoms(boxes)).tolist()
        register_boxes(geoms, boxes.tolist())
        try:
            yield zip(zip(i.tolist(), j.tolist()), geoms)
        finally:
            unregister_boxes(geoms)


def _announce(plan, tiles, on_load):
    if on_load is None:
        yield from tiles
        return
    for step, tile in enumerate(tiles):
        if step < plan.n_loads:
            on_load(plan.grid_index(plan.load_order[step]))
        yield tile


def blend(plan, tiles, *, out=None, labels=False, channel_first=False, dtype=None, check_finite=False,
          cache_dir=None, parallel=None):
    """Blend all tiles of a plan into one full-size array.

    For images that fit in memory, or with ``out`` a ``numpy.memmap`` for
    those that do not. Cells are written straight into `out`; pixels outside
    the written cells are left as they are (zero when `out` is allocated here).

    Parameters
    ----------
    plan : Plan
    tiles : iterable of array-like
        Model outputs in ``plan.load_order``.
    out : ndarray, optional, keyword-only
        Where to write: shape ``(H, W, C)`` (``(C, H, W)`` with
        ``channel_first``, ``(H, W)`` for labels or 2-D tiles); for a
        volume plan ``(D, H, W, C)``, ``(C, D, H, W)`` or labels ``(D, H, W)``.
    labels, channel_first, dtype, check_finite, cache_dir, parallel
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
    if isinstance(plan, VolumePlan):  # (D, H, W, C): see `seamless_fast.engine._volume`
        from ._volume import blend_volume
        return blend_volume(plan, tiles, out=out, labels=labels, channel_first=channel_first, dtype=dtype,
                            check_finite=check_finite, cache_dir=cache_dir, parallel=parallel)
    # every option is checked before a tile is read or the output allocated
    with Blender(plan, labels=labels, channel_first=channel_first, dtype=dtype, check_finite=check_finite,
                 cache_dir=cache_dir, parallel=parallel, out=out) as blender:
        check_tile_count(tiles, plan.n_loads)
        try:
            tiles = iter(tiles)
        except TypeError:
            raise ValueError(f"tiles must be an iterable of arrays; got {type(tiles).__name__}") from None
        if out is None:
            first = next(tiles, _END)
            if first is not _END:
                out = blender.out = allocate_output(plan, first, blender.labels, blender.channel_first,
                                                     blender.dtype)
                tiles = itertools.chain([first], tiles)
        for _ in iterate_tiles(blender, tiles):
            pass
    return out
