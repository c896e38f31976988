"""Private numba kernels of the band layout: keep only what later tiles need.

On a rectilinear grid with cells cut where the next tile starts, the cell of
tile (i, j) is final when the tile arrives. What later tiles still need of it
is its right overlap (tile columns from `bx`, where tile (i, j + 1) starts),
finished by the next tile of the row, and its bottom overlap (tile rows from
`by`, where grid row i + 1 starts), finished by the next row. So the kernels
keep two buffers instead of a ring one tile high:

- ``right``, (2, P, tile height, overlap elements): the right overlap of the
  last tile, all its rows, with every earlier contribution folded in. Step k
  reads half ``k & 1`` (left there by step k - 1) and writes the other half.
- ``band``, (P, rows, L): an overlap-high band across the planned width,
  holding image row y in row ``y % rows``. Left of where the current tile
  starts it holds the bottom overlap of the current grid row, from there on
  still that of the row before, which the current tile reads (in tile rows
  below `ty`) before it writes its own bottom overlap over it. Per column,
  rows run top to bottom, and a row read is never one written before it at
  the same column: the rows read are above the rows written except where
  both overlaps meet (a flush row), where the row is read and then written.
  ``rows`` is the largest bottom overlap, so rows written never wrap onto
  rows still to be read. The band's columns of a tile's right overlap still
  hold the last row's values, which the tile read into ``right``; the next
  tile reads those from ``right``, not from the band.

Every tile pixel's value (the prior sum from ``right`` below column `rx`,
from the band in rows below `ty`, none elsewhere, plus the tile's weighted
value) goes to exactly one place: the cell in `out`, ``right`` (right
overlap), the band (bottom overlap left of it), or nowhere (a pixel no later
tile needs and no written cell holds). Where a grid neighbour was not loaded
(an area), what a tile reads may be stale, but then no written cell needs the
pixel: a written cell's pixels are covered only by loaded tiles, and each of
them reads what the one before it at that pixel left.

In stripes the Blender hands the right overlap of a stripe's last tile in a
tile row on through the seam's file, and puts the seam rows back into the
right-overlap buffer before the first tile of that row in the next stripe.

Step integers are those of `Plan.steps` (column positions fixed here, as in
`_kernels`). Columns are in elements of a plane row (pixels x `group`). The
parallel kernels split a tile's columns, not its rows: the band is updated
in place down each column.
"""

import numpy as np
from numba import prange

from ._jit import njit
from ._kernels import _argmax_as, _cell_origin, _planes, _weighted_set, _weighted_sum_to

# positions in a row of `Plan.steps` (see `_schedule.STEP_COLUMNS`)
_Y0, _X0, _H, _W, _FIRST, _FY, _FX, _CY0, _CY1, _CX0, _CX1, _WY, _WX = range(13)
_BY, _BX = 20, 21
# a column chunk of the parallel kernels starts at a multiple of this many elements (vector loads stay aligned)
_ALIGN = 16


@njit(inline="always")
def _span(dst, dr, d0, band, slot, x0, rold, tile, p, i, wx, a, k0, k1, rx, touched):
    """Elements [k0, k1) of tile row i to dst[p, dr, d0 + k]: prior from `rold` below rx, from the band
    from rx on where earlier rows reached (`touched`), none elsewhere."""
    if k1 <= k0:
        return
    s = min(max(rx, k0), k1)
    _weighted_sum_to(dst, p, dr, d0, rold, i, 0, tile, i, wx, a, k0, s)
    if touched:
        _weighted_sum_to(dst, p, dr, d0, band, slot, x0, tile, i, wx, a, s, k1)
    else:
        _weighted_set(dst, p, dr, d0, tile, i, wx, a, s, k1)


