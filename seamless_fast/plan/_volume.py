"""Volumes: a grid of (z, y, x) tiles compiled into a `VolumePlan`.

A volume plan is a product of 1-D grids: every z-layer of tiles shares one
2-D grid of (y, x) boxes, its `plane_plan`, a 2-D :class:`Plan` that the
engine reuses for each layer (see :mod:`seamless_fast.engine._volume`). The
window is separable, so the weight sum is too (DESIGN.md section 3): the
plane plan's y and x vectors are normalised per axis, and the z vectors of
the layers are normalised here, once, at planning time.

Boxes are ``(zlo, ylo, xlo, zhi, yhi, xhi)`` rows of int64 with exclusive
upper bounds; tiles arrive z-layer by z-layer, within a layer row by row.
"""

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np

from .._validate import as_triple
from ..geometry import MAX_COORDINATE, axis_starts, boxes_to_geoms, regular_axis
from ..windows import check_window
from ._plan import MAX_GRID_TILES, Plan, _frozen
from ._schedule import _normalised_axis

__all__ = ["VolumePlan", "is_volume_size", "is_volume_grid", "plan_volume_grid", "plan_volume_from_grid",
           "volume_stats"]


@dataclass(frozen=True, eq=False, repr=False)
class VolumePlan:
    """A compiled plan of a 3-D volume: flat arrays, and the 2-D plan each z-layer of tiles reuses.

    Tiles and cells are addressed by their flat grid index ``t = (k * ny + i) * nx + j``.

    Attributes
    ----------
    image_size : tuple of int
        ``(D, H, W)``.
    grid_shape : tuple of int
        ``(nz, ny, nx)``.
    tile_boxes, cell_boxes : ndarray, shape (nz * ny * nx, 6)
        ``(zlo, ylo, xlo, zhi, yhi, xhi)`` of every tile and of its output
        cell (cut where the later tile starts on each axis; empty where a tile
        has no cell of its own). The cells are disjoint and tile the volume.
    load_order : ndarray, shape (n_loads,)
        Flat indices of the tiles in arrival order: z-layer by z-layer, then y, then x.
    write_cells : ndarray, shape (n_writes,)
        Flat indices of the cells in the order they are emitted: every cell of
        layer k before any of layer k + 1.
    window : str or callable
        The separable window.
    plane_plan : Plan
        The 2-D plan (rows walk) of the (H, W) grid shared by every layer.
    weight_z : ndarray of float64
        The layers' z tapers divided by their sum, concatenated.
    z_offsets : ndarray, shape (nz,)
        Offset of each layer's vector in `weight_z`.
    slab_depth : int
        Depth of the slab of partial sums the layers hand on: the deepest
        overlap between a layer and the next one's start (at least 1).
    context : tuple of int
        ``(z, y, x)`` voxels the model reads beyond each tile (see :meth:`read_boxes`).
    selected : ndarray of bool, shape (nz * ny * nx,), or None
        With a `mask`: the cells it meets, the only ones written (see
        :func:`~seamless_fast.plan._volume_mask.volume_selection`);
        `load_order` then holds only the tiles they need. None: every cell.
    """

    image_size: tuple
    grid_shape: tuple
    tile_boxes: np.ndarray
    cell_boxes: np.ndarray
    load_order: np.ndarray
    write_cells: np.ndarray
    window: object
    plane_plan: Plan
    weight_z: np.ndarray
    z_offsets: np.ndarray
    slab_depth: int
    context: tuple = (0, 0, 0)
    selected: np.ndarray = None

    ndim = 3

    @property
    def n_loads(self):
        """Number of tiles the run consumes."""
        return len(self.load_order)

    @property
    def n_writes(self):
        """Number of output cells the run emits."""
        return len(self.write_cells)

    def grid_index(self, flat):
        """The (k, i, j) grid index of a flat tile or cell index."""
        _, ny, nx = self.grid_shape
        k, rest = divmod(int(flat), ny * nx)
        return (k, *divmod(rest, nx))

    def read_boxes(self):
        """The input window each tile's model reads, in load order: int64 ``(n_loads, 6)``.

        The tile's box grown by `context` on every side (past the border the reader pads).

        Examples
        --------
        >>> from seamless_fast import plan_regular_grid
        >>> plan, _ = plan_regular_grid((40, 100, 100), 32, 8, context=(2, 4, 4))
        >>> plan.read_boxes()[0].tolist()
        [-2, -4, -4, 34, 36, 36]
        """
        grow = np.array(self.context, np.int64)
        return self.tile_boxes[self.load_order] + np.concatenate([-grow, grow])

    def __repr__(self):
        return (f"VolumePlan(image_size={self.image_size}, grid_shape={self.grid_shape}, n_loads={self.n_loads}, "
                f"n_writes={self.n_writes}, slab_depth={self.slab_depth}"
                + (f", context={self.context}" if any(self.context) else "") + ")")


