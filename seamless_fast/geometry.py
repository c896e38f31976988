"""Integer box geometry: the seed's grid rule, output cells, and shapely conversion.

A box is ``(ylo, xlo, yhi, xhi)`` in integer pixels with exclusive upper
bounds. Shapely geometries carry (y, x) in shapely's (x, y) slots, as in the
seed: a box is ``shapely.box(ylo, xlo, yhi, xhi)``.
"""

import math

import numpy as np
import shapely

MAX_COORDINATE = 2**53  # where float64 stops holding every integer

__all__ = ["regular_axis", "axis_starts", "axis_window", "grid_boxes", "boxes_to_geoms", "geoms_to_boxes",
           "grid_cells", "is_rectilinear", "shape_to_slices",
           "box_to_geom", "register_boxes", "unregister_boxes", "boxes_overlap", "cells_meeting"]


def regular_axis(size, tile, overlap):
    """The seed's grid rule along one axis, without listing the tiles: ``(n, stride, length, flush)``.

    Regular tiles start at ``0, s, 2s, ...`` with stride ``s = tile - overlap``,
    as many as fit (``(size - overlap) // s``); if the last one ends before
    `size`, one more tile (the flush tile) ends exactly at `size`. A tile
    longer than the image is clamped to the image (one tile). `n` counts all
    tiles, `length` is the (clamped) tile length, `flush` whether the last
    tile is the flush tile.

    Examples
    --------
    >>> regular_axis(1000, 256, 64)
    (5, 192, 256, True)
    """
    if tile >= size:
        return 1, size, size, False
    stride = tile - overlap
    count = (size - overlap) // stride
    flush = (count - 1) * stride + tile < size
    return count + flush, stride, tile, flush


def axis_starts(size, tile, overlap, k0=0, k1=None):
    """Starts of tiles ``k0 .. k1 - 1`` along one axis by :func:`regular_axis`, and the tile length."""
    n, stride, length, flush = regular_axis(size, tile, overlap)
    k1 = n if k1 is None else k1
    starts = stride * np.arange(k0, k1, dtype=np.int64)
    if flush and k0 < k1 == n:
        starts[-1] = size - length
    return starts, length


