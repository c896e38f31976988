"""Traversal along either axis: a plan that walks tile columns is compiled on the transposed grid.

A plan with ``traverse="columns"`` is the plan of the transposed image (y and
x swapped: boxes, area, a 2-D window) seen from the image: its boxes, grid
indices, load and write order are the image's, while the arrays the kernels
read (``steps`` but for its ``cell`` and ``tile`` columns, ``live_from``,
the buffer and the stripes) stay in the transposed frame, where the buffer
rows are image columns. The :class:`~seamless_fast.engine.blender.Blender` hands the
kernels each tile transposed and transposes each finished cell back
(:mod:`seamless_fast.engine._transpose`), so the kernels are the same for both
traversals. Planning imports no numba: this module has no kernel.
"""

import dataclasses

import numpy as np
import shapely

from ._schedule import STEP_COLUMNS

__all__ = ["TRAVERSALS", "AUTO_GAIN", "check_traverse", "choose_traverse", "transpose_boxes", "transpose_area",
           "transpose_window", "to_image_frame"]

TRAVERSALS = ("auto", "rows", "columns")


def check_traverse(traverse):
    """`traverse` if it is one of :data:`TRAVERSALS`; a one-line ValueError naming it otherwise."""
    if not isinstance(traverse, str) or traverse not in TRAVERSALS:
        raise ValueError(f"traverse={traverse!r} is not a traversal; expected 'auto', 'rows' or 'columns'")
    return traverse


# 'auto' walks columns when their buffer is less than 1 / AUTO_GAIN of the rows' buffer: each tile and cell is
# then transposed for the kernels (profiling/traverse.py), which a small saving does not repay.
AUTO_GAIN = 2


def choose_traverse(traverse, image_size, tile_size):
    """'rows' or 'columns': `traverse`, or for 'auto' columns when their blend buffer is less than half the rows'.

    Walking rows, the buffer is about a tile height by the image width; walking
    columns, a tile width by the image height.

    Examples
    --------
    >>> choose_traverse("auto", (1024, 40960), (256, 256)), choose_traverse("auto", (40960, 1024), 256)
    ('columns', 'rows')
    >>> choose_traverse("auto", (1000, 1500), 256), choose_traverse("rows", (1024, 40960), 256)
    ('rows', 'rows')
    """
    if traverse != "auto":
        return traverse
    (height, width), (th, tw) = image_size, np.broadcast_to(tile_size, 2).tolist()
    return "columns" if AUTO_GAIN * min(tw, width) * height < min(th, height) * width else "rows"


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
