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

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ._jit import njit
from ._simd import LANES, argmax_interleaved_blocks, argmax_planes_blocks, half_to_float_blocks


# The fast-path helpers are inlined (see `njit`) and index whole arrays:
# slicing out a row costs two atomic reference-count updates, more than a
# short row's arithmetic. Indices are unsigned so that numba drops its
# negative-index handling and LLVM vectorises the loops. In a helper, p is
# the plane, i the tile row, r its buffer row, x0 the buffer element of tile
# element 0 and a the row's y weight; every run is elements [k0, k1) of the row.

@njit(inline="always")
def _weighted_add(dst, p, r, d0, tile, i, wx, a, k0, k1):
    for k in range(k0, k1):
        u = np.uint64(k)
        dst[p, r, np.uint64(d0 + k)] += a * wx[u] * tile[p, i, u]


@njit(inline="always")
def _weighted_set(dst, p, r, d0, tile, i, wx, a, k0, k1):
    for k in range(k0, k1):
        u = np.uint64(k)
        dst[p, r, np.uint64(d0 + k)] = a * wx[u] * tile[p, i, u]


@njit(inline="always")
def _weighted_sum_to(dst, p, o, d0, acc, r, x0, tile, i, wx, a, k0, k1):
    for k in range(k0, k1):
        u = np.uint64(k)
        dst[p, o, np.uint64(d0 + k)] = acc[p, r, np.uint64(x0 + k)] + a * wx[u] * tile[p, i, u]


@njit(inline="always")
def _accumulate(acc, r, x0, tile, p, i, wx, a, k0, k1, touched_to):
    """Elements [k0, k1) of a tile row into its buffer row: add below `touched_to`, write from it."""
    split = min(max(touched_to, k0), k1)
    _weighted_add(acc, p, r, x0, tile, i, wx, a, k0, split)
    _weighted_set(acc, p, r, x0, tile, i, wx, a, split, k1)


@njit(inline="always")
def _finish(out, o, ox, acc, r, x0, tile, p, i, wx, a, k0, k1, touched_to):
    """Cell elements [k0, k1) of a tile row, final (buffer plus this tile, or this tile alone), to out[p, o, ox:]."""
    split = min(max(touched_to, k0), k1)
    _weighted_sum_to(out, p, o, ox - k0, acc, r, x0, tile, i, wx, a, k0, split)
    _weighted_set(out, p, o, ox - k0, tile, i, wx, a, split, k1)


