"""Private numba kernels. They take plain arrays and integers only.

The accumulator is a ring buffer of output rows laid out as planes:
``acc[p, y % cap, k]``. For (H, W, C) tiles there is one plane and ``k``
runs over ``x * C + c``, so a tile row is one contiguous run; for (C, H, W)
tiles each channel is a plane and ``k`` is ``x``. Column offsets below are in
elements of a plane row.

Fast path (rectilinear grid, separable window): weights are pre-normalised,
so the buffer holds final sums. Each tile is split into its output cell,
which is final the moment the tile arrives and goes straight to `out`, and
the rest, which is added to the buffer; where no earlier tile reached (the
"first touch" rectangle at the tile's bottom-right) the kernel writes instead
of adding, so the buffer never has to be cleared.
"""

import numpy as np
from numba import prange

from ._jit import njit


# The helpers below index with unsigned integers: numba then drops its
# negative-index handling and LLVM vectorises the loops. Offsets are in
# elements of a row; every run is [k0, k1) of the tile row.

@njit
def _weighted_add(dst, d0, src, wx, a, k0, k1):
    for k in range(k0, k1):
        u = np.uint64(k)
        dst[np.uint64(d0 + k)] += a * wx[u] * src[u]


@njit
def _weighted_set(dst, d0, src, wx, a, k0, k1):
    for k in range(k0, k1):
        u = np.uint64(k)
        dst[np.uint64(d0 + k)] = a * wx[u] * src[u]


@njit
def _weighted_sum_to(dst, d0, acc, a0, src, wx, a, k0, k1):
    for k in range(k0, k1):
        u = np.uint64(k)
        dst[np.uint64(d0 + k)] = acc[np.uint64(a0 + k)] + a * wx[u] * src[u]


@njit
def _accumulate(arow, trow, wx, a, k0, k1, touched_to):
    """Elements [k0, k1) of a tile row into its buffer row: add below `touched_to`, write from it."""
    split = min(max(touched_to, k0), k1)
    _weighted_add(arow, 0, trow, wx, a, k0, split)
    _weighted_set(arow, 0, trow, wx, a, split, k1)


@njit
def _finish(orow, arow, trow, wx, a, k0, k1, touched_to):
    """Cell elements [k0, k1) of a tile row, final: buffer plus this tile (or this tile alone), into orow."""
    split = min(max(touched_to, k0), k1)
    _weighted_sum_to(orow, -k0, arow, 0, trow, wx, a, k0, split)
    _weighted_set(orow, -k0, trow, wx, a, split, k1)


@njit
def _blend_row(arow, trow, wx, a, below_fy, fx, in_cell, cx0, cx1, orow):
    """One plane row of a tile: its cell part into orow, the rest into the buffer row arow."""
    length = trow.shape[0]
    touched_to = fx if below_fy else length
    if in_cell:
        _accumulate(arow, trow, wx, a, 0, cx0, touched_to)
        _finish(orow, arow, trow, wx, a, cx0, cx1, touched_to)
        _accumulate(arow, trow, wx, a, cx1, length, touched_to)
    else:
        _accumulate(arow, trow, wx, a, 0, length, touched_to)


