"""The volume blend's parallel kernels: every way of running a volume (serial, adaptive, forced split) emits the
same cells, boxes and order, bit for bit, as the per-voxel arithmetic written out in numpy (``v = w * cell``,
``v += slab`` below `held`; tails ``slab = w * cell`` or ``slab += w * cell``, in the accumulator dtype)."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.engine import _adaptive, _background, _volume, _volume_kernels
from seamless_fast.engine import blender as blend_module
from seamless_fast.geometry import regular_axis

from test_volume_mask import draw_plan, plans

DTYPES = [np.float16, np.float32, np.float64, np.uint8, np.int16, np.int32]


def numpy_combine(cell, wz, slab, z0, c0, c1, t0, t1, held, y0, x0, out, oz, oy, ox, channel_first=None):
    """`combine_values` (or, without `channel_first`, `combine_labels`) in numpy, z-slice by z-slice."""
    ch, cw, ring = cell.shape[0], cell.shape[1], slab.shape[2]
    rows, cols = slice(y0, y0 + ch), slice(x0, x0 + cw)
    for z in range(c0, c1):
        v = wz[z - z0] * cell[:, :, z - z0]
        if z < held:
            v += slab[rows, cols, z % ring]
        o = oz + z - c0
        if channel_first is None:  # labels: the first largest, or the first NaN, as np.argmax
            out[o, oy:oy + ch, ox:ox + cw] = np.argmax(v, axis=-1)
        elif channel_first:
            out[:, o, oy:oy + ch, ox:ox + cw] = np.moveaxis(v, -1, 0)
        else:
            out[o, oy:oy + ch, ox:ox + cw] = v
    for z in range(t0, t1):
        v = wz[z - z0] * cell[:, :, z - z0]
        if z < held:
            slab[rows, cols, z % ring] += v
        else:
            slab[rows, cols, z % ring] = v


@pytest.fixture
def ways(monkeypatch):
    """Run a blend one way: "numpy" (the reference kernels above, serial), "serial", "forced" (every call,
    however small, through the parallel kernels, the layer's 2-D ones too) or "auto" (the choosers' pick,
    alternating serial and split, on every call)."""
    monkeypatch.setattr(_background, "WAIT_FOR_COMPILES", True)
    turns = itertools.cycle([0, 1])

    def run(way, plan, tiles, **options):
        with monkeypatch.context() as patch:
            if way == "numpy":
                patch.setattr(_volume_kernels, "combine_values", numpy_combine)
                patch.setattr(_volume_kernels, "combine_labels", numpy_combine)
            if way in ("forced", "auto"):
                patch.setattr(_volume, "PARALLEL_MIN_ELEMENTS", 0)
                patch.setattr(blend_module, "PARALLEL_MIN_ELEMENTS", 0)
            if way == "auto":
                patch.setattr(_adaptive.Chooser, "choose", lambda self: next(turns))
            cells = []
            with sf.Blender(plan, parallel=way in ("forced", "auto"), **options) as blender:
                if way == "forced":
                    blender._policy = "numba"
                assert blender._policy == ("serial" if way in ("numpy", "serial") else
                                           "numba" if way == "forced" else "auto")
                for tile in tiles:
                    cells.extend(blender.push(tile))
            return cells

    return run


def assert_same(first, second):
    assert [(c.index, c.box) for c in first] == [(c.index, c.box) for c in second]
    for a, b in zip(first, second):
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape
        np.testing.assert_array_equal(a.data.view(np.uint8), b.data.view(np.uint8))


def check_every_way(ways, plan, tiles, **options):
    expected = ways("numpy", plan, tiles, **options)
    assert len(expected) == len(plan.write_cells)
    for way in ("serial", "forced", "auto"):
        assert_same(ways(way, plan, tiles, **options), expected)


@st.composite
def regular_cases(draw):
    size = tuple(draw(st.integers(1, 20)) for _ in range(3))
    tile = tuple(draw(st.integers(1, 12)) for _ in range(3))
    overlap = tuple(draw(st.integers(0, t - 1)) for t in tile)
    assume(np.prod([regular_axis(s, t, o)[0] for s, t, o in zip(size, tile, overlap)]) <= 40)
    return size, tile, overlap


def random_tiles(plan, rng, channels, dtype, channel_first):
    tiles = []
    for box in plan.tile_boxes[plan.load_order]:
        shape = (*(box[3:] - box[:3]).tolist(), channels)
        t = rng.integers(0, 101, shape) if np.dtype(dtype).kind in "iu" else rng.standard_normal(shape)
        t = t.astype(dtype)
        tiles.append(np.ascontiguousarray(np.moveaxis(t, -1, 0)) if channel_first else t)
    return tiles


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=regular_cases(), channels=st.sampled_from([1, 3, 16]), dtype=st.sampled_from(DTYPES),
       channel_first=st.booleans(), labels=st.booleans(), window=st.sampled_from(["hann", "gaussian", "constant"]),
       seed=st.integers(0, 2**16))
def test_every_way_emits_the_same_cells_bit_for_bit(ways, case, channels, dtype, channel_first, labels, window,
                                                     seed):
    size, tile, overlap = case
    plan, _ = sf.plan_regular_grid(size, tile, overlap, window=window)
    tiles = random_tiles(plan, np.random.default_rng(seed), channels, dtype, channel_first)
    check_every_way(ways, plan, tiles, labels=labels, channel_first=channel_first)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(plans, st.booleans(), st.booleans(), st.sampled_from([1, 4]), st.integers(0, 2**16))
def test_masked_plans_every_way_the_same(ways, case, labels, channel_first, channels, seed):
    size, tile, data = case
    overlap, mask = draw_plan(size, tile, data)
    plan, _ = sf.plan_regular_grid(size, tile, overlap, window="hann", mask=mask)
    tiles = random_tiles(plan, np.random.default_rng(seed), channels, np.float32, channel_first)
    check_every_way(ways, plan, tiles, labels=labels, channel_first=channel_first)


@pytest.mark.parametrize("channel_first", [False, True])
def test_into_out_and_non_contiguous_tiles_every_way(ways, channel_first):
    plan, _ = sf.plan_regular_grid((30, 26, 22), (12, 10, 9), (4, 3, 2), window="gaussian")
    rng = np.random.default_rng(3)
    tiles = [t[::2] if channel_first else t[..., ::2] for t in
             random_tiles(plan, rng, 6, np.float32, channel_first)]  # strided: the copy takes np.copyto
    results = []
    for way in ("numpy", "serial", "forced", "auto"):
        out = np.full((3, 30, 26, 22) if channel_first else (30, 26, 22, 3), 7, np.float32)
        ways(way, plan, tiles, channel_first=channel_first, out=out)
        results.append(out)
    for out in results[1:]:
        np.testing.assert_array_equal(out.view(np.uint32), results[0].view(np.uint32))


def test_parallel_false_never_calls_a_parallel_kernel(monkeypatch):
    monkeypatch.setattr(_volume, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(blend_module, "PARALLEL_MIN_ELEMENTS", 0)

    def refuse(*args):
        raise AssertionError("a parallel kernel ran with parallel=False")

    monkeypatch.setattr(_volume.VolumeBlender, "_split", refuse)
    monkeypatch.setattr(blend_module.Blender, "_blend_parallel", refuse)
    plan, _ = sf.plan_regular_grid((20, 20, 20), 8, 2)
    with sf.Blender(plan, parallel=False) as blender:
        assert blender._policy == "serial"
        for _ in range(plan.n_loads):
            blender.push(np.ones(blender.next_tile_shape + (2,), np.float32))


def test_a_held_lock_runs_the_serial_kernels(ways, monkeypatch):
    """A thread already in a parallel kernel: the split is skipped, the result the same."""
    plan, _ = sf.plan_regular_grid((20, 18, 16), 8, 3)
    tiles = random_tiles(plan, np.random.default_rng(0), 2, np.float32, False)
    expected = ways("serial", plan, tiles)
    lock = _volume.parallel_lock()
    with lock:
        assert_same(ways("forced", plan, tiles), expected)


def test_the_layers_2d_blends_share_the_volume_choosers_and_images_keep_theirs():
    """A volume layer's 2-D pushes are chosen by `_VolumeChooser` (a slow split push ends the split only at
    10 x serial); an image's Blender with tiles of the same kind keeps the plain Chooser."""
    plan, _ = sf.plan_regular_grid((24, 96, 96), (12, 64, 64), (4, 16, 16))
    with sf.Blender(plan, parallel=True) as blender:
        if blender._policy == "serial":
            pytest.skip("numba has one thread here: every call runs serially")
        for _ in range(plan.n_loads):
            blender.push(np.ones(blender.next_tile_shape + (3,), np.float32))
    layer = [c for key, c in _adaptive._CHOOSERS.items() if key[0] == "_VolumeChooser"]
    assert layer and all(type(c) is _volume._VolumeChooser for c in layer)
    image_plan, _ = sf.plan_regular_grid((96, 96), 64, 16)
    with sf.Blender(image_plan, parallel=True) as image:
        for _ in range(image_plan.n_loads):
            image.push(np.ones(image.next_tile_shape + (36,), np.float32))
    assert image._choosers and all(type(c) is _adaptive.Chooser for c in image._choosers.values())
