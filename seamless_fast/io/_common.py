"""Helpers shared by the reader and the writer: tifffile import, box and fill checks."""

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
    """``fill`` as a 0-d array of ``dtype``, refusing values the dtype cannot hold."""
    if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (numbers.Real, np.number)):
        raise ValueError(f"{name}={fill!r} is not a number")
    with np.errstate(all="ignore"):
        value = np.asarray(fill).astype(dtype)
    same = value == fill or (np.isnan(fill) and np.isnan(value))
    if not same:
        raise ValueError(f"{name}={fill!r} cannot be stored exactly as {dtype}")
    return value
