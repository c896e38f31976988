"""The band-layout kernels (`_band_kernels`), driven step by step, against the plain numpy reference.

Random seeded plans: odd sizes and overlaps, overlap 0, flush last rows and
columns, tiles clamped to a small image, areas whose rows start and stop
mid-image; 1 to 130 channels in (H, W, C), (C, H, W) and (H, W) layouts;
values and labels; the serial, parallel and batch kernels.
"""

import numpy as np
import pytest
import shapely

import seamless_fast as sf
from seamless_fast.engine import _band_kernels, _kernels
from seamless_fast.plan import ring_layout
from seamless_fast.windows import window_2d

from reference import reference_blend, reference_labels_agree


def random_plan(rng, striped=False):
    """A regular plan with random odd sizes, overlaps (0 among them), and sometimes an area; `striped`:
    in stripes (a budget of 1.3 to 3.5 tile columns), with no area."""
    height, width = (int(v) for v in rng.integers(1, 300, 2))
    tile = (int(rng.integers(2, 90)), int(rng.integers(2, 90)))
    overlap = tuple(int(rng.integers(0, t)) if rng.random() > 0.2 else 0 for t in tile)
    area = None
    if striped:
        budget = int(min(tile[0], height) * rng.uniform(1.3, 3.5) * tile[1] * 4 * 8)
        return sf.plan_regular_grid((height, width), tile, overlap, max_buffer_bytes=budget, channels=8,
                                    traverse="rows")[0]
    if rng.random() < 0.4 and height > 2 and width > 2:
        y, x = rng.random(2) * (height, width)
        area = shapely.Point(y, x).buffer(float(rng.uniform(1, max(height, width) / 2)))
        if shapely.area(area.intersection(shapely.box(0, 0, height, width))) <= 0:
            area = None
    # the kernels are driven in the plan's frame, here that of rows
    plan, _ = sf.plan_regular_grid((height, width), tile, overlap, area=area, traverse="rows")
    return plan


def run_kernels(plan, tiles, group, channel_first, labels=False, chunks=0, batch=False):
    """Drive the band kernels over the plan's steps as the Blender does: the full output as planes."""
    first = tiles[0]
    n_planes = first.shape[0] if channel_first else 1
    dtype = first.dtype
    height, width = plan.image_size
    x_origin = plan.buffer_cols[0]
    band = np.zeros((n_planes, plan.buffer_rows, (plan.buffer_cols[1] - x_origin) * group), dtype)
    rows, cols = plan.right_buffer
    right = np.zeros((2, n_planes, rows, cols * group), dtype)
    weights_y = plan.weights.astype(dtype)
    weights_x = np.repeat(weights_y, group)
    channels = n_planes * group
    cells = plan.cell_boxes[plan.write_cells]
    cell_width = int((cells[:, 3] - cells[:, 1]).max())
    scratch = np.empty((n_planes, 4 * max(1, chunks), cell_width * group), dtype)
    label = np.empty((scratch.shape[1], cell_width), dtype)
    way = _kernels.argmax_way(n_planes if n_planes > 1 else group, n_planes > 1)
    if labels:
        out = np.full((height, width), 255, np.uint8)
    else:
        out = np.full((n_planes, height, width * group), np.nan, dtype)
    steps = plan.steps
    if batch:
        tiles = np.stack(tiles)
        if labels:
            _band_kernels.band_labels_batch(way, band, right, tiles, weights_y, weights_x, steps, 0, group, scratch,
                                            label, out, x_origin)
        else:
            _band_kernels.band_values_batch(band, right, tiles, weights_y, weights_x, steps, 0, group, out,
                                            x_origin)
    else:
        for k, tile in enumerate(tiles):
            s = steps[k]
            oy, ox = _band_kernels._cell_origin(steps, k, x_origin)
            if s[plan_col("cell")] < 0:  # a scrap target, as the Blender hands over
                target, oy, ox = (np.empty((1, 1), np.uint8) if labels else np.empty((n_planes, 1, 1), dtype)), 0, 0
            else:
                target = out
            if labels:
                args = (way, band, right, tile, weights_y, weights_x, steps, k, group, scratch, label, target, oy,
                        ox)
                if chunks:
                    _band_kernels.band_labels_parallel(*args, chunks)
                else:
                    _band_kernels.band_labels(*args)
            else:
                args = (band, right, tile, weights_y, weights_x, steps, k, group, target, oy, ox * group)
                if chunks:
                    _band_kernels.band_values_parallel(*args, chunks)
                else:
                    _band_kernels.band_values(*args)
    if labels:
        return out
    if channel_first:
        return out.transpose(1, 2, 0)
    return out[0].reshape(height, width, channels)


def plan_col(name):
    return sf.plan.STEP_COLUMNS.index(name)


def reference(plan, tiles_hwc):
    boxes = plan.tile_boxes[plan.load_order]
    windows = [window_2d(plan.window, b[2] - b[0], b[3] - b[1]) for b in boxes.tolist()]
    values, _ = reference_blend(boxes, tiles_hwc, windows, plan.image_size)
    written = np.zeros(plan.image_size, bool)
    for ylo, xlo, yhi, xhi in plan.cell_boxes[plan.write_cells].tolist():
        written[ylo:yhi, xlo:xhi] = True
    return values, written