def _starts_at_or_before(v, size, tile, overlap):
    """How many tiles of the axis start at or before integer position `v`."""
    n, stride, length, flush = regular_axis(size, tile, overlap)
    if v < 0:
        return 0
    regular = min(n - flush, v // stride + 1)
    return regular + int(flush and size - length <= v)


def axis_window(size, tile, overlap, lo, hi):
    """Tiles ``[k0, k1)`` of the whole axis that an interval ``(lo, hi)`` of it needs.

    Output cells along the axis are ``[start_k, start_{k+1})`` (the last ends
    at `size`): the part of tile k that no later tile reaches. The window
    holds every tile that overlaps a cell meeting the open interval (lo, hi),
    plus the tile after the last such cell when there is one, so that
    :func:`grid_cells` of the window gives every such cell exactly as on the
    whole axis. `lo` and `hi` are floats within ``[0, size]``.
    """
    n, stride, length, flush = regular_axis(size, tile, overlap)
    ilo, ihi = max(0, math.floor(lo)), min(size, math.ceil(hi))
    first_cell = max(_starts_at_or_before(ilo, size, tile, overlap) - 1, 0)
    last_cell = max(_starts_at_or_before(ihi - 1, size, tile, overlap) - 1, first_cell)
    first_start = int(axis_starts(size, tile, overlap, first_cell, first_cell + 1)[0][0])
    k0 = _starts_at_or_before(first_start - length, size, tile, overlap)  # the first tile ending after it
    return k0, min(last_cell + 2, n)


def grid_boxes(ystarts, ylen, xstarts, xlen):
    """(rows, cols, 4) integer boxes of the rectilinear grid with the given starts."""
    rows, cols = len(ystarts), len(xstarts)
    boxes = np.empty((rows, cols, 4), dtype=np.int64)
    boxes[:, :, 0] = ystarts[:, None]
    boxes[:, :, 1] = xstarts[None, :]
    boxes[:, :, 2] = ystarts[:, None] + ylen
    boxes[:, :, 3] = xstarts[None, :] + xlen
    return boxes


def boxes_to_geoms(boxes):
    """Shapely boxes (object array of shape ``boxes.shape[:-1]``) from integer boxes.

    One vectorised ``shapely.box`` call: the same rings as
    ``shapely.box(ylo, xlo, yhi, xhi)`` gives for each box, built without a
    Python call per box.
    """
    b = np.asarray(boxes, dtype=np.float64)
    flat = np.ascontiguousarray(b.reshape(-1, 4).T)
    geoms = shapely.box(flat[0], flat[1], flat[2], flat[3])
    return geoms.reshape(b.shape[:-1])[()]  # a single box gives a geometry, not a 0-d array


def box_to_geom(box):
    """One integer box as a shapely box in the (y, x) convention."""
    return shapely.box(*box)


# Geometries whose integer box is known, so `shape_to_slices` need not ask shapely for their bounds (2 to 5
# microseconds a call): id -> (geometry, box). The entry holds the geometry, so its id is not reused while
# it is registered; a lookup checks the object itself.
_KNOWN_BOXES = {}


def register_boxes(geoms, boxes):
    """Let :func:`shape_to_slices` take the slices of each of `geoms` from its integer box in `boxes`."""
    _KNOWN_BOXES.update(zip(map(id, geoms), zip(geoms, boxes)))


def unregister_boxes(geoms):
    """Forget geometries registered with :func:`register_boxes` (they stay valid geometries)."""
    pop = _KNOWN_BOXES.pop
    for g in geoms:
        pop(id(g), None)


def geoms_to_boxes(grid, name="grid"):
    """Integer boxes of a grid of shapely rectangles; a clear error for anything else."""
    grid = np.asarray(grid, dtype=object)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (rows, cols) array of shapely boxes; got shape {grid.shape}")
    is_geom = np.vectorize(lambda g: isinstance(g, shapely.Geometry), otypes=[bool])(grid)
    if not is_geom.all():
        i, j = np.argwhere(~is_geom)[0]
        raise ValueError(f"{name}[{i}, {j}] is {grid[i, j]!r}; expected a shapely box")
    bounds = shapely.bounds(grid)
    if np.isnan(bounds).any():
        i, j = np.argwhere(np.isnan(bounds).any(axis=-1))[0]
        raise ValueError(f"{name}[{i}, {j}] is an empty geometry; expected a box")
    far = ~(np.abs(bounds) <= MAX_COORDINATE).all(axis=-1)  # inf too, before the cast below
    if far.any():
        i, j = np.argwhere(far)[0]
        raise ValueError(f"{name}[{i}, {j}] has bounds {tuple(bounds[i, j].tolist())}; every coordinate must "
                         f"be finite and at most {MAX_COORDINATE} (2**53) in size")
    boxes = np.rint(bounds).astype(np.int64)
    box_area = (bounds[..., 2] - bounds[..., 0]) * (bounds[..., 3] - bounds[..., 1])
    # Integer-cornered polygons have areas in multiples of 1/2: a rectangle matches its bounds to within that.
    bad = (np.abs(bounds - boxes).max(axis=-1) > 1e-9) | ~(np.abs(shapely.area(grid) - box_area) < 0.5)
    bad |= (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1]) | (boxes[..., :2] < 0).any(axis=-1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name}[{i}, {j}] has bounds {tuple(bounds[i, j])}; expected an axis-aligned, "
                         "non-empty rectangle with non-negative integer bounds (ylo, xlo, yhi, xhi)")
    _check_ordered(boxes, name)
    return boxes


def _check_ordered(boxes, name):
    for axis, (lo, hi), what in ((0, (0, 2), "down each column"), (1, (1, 3), "along each row")):
        for k in (lo, hi):
            steps = np.diff(boxes[..., k], axis=axis)
            if (steps < 0).any():
                i, j = np.argwhere(steps < 0)[0]
                coord = "y" if axis == 0 else "x"
                raise ValueError(f"{name} is not ordered: {coord} bounds must not decrease {what} "
                                 f"(first at index ({i}, {j}))")


def is_rectilinear(boxes):
    """Whether every grid row shares its y-extent and every column its x-extent."""
    return bool((boxes[:, :, [0, 2]] == boxes[:, :1, [0, 2]]).all()
                and (boxes[:, :, [1, 3]] == boxes[:1, :, [1, 3]]).all())


def _cuts(lo, hi, axis):
    """Cut points between consecutive tiles along `axis`: where the later tile starts."""
    first = np.take(lo, [0], axis=axis)
    last = np.take(hi, [-1], axis=axis)
    starts = np.take(lo, np.arange(1, lo.shape[axis]), axis=axis)
    return np.concatenate([first, starts, last], axis=axis)


