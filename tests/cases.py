"""Shared helpers for tests: random tiles for a plan, and a checked run against the reference."""

import numpy as np

import seamless_fast as sf
from seamless_fast.windows import window_2d

from reference import reference_blend, reference_labels_agree

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def random_tiles(plan, rng, channels, dtype):
    """One random tile (h, w, C) per grid tile, values in [0, 1] (0..100 for integers)."""
    dtype = np.dtype(dtype)
    tiles = []
    for ylo, xlo, yhi, xhi in plan.tile_boxes.tolist():
        shape = (yhi - ylo, xhi - xlo, channels)
        if dtype.kind == "b":
            tiles.append(rng.random(shape) < 0.5)
        elif dtype.kind in "iu":
            tiles.append(rng.integers(0, 101, shape).astype(dtype))
        else:
            tiles.append(rng.random(shape).astype(dtype))
    return tiles


def to_layout(tile, layout):
    if layout == "chw":
        return np.ascontiguousarray(tile.transpose(2, 0, 1))
    if layout == "hw":
        return tile[:, :, 0]
    return tile


def run_cells(plan, tiles, layout="hwc", **options):
    """Push every needed tile through a Blender; return the emitted cells with the step they came out at."""
    emitted = []
    with sf.Blender(plan, channel_first=(layout == "chw"), **options) as blender:
        for step, t in enumerate(plan.load_order.tolist()):
            for cell in blender.push(to_layout(tiles[t], layout)):
                emitted.append((step, cell))
    return emitted


def check_against_reference(plan, tiles, layout="hwc", labels=False, **options):
    """Run the plan and compare every emitted cell with the reference; return the write-count map."""
    windows = [window_2d(plan.window, b[2] - b[0], b[3] - b[1]) for b in plan.tile_boxes.tolist()]
    expected, covered = reference_blend(plan.tile_boxes.tolist(), tiles, windows, plan.image_size)
    scale = 100.0 if tiles[0].dtype.kind in "iu" else 1.0
    writes = np.zeros(plan.image_size, np.int64)
    for _, cell in run_cells(plan, tiles, layout, labels=labels, **options):
        ys, xs = cell.slices
        writes[ys, xs] += 1
        assert covered[ys, xs].all()
        want = expected[ys, xs]
        if labels:
            assert cell.data.dtype == np.uint8
            assert cell.data.shape == want.shape[:2]
            assert reference_labels_agree(cell.data, want / scale)
            continue
        data = cell.data
        if layout == "chw":
            data = data.transpose(1, 2, 0)
        elif layout == "hw":
            data = data[:, :, None]
        assert data.shape == want.shape
        tolerance = TOLERANCE[data.dtype] * scale
        np.testing.assert_allclose(data, want, rtol=0, atol=tolerance)
    assert writes.max() <= 1, "a pixel was written twice"
    return writes
