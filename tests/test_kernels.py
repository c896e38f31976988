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
