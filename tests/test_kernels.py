"""Kernels that the blend tests do not reach one by one, against numpy."""

import numpy as np
import pytest

from seamless_fast.engine import _kernels, _simd


CONVERTERS = [_kernels.half_to_float,
              pytest.param(_kernels.half_to_float_f16c, marks=pytest.mark.skipif(
                  not _simd.HALF_IN_HARDWARE, reason="no F16C conversion in numba's code on this machine"))]


@pytest.mark.parametrize("convert", CONVERTERS)
@pytest.mark.parametrize("tail", [0, 1, 7])
def test_half_to_float_is_exact_for_every_half(convert, tail):
    halves = np.concatenate([np.arange(1 << 16, dtype=np.uint16), np.arange(tail, dtype=np.uint16) + 0x3C00])
    out = np.full(halves.size + 3, -7.0, np.float32)
    convert(halves, out)
    np.testing.assert_array_equal(out[:halves.size], halves.view(np.float16).astype(np.float32))
    assert (out[halves.size:] == -7.0).all()


def test_half_to_float_f16c_refuses_a_short_out():
    with pytest.raises(IndexError, match="shorter"):
        _kernels.half_to_float_f16c(np.zeros(9, np.uint16), np.zeros(8, np.float32))


COUNTS = [2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 21]


def channel_values(rng, pixels, n, dtype):
    """(pixels, n) values with the maximum at every channel position, ties, infinities, and one or two NaN
    in some pixels, at every position too."""
    values = rng.random((pixels, n)).astype(dtype)
    j = np.arange(pixels)
    values[j, j % n] = 2.0
    values[j % 3 == 1] = 0.5  # ties everywhere: channel 0 wins
    nan = j % 5 == 2
    values[nan, (j[nan] // 5) % n] = np.nan
    second = j % 7 == 3
    values[second, (j[second] + 3) % n] = np.nan
    inf = j % 11 == 4
    values[inf] = -np.inf
    values[inf, (j[inf] // 11) % n] = np.inf
    values[rng.random(values.shape) < 0.02] = np.nan
    return values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("planar", [False, True], ids=["interleaved", "planes"])
@pytest.mark.parametrize("n", COUNTS)
@pytest.mark.parametrize("pixels", [0, 1, 7, 9, 16, 67])
def test_argmax_rows_matches_numpy(n, planar, dtype, pixels):
    """Both ways of `argmax_rows` (compiled per count, or the vector code with its per-pixel tail): one row
    of the scratch, written to one place in out and nowhere else."""
    values = channel_values(np.random.default_rng(n * 100 + pixels), pixels, n, dtype)
    width = max(pixels, 1)
    if planar:
        scratch = np.full((n, 3, width), -1.0, dtype)
        scratch[:, 1, :pixels] = values.T
    else:
        scratch = np.full((1, 3, width * n), -1.0, dtype)
        scratch[0, 1, :pixels * n] = values.reshape(-1)
    labels = np.full((4, pixels + 2), 99, np.uint8)
    label = np.empty((3, width), dtype)
    _kernels.argmax_rows(scratch, 1, 1, pixels, 1 if planar else n, label, labels, 2, 1)
    np.testing.assert_array_equal(labels[2, 1:pixels + 1], np.argmax(values, axis=1))
    assert (labels[[0, 1, 3]] == 99).all() and labels[2, 0] == 99 and labels[2, pixels + 1] == 99


@pytest.mark.parametrize("shape, group", [((1, 2, 7 * 16), 7), ((7, 2, 16), 1)], ids=["interleaved", "planes"])
def test_argmax_rows_vector_code_refuses_rows_beyond_the_scratch(shape, group):
    scratch = np.zeros(shape, np.float32)
    label = np.zeros((2, 16), np.float32)
    with pytest.raises(IndexError, match="scratch rows"):
        _kernels.argmax_rows(scratch, 1, 2, 16, group, label, np.zeros((4, 16), np.uint8), 0, 0)
    with pytest.raises(IndexError, match="scratch rows"):
        _kernels.argmax_rows(scratch, 0, 1, 17, group, label, np.zeros((4, 17), np.uint8), 0, 0)


def _chunk_costs(first, h, fy, fx, length, bounds):
    """Cost of each chunk by the model `_chunk` balances, row by row: 3 x length above fy, 2 x length + fx
    from fy on."""
    cost = [3 * length if i < fy else 2 * length + fx for i in range(h)]
    return [sum(cost[lo:hi]) for lo, hi in bounds]


@pytest.mark.parametrize("seed", range(40))
def test_chunks_cover_the_rows_in_order_with_costs_shared_out(seed):
    rng = np.random.default_rng(seed)
    h = int(rng.integers(1, 300))
    first = int(rng.integers(0, h + 1))
    fy = int(rng.integers(0, h + 2))
    length = int(rng.integers(1, 800))
    fx = int(rng.integers(0, length + 1))
    n = int(rng.integers(1, 9))
    ints = (0, 0, first, h, fy, fx, 0, 0, 0, 0, 0)
    bounds = [_kernels._chunk(ints, c, n, length) for c in range(n)]
    assert bounds[0][0] == first and bounds[-1][1] == h
    assert all(lo <= hi for lo, hi in bounds) and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    costs = _chunk_costs(first, h, fy, fx, length, bounds)
    fair, row = sum(costs) / n, 3 * length  # no chunk is off by more than one row's cost
    assert all(abs(cost - fair) <= row for cost in costs)


@pytest.mark.parametrize("planar", [False, True], ids=["interleaved", "planes"])
@pytest.mark.parametrize("n", range(1, 10))
def test_argmax_way_picks_a_kernel_compiled_for_the_count_where_argmax_rows_does(n, planar):
    way = _kernels.argmax_way(n, planar)
    constant = (n == 2 and not planar) or n == 3 or (planar and 4 <= n <= 6)
    assert way == ((0,) * n if constant else (0.0,))
