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


class InputFile:
    """What every reader shares: `close` (safe twice), the context manager and the repr.

    A subclass sets `_source` (None once closed), `_finalizer` (releases
    the source), `_name` and `_describe()` (the repr's fields after the name).
    """

    def close(self):
        """Release the source (closes its file). Safe to call twice."""
        if self._source is not None:
            self._source = None
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        fields = "closed" if self._source is None else self._describe()
        return f"{type(self).__name__}({self._name!r}, {fields})"


class OutputFile:
    """What every writer of an output file does as a context manager: :meth:`close` (the file appears under
    its name, complete) when the block ends normally, :meth:`abort` (nothing is left) when it raises."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _check_box(box, name="box", axes="yx"):
    """``box`` as a tuple of ints ``(lo..., hi...)`` over `axes` (``(ylo, xlo, yhi, xhi)`` for an image,
    ``(zlo, ylo, xlo, zhi, yhi, xhi)`` with ``axes="zyx"``) with a non-empty extent, else a ValueError."""
    names = [f"{a}lo" for a in axes] + [f"{a}hi" for a in axes]
    layout, n = f"({', '.join(names)})", 2 * len(axes)
    try:
        items = tuple(box)
    except TypeError:
        raise ValueError(f"{name}={box!r} is not a box; expected {layout}") from None
    if len(items) != n:
        raise ValueError(f"{name}={box!r} has {len(items)} items; expected {n}: {layout}")
    try:
        out = tuple(as_int(v, name) for v in items)
    except ValueError:
        raise ValueError(f"{name}={box!r} has a non-integer entry; expected {n} ints {layout}") from None
    if any(hi <= lo for lo, hi in zip(out[:len(axes)], out[len(axes):])):
        bounds = [f"{a}hi > {a}lo" for a in axes]
        raise ValueError(f"{name}={box!r} is empty; expected {', '.join(bounds[:-1])} and {bounds[-1]}")
    return out


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
