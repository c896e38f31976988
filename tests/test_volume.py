"""Volumes: the blend of every 3-D plan equals the accumulate-then-divide definition (tests/reference.py)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.geometry import regular_axis
from seamless_fast.windows import window_1d

from reference import reference_blend_nd, reference_labels_agree, separable_window

WINDOWS = ["pyramid", "hann", "gaussian", "constant", lambda n: 1.0 + np.arange(n) % 3]
DTYPES = [np.float16, np.float32, np.float64, np.uint8, np.int16, np.int32]
TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}


def random_tiles(plan, rng, channels, dtype):
    """One random tile (d, h, w, C) per grid tile, in grid order: [0, 1], or 0..100 for integers."""
    tiles = []
    for box in plan.tile_boxes:
        shape = (*(box[3:] - box[:3]).tolist(), channels)
        if np.dtype(dtype).kind in "iu":
            tiles.append(rng.integers(0, 101, shape).astype(dtype))
        else:
            tiles.append(rng.random(shape).astype(dtype))
    return tiles


def reference(plan, tiles):
    taper = plan.window if callable(plan.window) else (lambda n: window_1d(plan.window, n))
    windows = [separable_window(taper, (b[3:] - b[:3]).tolist()) for b in plan.tile_boxes]
    return reference_blend_nd(plan.tile_boxes, tiles, windows, plan.image_size)


def in_order(plan, tiles, channel_first=False):
    if channel_first:
        return [np.ascontiguousarray(np.moveaxis(tiles[t], -1, 0)) for t in plan.load_order]
    return [tiles[t] for t in plan.load_order]


def check_cells(plan, tiles, channel_first=False, labels=False, **options):
    """Push every tile; compare every emitted cell with the reference; return the write count per voxel."""
    expected, covered = reference(plan, tiles)
    scale = 100.0 if tiles[0].dtype.kind in "iu" else 1.0
    writes = np.zeros(plan.image_size, np.int64)
    emitted = []
    with sf.Blender(plan, channel_first=channel_first, labels=labels, **options) as blender:
        for tile in in_order(plan, tiles, channel_first):
            emitted.extend(blender.push(tile))
    assert [plan.grid_index(c) for c in plan.write_cells] == [cell.index for cell in emitted]
    for cell in emitted:
        z, y, x = cell.slices
        assert cell.box == tuple(plan.cell_boxes[np.ravel_multi_index(cell.index, plan.grid_shape)].tolist())
        writes[z, y, x] += 1
        assert covered[z, y, x].all()
        want = expected[z, y, x]
        if labels:
            assert cell.data.dtype == sf.dtypes.label_dtype(want.shape[-1]) and cell.data.shape == want.shape[:3]
            assert reference_labels_agree(cell.data, want / scale)
            continue
        data = np.moveaxis(cell.data, 0, -1) if channel_first else cell.data
        np.testing.assert_allclose(data, want, rtol=0, atol=TOLERANCE[data.dtype] * scale)
    assert writes.max() <= 1, "a voxel was written twice"
    assert (writes[covered] == 1).all(), "a covered voxel was not written"
    return writes


@st.composite
def regular_cases(draw):
    size = tuple(draw(st.integers(1, 23)) for _ in range(3))
    tile = tuple(draw(st.integers(1, 14)) for _ in range(3))
    overlap = tuple(draw(st.integers(0, t - 1)) for t in tile)
    assume(np.prod([regular_axis(s, t, o)[0] for s, t, o in zip(size, tile, overlap)]) <= 60)
    return size, tile, overlap


@settings(max_examples=40)
@given(case=regular_cases(), channels=st.sampled_from([1, 2, 3, 5, 130]), dtype=st.sampled_from(DTYPES),
       channel_first=st.booleans(), window=st.sampled_from(WINDOWS), seed=st.integers(0, 2**16))
def test_regular_volume_matches_reference(case, channels, dtype, channel_first, window, seed):
    size, tile, overlap = case
    plan, boxes = sf.plan_regular_grid(size, tile, overlap, window=window)
    assert plan.ndim == 3 and plan.image_size == size and boxes.shape == (*plan.grid_shape, 6)
    tiles = random_tiles(plan, np.random.default_rng(seed), channels, dtype)
    writes = check_cells(plan, tiles, channel_first=channel_first)
    assert (writes == 1).all(), "every voxel of the volume is written once"


@settings(max_examples=25)
@given(case=regular_cases(), channels=st.sampled_from([1, 2, 4, 7]), channel_first=st.booleans(),
       seed=st.integers(0, 2**16))
def test_labels_are_the_arg_max_of_the_reference(case, channels, channel_first, seed):
    plan, _ = sf.plan_regular_grid(*case)
    tiles = random_tiles(plan, np.random.default_rng(seed), channels, np.float32)
    check_cells(plan, tiles, channel_first=channel_first, labels=True)


def _axis_bounds(draw, n):
    """Non-decreasing starts and ends of n tiles along an axis (gaps and equal starts allowed)."""
    starts = sorted(draw(st.lists(st.integers(0, 12), min_size=n, max_size=n)))
    lengths = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    ends = np.maximum.accumulate(np.array(starts) + np.array(lengths))
    return np.array(starts), np.maximum(ends, np.array(starts) + 1)


@st.composite
def rectilinear_grids(draw):
    shape = tuple(draw(st.integers(1, 4)) for _ in range(3))
    grid = np.empty((*shape, 6), np.int64)
    for a, n in enumerate(shape):
        starts, ends = _axis_bounds(draw, n)
        view = [1, 1, 1]
        view[a] = n
        grid[..., a] = starts.reshape(view)
        grid[..., a + 3] = ends.reshape(view)
    return grid


@settings(max_examples=30)
@given(grid=rectilinear_grids(), channels=st.sampled_from([1, 3]), labels=st.booleans(),
       seed=st.integers(0, 2**16))
def test_plan_from_grid_boxes(grid, channels, labels, seed):
    plan = sf.plan_from_grid(grid)
    assert plan.grid_shape == grid.shape[:3]
    tiles = random_tiles(plan, np.random.default_rng(seed), channels, np.float64)
    check_cells(plan, tiles, labels=labels)
    again = sf.plan_from_grid(grid.tolist())  # a nested list works too
    assert (again.cell_boxes == plan.cell_boxes).all()


def test_regular_grid_equals_plan_from_its_boxes():
    plan, boxes = sf.plan_regular_grid((37, 50, 41), (16, 20, 12), (5, 6, 3))
    other = sf.plan_from_grid(boxes)
    for name in ("tile_boxes", "cell_boxes", "load_order", "write_cells", "weight_z"):
        assert (getattr(plan, name) == getattr(other, name)).all(), name
    assert plan.slab_depth == other.slab_depth == 27 - 21  # layers [0, 16), [11, 27), [21, 37): the flush one overlaps more


def test_outputs_blend_memmap_run_plan_and_batches(tmp_path):
    plan, _ = sf.plan_regular_grid((21, 30, 25), (8, 16, 12), (3, 5, 4))
    tiles = random_tiles(plan, np.random.default_rng(7), 3, np.float32)
    expected, _ = reference(plan, tiles)
    values = sf.blend(plan, in_order(plan, tiles))
    assert values.shape == (21, 30, 25, 3) and values.dtype == np.float32
    np.testing.assert_allclose(values, expected, atol=2e-5)
    first = sf.blend(plan, iter(in_order(plan, tiles, True)), channel_first=True)
    np.testing.assert_array_equal(np.moveaxis(first, 0, -1), values)
    mapped = np.memmap(tmp_path / "out.f32", np.float32, "w+", shape=(21, 30, 25, 3))
    assert sf.blend(plan, in_order(plan, tiles), out=mapped) is mapped
    np.testing.assert_array_equal(mapped, values)
    chw = np.zeros((3, 21, 30, 25), np.float32)
    sf.blend(plan, in_order(plan, tiles, True), out=chw, channel_first=True)
    np.testing.assert_array_equal(np.moveaxis(chw, 0, -1), values)
    labels = sf.blend(plan, in_order(plan, tiles), labels=True)
    into = np.zeros((21, 30, 25), np.uint8)
    sf.blend(plan, in_order(plan, tiles), labels=True, out=into)
    assert labels.dtype == np.uint8 and (labels == into).all()
    assert reference_labels_agree(labels, expected)
    volume = np.full((21, 30, 25, 3), np.nan, np.float32)
    steps = []
    for index, slices, data in sf.run_plan(plan, iter(in_order(plan, tiles)), on_step=steps.append):
        assert len(index) == 3 and len(slices) == 3
        volume[slices] = data
    np.testing.assert_array_equal(volume, values)
    assert steps == list(range(plan.n_loads))
    batch = np.zeros_like(values)
    with sf.Blender(plan, out=batch) as blender:
        cells = blender.push_batch(in_order(plan, tiles)[:5]) + blender.push_batch(in_order(plan, tiles)[5:])
    np.testing.assert_array_equal(batch, values)
    assert all(np.shares_memory(cell.data, batch) for cell in cells)


def test_ties_and_nan_follow_the_2d_rule():
    plan, _ = sf.plan_regular_grid((9, 10, 11), 6, 2)
    equal = [np.full((*(b[3:] - b[:3]).tolist(), 4), 0.5, np.float32) for b in plan.tile_boxes]
    assert (sf.blend(plan, in_order(plan, equal), labels=True) == 0).all()
    nan = [t.copy() for t in equal]
    for t in nan:
        t[..., 2] = np.nan
        t[..., 3] = np.nan
    assert (sf.blend(plan, in_order(plan, nan), labels=True) == 2).all()


def test_blender_type_and_2d_unchanged():
    volume, _ = sf.plan_regular_grid((8, 8, 8), 4, 1)
    plane, _ = sf.plan_regular_grid((8, 8), 4, 1)
    assert isinstance(sf.Blender(volume), sf.Blender) and type(sf.Blender(volume)).__name__ == "VolumeBlender"
    assert type(sf.Blender(plane)) is sf.Blender
    assert sf.Blender(volume).next_tile_shape == (4, 4, 4) and sf.Blender(volume).next_index == (0, 0, 0)


def test_analyse_plan_and_memory_do_not_grow_with_depth():
    sizes = [sf.analyse_plan(sf.plan_regular_grid((d, 256, 256), 64, 16)[0], channels=4).buffer_bytes
             for d in (256, 1024, 4096)]  # no flush layer: a slab one overlap (16) deep
    assert sizes[0] == sizes[1] == sizes[2]
    plan, _ = sf.plan_regular_grid((256, 256, 256), 64, 16)
    band = sf.analyse_plan(plan.plane_plan, channels=64 * 4).buffer_bytes
    assert sizes[0] == (16 * 256 * 256 * 4 + 64 ** 3 * 4) * 4 + band


def test_context_grows_read_boxes_and_input_boxes():
    plan, _ = sf.plan_regular_grid((40, 100, 100), 32, 8, context=(2, 4, 4))
    assert plan.read_boxes()[0].tolist() == [-2, -4, -4, 34, 36, 36]
    assert plan.context == (2, 4, 4)
    pairs = sf.get_plan_input_geoms(plan)
    assert len(pairs) == plan.n_loads and pairs[0] == ((0, 0, 0), (-2, -4, -4, 34, 36, 36))
    assert [index for index, _ in pairs] == [plan.grid_index(t) for t in plan.load_order]


def test_accumulator_override_bool_tiles_and_parallel():
    plan, _ = sf.plan_regular_grid((19, 23, 17), (8, 9, 7), (3, 2, 2))
    rng = np.random.default_rng(11)
    tiles = [rng.random((*(b[3:] - b[:3]).tolist(), 2)) < 0.5 for b in plan.tile_boxes]
    expected, _ = reference(plan, tiles)
    for options in ({}, {"dtype": np.float64}, {"parallel": False}, {"parallel": True}):
        out = sf.blend(plan, in_order(plan, tiles), **options)
        assert out.dtype == options.get("dtype", np.float32)
        np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: sf.plan_regular_grid((10, 10, 10), 4, 4), "overlap=(4, 4, 4) must be smaller"),
    (lambda: sf.plan_regular_grid((10, 10, 10), (4, 4), 1), "tile_size=(4, 4) has 2 items"),
    (lambda: sf.plan_regular_grid((10, 0, 10), 4, 1), "image_size=(10, 0, 10): every entry"),
    (lambda: sf.plan_regular_grid((10, 10, 10), 4, 1, traverse="rows"), "traverse='rows' is a 2-D option"),
    (lambda: sf.plan_regular_grid((10, 10, 10), 4, 1, max_buffer_bytes=10), "max_buffer_bytes=10 is a 2-D"),
    (lambda: sf.plan_regular_grid((10, 10, 10), 4, 1, output_scale=2), "output_scale=2 is a 2-D"),
    (lambda: sf.plan_regular_grid((10, 10, 10), 4, 1, window=np.ones((4, 4, 4))), "window is an array"),
    (lambda: sf.plan_regular_grid((10, 10, 10), 4, 1, window="box"), "window='box' is not known"),
    (lambda: sf.plan_from_grid(np.zeros((2, 2, 6), int)), "grid has shape (2, 2, 6)"),
    (lambda: sf.plan_from_grid([[[[0, 0, 0, 4, 4, 4], [0, 0, 3, 4, 5, 8]]]]), "grid is not rectilinear: y"),
    (lambda: sf.plan_from_grid([[[[0, 0, 4, 4, 4, 8], [0, 0, 0, 4, 4, 4]]]]), "grid is not ordered: x"),
    (lambda: sf.plan_from_grid([[[[0, 0, 0, 0, 4, 4]]]]), "grid[0, 0, 0] is [0, 0, 0, 0, 4, 4]; expected a non-empty box"),
])
def test_planning_errors(call, message):
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message)) as info:
        call()
    assert "\n" not in str(info.value)


def test_blending_errors(tmp_path):
    plan, _ = sf.plan_regular_grid((10, 12, 12), (6, 8, 8), 2)
    good = np.zeros((6, 8, 8, 2), np.float32)
    cases = [
        (lambda b: b.push(np.zeros((6, 8, 8), np.float32)), r"tile 0 \(grid index \(0, 0, 0\)\) has shape \(6, 8, 8\); "
         r"expected \(6, 8, 8, C\) \(channel_first=False\)"),
        (lambda b: b.push(np.zeros((6, 8, 7, 2))), r"has shape \(6, 8, 7, 2\); expected \(6, 8, 8, C\)"),
        (lambda b: (b.push(good), b.push(np.zeros((6, 8, 4, 3))))[1], r"tile 1 .* expected \(6, 8, 8, 2\)"),
        (lambda b: b.push(np.zeros((6, 8, 8, 2), complex)), "has dtype complex128"),
    ]
    for action, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            with sf.Blender(plan) as blender:
                action(blender)
    with pytest.raises(ValueError, match=r"tile 0 .* contains NaN or inf \(check_finite=True\)"):
        sf.Blender(plan, check_finite=True).push(np.full((6, 8, 8, 2), np.nan))
    with pytest.raises(ValueError, match=r"^blend closed after 1 tiles; the plan expects 8 \(7 missing\)$"):
        with sf.Blender(plan) as blender:
            blender.push(good)
    blender = sf.Blender(plan)
    blender.push_batch([np.zeros((*blender.next_tile_shape, 1))] * 0)
    for _ in range(plan.n_loads):
        blender.push(np.zeros((*blender.next_tile_shape, 1)))
    with pytest.raises(ValueError, match="^received more tiles than the 8 the plan expects$"):
        blender.push(good)
    with pytest.raises(ValueError, match=r"^tiles holds 3 tiles; the plan expects 8$"):
        sf.blend(plan, [good] * 3)
    with pytest.raises(ValueError, match=r"^tiles ran out after 1 tiles; the plan expects 8$"):
        sf.blend(plan, iter([good]))
    with pytest.raises(ValueError, match=r"^out has shape \(10, 12, 12\); expected \(D, H, W, C\)"):
        sf.Blender(plan, out=np.zeros((10, 12, 12)))
    with pytest.raises(ValueError, match=r"^out has dtype float64; this run produces float32$"):
        sf.blend(plan, iter([good] * 8), out=np.zeros((10, 12, 12, 2)))
    with pytest.raises(ValueError, match=r"^out has dtype float32; this run produces uint8$"):
        sf.blend(plan, iter([good] * 8), out=np.zeros((10, 12, 12), np.float32), labels=True)
    with pytest.raises(ValueError, match=r"^buffer_on_disk=True is not available for a volume plan"):
        sf.Blender(plan, buffer_on_disk=True, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"^labels=1 must be True or False$"):
        sf.Blender(plan, labels=1)
    with pytest.raises(ValueError, match=r"^disk_cache_dir="):
        sf.run_plan(plan, [good] * 8, max_tiles=100, disk_cache_dir=str(tmp_path))
