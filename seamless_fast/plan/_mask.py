"""Masks: the output cells a boolean mask at a lower (or equal) resolution selects, in any number of dimensions.

A mask of size m along an axis of image size S puts its pixel i over the
image coordinates ``[i * S / m, (i + 1) * S / m)``. A cell (a box of the
image) is selected when it meets the footprint of a True pixel with
positive overlap: touching along an edge is not enough. Everything is
exact integer arithmetic: along an axis, cell ``[a, b)`` meets mask pixels
``floor(a * m / S)`` to ``ceil(b * m / S) - 1``.

The work is one pass over the mask per axis (the OR of each stretch between
cell boundaries), then prefix sums over the much smaller array of those
stretches: a 1000 x 1000 mask over a grid of 208 x 208 cells costs about
4 ms, a 4000 x 4000 one about 10 ms (``profiling/mask_planning.py``).
"""

import itertools

import numpy as np

__all__ = ["boxes_meeting_mask", "cells_meeting_mask", "check_mask", "mask_reach", "scaled_to_input"]


def check_mask(mask, image_size):
    """`mask` as a boolean array, checked against `image_size` (one line naming `mask` when it is refused).

    Accepted: booleans, or integers that are all 0 or 1; as many axes as the
    image; every axis from 1 to the image's size.

    Examples
    --------
    >>> check_mask([[0, 1], [1, 1]], (100, 80)).dtype
    dtype('bool')
    >>> check_mask(np.ones((3, 200), bool), (100, 80))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: mask has shape (3, 200) and dtype bool; expected a boolean (or 0/1 integer) array of 2 axes, ...
    """
    size = tuple(int(n) for n in image_size)
    array = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
    shape, dtype = tuple(array.shape), array.dtype
    good_shape = len(shape) == len(size) and all(1 <= m <= n for m, n in zip(shape, size))
    good_dtype = dtype.kind == "b" or (dtype.kind in "iu" and good_shape and bool(((array == 0) | (array == 1)).all()))
    if not (good_shape and good_dtype):
        raise ValueError(f"mask has shape {shape} and dtype {dtype}; expected a boolean (or 0/1 integer) array of "
                         f"{len(size)} axes, each from 1 to the image's {size}")
    return array if dtype.kind == "b" else array.astype(bool)


