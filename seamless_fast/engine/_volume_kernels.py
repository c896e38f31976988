"""Kernels of the volume blend: one z-layer's 2-D cell combined with the slab of earlier layers.

A 2-D cell of layer k, ``cell`` (ch, cw, d, C), holds the layer's sums over y
and x (already normalised on those axes) for its whole depth d, from image
z ``z0``. With ``wz`` the layer's normalised z taper, the layer adds
``wz[z - z0] * cell[.., z - z0, ..]`` at every z it covers. Its own z-cells
``[c0, c1)`` are then final (no later layer starts before ``c1``): they are
written out, plus what earlier layers left in the slab for z < ``held``.
The tail ``[t0, t1)``, which later layers still reach, goes into the slab:
added where earlier layers left sums (z < ``held``), set elsewhere.

The slab is a ring (H, W, R, C) over z (index z % R), so a pixel's depth is
contiguous, as in the cell. A pixel's final slots are read before its tail's
are written, so a slot freed by the final part can take a tail value (R is
at least the deepest tail). A row of the cell touches only its own row of
the slab, so each kernel does its final part and then its tail row by row,
and the ``_parallel`` variants (same arguments and `chunks`) hand each of
numba's threads a block of the cell's rows: same arithmetic per voxel, same
result bit for bit. `seamless_fast.engine._volume` picks serial or parallel
call by call, as the 2-D blend does (`seamless_fast.engine._adaptive`).
"""

import numpy as np
from numba import prange

from ._jit import njit
from ._kernels import _takes

__all__ = ["combine_values", "combine_labels", "to_layer_planes", "to_layer_planes_first", "PARALLEL"]


@njit(inline="always")
def _tail(cell, wz, slab, yy, xx, y, x, z0, t0, t1, held):
    ring, channels = slab.shape[2], slab.shape[3]
    for z in range(t0, t1):
        i, s = z - z0, z % ring
        w = wz[i]
        if z < held:
            for c in range(channels):
                slab[y, x, s, c] += w * cell[yy, xx, i, c]
        else:
            for c in range(channels):
                slab[y, x, s, c] = w * cell[yy, xx, i, c]


@njit(inline="always")
def _tail_row(cell, wz, slab, yy, y0, x0, z0, t0, t1, held):
    for xx in range(cell.shape[1]):
        _tail(cell, wz, slab, yy, xx, y0 + yy, x0 + xx, z0, t0, t1, held)


@njit(inline="always")
def _rows(n, c, chunks):
    """Rows [lo, hi) of block c of `chunks` even blocks of n rows."""
    c = np.int64(c)  # prange's index is unsigned
    return n * c // chunks, n * (c + 1) // chunks


@njit(inline="always")
def _values_rows(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, channel_first, lo, hi):
    """Rows [lo, hi) of the cell: for each, its final z-cells into `out`, then its tail into the slab.
    A row yy of the cell stays in the cache while every z of it is written, each an output row in order
    (1.4 x faster than z outermost for a 96 x 96 x 96 x 16 cell, channel last); channel first, C output
    rows are filled side by side (2.2 x faster than channel by channel)."""
    cw, channels, ring = cell.shape[1], cell.shape[3], slab.shape[2]
    for yy in range(lo, hi):
        y = y0 + yy
        for z in range(c0, c1):
            i, s, o = z - z0, z % ring, oz + z - c0
            w = wz[i]
            if channel_first:
                if z < held:
                    for xx in range(cw):
                        for c in range(channels):
                            out[c, o, oy + yy, ox + xx] = w * cell[yy, xx, i, c] + slab[y, x0 + xx, s, c]
                else:
                    for xx in range(cw):
                        for c in range(channels):
                            out[c, o, oy + yy, ox + xx] = w * cell[yy, xx, i, c]
            elif z < held:
                for xx in range(cw):
                    for c in range(channels):
                        out[o, oy + yy, ox + xx, c] = w * cell[yy, xx, i, c] + slab[y, x0 + xx, s, c]
            else:
                for xx in range(cw):
                    for c in range(channels):
                        out[o, oy + yy, ox + xx, c] = w * cell[yy, xx, i, c]
        _tail_row(cell, wz, slab, yy, y0, x0, z0, t0, t1, held)


@njit
def combine_values(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, channel_first):
    """Values of the final z-cells into `out` (D', H', W', C), or (C, D', H', W') with `channel_first`,
    at ``out[oz + z - c0, oy + yy, ox + xx]``; then the tail into the slab."""
    _values_rows(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, channel_first, 0,
                 cell.shape[0])


