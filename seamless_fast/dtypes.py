"""Output dtype policy: which dtype an output is stored in, and the checked conversion into it.

Labels
    Stored as the smallest unsigned integer that holds every class:
    uint8 up to 256 classes, uint16 up to 65536, uint32 beyond. A dtype
    asked for explicitly must hold the largest label (classes - 1); a
    narrower one is refused before any work, never wrapped.
Values (probabilities or logits)
    float32 by default, or float16. uint8 and uint16 store probabilities
    quantised to the whole integer range: ``round(p * 255)`` or
    ``round(p * 65535)``, so 0 maps to 0 and 1 to the largest value. Only
    values in [0, 1] (up to float rounding, :data:`PROBABILITY_SLACK`) can
    be quantised; anything else, NaN included, is refused rather than
    clipped. A float16 output refuses finite values beyond its range
    (+-65504) rather than turning them into inf.

Every conversion into a stored dtype goes through :func:`to_output_dtype`,
which raises a ValueError naming the values it cannot hold: a written
output never holds a value other than the one computed.
"""

import numpy as np

__all__ = ["OUTPUT_DTYPES", "LABEL_DTYPES", "PROBABILITY_SLACK", "label_dtype", "output_dtype", "as_output_dtype",
           "to_output_dtype"]

OUTPUT_DTYPES = ("uint8", "uint16", "uint32", "float16", "float32")
LABEL_DTYPES = ("uint8", "uint16", "uint32")
# Blended probabilities may stray from [0, 1] by float rounding; beyond this they are not probabilities.
PROBABILITY_SLACK = 1e-4


def label_dtype(classes):
    """Smallest unsigned dtype that stores the labels 0 .. `classes` - 1.

    Examples
    --------
    >>> label_dtype(256), label_dtype(300), label_dtype(70_000)
    (dtype('uint8'), dtype('uint16'), dtype('uint32'))
    """
    classes = int(classes)
    if classes < 1:
        raise ValueError(f"classes={classes} must be positive")
    for name in LABEL_DTYPES:
        if classes - 1 <= np.iinfo(name).max:
            return np.dtype(name)
    raise ValueError(f"classes={classes} is more than uint32 labels hold")


def output_dtype(dtype, *, labels, classes=None):
    """The dtype an output is stored in, checked against what it must hold.

    Parameters
    ----------
    dtype : dtype-like or None
        Asked for by the caller; None chooses the default.
    labels : bool
        The output holds arg-max labels (else values).
    classes : int, optional
        Number of classes (model output channels); needed for labels.

    Returns
    -------
    numpy.dtype

    Examples
    --------
    >>> output_dtype(None, labels=True, classes=300)
    dtype('uint16')
    >>> output_dtype("uint8", labels=True, classes=300)
    Traceback (most recent call last):
    ...
    ValueError: dtype=uint8 holds labels up to 255, but the model gives 300 classes (labels up to 299); use uint16 or leave the dtype unset
    """
    if labels:
        if classes is None:
            raise ValueError("classes must be given for a labels output")
        fitting = label_dtype(classes)
        if dtype is None:
            return fitting
        wanted = as_output_dtype(dtype)
        if wanted.name not in LABEL_DTYPES:
            raise ValueError(f"dtype={wanted.name} does not store labels; expected one of {LABEL_DTYPES}")
        if np.iinfo(wanted).max < classes - 1:
            raise ValueError(f"dtype={wanted.name} holds labels up to {np.iinfo(wanted).max}, but the model gives "
                             f"{classes} classes (labels up to {classes - 1}); use {fitting.name} or leave the "
                             "dtype unset")
        return wanted
    if dtype is None:
        return np.dtype(np.float32)
    wanted = as_output_dtype(dtype)
    if wanted.name not in ("uint8", "uint16", "float16", "float32"):
        raise ValueError(f"dtype={wanted.name} does not store values; expected uint8 or uint16 (probabilities "
                         "quantised to the whole range), float16 or float32")
    return wanted


def as_output_dtype(dtype):
    """`dtype` as a numpy dtype of native byte order, if it is one of :data:`OUTPUT_DTYPES`; else a ValueError."""
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype={dtype!r} is not a data type; expected one of {OUTPUT_DTYPES}") from None
    if out.name not in OUTPUT_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of {OUTPUT_DTYPES}")
    return out.newbyteorder("=")


def to_output_dtype(data, dtype, *, name="data"):
    """`data` converted to the stored `dtype`, or a ValueError if a value would change.

    Integers (labels) must lie in the range of an integer `dtype`. Floats
    into uint8 or uint16 are probabilities, quantised as
    ``rint(clip(p, 0, 1) * max)`` where ``max`` is 255 or 65535; they must
    lie in [0, 1] up to :data:`PROBABILITY_SLACK` and not be NaN. Floats
    into a narrower float must be finite-in, finite-out (NaN and inf stay
    as they are). Integers into a float dtype must be exactly representable.

    Examples
    --------
    >>> to_output_dtype(np.array([0.0, 0.5, 1.0]), np.uint16)
    array([    0, 32768, 65535], dtype=uint16)
    >>> to_output_dtype(np.array([3, 299]), np.uint8)
    Traceback (most recent call last):
    ...
    ValueError: data holds values from 3 to 299; uint8 holds 0 to 255
    """
    data = np.asarray(data)
    dtype = np.dtype(dtype)
    if data.dtype == dtype:
        return data
    if data.size == 0:
        return data.astype(dtype)
    kind, target = data.dtype.kind, dtype.kind
    if kind not in "biuf":  # complex (its imaginary part would be dropped), objects, dates, strings
        raise ValueError(f"{name} of dtype {data.dtype} cannot be stored as {dtype.name}; expected real numbers")
    if kind == "f" and target in "iu":
        return _quantise(data, dtype, name)
    if kind in "iub" and target in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(data.min()), int(data.max())
        if lo < info.min or hi > info.max:
            raise ValueError(f"{name} holds values from {lo} to {hi}; {dtype.name} holds {info.min} to {info.max}")
        return data.astype(dtype)
    if target == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            out = data.astype(dtype)
        if kind == "f":
            overflow = np.isinf(out) & np.isfinite(data)
            if overflow.any():
                bad = data[overflow].flat[0]
                raise ValueError(f"{name} holds {bad!r}, beyond the range of {dtype.name} "
                                 f"(+-{float(np.finfo(dtype).max)}); store it as float32")
        elif not np.array_equal(out.astype(data.dtype), data):
            raise ValueError(f"{name} holds integers that {dtype.name} cannot store exactly")
        return out
    raise ValueError(f"{name} of dtype {data.dtype} cannot be stored as {dtype.name}")


def _quantise(data, dtype, name):
    top = np.iinfo(dtype).max
    lo, hi = float(np.min(data)), float(np.max(data))
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"{name} holds NaN, which a {dtype.name} output of probabilities cannot store; "
                         "write float32 to keep it")
    if lo < -PROBABILITY_SLACK or hi > 1 + PROBABILITY_SLACK:
        raise ValueError(f"{name} holds values from {lo:g} to {hi:g}, which are not probabilities in [0, 1]; "
                         f"{dtype.name} stores probabilities as round(p * {top}): apply softmax in the model, "
                         "or write float32")
    scaled = np.rint(np.clip(data, 0, 1, dtype=np.float64) * top)
    return scaled.astype(dtype)