def _pixel_ranges(edges, size, m):
    """Per cell ``[a, b)`` of an axis, the mask pixels ``[lo, hi)`` it meets (empty for an empty cell)."""
    bounds = edges.tolist()  # Python integers: a * m is exact at any size
    lo = np.array([a * m // size for a in bounds[:-1]], np.int64)
    hi = np.array([-(-b * m // size) for b in bounds[1:]], np.int64)
    empty = edges[1:] <= edges[:-1]
    lo[empty], hi[empty] = 0, 0
    return lo, hi


def _any_over(array, lo, hi, axis):
    """Along `axis`, whether `array` (bool) has a True in ``[lo[k], hi[k])`` for each k; ranges may overlap."""
    n = array.shape[axis]
    cuts = np.unique(np.concatenate([lo, hi, [0, n]]))
    stretch = _stretches(array, cuts, axis)
    counts = np.cumsum(stretch, axis=axis, dtype=np.int64)
    counts = np.concatenate([np.zeros_like(np.take(counts, [0], axis=axis)), counts], axis=axis)
    at_lo, at_hi = np.searchsorted(cuts, lo), np.searchsorted(cuts, hi)
    return (np.take(counts, at_hi, axis=axis) - np.take(counts, at_lo, axis=axis)) > 0


def _stretches(array, cuts, axis):
    """One pass over `array`: the OR along `axis` of each stretch ``[cuts[k], cuts[k + 1])``.

    ``np.logical_or.reduceat`` is quick along the last axis only (16 times slower than this loop along the
    first of a 4000 x 4000 mask), so the other axes take one ``any`` per stretch, over whole rows."""
    if axis == array.ndim - 1:
        return np.logical_or.reduceat(array, cuts[:-1], axis=axis)
    rows = np.moveaxis(array, axis, 0)
    out = np.empty((len(cuts) - 1,) + rows.shape[1:], bool)
    for k in range(len(cuts) - 1):
        np.any(rows[cuts[k]:cuts[k + 1]], axis=0, out=out[k])
    return np.moveaxis(out, 0, axis)


def _check_edges(edges, size):
    if len(edges) != len(size):
        raise ValueError(f"edges has {len(edges)} axes; expected one sequence of cell boundaries per image axis "
                         f"({len(size)})")
    out = []
    for axis, (e, n) in enumerate(zip(edges, size)):
        e = [int(x) for x in np.asarray(e).reshape(-1).tolist()]
        if len(e) < 2 or e[0] < 0 or e[-1] > n or any(x > y for x, y in itertools.pairwise(e)):
            raise ValueError(f"edges[{axis}] = {e[:8]}{'...' if len(e) > 8 else ''} are not the sorted cell "
                             f"boundaries of an axis of size {n}; expected at least 2 non-decreasing integers "
                             f"from 0 to {n}")
        out.append(np.array(e, np.int64))
    return out


def cells_meeting_mask(mask, image_size, edges):
    """Which cells of a rectilinear grid meet a True pixel of a lower-resolution mask.

    Parameters
    ----------
    mask : array-like of bool (or 0/1 integers), N axes
        Over the whole image, at any resolution up to the image's: along an
        axis of image size S and mask size m, mask pixel i covers image
        coordinates ``[i * S / m, (i + 1) * S / m)`` (real numbers; the
        arithmetic is exact).
    image_size : tuple of N int
        The image's size.
    edges : sequence of N 1-D integer sequences
        Per axis, the sorted boundaries of the cells: cell k spans
        ``[edges[a][k], edges[a][k + 1])``, within ``[0, S]``. Repeated
        boundaries make empty cells, which meet nothing.

    Returns
    -------
    ndarray of bool, shape ``(len(edges[0]) - 1, ..., len(edges[N - 1]) - 1)``
        True where the cell's box and the footprint of some True mask pixel
        overlap with positive volume (an open intersection: boxes that only
        touch do not meet).

    Examples
    --------
    >>> mask = np.array([[0, 1], [0, 0]], bool)  # True over rows [0, 50), columns [40, 80)
    >>> cells_meeting_mask(mask, (100, 80), ([0, 30, 50, 100], [0, 40, 60, 80])).astype(int)
    array([[0, 1, 1],
           [0, 1, 1],
           [0, 0, 0]])
    >>> cells_meeting_mask(np.ones((3,), bool), (10,), ([0, 0, 10],)).tolist()  # an empty cell meets nothing
    [False, True]
    """
    size = tuple(int(n) for n in image_size)
    mask = check_mask(mask, size)
    edges = _check_edges(edges, size)
    hit = mask
    for axis, (e, n) in enumerate(zip(edges, size)):
        lo, hi = _pixel_ranges(e, n, mask.shape[axis])
        hit = _any_over(hit, lo, hi, axis)
    return hit


def boxes_meeting_mask(mask, image_size, boxes):
    """Which boxes meet a True pixel of a lower-resolution mask (any boxes, as :func:`cells_meeting_mask` decides).

    Parameters
    ----------
    mask, image_size
        As for :func:`cells_meeting_mask`.
    boxes : array-like of int, shape (n, 2 N)
        Rows ``(lo_0, ..., lo_{N-1}, hi_0, ..., hi_{N-1})``, exclusive upper
        bounds, inside the image; a box with ``hi <= lo`` on some axis is
        empty and meets nothing.

    Returns
    -------
    ndarray of bool, shape (n,)

    Notes
    -----
    The boxes' bounds cut the image into a rectilinear grid of small cells;
    :func:`cells_meeting_mask` settles those, and each box takes the prefix
    sums of the cells it covers, so boxes may overlap and need not form a grid.

    Examples
    --------
    >>> mask = np.array([[0, 1], [0, 0]], bool)
    >>> boxes_meeting_mask(mask, (100, 80), [[0, 0, 50, 40], [40, 30, 60, 50], [50, 40, 100, 80]]).tolist()
    [False, True, False]
    """
    size = tuple(int(n) for n in image_size)
    ndim = len(size)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 2 * ndim)
    lo, hi = boxes[:, :ndim], boxes[:, ndim:]
    if len(boxes) and ((lo < 0).any() or (hi > np.array(size)).any()):
        raise ValueError(f"boxes reach outside the image {size}: every box must lie within it")
    nonempty = (hi > lo).all(axis=1)
    if not nonempty.any():
        check_mask(mask, size)
        return nonempty
    edges = [np.unique(np.concatenate([lo[nonempty, a], hi[nonempty, a]])) for a in range(ndim)]
    hit = cells_meeting_mask(mask, size, edges).astype(np.int64)
    for axis in range(ndim):  # prefix sums with a leading zero on every axis
        hit = np.cumsum(hit, axis=axis)
        hit = np.pad(hit, [(1, 0) if a == axis else (0, 0) for a in range(ndim)])
    at_lo = [np.searchsorted(edges[a], lo[nonempty, a]) for a in range(ndim)]
    at_hi = [np.searchsorted(edges[a], hi[nonempty, a]) for a in range(ndim)]
    total = np.zeros(int(nonempty.sum()), np.int64)
    for corner in itertools.product((0, 1), repeat=ndim):  # inclusion and exclusion over the 2**N corners
        index = tuple(at_hi[a] if c else at_lo[a] for a, c in enumerate(corner))
        total += hit[index] if (ndim - sum(corner)) % 2 == 0 else -hit[index]
    out = np.zeros(len(boxes), bool)
    out[nonempty] = total > 0
    return out


def mask_reach(hit, edges):
    """The box ``(lo_0, ..., hi_{N-1})`` of the selected cells `hit` (from :func:`cells_meeting_mask`) of the grid
    with boundaries `edges`; a ValueError naming the mask when none is selected.

    Examples
    --------
    >>> mask_reach(np.array([[False, True, True], [False, False, False]]), ([0, 30, 50], [0, 40, 60, 80]))
    (0, 40, 30, 80)
    """
    if not hit.any():
        raise ValueError("mask selects no output cell: it is False everywhere, or True only where no cell is")
    lo, hi = [], []
    for axis, e in enumerate(edges):
        along = np.flatnonzero(hit.any(axis=tuple(a for a in range(hit.ndim) if a != axis)))
        lo.append(int(e[along[0]]))
        hi.append(int(e[along[-1] + 1]))
    return tuple(lo + hi)


def scaled_to_input(boxes, image_size, scale):
    """Boxes ``(..., 2 N)`` in output pixels as input pixels: times `scale`, clipped to the input's `image_size`
    (the last output pixel of an axis may reach past it)."""
    factor = np.tile(np.asarray(scale, np.int64), 2)
    limit = np.tile(np.asarray(image_size, np.int64), 2)
    return np.minimum(np.asarray(boxes, np.int64) * factor, limit)
