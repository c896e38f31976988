"""Private numba kernels. They take plain arrays and integers only.

The accumulator is a ring buffer of output rows: image row ``y`` lives in
ring row ``y % cap``. Columns are offset so that ring column 0 is the
leftmost column any tile of the plan touches. Public wrappers in
:mod:`seamless_fast.blend` validate, cast and allocate.
"""

from ._jit import njit


@njit
def blend_separable(acc, tile, wy, wx, y0, first, cap, x0):
    """acc[ring(y0 + i), x0 + j, :] += wy[i] * wx[j] * tile[i, j, :] for rows i >= first.

    `wy`, `wx` are already normalised, so the accumulator holds final values.
    """
    h, w, nc = tile.shape
    for i in range(first, h):
        r = (y0 + i) % cap
        a = wy[i]
        for j in range(w):
            f = a * wx[j]
            for c in range(nc):
                acc[r, x0 + j, c] += f * tile[i, j, c]


@njit
def blend_weighted(acc, wsum, tile, weight, y0, first, cap, x0):
    """acc += weight * tile and wsum += weight over rows i >= first (normalised on emission)."""
    h, w, nc = tile.shape
    for i in range(first, h):
        r = (y0 + i) % cap
        for j in range(w):
            f = weight[i, j]
            wsum[r, x0 + j] += f
            for c in range(nc):
                acc[r, x0 + j, c] += f * tile[i, j, c]


@njit
def emit_values(acc, y0, cap, x0, out):
    """out[i, j, :] = acc[ring(y0 + i), x0 + j, :]."""
    h, w, nc = out.shape
    for i in range(h):
        r = (y0 + i) % cap
        for j in range(w):
            for c in range(nc):
                out[i, j, c] = acc[r, x0 + j, c]


@njit
def emit_values_weighted(acc, wsum, y0, cap, x0, out):
    """out[i, j, :] = acc[...] / wsum[...]."""
    h, w, nc = out.shape
    for i in range(h):
        r = (y0 + i) % cap
        for j in range(w):
            inv = 1.0 / wsum[r, x0 + j]
            for c in range(nc):
                out[i, j, c] = acc[r, x0 + j, c] * inv


@njit
def emit_labels(acc, y0, cap, x0, out):
    """out[i, j] = argmax over channels (first maximum, and a NaN wins as in numpy).

    The weight sum is a positive common factor of every channel, so the
    unnormalised accumulator gives the same labels.
    """
    h, w = out.shape
    nc = acc.shape[2]
    for i in range(h):
        r = (y0 + i) % cap
        for j in range(w):
            best = 0
            top = acc[r, x0 + j, 0]
            if top == top:
                for c in range(1, nc):
                    v = acc[r, x0 + j, c]
                    if v != v:
                        best = c
                        break
                    if v > top:
                        top = v
                        best = c
            out[i, j] = best


@njit
def clear_rows(buf, start, stop, cap):
    """Zero image rows [start, stop) of a ring buffer (at most one full turn)."""
    stop = min(stop, start + cap)
    for y in range(start, stop):
        buf[y % cap] = 0