@njit(inline="always")
def _planes(array, h, length):
    """A C-contiguous (H, W, C), (C, H, W) or (H, W) array as planes (P, h, length)."""
    return array.reshape((array.size // (h * length), h, length))


@njit(inline="always")
def _prepare(tile, weights_y, weights_x, steps, k, group, cap):
    """Everything the rows of step k share: the tile as planes, its weights, and the step's integers
    (see `Plan.steps`), column offsets scaled to elements of a plane row, the first row's buffer row."""
    s = steps[k]
    h, length = s[2], s[3] * group
    tile = _planes(tile, h, length)
    wy, wx = weights_y[s[11]:s[11] + h], weights_x[s[12] * group:s[12] * group + length]
    # y0, x0, first, h, fy, fx, cy0, cy1, cx0, cx1, buffer row of row `first`
    ints = (s[0], s[1] * group, s[4], h, s[5], s[6] * group, s[7], s[8], s[9] * group, s[10] * group,
            (s[0] + s[4]) % cap)
    return tile, wy, wx, ints


@njit(inline="always")
def _row(ints, cap, length, i):
    """Tile row i's buffer row and tile row (unsigned) and the element from which no earlier tile reached."""
    r = ints[10] + i - ints[2]
    r = r - cap if r >= cap else r  # a tile's rows span at most one turn of the ring
    return np.uint64(r), np.uint64(i), ints[5] if i >= ints[4] else length


@njit(inline="always")
def _buffer_row(acc, tile, wy, wx, ints, i):
    """Tile row i, every plane, into the buffer, all but its cell part (which no later tile needs)."""
    x0, cy0, cy1, cx0, cx1 = ints[1], ints[6], ints[7], ints[8], ints[9]
    length = tile.shape[2]
    r, t, touched_to = _row(ints, acc.shape[1], length, i)
    k0, k1 = (cx0, cx1) if cy0 <= i < cy1 else (length, length)
    for plane in range(tile.shape[0]):
        p = np.uint64(plane)
        _accumulate(acc, r, x0, tile, p, t, wx, wy[t], 0, k0, touched_to)
        _accumulate(acc, r, x0, tile, p, t, wx, wy[t], k1, length, touched_to)


@njit(inline="always")
def _cell_row(acc, tile, wy, wx, ints, out, o, ox, i):
    """The cell part of tile row i, final, to out[p, o, ox:] for every plane p."""
    x0, cx0, cx1 = ints[1], ints[8], ints[9]
    r, t, touched_to = _row(ints, acc.shape[1], tile.shape[2], i)
    for plane in range(tile.shape[0]):
        _finish(out, o, ox, acc, r, x0, tile, np.uint64(plane), t, wx, wy[t], cx0, cx1, touched_to)


@njit
def _values_rows(acc, tile, wy, wx, ints, out, oy, ox, lo, hi):
    """Tile rows [lo, hi) of a step (see `_prepare`): cell parts to out[p, oy + cell row, ox:], the rest
    into the buffer."""
    cy0, cy1 = ints[6], ints[7]
    for i in range(lo, hi):
        _buffer_row(acc, tile, wy, wx, ints, i)
        if cy0 <= i < cy1:
            _cell_row(acc, tile, wy, wx, ints, out, np.uint64(oy + i - cy0), ox, i)


@njit(inline="always")
def _chunk(ints, c, n, length):
    """Rows [lo, hi) of chunk c of n of a step's rows [first, h), cut where the bytes moved are shared out
    evenly: a row reads the tile and writes `length` elements, and reads the buffer over its whole length
    above row fy, only up to element fx from there on (where no earlier tile reached, see `_row`).
    An even split by rows left the first thread of an interior step with 8 % more to do."""
    first, h, fy, fx = ints[2], ints[3], ints[4], ints[5]
    above = max(0, min(fy, h) - first)  # rows that read the whole buffer row
    cost_above, cost_below = 3 * length, 2 * length + fx
    total = above * cost_above + (h - first - above) * cost_below
    return (_row_at_cost(total * c // n, first, above, cost_above, cost_below),
            _row_at_cost(total * (c + 1) // n, first, above, cost_above, cost_below))


@njit(inline="always")
def _row_at_cost(t, first, above, cost_above, cost_below):
    """The row where the rows before it have cost t (rounded down to whole rows)."""
    if t <= above * cost_above:
        return first + t // cost_above
    return first + above + (t - above * cost_above) // cost_below


@njit
def blend_values(acc, tile, weights_y, weights_x, steps, k, group, out, oy=0, ox=0):
    """Blend the tile of step k; write its finished cell into `out`.

    acc: (P, cap, L) ring buffer; tile: C-contiguous (h, w, C), (C, h, w) or
    (h, w), with `group` elements per pixel in a plane row (C, 1 or 1);
    weights_y: the plan's flat weights; weights_x: the same repeated `group`
    times; out: planes (P, rows, elements) the finished cell goes to, its
    first row at row oy from element ox (any (P, 1, 1) array when the step
    finishes no cell).
    """
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group, acc.shape[1])
    _values_rows(acc, tile, wy, wx, ints, out, oy, ox, ints[2], ints[3])


# The parallel kernels hand each of `chunks` threads a block of rows done by the
# serial code: a loop body that small keeps numba's parallel compilation short.

@njit(parallel=True)
def blend_values_parallel(acc, tile, weights_y, weights_x, steps, k, group, out, oy, ox, chunks):
    """:func:`blend_values` with the tile's rows split into `chunks` blocks over numba's threads."""
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group, acc.shape[1])
    for c in prange(chunks):
        lo, hi = _chunk(ints, np.int64(c), chunks, tile.shape[2])
        _values_rows(acc, tile, wy, wx, ints, out, oy, ox, lo, hi)


@njit(inline="always")
def _takes(v, best):
    """Whether channel value v replaces the running maximum: larger, or the first NaN (as np.argmax).
    Written as "not v <= best" (true also when v is NaN) and "best is not NaN": two compares."""
    return (not v <= best) & (best == best)


@njit(inline="always")
def _argmax_pixels(values, row0, rows, j0, j1, n, planar, out, o0, ox):
    """Pixels [j0, j1): a pixel's n channels stay in registers; channel c of pixel j is values[c, s, j]
    (planar) or values[0, s, j * n + c]."""
    for t in range(rows):
        s, o = np.uint64(row0 + t), np.uint64(o0 + t)
        for j in range(j0, j1):
            base = np.uint64(j if planar else j * n)
            b = values[0, s, base]
            best = values.dtype.type(0)
            for c in range(1, n):
                v = values[np.uint64(c), s, base] if planar else values[0, s, base + np.uint64(c)]
                take = _takes(v, b)
                b = v if take else b
                best = values.dtype.type(c) if take else best
            out[o, np.uint64(ox + j)] = best


@njit
def _argmax_constant(values, row0, rows, pixels, n, out, o0, ox):
    """`_argmax_pixels` compiled for each constant n it is called with, planar when values has more
    than one plane: LLVM then unrolls the channel loop and vectorises over pixels (planar: plain
    loads; interleaved: loads with a constant stride). A kernel of its own rather than inlined
    copies: with a dozen copies inlined by numba, the first labels blend took 50 s to compile."""
    numba.literally(n)
    _argmax_pixels(values, row0, rows, 0, pixels, n, values.shape[0] > 1, out, o0, ox)


@njit
def _argmax_vector(values, row0, rows, pixels, n, planar, label, out, o0, ox):
    """Blocks of 8 pixels through the vector code of `_simd` into the scratch rows `label`, then to out;
    the pixels after the last whole block one by one."""
    if planar:
        blocks, elements = pixels // LANES, pixels
    else:  # a block's loads run max(n, 8) elements from its last pixel's first
        blocks, elements = max(0, pixels * n + n - max(n, LANES)) // (LANES * n), pixels * n
    if (row0 < 0 or row0 + rows > min(values.shape[1], label.shape[0]) or blocks * LANES > label.shape[1]
            or elements > values.shape[2]):
        raise IndexError("argmax rows or pixels outside the scratch rows")
    for t in range(rows):
        s, o = np.uint64(row0 + t), np.uint64(o0 + t)
        if planar:
            argmax_planes_blocks(values, s, blocks, label)
        else:
            argmax_interleaved_blocks(values, s, blocks, n, label)
        for j in range(blocks * LANES):
            out[o, np.uint64(ox + j)] = label[s, np.uint64(j)]
    _argmax_pixels(values, row0, rows, blocks * LANES, pixels, n, planar, out, o0, ox)


def argmax_way(n, planar):
    """The selector the labels kernels take for `n` channels, planar or interleaved: a tuple whose numba
    type picks, at compile time, the one arg-max `_argmax_as` compiles (see `argmax_rows`). So a
    first labels run compiles the arg-max for its own channel count only, not for every count."""
    if (n == 2 and not planar) or n == 3 or (planar and 4 <= n <= 6):
        return (0,) * n
    return (0.0,)


def _argmax_as(way, values, row0, rows, pixels, group, label, out, o0, ox):
    """What the compiled `_argmax_as_typed` picks, in Python (NUMBA_DISABLE_JIT)."""
    if isinstance(way[0], int):
        _argmax_constant(values, row0, rows, pixels, len(way), out, o0, ox)
    else:
        planar = values.shape[0] > 1
        _argmax_vector(values, row0, rows, pixels, values.shape[0] if planar else group, planar, label, out, o0,
                       ox)


@overload(_argmax_as, jit_options=dict(nogil=True))
def _argmax_as_typed(way, values, row0, rows, pixels, group, label, out, o0, ox):
    if isinstance(way, types.UniTuple) and isinstance(way.dtype, types.Integer):
        n = way.count  # a constant here: `_argmax_constant` is compiled for this count only

        def constant(way, values, row0, rows, pixels, group, label, out, o0, ox):
            _argmax_constant(values, row0, rows, pixels, n, out, o0, ox)
        return constant

    def vector(way, values, row0, rows, pixels, group, label, out, o0, ox):
        planar = values.shape[0] > 1
        _argmax_vector(values, row0, rows, pixels, values.shape[0] if planar else group, planar, label, out, o0,
                       ox)
    return vector


@njit
def argmax_rows(values, row0, rows, pixels, group, label, out, o0, ox):
    """out[o0 + t, ox:ox + pixels] = arg-max over the channels of each pixel in row row0 + t of values,
    t < rows: the first maximum, and the first NaN wins as in numpy.

    values: (P, rows, pixels * group) holding one plane of interleaved
    channels (P = 1) or channel planes (group = 1); label: scratch rows of the
    values' dtype, as many as values has, at least `pixels` wide. Two ways,
    chosen per channel count and layout by measurement (one thread, rows in
    cache): a kernel compiled for the count, where LLVM unrolls the channel
    loop and vectorises over pixels (2 or 3 interleaved channels, 3 to 6
    planes: 0.25 to 0.7 ns a pixel), and the vector code of `_simd` for the
    rest (about 1 ns a pixel for 4 to 8 channels, 0.45 ns for 2 planes, 2.3 ns
    for 12 interleaved channels, 1.3 ns for 12 planes). This one compiles
    every way; the blend kernels take the way as an argument (`argmax_way`)
    and compile only the one they use.
    """
    planar = values.shape[0] > 1
    n = values.shape[0] if planar else group
    if n == 2 and not planar:
        _argmax_as((0, 0), values, row0, rows, pixels, group, label, out, o0, ox)
    elif n == 3:
        _argmax_as((0, 0, 0), values, row0, rows, pixels, group, label, out, o0, ox)
    elif n == 4 and planar:
        _argmax_as((0, 0, 0, 0), values, row0, rows, pixels, group, label, out, o0, ox)
    elif n == 5 and planar:
        _argmax_as((0, 0, 0, 0, 0), values, row0, rows, pixels, group, label, out, o0, ox)
    elif n == 6 and planar:
        _argmax_as((0, 0, 0, 0, 0, 0), values, row0, rows, pixels, group, label, out, o0, ox)
    else:
        _argmax_as((0.0,), values, row0, rows, pixels, group, label, out, o0, ox)


@njit
def _labels_rows(way, acc, tile, wy, wx, ints, group, scratch, s0, block, label, out, oy, ox, lo, hi):
    """As `_values_rows`, but the cell parts leave as labels, the arg-max over channels, to
    out[oy + cell row, ox:].

    A block of rows at a time: their cell parts are finished into scratch rows
    [s0, s0 + block), which stay in cache, then turned into labels.
    """
    cy0, cy1, pixels = ints[6], ints[7], (ints[9] - ints[8]) // group
    for b0 in range(lo, hi, block):
        b1 = min(b0 + block, hi)
        for i in range(b0, b1):
            _buffer_row(acc, tile, wy, wx, ints, i)
            if cy0 <= i < cy1:
                _cell_row(acc, tile, wy, wx, ints, scratch, np.uint64(s0 + i - b0), 0, i)
        c0, c1 = max(b0, cy0), min(b1, cy1)
        if c1 > c0:
            _argmax_as(way, scratch, s0 + c0 - b0, c1 - c0, pixels, group, label, out, oy + c0 - cy0, ox)


@njit
def blend_labels(way, acc, tile, weights_y, weights_x, steps, k, group, scratch, label, out, oy, ox):
    """As :func:`blend_values`, but the cell leaves as labels, the arg-max over channels.

    scratch: (P, rows, cell elements) floats; label: (rows, cell width)
    floats; out: (rows, columns) labels, the cell's first at row oy, column ox.
    """
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group, acc.shape[1])
    _labels_rows(way, acc, tile, wy, wx, ints, group, scratch, np.int64(0), scratch.shape[1], label, out, oy, ox,
                 ints[2], ints[3])


@njit(parallel=True)
def blend_labels_parallel(way, acc, tile, weights_y, weights_x, steps, k, group, scratch, label, out, oy, ox,
                          chunks):
    """:func:`blend_labels` with the tile's rows split into `chunks` blocks over numba's threads, each
    with its share of the scratch rows."""
    tile, wy, wx, ints = _prepare(tile, weights_y, weights_x, steps, k, group, acc.shape[1])
    n = min(chunks, scratch.shape[1])
    block = scratch.shape[1] // n
    for c in prange(n):
        s = np.int64(c)  # prange's index is unsigned: one type for the serial and the parallel callers
        lo, hi = _chunk(ints, s, n, tile.shape[2])
        _labels_rows(way, acc, tile, wy, wx, ints, group, scratch, s * block, block, label, out, oy, ox, lo, hi)


@njit
def _cell_origin(steps, k, x_origin):
    """Image row and column of the first pixel of the cell step k finishes."""
    s = steps[k]
    return s[0] + s[7], s[1] + x_origin + s[9]


@njit
def blend_values_batch(acc, tiles, weights_y, weights_x, steps, k0, group, out, x_origin):
    """:func:`blend_values` for steps k0, k0 + 1, ... of a batch, each cell written into `out`.

    tiles: (B, ...) tiles of one shape; out: the full image as planes
    (P, H, W * group); x_origin: image column of buffer column 0.
    """
    for b in range(tiles.shape[0]):
        ylo, xlo = _cell_origin(steps, k0 + b, x_origin)
        blend_values(acc, tiles[b], weights_y, weights_x, steps, k0 + b, group, out, ylo, xlo * group)


@njit
def blend_labels_batch(way, acc, tiles, weights_y, weights_x, steps, k0, group, scratch, label, out, x_origin):
    """:func:`blend_labels` for the steps of a batch, each cell's labels written into the (H, W) `out`."""
    for b in range(tiles.shape[0]):
        ylo, xlo = _cell_origin(steps, k0 + b, x_origin)
        blend_labels(way, acc, tiles[b], weights_y, weights_x, steps, k0 + b, group, scratch, label, out, ylo, xlo)


@njit(inline="always")
def _halves_to_floats(bits, out, k0, k1):
    """out[k0:k1] = the float16 values whose uint16 bits are bits[k0:k1], exactly, in integer arithmetic.

    The half's exponent and mantissa are shifted into float32 position and the
    result scaled by 2**112 (which also turns half subnormals into the right
    float32 values); half inf and NaN get the float32 all-ones exponent first.
    """
    out_bits = out.view(np.uint32)
    for k in range(k0, k1):
        u = np.uint64(k)
        h = np.uint32(bits[u])
        infnan = np.uint32(0x7F800000) if (h & np.uint32(0x7C00)) == np.uint32(0x7C00) else np.uint32(0)
        out_bits[u] = ((h & np.uint32(0x7FFF)) << np.uint32(13)) | ((h & np.uint32(0x8000)) << np.uint32(16)) | infnan
    scale = np.float32(2.0**112)
    for k in range(k0, k1):
        out[np.uint64(k)] *= scale


@njit
def half_to_float(bits, out):
    """float16 values given as their uint16 bits into float32 `out`, exactly (numba has no float16)."""
    _halves_to_floats(bits, out, 0, bits.shape[0])


@njit
def half_to_float_f16c(bits, out):
    """:func:`half_to_float` by the processor's conversion instruction, 8 values at a time (3 x faster);
    only where `_simd.HALF_IN_HARDWARE` says the compiled code gets that instruction."""
    n = bits.shape[0]
    if out.shape[0] < n:
        raise IndexError("half_to_float_f16c: out is shorter than bits")
    blocks = n // LANES
    half_to_float_blocks(bits, out, blocks)
    _halves_to_floats(bits, out, blocks * LANES, n)


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
def emit_weighted_labels(way, acc, y0, cap, x0, scratch, group, label, out):
    """Labels of a cell of the general path (the weight sum is a common positive factor), through
    scratch (P, rows, cell elements) and label (rows, cell width)."""
    block = scratch.shape[1]
    for i0 in range(0, out.shape[0], block):
        rows = min(block, out.shape[0] - i0)
        for t in range(rows):
            r = (y0 + i0 + t) % cap
            for p in range(acc.shape[0]):
                for k in range(out.shape[1] * group):
                    scratch[p, t, k] = acc[p, r, x0 + k]
        _argmax_as(way, scratch, 0, rows, out.shape[1], group, label, out, i0, 0)


@njit
def clear_rows(buf, start, stop, cap):
    """Zero image rows [start, stop) of a ring buffer (at most one full turn); buf is (P, cap, L)."""
    stop = min(stop, start + cap)
    for y in range(start, stop):
        buf[:, y % cap] = 0