@njit
def _planes(array, h, length):
    """A C-contiguous (H, W, C), (C, H, W) or (H, W) array as planes (P, h, length)."""
    return array.reshape((array.size // (h * length), h, length))


@njit
def _prepare(tile, weights_y, weights_x, steps, k, group):
    """Everything the rows of step k share: the tile as planes, its weights, and the step's integers
    (see `Plan.steps`), column offsets scaled to elements of a plane row."""
    s = steps[k]
    h, length = s[2], s[3] * group
    tile = _planes(tile, h, length)
    wy, wx = weights_y[s[11]:s[11] + h], weights_x[s[12] * group:s[12] * group + length]
    # y0, x0, first, h, fy, fx, cy0, cy1, cx0, cx1
    ints = (s[0], s[1] * group, s[4], h, s[5], s[6] * group, s[7], s[8], s[9] * group, s[10] * group)
    return tile, wy, wx, ints


@njit
def _values_row(acc, tile, wy, wx, ints, out, i):
    y0, x0, first, h, fy, fx, cy0, cy1, cx0, cx1 = ints
    in_cell = cy0 <= i < cy1
    r = (y0 + i) % acc.shape[1]
    for p in range(tile.shape[0]):
        orow = out[p, i - cy0] if in_cell else out[p, 0]
        _blend_row(acc[p, r, x0:], tile[p, i], wx, wy[i], i >= fy, fx, in_cell, cx0, cx1, orow)


@njit
def _labels_row(acc, tile, wy, wx, ints, group, scratch, top, label, out, i):
    y0, x0, first, h, fy, fx, cy0, cy1, cx0, cx1 = ints
    in_cell = cy0 <= i < cy1
    r = (y0 + i) % acc.shape[1]
    rows = scratch[i - cy0] if in_cell else scratch[0]
    for p in range(tile.shape[0]):
        _blend_row(acc[p, r, x0:], tile[p, i], wx, wy[i], i >= fy, fx, in_cell, cx0, cx1, rows[p])
    if in_cell:
        argmax_row(rows, group, out[i - cy0], top[i - cy0], label[i - cy0])


@njit
def blend_values(acc, tile, weights_y, weights_x, steps, k, group, out):
    """Blend the tile of step k; write its finished cell into `out`.

    acc: (P, cap, L) ring buffer; tile: C-contiguous (h, w, C), (C, h, w) or
    (h, w), with `group` elements per pixel in a plane row (C, 1 or 1);
    weights_y: the plan's flat weights; weights_x: the same repeated `group`
    times; out: planes (P, cell height, cell elements) the finished cell goes
    to (any (P, 1, 1) array when the step finishes no cell).
    """
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    for i in range(ints[2], ints[3]):
        _values_row(acc, tile, wy, wx, ints, out, i)


@njit(parallel=True)
def blend_values_parallel(acc, tile, weights_y, weights_x, steps, k, group, out):
    """:func:`blend_values` with the tile's rows split over numba's threads."""
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    for i in prange(ints[2], ints[3]):
        _values_row(acc, tile, wy, wx, ints, out, i)


@njit
def blend_labels(acc, tile, weights_y, weights_x, steps, k, group, scratch, top, label, out):
    """As :func:`blend_values`, but the cell leaves as labels, the arg-max over channels.

    scratch: (cell height, P, cell elements) floats; top, label: (cell
    height, cell width) floats; out: (cell height, cell width).
    """
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    for i in range(ints[2], ints[3]):
        _labels_row(acc, tile, wy, wx, ints, group, scratch, top, label, out, i)


@njit(parallel=True)
def blend_labels_parallel(acc, tile, weights_y, weights_x, steps, k, group, scratch, top, label, out):
    """:func:`blend_labels` with the tile's rows split over numba's threads."""
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group)
    for i in prange(ints[2], ints[3]):
        _labels_row(acc, tile, wy, wx, ints, group, scratch, top, label, out, i)


@njit
def _cell_box(steps, k, x_origin):
    """Image box (ylo, xlo, yhi, xhi) of the cell step k finishes (empty when it finishes none)."""
    s = steps[k]
    ylo, xlo = s[0] + s[7], s[1] + x_origin + s[9]
    return ylo, xlo, ylo + s[8] - s[7], xlo + s[10] - s[9]


@njit
def blend_values_batch(acc, tiles, weights_y, weights_x, steps, k0, group, out, x_origin, no_cell):
    """:func:`blend_values` for steps k0, k0 + 1, ... of a batch, each cell written into `out`.

    tiles: (B, ...) tiles of one shape; out: the full image as planes
    (P, H, W * group); x_origin: image column of buffer column 0.
    """
    for b in range(tiles.shape[0]):
        ylo, xlo, yhi, xhi = _cell_box(steps, k0 + b, x_origin)
        if yhi > ylo:
            target = out[:, ylo:yhi, xlo * group:xhi * group]
            blend_values(acc, tiles[b], weights_y, weights_x, steps, k0 + b, group, target)
        else:
            blend_values(acc, tiles[b], weights_y, weights_x, steps, k0 + b, group, no_cell)


@njit
def blend_labels_batch(acc, tiles, weights_y, weights_x, steps, k0, group, scratch, top, label, out, x_origin):
    """:func:`blend_labels` for the steps of a batch, each cell's labels written into the (H, W) `out`."""
    for b in range(tiles.shape[0]):
        ylo, xlo, yhi, xhi = _cell_box(steps, k0 + b, x_origin)
        blend_labels(acc, tiles[b], weights_y, weights_x, steps, k0 + b, group, scratch, top, label,
                     out[ylo:max(yhi, ylo + 1), xlo:max(xhi, xlo + 1)])


@njit
def _argmax_planes(values, labels, top, label):
    """Channel planes (P, pixels): channels are the outer loop, the pixel loop vectorises."""
    pixels = labels.shape[0]
    for j in range(pixels):
        u = np.uint64(j)
        top[u] = values[0, u]
        label[u] = 0
    for ch in range(1, values.shape[0]):
        row, channel = values[ch], top.dtype.type(ch)
        for j in range(pixels):
            u = np.uint64(j)
            v = row[u]
            b = top[u]
            take = (v > b) | ((v != v) & (b == b))
            top[u] = v if take else b
            label[u] = channel if take else label[u]
    for j in range(pixels):
        u = np.uint64(j)
        labels[u] = label[u]


@njit
def _argmax_interleaved(row, group, labels):
    """Interleaved channels (pixels * group,): a pixel's channels stay in registers."""
    for j in range(labels.shape[0]):
        base = np.uint64(j * group)
        b = row[base]
        best = row.dtype.type(0)
        for c in range(1, group):
            v = row[base + np.uint64(c)]
            take = (v > b) | ((v != v) & (b == b))
            b = v if take else b
            best = row.dtype.type(c) if take else best
        labels[np.uint64(j)] = best


@njit
def argmax_row(values, group, labels, top, label):
    """labels[j] = arg-max over the channels of pixel j: the first maximum, and the first NaN wins as in numpy.

    values: (P, pixels * group) with channel ``p * group + e % group`` at
    element (p, e): one row of interleaved channels (P = 1) or channel planes
    (group = 1); top, label: scratch rows of the values' dtype. Every select
    has one width (the running label is a float) so LLVM vectorises the
    pixel loop; the usual channel counts get a constant stride, which it needs.
    """
    if values.shape[0] > 1:
        _argmax_planes(values, labels, top, label)
    elif group == 2:
        _argmax_interleaved(values[0], 2, labels)
    elif group == 3:
        _argmax_interleaved(values[0], 3, labels)
    elif group == 4:
        _argmax_interleaved(values[0], 4, labels)
    elif group == 5:
        _argmax_interleaved(values[0], 5, labels)
    elif group == 6:
        _argmax_interleaved(values[0], 6, labels)
    elif group == 8:
        _argmax_interleaved(values[0], 8, labels)
    else:
        _argmax_interleaved(values[0], group, labels)


@njit
def half_to_float(bits, out):
    """float16 values given as their uint16 bits into float32 `out`, exactly (numba has no float16).

    The half's exponent and mantissa are shifted into float32 position and the
    result scaled by 2**112 (which also turns half subnormals into the right
    float32 values); half inf and NaN get the float32 all-ones exponent first.
    """
    out_bits = out.view(np.uint32)
    for k in range(bits.shape[0]):
        u = np.uint64(k)
        h = np.uint32(bits[u])
        infnan = np.uint32(0x7F800000) if (h & np.uint32(0x7C00)) == np.uint32(0x7C00) else np.uint32(0)
        out_bits[u] = ((h & np.uint32(0x7FFF)) << np.uint32(13)) | ((h & np.uint32(0x8000)) << np.uint32(16)) | infnan
    scale = np.float32(2.0**112)
    for k in range(out.shape[0]):
        out[np.uint64(k)] *= scale


# -- general path: any grid, weight sum accumulated beside the values ---------

@njit
def blend_weighted(acc, wsum, tile, weight, y0, first, cap, x0):
    """acc += weight * tile and wsum += weight over rows i >= first (normalised on emission).

    acc: (P, cap, L); tile: (P, h, Lt); weight: (h, Lt) per element; wsum: (cap, L // group).
    """
    planes, h, length = tile.shape
    group = length // weight.shape[1]
    for i in range(first, h):
        r = (y0 + i) % cap
        for p in range(planes):
            for k in range(length):
                acc[p, r, x0 + k] += weight[i, k // group] * tile[p, i, k]
        for j in range(weight.shape[1]):
            wsum[r, x0 // group + j] += weight[i, j]


@njit
def emit_weighted(acc, wsum, y0, cap, x0, out):
    """out[p, i, k] = acc / wsum for the cell at image row y0, buffer element x0."""
    planes, h, length = out.shape
    group = acc.shape[2] // wsum.shape[1]
    for i in range(h):
        r = (y0 + i) % cap
        for p in range(planes):
            for k in range(length):
                out[p, i, k] = acc[p, r, x0 + k] / wsum[r, (x0 + k) // group]


@njit
def emit_weighted_labels(acc, y0, cap, x0, scratch, group, top, label, out):
    """Labels of a cell of the general path (the weight sum is a common positive factor)."""
    for i in range(out.shape[0]):
        r = (y0 + i) % cap
        for p in range(acc.shape[0]):
            for k in range(scratch.shape[1]):
                scratch[p, k] = acc[p, r, x0 + k]
        argmax_row(scratch, group, out[i], top, label)


@njit
def clear_rows(buf, start, stop, cap):
    """Zero image rows [start, stop) of a ring buffer (at most one full turn); buf is (P, cap, L)."""
    stop = min(stop, start + cap)
    for y in range(start, stop):
        buf[:, y % cap] = 0