@njit(parallel=True)
def combine_values_parallel(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, channel_first,
                            chunks):
    """:func:`combine_values` with the cell's rows split into `chunks` blocks over numba's threads."""
    for c in prange(chunks):
        lo, hi = _rows(cell.shape[0], c, chunks)
        _values_rows(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, channel_first, lo, hi)


@njit(inline="always")
def _label(cell, slab, w, yy, xx, i, y, x, s, from_slab):
    """The arg-max over channels of ``w * cell (+ slab)`` at one voxel, each value made as `_values_rows`
    makes it (ties and NaN as the 2-D kernels: the first largest, or the first NaN)."""
    b = w * cell[yy, xx, i, 0]
    if from_slab:
        b += slab[y, x, s, 0]
    best = 0
    for c in range(1, cell.shape[3]):
        v = w * cell[yy, xx, i, c]
        if from_slab:
            v += slab[y, x, s, c]
        take = _takes(v, b)
        b = v if take else b
        best = c if take else best
    return best


@njit(inline="always")
def _labels_rows(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, lo, hi):
    cw, ring = cell.shape[1], slab.shape[2]
    for yy in range(lo, hi):  # a row of the cell at a time, as `_values_rows`
        y = y0 + yy
        for z in range(c0, c1):
            i, s, o = z - z0, z % ring, oz + z - c0
            w = wz[i]
            if z < held:  # two loops, each with `from_slab` a constant (1.4 x faster than one loop testing it)
                for xx in range(cw):
                    out[o, oy + yy, ox + xx] = _label(cell, slab, w, yy, xx, i, y, x0 + xx, s, True)
            else:
                for xx in range(cw):
                    out[o, oy + yy, ox + xx] = _label(cell, slab, w, yy, xx, i, y, x0 + xx, s, False)
        _tail_row(cell, wz, slab, yy, y0, x0, z0, t0, t1, held)


@njit
def combine_labels(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox):
    """As `combine_values`, writing the arg-max over channels to `out` (D', H', W')."""
    _labels_rows(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, 0, cell.shape[0])


@njit(parallel=True)
def combine_labels_parallel(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, chunks):
    """:func:`combine_labels` with the cell's rows split into `chunks` blocks over numba's threads."""
    for c in prange(chunks):
        lo, hi = _rows(cell.shape[0], c, chunks)
        _labels_rows(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, lo, hi)


@njit(inline="always")
def _planes_rows(tile, out, lo, hi):
    d, w, channels = tile.shape[0], tile.shape[2], tile.shape[3]
    for y in range(lo, hi):  # a row of the tile per z read in order; out[y] (w, d, C) stays in the cache
        for z in range(d):
            for x in range(w):
                for c in range(channels):
                    out[y, x, z, c] = tile[z, y, x, c]


@njit
def to_layer_planes(tile, out):
    """A tile (d, h, w, C) copied to `out` (h, w, d, C): the layer's 2-D tile of d * C channels per pixel."""
    _planes_rows(tile, out, 0, tile.shape[1])


@njit(parallel=True)
def to_layer_planes_parallel(tile, out, chunks):
    """:func:`to_layer_planes` with the rows of `out` split into `chunks` blocks over numba's threads."""
    for c in prange(chunks):
        lo, hi = _rows(tile.shape[1], c, chunks)
        _planes_rows(tile, out, lo, hi)


@njit(inline="always")
def _planes_first_rows(tile, out, lo, hi):
    channels, d, w = tile.shape[0], tile.shape[1], tile.shape[3]
    for y in range(lo, hi):  # C rows of the tile read side by side; out[y] (w, d, C) stays in the cache and is
        for z in range(d):  # written in order (2.9 x faster than a row of the tile at a time)
            for x in range(w):
                for c in range(channels):
                    out[y, x, z, c] = tile[c, z, y, x]


@njit
def to_layer_planes_first(tile, out):
    """A tile (C, d, h, w) copied to `out` (h, w, d, C)."""
    _planes_first_rows(tile, out, 0, tile.shape[2])


@njit(parallel=True)
def to_layer_planes_first_parallel(tile, out, chunks):
    """:func:`to_layer_planes_first` with the rows of `out` split into `chunks` blocks over numba's threads."""
    for c in prange(chunks):
        lo, hi = _rows(tile.shape[2], c, chunks)
        _planes_first_rows(tile, out, lo, hi)


# each serial kernel's parallel variant (its arguments and then `chunks`)
PARALLEL = {combine_values: combine_values_parallel, combine_labels: combine_labels_parallel,
            to_layer_planes: to_layer_planes_parallel, to_layer_planes_first: to_layer_planes_first_parallel}