def is_volume_size(image_size):
    """Whether `image_size` names a volume: a sequence of three sizes.

    >>> is_volume_size((64, 512, 512)), is_volume_size((512, 512)), is_volume_size(512)
    (True, False, False)
    """
    if isinstance(image_size, (numbers.Number, np.generic, str)):
        return False
    try:
        return len(image_size) == 3
    except TypeError:
        return False


def is_volume_grid(grid):
    """Whether `grid` is an array (or nested list) of numeric 3-D boxes rather than shapely boxes.

    >>> import shapely
    >>> is_volume_grid([[[[0, 0, 0, 8, 8, 8]]]]), is_volume_grid([[shapely.box(0, 0, 8, 8)]])
    (True, False)
    """
    if isinstance(grid, np.ndarray):
        return grid.dtype.kind in "iuf"
    try:
        return np.asarray(grid).dtype.kind in "iuf"
    except (ValueError, TypeError):
        return False


def _refuse_2d_options(options):
    """One line for the first 2-D option given to a volume planner (they make no sense in 3-D)."""
    defaults = {"area": None, "traversal_fnc": None, "max_buffer_bytes": None, "traverse": "auto",
                "output_scale": 1}
    for name, default in defaults.items():
        value = options.get(name, default)
        if not (value is default or (isinstance(value, str) and value == default)
                or (name == "output_scale" and _is_one(value))):
            raise ValueError(f"{name}={value!r} is a 2-D option; a volume plan takes none (leave it out)")
    window = options.get("window", "pyramid")
    if not (isinstance(window, str) or callable(window)):
        raise ValueError(f"window is an array of shape {np.shape(window)}; a volume needs a separable window "
                         "(a name or a callable n -> 1-D taper)")
    return check_window(window)


def _is_one(value):
    try:
        return all(int(v) == 1 for v in np.atleast_1d(value))
    except (TypeError, ValueError):
        return False


