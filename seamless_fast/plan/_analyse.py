"""What a plan costs (`analyse_plan`) and its geometries in the seed's terms."""


import numpy as np

from ..geometry import boxes_to_geoms

from ._grid import _accumulator_dtype, plan_regular_grid  # noqa: F401 (the doctests use it)
from ._plan import _INPUT_GEOMS, INPUT_GEOMS_CACHED, Plan, PlanStats
from ._volume import VolumePlan, volume_stats


def analyse_plan(plan, *, channels=1, dtype=np.float32):
    """Memory and work of a plan, before running it.

    Parameters
    ----------
    plan : Plan or VolumePlan
        For a volume, ``buffer_bytes`` is the slab (``slab_depth`` x H x W
        x C), one layer's 2-D band and one tile's copy
        (`seamless_fast.engine._volume`), whatever the depth.
    channels : int, keyword-only
        Channels of the model output, for `buffer_bytes`.
    dtype : numpy dtype, keyword-only
        Accumulator dtype (float32 for float16/float32 tiles, float64 for float64).

    Returns
    -------
    PlanStats
        Unpacks like the seed's ``(max_tiles_held, tiles_loaded, cells_written)``.
        No raw tile is ever held; ``max_tiles_held`` is the blend buffer's size
        in tile-equivalents (its pixels over one largest tile's pixels,
        rounded up), and ``buffer_bytes`` its size in bytes, in the frame of
        the plan's traversal (`Plan.traverse`: rows across the planned width
        walking rows, columns across the planned height walking columns).
        With the ``"band"`` layout (see `Plan.layout`) that is the band,
        ``buffer_rows`` (the overlap) x planned width, plus the right-overlap
        buffer, 2 x ``right_buffer`` pixels; with ``"ring"``,
        ``buffer_rows`` (about a tile height) x the widest stripe, with a
        weight-sum plane on grids that need one.

    Examples
    --------
    >>> plan, _ = plan_regular_grid((4096, 4096), 256, 64)
    >>> stats = analyse_plan(plan, channels=3)
    >>> stats.tiles_loaded, stats.cells_written
    (441, 441)
    """
    from .._validate import as_positive_int

    if not isinstance(plan, (Plan, VolumePlan)):
        raise ValueError(f"plan must be a Plan from plan_regular_grid or plan_from_grid; got {type(plan).__name__}")
    channels = as_positive_int(channels, "channels")
    itemsize = _accumulator_dtype(dtype).itemsize
    if isinstance(plan, VolumePlan):  # the slab, a layer's 2-D band and a tile's copy (`plan._volume`)
        held, nbytes = volume_stats(plan, channels, itemsize)
        return PlanStats(held, plan.n_loads, plan.n_writes, nbytes)
    pixels = plan.buffer_rows * int((plan.stripes[:, 1] - plan.stripes[:, 0]).max())
    pixels += 2 * plan.right_buffer[0] * plan.right_buffer[1]
    planes = channels if plan.normalised else channels + 1
    boxes = plan.tile_boxes[plan.load_order]
    tile_pixels = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).max())
    held = -(-pixels // tile_pixels)
    return PlanStats(int(held), plan.n_loads, plan.n_writes, int(pixels * planes * itemsize))


def get_plan_input_geoms(plan):
    """``[(grid_index, shapely box), ...]`` of the tiles to compute, in the order the run needs them.

    Each box is the window of the input the tile's model reads (:meth:`Plan.read_boxes`): the tile's box,
    times the plan's `output_scale` and grown by its `context`, in input pixels.
    Row-major for a plan that walks rows, column-major for one that walks
    columns (see `traverse` in :func:`plan_regular_grid`). For a volume plan,
    ``[((k, i, j), (zlo, ylo, xlo, zhi, yhi, xhi)), ...]``: boxes instead of
    geometries, grown by the plan's context.

    Examples
    --------
    >>> plan, _ = plan_regular_grid((300, 300), 128, 32)
    >>> get_plan_input_geoms(plan)[0][0]
    (0, 0)
    """
    if isinstance(plan, VolumePlan):  # no geometries in 3-D: boxes (zlo, ylo, xlo, zhi, yhi, xhi)
        return list(zip(map(plan.grid_index, plan.load_order.tolist()), map(tuple, plan.read_boxes().tolist())))
    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be a Plan from plan_regular_grid or plan_from_grid; got {type(plan).__name__}")
    pairs = _INPUT_GEOMS.get(plan)
    if type(pairs) is tuple:
        return list(pairs)
    geoms = pairs if pairs is not None else np.atleast_1d(boxes_to_geoms(plan.read_boxes()))
    i, j = np.divmod(plan.load_order, plan.grid_shape[1])
    pairs = tuple(zip(zip(i.tolist(), j.tolist()), geoms.tolist()))
    if plan.n_loads <= INPUT_GEOMS_CACHED:
        _INPUT_GEOMS[plan] = pairs
    return list(pairs)




def get_plan_logit_geoms(plan):
    """The newer seed's name for :func:`get_plan_input_geoms`: the tiles to compute, in order.

    Examples
    --------
    >>> plan, _ = plan_regular_grid((300, 300), 128, 32)
    >>> get_plan_logit_geoms(plan) == get_plan_input_geoms(plan)
    True
    """
    return get_plan_input_geoms(plan)


def row_by_row_traversal(grid, add_load, add_unload, add_write):
    """The seed's default `traversal_fnc`, for code that passes it by name; the order of ``traverse="rows"``.

    Calls ``add_load(i, j)``, ``add_write(i, j)`` and ``add_unload(i, j)``
    for every grid index in row-major order: each tile's cell is final, and
    the tile no longer needed, the moment it arrives. Plans never call a
    traversal function; this one only documents the order of a plan made
    with ``traverse="rows"`` (``"columns"`` walks column-major).

    Examples
    --------
    >>> import numpy as np
    >>> calls = []
    >>> row_by_row_traversal(np.empty((1, 2)), *(lambda i, j, a=a: calls.append((a, i, j)) for a in "luw"))
    >>> calls
    [('l', 0, 0), ('w', 0, 0), ('u', 0, 0), ('l', 0, 1), ('w', 0, 1), ('u', 0, 1)]
    """
    rows, cols = np.shape(grid)[:2]
    for i in range(rows):
        for j in range(cols):
            add_load(i, j)
            add_write(i, j)
            add_unload(i, j)

