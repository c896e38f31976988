"""Transposing tiles and cells for plans that walk tile columns (see :mod:`seamless_fast._traverse`)."""

import numpy as np

from ._jit import njit

__all__ = ["frame_tile", "cell_to_image", "transpose_pixels"]

# Pixels per side of the blocks the transposition copies: a block's source rows and destination rows stay in
# the L1 cache while it is copied.
BLOCK = 16


@njit
def _transpose_1(src, dst):
    planes, h, w, _ = src.shape
    for p in range(planes):
        for i0 in range(0, h, BLOCK):
            i1 = min(i0 + BLOCK, h)
            for j0 in range(0, w, BLOCK):
                for j in range(j0, min(j0 + BLOCK, w)):
                    for i in range(i0, i1):
                        dst[p, j, i, 0] = src[p, i, j, 0]


@njit
def _transpose_3(src, dst):
    planes, h, w, _ = src.shape
    for p in range(planes):
        for i0 in range(0, h, BLOCK):
            i1 = min(i0 + BLOCK, h)
            for j0 in range(0, w, BLOCK):
                for j in range(j0, min(j0 + BLOCK, w)):
                    for i in range(i0, i1):
                        dst[p, j, i, 0] = src[p, i, j, 0]
                        dst[p, j, i, 1] = src[p, i, j, 1]
                        dst[p, j, i, 2] = src[p, i, j, 2]


@njit
def _transpose_any(src, dst):
    planes, h, w, g = src.shape
    for p in range(planes):
        for i0 in range(0, h, BLOCK):
            i1 = min(i0 + BLOCK, h)
            for j0 in range(0, w, BLOCK):
                for j in range(j0, min(j0 + BLOCK, w)):
                    for i in range(i0, i1):
                        for k in range(g):
                            dst[p, j, i, k] = src[p, i, j, k]


def transpose_pixels(src, dst):
    """``dst[p, j, i, :] = src[p, i, j, :]`` for planes of (rows, columns, elements per pixel), block by block.

    numpy's strided copy of a transposed view with 3 elements per pixel runs
    at a small fraction of a plain copy's speed. A loop over the elements of a
    pixel whose count numba does not know is several times slower again than
    one it does, hence the kernels for 1 and 3 elements.
    """
    g = src.shape[3]
    (_transpose_1 if g == 1 else _transpose_3 if g == 3 else _transpose_any)(src, dst)


def frame_tile(planes, h, w, group, scratch=None):
    """Planes ``(P, h, w * group)`` of a tile (or any C-contiguous array of that size) transposed to
    ``(P, w, h * group)``, C-contiguous, in `scratch` when it is given and large enough."""
    pixels = planes.reshape(-1, h, w, group)
    shape = (pixels.shape[0], w, h, group)
    size = pixels.size
    if scratch is not None and scratch.size >= size and scratch.dtype == planes.dtype:
        out = scratch[:size].reshape(shape)
    else:
        out = np.empty(shape, planes.dtype)
    transpose_pixels(pixels, out)
    return out.reshape(shape[0], w, h * group)


def cell_to_image(source, dest, group, channel_first=False):
    """Copy a cell computed in the transposed frame into its image-frame destination.

    `source`: planes ``(P, w, h * group)`` (or labels ``(w, h)``);
    `dest`: the cell's array in the caller's layout, (h, w, C), (C, h, w) with
    `channel_first`, or (h, w).
    """
    if source.ndim == 2:
        src = source[None, :, :, None]
    else:
        planes, w = source.shape[:2]
        src = source.reshape(planes, w, -1, group)
    if dest.ndim == 2:
        view = dest[None, :, :, None]
    elif channel_first:
        view = dest[..., None]
    else:
        view = dest[None]
    transpose_pixels(src, view)