def plan_volume_grid(image_size, tile_size, overlap, **options):
    """:func:`~seamless_fast.plan_regular_grid` for a volume: the seed's grid rule on every axis.

    Parameters
    ----------
    image_size : (int, int, int)
        ``(D, H, W)`` in voxels.
    tile_size, overlap : int or (int, int, int)
        Per axis; a tile larger than the volume along an axis is clamped to it.
    **options
        ``window`` (a name or a callable 1-D taper, separable over the three
        axes), ``context`` (int or (z, y, x)) and ``mask`` (a boolean volume at
        any lower resolution, e.g. a body mask: only the cells that meet a
        True voxel's footprint are written, and only the tiles they need are
        loaded; cells equal the whole volume's run bit for bit, the rest of an
        output is left as it is); ``channels`` and ``dtype`` are accepted and
        unused. The 2-D options (``area``,
        ``traversal_fnc``, ``max_buffer_bytes``, ``traverse``,
        ``output_scale``) are refused.

    Returns
    -------
    plan : VolumePlan
    boxes : ndarray of int64, shape (nz, ny, nx, 6)
        The tiles' boxes, as :func:`~seamless_fast.plan_from_grid` takes them.

    Examples
    --------
    >>> from seamless_fast import plan_regular_grid
    >>> plan, boxes = plan_regular_grid((40, 100, 90), (16, 32, 32), (4, 8, 8))
    >>> plan.grid_shape, boxes.shape, plan.slab_depth
    ((3, 4, 4), (3, 4, 4, 6), 4)
    >>> boxes[-1, -1, -1].tolist()
    [24, 68, 58, 40, 100, 90]
    """
    window = _refuse_2d_options(options)
    size = as_triple(image_size, "image_size", minimum=1)
    if max(size) > MAX_COORDINATE:
        raise ValueError(f"image_size={size} is too large: each side must be at most {MAX_COORDINATE}")
    tile = as_triple(tile_size, "tile_size", minimum=1)
    over = as_triple(overlap, "overlap", minimum=0)
    if any(o >= t for o, t in zip(over, tile)):
        raise ValueError(f"overlap={over} must be smaller than tile_size={tile} on every axis")
    context = as_triple(options.get("context", 0), "context", minimum=0)
    counts = [regular_axis(s, t, o)[0] for s, t, o in zip(size, tile, over)]
    if np.prod(counts) > MAX_GRID_TILES:
        raise ValueError(f"image_size={size} with tile_size={tile} and overlap={over} needs a grid of "
                         f"{' x '.join(map(str, counts))} tiles; a plan holds at most {MAX_GRID_TILES}: use larger tiles")
    axes = [axis_starts(s, t, o) for s, t, o in zip(size, tile, over)]
    boxes = np.empty((*counts, 6), np.int64)
    for a, (starts, length) in enumerate(axes):
        shape = [1, 1, 1]
        shape[a] = -1
        boxes[..., a] = starts.reshape(shape)
        boxes[..., a + 3] = (starts + length).reshape(shape)
    from ._grid import plan_regular_grid

    plane, _ = plan_regular_grid(size[1:], tile[1:], over[1:], window=window, traverse="rows")
    return _masked(_compile(boxes, size, window, plane, context), options.get("mask")), boxes


def plan_volume_from_grid(grid, **options):
    """:func:`~seamless_fast.plan_from_grid` for a volume: any rectilinear grid of 3-D boxes.

    Parameters
    ----------
    grid : array-like of int, shape (nz, ny, nx, 6)
        Boxes ``(zlo, ylo, xlo, zhi, yhi, xhi)``: every z-layer shares its z
        extent, every row its y extent, every column its x extent, and no
        bound decreases along its axis.
    **options
        As for :func:`plan_volume_grid` (``margin`` is accepted and unused).

    Returns
    -------
    VolumePlan

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import plan_from_grid
    >>> grid = np.array([[[[0, 0, 0, 10, 20, 20]]], [[[6, 0, 0, 16, 20, 20]]]])
    >>> plan = plan_from_grid(grid)
    >>> plan.image_size, plan.cell_boxes[:, [0, 3]].tolist()
    ((16, 20, 20), [[0, 6], [6, 16]])
    """
    window = _refuse_2d_options(options)
    context = as_triple(options.get("context", 0), "context", minimum=0)
    raw = np.asarray(grid)
    if raw.ndim != 4 or raw.shape[-1] != 6 or 0 in raw.shape:
        raise ValueError(f"grid has shape {raw.shape}; expected (nz, ny, nx, 6) boxes (zlo, ylo, xlo, zhi, yhi, xhi)")
    boxes = raw.astype(np.int64)
    if (boxes != raw).any() or (np.abs(boxes) > MAX_COORDINATE).any():
        raise ValueError("grid has a bound that is not an integer of at most 2**53; expected integer boxes")
    bad = (boxes[..., 3:] <= boxes[..., :3]).any(axis=-1) | (boxes[..., :3] < 0).any(axis=-1)
    if bad.any():
        index = tuple(np.argwhere(bad)[0].tolist())
        raise ValueError(f"grid{list(index)} is {boxes[index].tolist()}; expected a non-empty box with "
                         "non-negative bounds (zlo, ylo, xlo, zhi, yhi, xhi)")
    for a, name in enumerate("zyx"):
        for k in (a, a + 3):
            first = boxes[..., k]
            for other in {0, 1, 2} - {a}:
                first = np.take(first, [0], axis=other)
            if not (boxes[..., k] == first).all():
                raise ValueError(f"grid is not rectilinear: {name} bounds differ within a {name}-layer of tiles; "
                                 "a volume plan needs every layer, row and column of tiles to share its extent")
            if (np.diff(boxes[..., k], axis=a) < 0).any():
                raise ValueError(f"grid is not ordered: {name} bounds must not decrease along the {name} axis")
    if raw[..., 0].size > MAX_GRID_TILES:
        raise ValueError(f"grid has {raw[..., 0].size} tiles; a plan holds at most {MAX_GRID_TILES}")
    size = tuple(int(boxes[..., a + 3].max()) for a in range(3))
    from ._grid import plan_from_grid

    plane = plan_from_grid(boxes_to_geoms(boxes[0][..., [1, 2, 4, 5]]), window=window, traverse="rows")
    return _masked(_compile(boxes, size, window, plane, context), options.get("mask"))


