"""Blending windows: how much each pixel of a tile is trusted.

Every window here is separable, ``w(y, x) = t_h(y) * t_w(x)``, and strictly
positive, so every covered pixel has a positive weight sum and the blend is
always defined. A user window is either a callable ``f(n) -> 1-D array`` (a
separable taper, evaluated once per tile length) or a 2-D array that is used
as is for tiles of exactly its shape.
"""

from functools import lru_cache

import numpy as np

__all__ = ["WINDOWS", "window_1d", "window_2d", "is_separable"]


def _pyramid(n):
    # The seed's "circle of trust": 1 at index n // 2, falling linearly to
    # reach 0 one step outside either end of the tile.
    m = n // 2
    i = np.arange(n, dtype=np.float64)
    return np.where(i <= m, (i + 1) / (m + 1), (n - i) / (n - m))


def _hann(n):
    # A Hann taper that reaches zero one pixel outside the tile, so the edge
    # pixels keep a small positive weight.
    from scipy.signal import windows  # imported on use: scipy.signal takes most of a second to import

    return windows.hann(n + 2)[1:-1]


def _gaussian(n):
    # As nnU-Net and MONAI: sigma = n / 8, peak 1 at the tile centre.
    from scipy.signal import windows

    return windows.gaussian(n, std=n / 8.0)


def _constant(n):
    # Plain averaging: not seamless, for comparison only.
    return np.ones(n, dtype=np.float64)


WINDOWS = {"pyramid": _pyramid, "hann": _hann, "gaussian": _gaussian, "constant": _constant}


def is_separable(window):
    """Whether `window` is evaluated per axis (a name or a callable) rather than given as a 2-D array."""
    return isinstance(window, str) or callable(window)


def check_window(window):
    """Validate a window spec early and return it (a 2-D array comes back as float64)."""
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(f"window={window!r} is not known; expected one of {sorted(WINDOWS)}, "
                             "a callable n -> 1-D array, or a 2-D array")
        return window
    if callable(window):
        return window
    arr = np.asarray(window, dtype=np.float64) if not isinstance(window, np.ndarray) else window
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "fiu":
        raise ValueError(f"window must be a name, a callable or a non-empty 2-D real array; "
                         f"got an array of shape {arr.shape} and dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    _check_positive(arr, "window")
    return arr


def _check_positive(values, what):
    if not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError(f"{what} must be finite and strictly positive everywhere "
                         f"(min {np.nanmin(values)!r}); a zero weight leaves pixels undefined")


@lru_cache(maxsize=256)
def _named_1d(name, n):
    out = WINDOWS[name](n).astype(np.float64)
    out.flags.writeable = False
    return out


def window_1d(window, n):
    """The 1-D taper of a separable window for a tile side of length `n`.

    Parameters
    ----------
    window : str or callable
        A name from :data:`WINDOWS` or a callable ``f(n)`` returning ``n`` positive values.
    n : int
        Tile side length in pixels.

    Returns
    -------
    numpy.ndarray
        Read-only float64 array of shape ``(n,)``, strictly positive.

    Examples
    --------
    >>> window_1d("pyramid", 5)
    array([0.33333333, 0.66666667, 1.        , 0.66666667, 0.33333333])
    """
    if isinstance(window, str):
        return _named_1d(window, int(n))
    out = np.asarray(window(int(n)), dtype=np.float64)
    if out.shape != (n,):
        raise ValueError(f"window callable returned shape {out.shape} for length {n}; expected ({n},)")
    _check_positive(out, "window callable output")
    return out


def window_2d(window, h, w):
    """The full 2-D window for a tile of shape ``(h, w)``.

    Examples
    --------
    >>> window_2d("constant", 2, 3)
    array([[1., 1., 1.],
           [1., 1., 1.]])
    """
    if is_separable(window):
        return np.outer(window_1d(window, h), window_1d(window, w))
    if window.shape != (h, w):
        raise ValueError(f"a 2-D window of shape {window.shape} cannot weight a tile of shape {(h, w)}; "
                         "give a callable window for tiles of several shapes")
    return window
