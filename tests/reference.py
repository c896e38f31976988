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