@njit(inline="always")
def _prepare(tile, weights_y, weights_x, steps, k, group):
    """The tile as planes, its weights, and step k's integers with columns in elements:
    (y0, x0, first, h, ty, rx, cy0, cy1, cx0, cx1, by, bx)."""
    s = steps[k]
    h, length = s[_H], s[_W] * group
    tile = _planes(tile, h, length)
    wy = weights_y[s[_WY]:s[_WY] + h]
    wx = weights_x[s[_WX] * group:s[_WX] * group + length]
    ints = (s[_Y0], s[_X0] * group, s[_FIRST], h, s[_FY], s[_FX] * group, s[_CY0], s[_CY1], s[_CX0] * group,
            s[_CX1] * group, s[_BY], s[_BX] * group)
    return tile, wy, wx, ints


@njit(inline="always")
def _row(band, rold, rnew, tile, wy, wx, ints, out, o, ox, i, k_lo, k_hi):
    """Elements [k_lo, k_hi) of tile row i, every plane: the cell part to out[p, o, ox:] (ox is where
    element cx0 goes), the right overlap to `rnew`, the bottom overlap to the band."""
    x0, ty, rx, cy0, cy1, cx0, cx1, by, bx = (ints[1], ints[4], ints[5], ints[6], ints[7], ints[8], ints[9],
                                              ints[10], ints[11])
    slot = np.uint64((ints[0] + i) % band.shape[1])
    t = np.uint64(i)
    touched, below = i < ty, i >= by
    left = min(bx, k_hi)  # [k_lo, left): cell and band; [bx, k_hi): right overlap
    c0, c1 = min(max(cx0, k_lo), left), min(max(cx1, k_lo), left)
    a = wy[t]
    for plane in range(tile.shape[0]):
        p = np.uint64(plane)
        if cy0 <= i < cy1:
            _span(out, np.uint64(o), ox - cx0, band, slot, x0, rold, tile, p, t, wx, a, c0, c1, rx, touched)
            if below:
                _span(band, slot, x0, band, slot, x0, rold, tile, p, t, wx, a, k_lo, c0, rx, touched)
                _span(band, slot, x0, band, slot, x0, rold, tile, p, t, wx, a, c1, left, rx, touched)
        elif below:
            _span(band, slot, x0, band, slot, x0, rold, tile, p, t, wx, a, k_lo, left, rx, touched)
        _span(rnew, t, -bx, band, slot, x0, rold, tile, p, t, wx, a, max(bx, k_lo), k_hi, rx, touched)


@njit
def _values_rows(band, rold, rnew, tile, wy, wx, ints, out, oy, ox, k_lo, k_hi):
    """Tile rows [first, h), elements [k_lo, k_hi): cell rows to out[p, oy + cell row, ox:]."""
    cy0, cy1 = ints[6], ints[7]
    for i in range(ints[2], ints[3]):
        o = oy + i - cy0 if cy0 <= i < cy1 else 0
        _row(band, rold, rnew, tile, wy, wx, ints, out, o, ox, i, k_lo, k_hi)


@njit
def band_values(band, right, tile, weights_y, weights_x, steps, k, group, out, oy=0, ox=0):
    """Blend the tile of step k into the band layout; write its finished cell into `out`.

    band: (P, rows, L); right: (2, P, h, R) (see the module notes); tile,
    weights, group, out, oy and ox as for `_kernels.blend_values`.
    """
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    _values_rows(band, right[k & 1], right[1 - (k & 1)], tile, wy, wx, ints, out, oy, ox, 0, tile.shape[2])