def grid_cells(boxes):
    """The output cell of every grid tile: disjoint boxes, each inside its own tile.

    Consecutive grid rows are cut where the later row starts (its lowest
    top), then each row is cut between consecutive tiles where the later
    tile starts; each cell is finally clipped to its own tile. So the cell of
    tile (i, j) is the part of the tile that no later tile in row-major
    order reaches: it is final the moment tile (i, j) is blended, and the
    blend buffer never holds more than one tile height of rows. For a
    rectilinear grid the cells tile the union of the tiles exactly; for an
    irregular grid they are still disjoint and each lies inside its tile.
    A cell is empty (``yhi <= ylo`` or ``xhi <= xlo``) when the next tile
    starts where this one does.
    """
    ycut = _cuts(boxes[:, :, 0].min(axis=1), boxes[:, :, 2].max(axis=1), axis=0)
    xcut = _cuts(boxes[:, :, 1], boxes[:, :, 3], axis=1)
    cells = np.empty_like(boxes)
    cells[:, :, 0] = np.maximum(ycut[:-1, None], boxes[:, :, 0])
    cells[:, :, 2] = np.minimum(ycut[1:, None], boxes[:, :, 2])
    cells[:, :, 1] = np.maximum(xcut[:, :-1], boxes[:, :, 1])
    cells[:, :, 3] = np.minimum(xcut[:, 1:], boxes[:, :, 3])
    return cells


def boxes_overlap(a, b):
    """Elementwise: whether boxes `a` and `b` share at least one pixel."""
    return ((np.maximum(a[..., 0], b[..., 0]) < np.minimum(a[..., 2], b[..., 2]))
            & (np.maximum(a[..., 1], b[..., 1]) < np.minimum(a[..., 3], b[..., 3])))


def shape_to_slices(shp):
    """``(slice(ylo, yhi), slice(xlo, xhi))`` from a geometry's rounded bounds (the seed's function).

    Parameters
    ----------
    shp : shapely.Geometry
        A non-empty geometry with finite coordinates, in (y, x) order.

    Examples
    --------
    >>> import shapely
    >>> shape_to_slices(shapely.box(0, 64, 256, 320))
    (slice(0, 256, None), slice(64, 320, None))
    """
    known = _KNOWN_BOXES.get(id(shp))
    if known is not None and known[0] is shp:
        ylo, xlo, yhi, xhi = known[1]
        return slice(ylo, yhi), slice(xlo, xhi)
    if not isinstance(shp, shapely.Geometry):
        raise ValueError(f"shp={shp!r} is not a shapely geometry")
    bounds = shapely.bounds(shp)
    if not np.isfinite(bounds).all():
        raise ValueError(f"shp={shp} has no finite bounds ({tuple(bounds.tolist())}); expected a non-empty "
                         "geometry with finite coordinates")
    ylo, xlo, yhi, xhi = bounds.tolist()
    return slice(round(ylo), round(yhi)), slice(round(xlo), round(xhi))


_BLOCK = 8  # cells per side of the blocks `cells_meeting` tests first


def cells_meeting(area, cells, index, cols):
    """Which cells the area reaches into: the interiors meet (so not where they only touch).

    `cells` are boxes, `index` their flat indices on a grid of `cols`
    columns. Each is tested as ``intersects and not touches``, except that
    blocks of cells the area holds in its interior, or misses, are settled
    at once from their bounding box. For a polygonal area, a cell that
    meets it but not its boundary lies inside it, so ``touches`` (the slow
    predicate) is only asked of cells on the boundary.
    """
    shapely.prepare(area)
    i, j = np.divmod(index, cols)
    block = (i // _BLOCK) * (-(-cols // _BLOCK)) + j // _BLOCK
    ids, block = np.unique(block, return_inverse=True)
    bbox = np.empty((len(ids), 4), dtype=np.int64)
    bbox[:, :2], bbox[:, 2:] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for k in (0, 1):
        np.minimum.at(bbox[:, k], block, cells[:, k])
        np.maximum.at(bbox[:, k + 2], block, cells[:, k + 2])
    block_geoms = np.atleast_1d(boxes_to_geoms(bbox))
    held = shapely.contains_properly(area, block_geoms)[block]
    open_ = shapely.intersects(area, block_geoms)[block] & ~held
    hit = held.copy()
    if open_.any():
        hit[open_] = _cells_meeting_each(area, cells[open_])
    return hit


def _cells_meeting_each(area, cells):
    ylo, xlo, yhi, xhi = area.bounds
    hit = (cells[:, 0] < yhi) & (cells[:, 2] > ylo) & (cells[:, 1] < xhi) & (cells[:, 3] > xlo)
    if not hit.any():
        return hit
    geoms = np.atleast_1d(boxes_to_geoms(cells[hit]))
    inside = shapely.intersects(area, geoms)
    edge = inside.copy()
    if shapely.get_type_id(area) in (3, 6):  # Polygon, MultiPolygon
        boundary = shapely.boundary(area)
        shapely.prepare(boundary)
        edge[inside] = shapely.intersects(boundary, geoms[inside])
    inside[edge] = ~shapely.touches(area, geoms[edge])
    hit[hit] = inside
    return hit
