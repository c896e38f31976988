"""The dtypes a blend works in and the full-size arrays it allocates or writes into.

Allocation failures surface as a ValueError naming what was too large and how
many bytes, not numpy's MemoryError; see the dtype policy in
:mod:`seamless_fast.engine.blender`.
"""

import math

import numpy as np

from ..dtypes import label_dtype

__all__ = ["accumulator_dtype", "label_dtype", "check_accumulator", "allocate_output", "check_out", "output_planes",
           "new_array", "too_large"]


def accumulator_dtype(tile_dtype):
    """The float dtype tiles of `tile_dtype` are blended in (see the dtype policy)."""
    tile_dtype = np.dtype(tile_dtype)
    if tile_dtype.kind == "f" and tile_dtype.itemsize <= 8:
        return np.dtype(np.float64) if tile_dtype.itemsize > 4 else np.dtype(np.float32)
    if tile_dtype.kind in "iu":
        return np.dtype(np.float64) if tile_dtype.itemsize > 2 else np.dtype(np.float32)
    if tile_dtype.kind == "b":
        return np.dtype(np.float32)
    raise ValueError(f"tile dtype {tile_dtype} is not supported; expected a real float of at most 64 bits, "
                     "an integer or a bool dtype")


def check_accumulator(dtype):
    """The `dtype=` option as a numpy dtype (None stays None): float32 or float64, the kernels' types."""
    if dtype is None:
        return None
    try:
        checked = np.dtype(dtype)
    except TypeError:
        checked = None
    if checked is None or checked.kind != "f" or checked.itemsize not in (4, 8):
        shown = repr(dtype) if checked is None else str(checked)
        raise ValueError(f"dtype={shown} is not a supported accumulator; expected float32 or float64")
    return checked


def allocate_output(plan, sample, labels, channel_first, dtype):
    """A zeroed full-size output for tiles like `sample` (a malformed sample is reported by the blender)."""
    h, w = plan.image_size
    try:
        sample = np.asarray(sample)
    except Exception:
        return None
    if (sample.ndim not in (2, 3) or sample.dtype.kind not in "fiub" or 0 in sample.shape
            or (sample.dtype.kind == "f" and sample.dtype.itemsize > 8)):
        return None
    channels = 1 if sample.ndim == 2 else sample.shape[0] if channel_first else sample.shape[2]
    if labels:
        shape, dtype = (h, w), label_dtype(channels)
    else:
        dtype = accumulator_dtype(sample.dtype) if dtype is None else dtype
        shape = (h, w) if sample.ndim == 2 else (channels, h, w) if channel_first else (h, w, channels)
    return new_array(np.zeros, shape, dtype, "the output",
                     hint="pass out= (a numpy.memmap works) or take the cells as they come from a Blender or run_plan")


def too_large(what, shape, dtype, hint=None):
    """The ValueError for `what`, an array of `shape` and `dtype` that could not be allocated, with a remedy."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    hint = hint or ("give the plan a max_buffer_bytes (plan_regular_grid) to blend it in stripes, or use "
                    "buffer_on_disk")
    return ValueError(f"{what} is too large: shape {tuple(shape)} of {np.dtype(dtype)} needs {nbytes} bytes, "
                      f"which could not be allocated; {hint}")


def new_array(make, shape, dtype, what, hint=None):
    """``make(shape, dtype)`` (np.zeros or np.empty), with a ValueError naming `what` and its bytes when it
    cannot be allocated instead of numpy's MemoryError."""
    try:
        return make(shape, dtype)
    except (MemoryError, ValueError) as exc:
        raise too_large(what, shape, dtype, hint) from exc


def check_out(out, image_size, labels, channel_first):
    """Validate a full-size output array up front (its channels are checked against the first tile)."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.ndim not in (2, 3):
        raise ValueError(f"out must be a 2-D or 3-D array of the image size {image_size}; "
                         f"got {type(out).__name__} of shape {getattr(out, 'shape', None)}")
    spatial = out.shape[1:] if out.ndim == 3 and channel_first else out.shape[:2]
    if tuple(spatial) != tuple(image_size) or (labels and out.ndim != 2):
        expect = "(H, W)" if labels else "(C, H, W)" if channel_first else "(H, W, C) or (H, W)"
        raise ValueError(f"out has shape {out.shape}; expected {expect} with (H, W) = {tuple(image_size)}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def output_planes(out, ndim, labels, channel_first, channels, dtype, labels_dtype):
    """`out` as (P, H, W * group) planes for the kernels, after checking it against the first tile."""
    expected_dtype = labels_dtype if labels else dtype
    if out.dtype != expected_dtype:
        raise ValueError(f"out has dtype {out.dtype}; this run produces {expected_dtype}")
    if labels:
        return out
    if (out.ndim == 2) != (ndim == 2) or (ndim == 3 and out.shape[0 if channel_first else 2] != channels):
        raise ValueError(f"out has shape {out.shape}, which does not fit tiles with {channels} channel(s) "
                         f"and {ndim} dimensions (channel_first={channel_first})")
    if ndim == 2:
        return out[None]
    if channel_first:
        return out
    height, width = out.shape[:2]
    if out.strides[1] != channels * out.strides[2]:
        raise ValueError("out must keep each row's pixels and channels in one run, as a C-ordered "
                         "(H, W, C) array or a row slice of one does; channels next to each other")
    return np.lib.stride_tricks.as_strided(out, (1, height, width * channels),
                                           (0, out.strides[0], out.strides[2]), writeable=True)
