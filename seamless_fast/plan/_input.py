"""The input side of a plan: models that read context, and models whose output has another resolution.

A plan works in *output* pixels: its image size, tile boxes and cells are
those of the blended output. The model reads, for each tile, a window of
the *input* image: the tile's box times ``output_scale``, grown by
``context`` input pixels on every side. With ``output_scale = 1`` and
``context = 0`` (the default) the two are the same.

Sizes the caller gives (image size, tile size, overlap, context, an area,
the boxes of a custom grid) are in input pixels and are turned into output
pixels here; tile, overlap and context must be multiples of the scale.
The output is ``ceil(input size / output_scale)`` pixels: where the input
size is not a multiple of the scale, the last output pixel of that axis
covers the input's last ``size % output_scale`` pixels plus padding, and
the read window of the last (flush) tile reaches up to
``output_scale - 1`` pixels (plus the context) past the border, filled by
the reader's pad rule like any other window that crosses the border.
"""

import dataclasses

import numpy as np

from .._validate import as_pair

__all__ = ["check_context_scale", "check_grid_scale", "to_output_pixels", "area_to_output", "read_windows",
           "with_input_geometry"]


def check_context_scale(context, output_scale, **multiples):
    """``(context, output_scale)`` as (y, x) pairs, validated; each of `multiples` (name: (y, x) pair, input pixels)
    and the context must be a multiple of the scale.

    Examples
    --------
    >>> check_context_scale(8, 2, tile_size=(64, 64), overlap=(16, 16))
    ((8, 8), (2, 2))
    >>> check_context_scale(0, 3, tile_size=(64, 64))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: tile_size=(64, 64) is not a multiple of output_scale=(3, 3) on both axes: ...
    """
    context = as_pair(context, "context", minimum=0)
    scale = as_pair(output_scale, "output_scale", minimum=1)
    for name, value in dict(multiples, context=context).items():
        if value[0] % scale[0] or value[1] % scale[1]:
            raise ValueError(f"{name}={tuple(value)} is not a multiple of output_scale={scale} on both axes: the "
                             "model returns tile_size / output_scale pixels, so every tile size, overlap and "
                             "context must divide evenly by the scale")
    return context, scale


def check_grid_scale(boxes, scale):
    """The boxes of a custom grid (input pixels) in output pixels; every bound must be a multiple of the scale."""
    if scale == (1, 1):
        return boxes
    factor = np.array(scale * 2, dtype=np.int64)
    off = np.argwhere(boxes % factor != 0)
    if len(off):
        index = tuple(off[0, :-1].tolist())
        raise ValueError(f"grid box {index} has bounds {tuple(boxes[index].tolist())} (ylo, xlo, yhi, xhi), not "
                         f"multiples of output_scale={scale}: with an output scale every grid bound (in input "
                         "pixels) must divide evenly by it")
    return boxes // factor


def to_output_pixels(image_size, tile_size, overlap, area, scale):
    """Image size (rounded up), tile size, overlap and area in output pixels.

    Examples
    --------
    >>> to_output_pixels((1001, 640), (128, 128), (32, 32), None, (2, 4))
    ((501, 160), (64, 32), (16, 8), None)
    """
    if scale == (1, 1):
        return image_size, tile_size, overlap, area
    size = tuple(-(-n // s) for n, s in zip(image_size, scale))
    return (size, tuple(t // s for t, s in zip(tile_size, scale)), tuple(o // s for o, s in zip(overlap, scale)),
            area_to_output(area, scale))


def area_to_output(area, scale):
    """An area given in input pixels, in output pixels: every (y, x) coordinate divided by the scale."""
    if area is None or scale == (1, 1):
        return area
    import shapely

    divisor = np.array(scale, dtype=np.float64)
    return shapely.transform(area, lambda coords: coords / divisor)  # exact where a coordinate is a multiple


def read_windows(boxes, scale, context):
    """The input windows of output `boxes` ``(n, 4)``: times the scale, grown by the context (int64, input pixels).

    Examples
    --------
    >>> read_windows(np.array([[0, 32, 64, 96]]), (2, 2), (8, 4)).tolist()
    [[-8, 60, 136, 196]]
    """
    boxes = np.asarray(boxes, dtype=np.int64)
    if scale == (1, 1) and context == (0, 0):
        return boxes.copy()
    (sy, sx), (cy, cx) = scale, context
    return boxes * np.array([sy, sx, sy, sx], np.int64) + np.array([-cy, -cx, cy, cx], np.int64)


def with_input_geometry(plan, input_size, context, scale):
    """`plan` with its input geometry recorded (the plan itself when there is none to record)."""
    if tuple(input_size) == plan.image_size and context == (0, 0) and scale == (1, 1):
        return plan
    return dataclasses.replace(plan, input_size=tuple(input_size), context=context, output_scale=scale)