@pytest.mark.parametrize("seed", range(24))
def test_band_kernels_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    plan = random_plan(rng)
    assert plan.layout == "band"
    channels = int(rng.choice([1, 2, 3, 5, 8, 17, 130]))
    layout = ["hwc", "chw", "hw"][seed % 3] if channels > 1 else ["hwc", "hw"][seed % 2]
    if layout == "hw":
        channels = 1
    dtype = np.float64 if seed % 4 == 1 else np.float32
    boxes = plan.tile_boxes[plan.load_order].tolist()
    tiles_hwc = [rng.random((b[2] - b[0], b[3] - b[1], channels)).astype(dtype) for b in boxes]
    if layout == "hwc":
        tiles, group = tiles_hwc, channels
    elif layout == "chw":
        tiles, group = [np.ascontiguousarray(t.transpose(2, 0, 1)) for t in tiles_hwc], 1
    else:
        tiles, group = [np.ascontiguousarray(t[:, :, 0]) for t in tiles_hwc], 1
    values, written = reference(plan, tiles_hwc)
    way = seed % 3  # serial, parallel over 3 column chunks, one batch
    kwargs = dict(chunks=3) if way == 1 else dict(batch=len({t.shape for t in tiles}) == 1) if way == 2 else {}
    out = run_kernels(plan, tiles, group, layout == "chw", **kwargs)
    np.testing.assert_allclose(out[written], values[written], rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)
    assert np.isnan(out[~written]).all(), "a pixel outside the written cells was written"
    if channels > 1:
        labels = run_kernels(plan, tiles, group, layout == "chw", labels=True, **kwargs)
        assert (labels[~written] == 255).all()
        assert reference_labels_agree(labels[written], values[written])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int16, np.uint8, np.int32])
@pytest.mark.parametrize("seed", range(3))
def test_blender_on_the_band_layout_matches_the_reference(dtype, seed):
    """Through the Blender: float16 and integer tiles (converted to the accumulator dtype first)."""
    rng = np.random.default_rng(100 + seed)
    plan = random_plan(rng)
    channels = int(rng.choice([1, 3, 4, 130]))
    boxes = plan.tile_boxes[plan.load_order].tolist()
    if np.dtype(dtype).kind == "f":
        tiles = [rng.random((b[2] - b[0], b[3] - b[1], channels)).astype(dtype) for b in boxes]
    else:
        tiles = [rng.integers(0, 100, (b[2] - b[0], b[3] - b[1], channels)).astype(dtype) for b in boxes]
    values, written = reference(plan, tiles)
    out = sf.blend(plan, tiles, parallel=False)
    scale = 1.0 if np.dtype(dtype).kind == "f" else 100.0
    np.testing.assert_allclose(out[written], values[written], rtol=0, atol=1e-5 * scale)
    if channels > 1:
        labels = np.full(plan.image_size, 255, np.uint8)
        sf.blend(plan, tiles, out=labels, labels=True, parallel=False)
        assert reference_labels_agree(labels[written], values[written], tolerance=1e-5 * scale)


@pytest.mark.parametrize("image_size, tile, overlap", [
    ((4096, 4096), 256, 64), ((40000, 40000), 256, 64), ((1024, 40960), 256, 64), ((1000, 777), 128, 31),
    ((5000, 700), 256, 0), ((100, 700), 256, 64), ((4100, 300), 256, 64)])
@pytest.mark.parametrize("channels", [1, 3])
def test_band_buffer_bytes(image_size, tile, overlap, channels):
    """The band holds the largest overlap between consecutive tile rows across the planned width; the
    right-overlap buffer two tile heights of the widest right overlap."""
    plan, _ = sf.plan_regular_grid(image_size, tile, overlap, traverse="rows")
    assert plan.layout == "band"
    starts = np.unique(plan.tile_boxes[:, 0])
    ends = np.unique(plan.tile_boxes[:, 2])
    assert plan.buffer_rows == max(1, int((ends[:-1] - starts[1:]).max(initial=0)))
    width = image_size[1]
    right = 2 * min(tile, image_size[0]) * plan.right_buffer[1]
    stats = sf.analyse_plan(plan, channels=channels)
    assert stats.buffer_bytes == (plan.buffer_rows * width + right) * channels * 4
    if (image_size[0] - overlap) % (tile - overlap) == 0 and image_size[0] > tile:  # no flush row
        assert plan.buffer_rows == overlap or overlap == 0
        band = stats.buffer_bytes - right * channels * 4
        assert band <= 1.25 * max(overlap, 1) * width * channels * 4


@pytest.mark.parametrize("seed", range(12))
def test_band_layout_equals_the_ring_buffer_bit_for_bit(seed):
    """The same additions in the same order: the band layout and the ring buffer give the same bits, in one
    stripe or several (every other seed: a budget of 1.3 to 3.5 tile columns a stripe)."""
    rng = np.random.default_rng(200 + seed)
    plan = random_plan(rng, striped=seed % 2 == 1)
    channels = int(rng.choice([1, 2, 3, 7]))
    channel_first = bool(seed % 2)
    boxes = plan.tile_boxes[plan.load_order].tolist()
    shape = (lambda h, w: (channels, h, w)) if channel_first else (lambda h, w: (h, w, channels))
    tiles = [rng.standard_normal(shape(b[2] - b[0], b[3] - b[1])).astype(np.float32) for b in boxes]
    ring = ring_layout(plan)
    assert ring.layout == "ring" and ring.buffer_rows >= plan.buffer_rows
    for labels in (False, True) if channels > 1 else (False,):
        options = dict(labels=labels, channel_first=channel_first, parallel=False)
        np.testing.assert_array_equal(sf.blend(plan, tiles, **options), sf.blend(ring, tiles, **options))
