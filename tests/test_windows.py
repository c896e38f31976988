"""Windows against their textbook formulas, and the seed's circle of trust."""

import numpy as np
import pytest
import scipy.interpolate

from seamless_fast.windows import WINDOWS, check_window, window_1d, window_2d


def seed_circle_of_trust(h, w):
    """The seed's construction: bilinear interpolation of 1 at the centre, 0 one pixel outside."""
    coords = np.array([(-1, h // 2, h), (-1, w // 2, w)])
    values = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    return scipy.interpolate.RegularGridInterpolator(coords, values)(tuple(np.indices((h, w))))


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (7, 10), (128, 128), (255, 97), (256, 256)])
def test_pyramid_is_the_seed_circle_of_trust(h, w):
    np.testing.assert_allclose(window_2d("pyramid", h, w), seed_circle_of_trust(h, w), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 64, 101])
def test_hann_and_gaussian_formulas(n):
    i = np.arange(n)
    np.testing.assert_allclose(window_1d("hann", n), np.sin(np.pi * (i + 1) / (n + 1)) ** 2, atol=1e-12)
    sigma = n / 8
    np.testing.assert_allclose(window_1d("gaussian", n), np.exp(-0.5 * ((i - (n - 1) / 2) / sigma) ** 2),
                               atol=1e-12)
    np.testing.assert_array_equal(window_1d("constant", n), np.ones(n))


@pytest.mark.parametrize("name", sorted(WINDOWS))
@pytest.mark.parametrize("n", [1, 2, 3, 64, 257])
def test_named_windows_are_positive_symmetric_and_peak_at_one(name, n):
    w = window_1d(name, n)
    assert w.shape == (n,) and np.all(w > 0) and not w.flags.writeable
    assert w.max() <= 1.0 + 1e-12
    if n % 2 or name in ("pyramid", "constant"):  # symmetric tapers of even length peak between pixels
        np.testing.assert_allclose(w.max(), 1.0)
    if name != "pyramid":  # the seed's pyramid peaks at n // 2, so it is lopsided for even n
        np.testing.assert_allclose(w, w[::-1], atol=1e-12)


def test_separable_window_is_outer_product():
    np.testing.assert_allclose(window_2d("hann", 5, 8), np.outer(window_1d("hann", 5), window_1d("hann", 8)))


def test_user_windows():
    assert window_1d(lambda n: np.full(n, 2.0), 3).tolist() == [2.0, 2.0, 2.0]
    grid = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(window_2d(check_window(grid), 2, 3), grid)


@pytest.mark.parametrize("window, message", [
    ("cosine", "window='cosine' is not known"),
    (np.ones(5), "2-D"),
    (np.ones((0, 3)), "non-empty 2-D"),
    (np.array([[1.0, np.nan]]), "finite and strictly positive"),
    (np.array([[1, 0]]), "strictly positive"),
    (np.array([["a"]]), "real array"),
])
def test_bad_windows(window, message):
    with pytest.raises(ValueError, match=message):
        check_window(window)