def _masked(plan, mask):
    """`plan` restricted to the cells `mask` meets and the tiles they need (the plan itself without a mask)."""
    if mask is None:
        return plan
    from ._mask import check_mask
    from ._volume_mask import volume_selection

    mask = check_mask(mask, plan.image_size)
    selected, needed = volume_selection(mask, plan.image_size, plan.tile_boxes, plan.cell_boxes, plan.grid_shape)
    selected, needed = selected.reshape(-1), needed.reshape(-1)
    return dataclasses.replace(plan, load_order=_frozen(plan.load_order[needed[plan.load_order]]),
                               write_cells=_frozen(plan.write_cells[selected[plan.write_cells]]),
                               selected=_frozen(selected))


def _compile(boxes, size, window, plane, context):
    """The VolumePlan of a rectilinear (nz, ny, nx, 6) grid whose (y, x) grid `plane` plans."""
    nz, ny, nx = boxes.shape[:3]
    per_layer = ny * nx
    zlo, zhi = boxes[:, 0, 0, 0], boxes[:, 0, 0, 3]
    cuts = np.append(zlo, zhi[-1])  # cut where the next layer starts, clipped to the layer
    zc = np.stack([np.maximum(cuts[:-1], zlo), np.minimum(cuts[1:], zhi)], axis=1)
    cells = np.empty((nz, per_layer, 6), np.int64)
    cells[..., [0, 3]] = zc[:, None, :]
    cells[..., [1, 2, 4, 5]] = plane.cell_boxes[None]
    layers = np.arange(nz, dtype=np.int64)[:, None] * per_layer
    load_order = (layers + plane.load_order[None]).reshape(-1)
    emitting = zc[:, 1] > zc[:, 0]
    write_cells = (layers[emitting] + plane.write_cells[None]).reshape(-1)
    tapers = _normalised_axis(zlo, zhi, window)
    z_offsets = np.cumsum([0] + [len(t) for t in tapers])[:-1].astype(np.int64)
    tails = zhi[:-1] - zlo[1:]
    slab_depth = int(max(1, tails.max(initial=0)))
    return VolumePlan(
        image_size=tuple(int(s) for s in size), grid_shape=(nz, ny, nx),
        tile_boxes=_frozen(boxes.reshape(-1, 6).copy()), cell_boxes=_frozen(cells.reshape(-1, 6)),
        load_order=_frozen(load_order), write_cells=_frozen(write_cells), window=window, plane_plan=plane,
        weight_z=_frozen(np.concatenate(tapers)), z_offsets=_frozen(z_offsets), slab_depth=slab_depth,
        context=tuple(context))


def volume_stats(plan, channels, itemsize):
    """``(max_tiles_held, bytes)`` of a volume run: the slab, one layer's 2-D band and one tile's copy."""
    from ._analyse import analyse_plan

    _, h, w = plan.image_size
    depths = plan.tile_boxes[:, 3] - plan.tile_boxes[:, 0]
    d = int(depths.max())
    tiles = plan.tile_boxes[:, 3:] - plan.tile_boxes[:, :3]
    tile_voxels = int(tiles.prod(axis=1).max())
    slab = plan.slab_depth * h * w * channels * itemsize
    band = analyse_plan(plan.plane_plan, channels=d * channels, dtype=np.float64 if itemsize == 8 else np.float32)
    copy = tile_voxels * channels * itemsize
    total = slab + band.buffer_bytes + copy
    voxels = plan.slab_depth * h * w + band.buffer_bytes // (channels * itemsize) + tile_voxels
    return -(-voxels // tile_voxels), int(total)
