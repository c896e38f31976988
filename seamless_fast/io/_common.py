"""Helpers shared by the reader and the writer: tifffile import, box and fill checks."""

import math
import numbers

import numpy as np

from .._validate import as_int

PAD_MODES = ("reflect", "edge", "constant")


def _import_tifffile():
    try:
        import tifffile
    except ImportError:
        raise ImportError("reading or writing TIFF files needs tifffile: "
                          "pip install 'seamless_fast[tiff]'") from None
    return tifffile


def _check_box(box, name="box"):
    """``box`` as a tuple of 4 ints ``(ylo, xlo, yhi, xhi)`` with a non-empty extent."""
    try:
        items = tuple(box)
    except TypeError:
        raise ValueError(f"{name}={box!r} is not a box; expected (ylo, xlo, yhi, xhi)") from None
    if len(items) != 4:
        raise ValueError(f"{name}={box!r} has {len(items)} items; expected 4: (ylo, xlo, yhi, xhi)")
    try:
        ylo, xlo, yhi, xhi = (as_int(v, name) for v in items)
    except ValueError:
        raise ValueError(f"{name}={box!r} has a non-integer entry; expected 4 ints (ylo, xlo, yhi, xhi)") from None
    if yhi <= ylo or xhi <= xlo:
        raise ValueError(f"{name}={box!r} is empty; expected yhi > ylo and xhi > xlo")
    return ylo, xlo, yhi, xhi


def _check_fill(fill, dtype, name="fill"):
    """``fill`` as a 0-d array of ``dtype``, refusing values the dtype cannot hold.

    An integer dtype must hold `fill` exactly (compared in Python's exact
    int/float arithmetic: nothing wraps, 2.5 is no integer); a float dtype
    takes the nearest value, as any float conversion does, but a finite
    `fill` that would become inf is refused (1e300 is no float32).
    """
    if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (numbers.Real, np.integer, np.floating)):
        raise ValueError(f"{name}={fill!r} is not a real number")
    exact = fill.item() if isinstance(fill, np.generic) else fill
    dtype = np.dtype(dtype)
    try:
        with np.errstate(all="ignore"):
            if dtype.kind in "iub":
                if isinstance(exact, float) and not exact.is_integer():
                    raise OverflowError
                low, high = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
                if not low <= exact <= high:
                    raise OverflowError
                value = np.array(int(exact)).astype(dtype)
            else:
                value = np.array(dtype.type(exact))
                stored = value.real.item() if dtype.kind == "c" else value.item()
                if math.isinf(stored) and not math.isinf(exact):
                    raise OverflowError
    except (OverflowError, TypeError, ValueError):
        raise ValueError(f"{name}={fill!r} cannot be stored as {dtype}") from None
    return value
