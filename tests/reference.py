"""Plain numpy references, written to be obviously right rather than fast."""

import numpy as np


def seed_axis_starts(size, tile, overlap, lo=0, hi=None):
    """The seed's grid rule along one axis (DESIGN.md section 2a), written out step by step."""
    hi = size if hi is None else hi
    if size <= tile:
        return [0], size
    stride = tile - overlap
    span_lo, span_hi = max(0, lo - tile), min(size, hi + tile)
    starts = []
    start = span_lo
    while start + tile <= span_hi:
        starts.append(start)
        start += stride
    if starts[-1] + tile < hi:
        starts.append(hi - tile)
    return starts, tile


def reference_blend(boxes, tiles, windows, image_size):
    """Accumulate weight * value and weight over full-size arrays, then divide.

    `boxes` are (ylo, xlo, yhi, xhi), `tiles` (h, w, C) arrays, `windows`
    (h, w) weight maps, one per tile. Returns (values, covered).
    """
    height, width = image_size
    channels = tiles[0].shape[2]
    numerator = np.zeros((height, width, channels), np.float64)
    denominator = np.zeros((height, width), np.float64)
    for (ylo, xlo, yhi, xhi), tile, weight in zip(boxes, tiles, windows):
        numerator[ylo:yhi, xlo:xhi] += weight[:, :, None] * tile.astype(np.float64)
        denominator[ylo:yhi, xlo:xhi] += weight
    covered = denominator > 0
    values = np.full_like(numerator, np.nan)
    values[covered] = numerator[covered] / denominator[covered][:, None]
    return values, covered


def reference_labels_agree(labels, values, tolerance=1e-5):
    """Whether `labels` pick the arg-max of `values` wherever the top two channels differ by > tolerance,
    and a channel within tolerance of the top elsewhere."""
    top = values.max(axis=-1)
    picked = np.take_along_axis(values, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    return bool(np.all(picked >= top - tolerance))


def reference_blend_nd(boxes, tiles, windows, size):
    """`reference_blend` in any number of dimensions: boxes (lo_0, ..., lo_{N-1}, hi_0, ..., hi_{N-1}),
    tiles (*spatial, C), windows of the tiles' spatial shapes. Returns (values, covered)."""
    n = len(size)
    numerator = np.zeros((*size, tiles[0].shape[-1]), np.float64)
    denominator = np.zeros(size, np.float64)
    for box, tile, weight in zip(boxes, tiles, windows):
        where = tuple(slice(box[a], box[a + n]) for a in range(n))
        numerator[where] += weight[..., None] * tile.astype(np.float64)
        denominator[where] += weight
    covered = denominator > 0
    values = np.full_like(numerator, np.nan)
    values[covered] = numerator[covered] / denominator[covered][:, None]
    return values, covered


def separable_window(taper, shape):
    """The N-D window of a 1-D taper function `taper(n)`: the outer product over the axes."""
    weight = np.ones(())
    for n in shape:
        weight = np.multiply.outer(weight, np.asarray(taper(n), np.float64))
    return weight
