"""A mask over a volume: the cells it meets, and the tiles those cells need."""

import numpy as np

__all__ = ["volume_selection"]


def _covers(tile_lo, tile_hi, cell_lo, cell_hi):
    """(tiles, cells) booleans of one axis: tile t reaches into cell c (a positive overlap)."""
    return (tile_lo[:, None] < cell_hi[None, :]) & (cell_lo[None, :] < tile_hi[:, None]) & \
        (cell_hi > cell_lo)[None, :]


def volume_selection(mask, image_size, tile_boxes, cell_boxes, grid_shape):
    """Which cells of a rectilinear volume grid a mask meets, and which tiles those cells need.

    Parameters
    ----------
    mask : array-like of bool, 3 axes
        Over the whole volume at any resolution up to its own (see
        :func:`~seamless_fast.plan._mask.cells_meeting_mask`).
    image_size : (int, int, int)
    tile_boxes, cell_boxes : ndarray (nz * ny * nx, 6)
        The grid's tiles and cells, flat index ``(k * ny + i) * nx + j``.
    grid_shape : (int, int, int)

    Returns
    -------
    selected, needed : ndarray of bool, shape `grid_shape`
        The cells that meet a True voxel of the mask, and the tiles that reach
        into a selected cell: every tile a selected cell's value sums over.

    Examples
    --------
    >>> from seamless_fast import plan_regular_grid
    >>> plan, _ = plan_regular_grid((40, 40, 40), 16, 4)
    >>> mask = np.zeros((4, 4, 4), bool); mask[0, 0, 0] = True  # the corner 10 x 10 x 10
    >>> selected, needed = volume_selection(mask, plan.image_size, plan.tile_boxes, plan.cell_boxes,
    ...                                     plan.grid_shape)
    >>> int(selected.sum()), int(needed.sum())
    (1, 1)
    """
    from ._mask import cells_meeting_mask

    nz, ny, nx = grid_shape
    tiles = tile_boxes.reshape(nz, ny, nx, 6)
    cells = cell_boxes.reshape(nz, ny, nx, 6)
    # per axis, the tile and cell extents of the grid's rows along it (a rectilinear grid shares them)
    axis_tiles = (tiles[:, 0, 0][:, [0, 3]], tiles[0, :, 0][:, [1, 4]], tiles[0, 0, :][:, [2, 5]])
    axis_cells = (cells[:, 0, 0][:, [0, 3]], cells[0, :, 0][:, [1, 4]], cells[0, 0, :][:, [2, 5]])
    edges, where = [], []
    for (lo, hi), size in zip(((c[:, 0], c[:, 1]) for c in axis_cells), image_size):
        # the cells of an axis are disjoint and sorted; empty ones take a repeated boundary
        bounds = np.unique(np.concatenate([lo, hi, [0, size]]))
        edges.append(bounds)
        where.append((np.searchsorted(bounds, lo), np.searchsorted(bounds, hi)))
    meets = cells_meeting_mask(mask, tuple(image_size), edges)
    # a cell of the grid meets the mask when one of the edge cells it spans does (an empty one never)
    hits = meets.astype(np.int64).cumsum(0).cumsum(1).cumsum(2)
    hits = np.pad(hits, ((1, 0), (1, 0), (1, 0)))
    (z0, z1), (y0, y1), (x0, x1) = where
    z0, z1 = z0[:, None, None], z1[:, None, None]
    y0, y1 = y0[None, :, None], y1[None, :, None]
    x0, x1 = x0[None, None, :], x1[None, None, :]
    count = (hits[z1, y1, x1] - hits[z0, y1, x1] - hits[z1, y0, x1] - hits[z1, y1, x0]
             + hits[z0, y0, x1] + hits[z0, y1, x0] + hits[z1, y0, x0] - hits[z0, y0, x0])
    selected = count > 0
    cover = [_covers(t[:, 0], t[:, 1], c[:, 0], c[:, 1]).astype(np.int64)
             for t, c in zip(axis_tiles, axis_cells)]
    needed = np.einsum("ka,ib,jc,abc->kij", *cover, selected.astype(np.int64), optimize=True) > 0
    return selected, needed