@njit(inline="always")
def _chunk(length, c, n, group):
    """Elements [lo, hi) of chunk c of n of a row of `length` elements, cut at whole pixels and, where the
    row is long enough, at multiples of `_ALIGN` elements."""
    unit = group * _ALIGN if length >= n * group * _ALIGN else group
    units = -(-length // unit)
    return min(length, units * c // n * unit), min(length, units * (c + 1) // n * unit)


@njit(parallel=True)
def band_values_parallel(band, right, tile, weights_y, weights_x, steps, k, group, out, oy, ox, chunks):
    """:func:`band_values` with the tile's columns split into `chunks` blocks over numba's threads."""
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    rold, rnew = right[k & 1], right[1 - (k & 1)]
    for c in prange(chunks):
        lo, hi = _chunk(tile.shape[2], np.int64(c), chunks, group)
        _values_rows(band, rold, rnew, tile, wy, wx, ints, out, oy, ox, lo, hi)


@njit
def _labels_rows(way, band, rold, rnew, tile, wy, wx, ints, group, scratch, s0, block, label, out, oy, ox, k_lo, k_hi):
    """As `_values_rows`, but the cell's elements [k_lo, k_hi) leave as labels to out[oy + cell row, ox:]
    (ox: the label column of the cell's first pixel), through scratch rows [s0, s0 + block), by the arg-max
    `way` selects (`_kernels.argmax_way`)."""
    cy0, cy1, cx0, cx1 = ints[6], ints[7], ints[8], ints[9]
    e0 = min(max(cx0, k_lo), cx1)  # the cell elements [e0, e1) of this chunk
    e1 = max(min(cx1, k_hi), e0)
    pixels = (e1 - e0) // group
    for b0 in range(ints[2], ints[3], block):
        b1 = min(b0 + block, ints[3])
        for i in range(b0, b1):
            # the chunk's first cell element goes to scratch element 0
            _row(band, rold, rnew, tile, wy, wx, ints, scratch, s0 + i - b0, cx0 - e0, i, k_lo, k_hi)
        c0, c1 = max(b0, cy0), min(b1, cy1)
        if c1 > c0 and pixels > 0:
            _argmax_as(way, scratch, s0 + c0 - b0, c1 - c0, pixels, group, label, out, oy + c0 - cy0,
                        ox + (e0 - cx0) // group)


@njit
def band_labels(way, band, right, tile, weights_y, weights_x, steps, k, group, scratch, label, out, oy, ox):
    """As :func:`band_values`, but the cell leaves as labels (scratch, label and out as for
    `_kernels.blend_labels`)."""
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    _labels_rows(way, band, right[k & 1], right[1 - (k & 1)], tile, wy, wx, ints, group, scratch, np.int64(0),
                 scratch.shape[1], label, out, oy, ox, 0, tile.shape[2])


@njit(parallel=True)
def band_labels_parallel(way, band, right, tile, weights_y, weights_x, steps, k, group, scratch, label, out, oy, ox,
                         chunks):
    """:func:`band_labels` with the tile's columns split into `chunks` blocks over numba's threads, each
    with its share of the scratch rows."""
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    rold, rnew = right[k & 1], right[1 - (k & 1)]
    n = min(chunks, scratch.shape[1])
    block = scratch.shape[1] // n
    for c in prange(n):
        s = np.int64(c)
        lo, hi = _chunk(tile.shape[2], s, n, group)
        _labels_rows(way, band, rold, rnew, tile, wy, wx, ints, group, scratch, s * block, block, label, out, oy, ox,
                     lo, hi)


@njit
def band_values_batch(band, right, tiles, weights_y, weights_x, steps, k0, group, out, x_origin):
    """:func:`band_values` for steps k0, k0 + 1, ... of a batch (as `_kernels.blend_values_batch`)."""
    for b in range(tiles.shape[0]):
        ylo, xlo = _cell_origin(steps, k0 + b, x_origin)
        band_values(band, right, tiles[b], weights_y, weights_x, steps, k0 + b, group, out, ylo, xlo * group)


@njit
def band_labels_batch(way, band, right, tiles, weights_y, weights_x, steps, k0, group, scratch, label, out, x_origin):
    """:func:`band_labels` for the steps of a batch, each cell's labels written into the (H, W) `out`."""
    for b in range(tiles.shape[0]):
        ylo, xlo = _cell_origin(steps, k0 + b, x_origin)
        band_labels(way, band, right, tiles[b], weights_y, weights_x, steps, k0 + b, group, scratch, label, out,
                    ylo, xlo)
