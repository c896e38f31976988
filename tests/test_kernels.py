"""Kernels that the blend tests do not reach one by one, against numpy."""

import numpy as np
import pytest

from seamless_fast import _kernels


def test_half_to_float_is_exact_for_every_half():
    halves = np.arange(1 << 16, dtype=np.uint16)
    out = np.empty(halves.size, np.float32)
    _kernels.half_to_float(halves, out)
    np.testing.assert_array_equal(out, halves.view(np.float16).astype(np.float32))


@pytest.mark.parametrize("planes, group", [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (1, 8), (1, 12),
                                          (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1), (12, 1)])
def test_argmax_rows_matches_numpy(planes, group):
    rng = np.random.default_rng(planes * 10 + group)
    pixels = 50
    values = rng.random((planes, pixels * group)).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = np.nan
    values[:, :group] = 0.5  # ties: the first maximum wins
    channels_last = values.reshape(planes, pixels, group).transpose(1, 0, 2).reshape(pixels, planes * group)
    labels = np.zeros((3, pixels + 1), np.uint8)
    scratch = np.full((planes, 2, pixels * group), np.inf, np.float32)
    scratch[:, 1] = values
    top, label = np.empty((2, pixels), np.float32), np.empty((2, pixels), np.float32)
    _kernels.argmax_rows(scratch, 1, 1, pixels, group, top, label, labels, 2, 1)
    np.testing.assert_array_equal(labels[2, 1:], np.argmax(channels_last, axis=1))
    assert not labels[:2].any() and labels[2, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pixels", [0, 1, 7, 8, 9, 16, 67])
def test_argmax_rows_eight_interleaved_channels_every_winner_and_nan(dtype, pixels):
    """The 8 x 8 transposed path (blocks of 8 pixels) and its tail: the maximum, ties, inf and the first
    NaN at every channel position, across block boundaries."""
    rng = np.random.default_rng(pixels)
    values = rng.random((pixels, 8)).astype(dtype)
    j = np.arange(pixels)
    values[j, j % 8] = 2.0
    values[j % 3 == 1, :] = 0.5  # ties everywhere: channel 0
    nan_rows = j % 5 == 2
    values[nan_rows, (j[nan_rows] // 5) % 8] = np.nan
    values[j % 7 == 3, (j[j % 7 == 3] + 3) % 8] = np.nan  # a second NaN in some pixels
    values[j % 11 == 4] = [-np.inf, np.inf, np.inf, 0, 0, 0, 0, np.inf]
    scratch = np.full((1, 3, max(pixels, 1) * 8), -1.0, dtype)
    scratch[0, 1, : pixels * 8] = values.reshape(-1)
    labels = np.full((4, pixels + 2), 9, np.uint8)
    top, label = np.empty((3, max(pixels, 1)), dtype), np.empty((3, max(pixels, 1)), dtype)
    _kernels.argmax_rows(scratch, 1, 1, pixels, 8, top, label, labels, 2, 1)
    np.testing.assert_array_equal(labels[2, 1:pixels + 1], np.argmax(values, axis=1))
    assert (labels[[0, 1, 3]] == 9).all() and labels[2, 0] == 9 and labels[2, pixels + 1] == 9


def test_argmax_rows_eight_channels_refuses_rows_beyond_the_scratch():
    scratch = np.zeros((1, 2, 64), np.float32)
    top = label = np.zeros((2, 8), np.float32)
    with pytest.raises(IndexError, match="scratch rows"):
        _kernels.argmax_rows(scratch, 1, 2, 8, 8, top, label, np.zeros((4, 8), np.uint8), 0, 0)
