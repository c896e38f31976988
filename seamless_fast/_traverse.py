"""Traversal along either axis: a plan that walks tile columns is compiled on the transposed grid.

A plan with ``traverse="columns"`` is the plan of the transposed image (y and
x swapped: boxes, area, a 2-D window) seen from the image: its boxes, grid
indices, load and write order are the image's, while the arrays the kernels
read (``steps`` but for its ``cell`` and ``tile`` columns, ``live_from``,
the buffer and the stripes) stay in the transposed frame, where the buffer
rows are image columns. The :class:`~seamless_fast.blend.Blender` hands the
kernels each tile transposed and transposes each finished cell back, so the
kernels are the same for both traversals.
"""

import dataclasses

import numpy as np
import shapely

from ._jit import njit

__all__ = ["TRAVERSALS", "check_traverse", "choose_traverse", "transpose_boxes", "transpose_area",
           "transpose_window", "to_image_frame", "frame_grid", "frame_tile", "cell_to_image"]

TRAVERSALS = ("auto", "rows", "columns")


def check_traverse(traverse):
    """`traverse` if it is one of :data:`TRAVERSALS`; a one-line ValueError naming it otherwise."""
    if not isinstance(traverse, str) or traverse not in TRAVERSALS:
        raise ValueError(f"traverse={traverse!r} is not a traversal; expected 'auto', 'rows' or 'columns'")
    return traverse


def choose_traverse(traverse, image_size, tile_size):
    """'rows' or 'columns': `traverse`, or for 'auto' the one whose blend buffer is smaller (rows on a tie).

    Walking rows, the buffer is about a tile height by the image width; walking
    columns, a tile width by the image height.

    Examples
    --------
    >>> choose_traverse("auto", (1024, 40960), (256, 256)), choose_traverse("auto", (40960, 1024), 256)
    ('columns', 'rows')
    """
    if traverse != "auto":
        return traverse
    (height, width), (th, tw) = image_size, np.broadcast_to(tile_size, 2).tolist()
    return "columns" if min(tw, width) * height < min(th, height) * width else "rows"


def transpose_boxes(boxes):
    """A (rows, cols, 4) grid of (ylo, xlo, yhi, xhi) boxes as the (cols, rows, 4) grid of the transposed image."""
    return np.ascontiguousarray(boxes.transpose(1, 0, 2)[..., [1, 0, 3, 2]])


def transpose_area(area):
    """The area geometry with y and x swapped (None stays None)."""
    return None if area is None else shapely.transform(area, lambda xy: xy[:, ::-1])


def transpose_window(window):
    """The window of the transposed image: a 2-D array transposed; names and callables are per axis already."""
    return np.ascontiguousarray(window.T) if isinstance(window, np.ndarray) else window


def to_image_frame(frame, image_size, window):
    """The plan `frame`, compiled on the transposed grid, with its public view in image coordinates.

    Flat indices ``u = j * rows + i`` of the transposed grid become ``i * cols + j``;
    boxes and the per-tile weight offsets swap axes. ``steps`` keeps the
    transposed frame, except for its ``cell`` and ``tile`` columns.
    """
    from .plan import STEP_COLUMNS

    cols, rows = frame.grid_shape
    to_image = np.arange(rows * cols, dtype=np.int64)
    to_image = (to_image % rows) * cols + to_image // rows
    to_frame = np.empty_like(to_image)
    to_frame[to_image] = np.arange(rows * cols)
    steps = frame.steps.copy()
    for name in ("cell", "tile"):
        column = steps[:, STEP_COLUMNS.index(name)]
        column[column >= 0] = to_image[column[column >= 0]]
    swap = [1, 0, 3, 2]
    return dataclasses.replace(
        frame, image_size=tuple(image_size), grid_shape=(rows, cols),
        tile_boxes=_frozen(frame.tile_boxes[to_frame][:, swap]), cell_boxes=_frozen(frame.cell_boxes[to_frame][:, swap]),
        load_order=_frozen(to_image[frame.load_order]), write_cells=_frozen(to_image[frame.write_cells]),
        weight_y=_frozen(frame.weight_x[to_frame]), weight_x=_frozen(frame.weight_y[to_frame]),
        window=window, steps=_frozen(steps), traverse="columns")


def _frozen(array):
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def frame_grid(plan):
    """``(tile boxes, cell boxes)`` of `plan` in its traversal frame (transposed when it walks columns), flat."""
    if plan.traverse == "rows":
        return plan.tile_boxes, plan.cell_boxes
    rows, cols = plan.grid_shape
    order = np.arange(rows * cols).reshape(rows, cols).T.reshape(-1)
    swap = [1, 0, 3, 2]
    return plan.tile_boxes[order][:, swap], plan.cell_boxes[order][:, swap]


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
