"""The blend equals the accumulate-then-divide definition, for every kind of plan and tile."""

import importlib

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.windows import window_2d

from cases import check_against_reference, random_tiles, run_cells
from reference import reference_blend

blend_module = importlib.import_module("seamless_fast.engine.blender")  # the package exports the function blend

DTYPES = [np.float16, np.float32, np.float64, np.uint8, np.int16, np.int32, np.bool_]


@pytest.mark.parametrize("image_size, tile, overlap", [
    ((1000, 777), 128, 32),   # the seed is wrong here: the flush tile overlaps a tile two steps away
    ((300, 301), 64, 17),     # odd overlap
    ((50, 40), 64, 16),       # image smaller than the tile on both axes
    ((50, 400), 64, 16),      # ... on one axis
    ((256, 256), 128, 0),     # no overlap
    ((1, 1), 8, 2),           # a single pixel
    ((130, 97), 33, 32),      # overlap = tile - 1: stride 1
])
@pytest.mark.parametrize("window", ["pyramid", "hann", "gaussian", "constant"])
def test_regular_grid_matches_reference(image_size, tile, overlap, window):
    plan, _ = sf.plan_regular_grid(image_size, tile, overlap, window=window)
    tiles = random_tiles(plan, np.random.default_rng(1), 3, np.float32)
    writes = check_against_reference(plan, tiles)
    assert (writes == 1).all(), "every pixel of the image is written once"


def test_seed_counterexample_everyday_size():
    plan, _ = sf.plan_regular_grid((4096, 4100), 256, 64)
    tiles = random_tiles(plan, np.random.default_rng(2), 1, np.float32)
    assert (check_against_reference(plan, tiles) == 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["hwc", "chw", "hw"])
def test_every_dtype_and_layout(dtype, layout):
    plan, _ = sf.plan_regular_grid((157, 203), 48, 13)
    tiles = random_tiles(plan, np.random.default_rng(3), 1 if layout == "hw" else 4, dtype)
    check_against_reference(plan, tiles, layout=layout)


def test_output_dtype_follows_policy():
    plan, _ = sf.plan_regular_grid((40, 40), 16, 4)
    for tile_dtype, out_dtype in [(np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64),
                                  (np.uint8, np.float32), (np.int32, np.float64), (np.bool_, np.float32)]:
        tiles = random_tiles(plan, np.random.default_rng(0), 2, tile_dtype)
        assert {cell.data.dtype for _, cell in run_cells(plan, tiles)} == {np.dtype(out_dtype)}
    tiles = random_tiles(plan, np.random.default_rng(0), 2, np.float32)
    assert {c.data.dtype for _, c in run_cells(plan, tiles, dtype=np.float64)} == {np.dtype(np.float64)}


@pytest.mark.parametrize("channels, label_dtype", [(1, np.uint8), (5, np.uint8), (256, np.uint8), (257, np.uint16)])
def test_labels(channels, label_dtype):
    plan, _ = sf.plan_regular_grid((70, 90), 32, 10)
    tiles = random_tiles(plan, np.random.default_rng(4), channels, np.float32)
    full = sf.blend(plan, tiles=[tiles[t] for t in plan.load_order])
    labels = sf.blend(plan, tiles=[tiles[t] for t in plan.load_order], labels=True)
    assert labels.dtype == label_dtype and labels.shape == (70, 90)
    top = full.max(axis=-1)
    picked = np.take_along_axis(full, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    assert np.all(picked >= top - 1e-6)


@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_labels_against_reference(layout):
    plan, _ = sf.plan_regular_grid((123, 77), 40, 11)
    tiles = random_tiles(plan, np.random.default_rng(5), 6, np.float32)
    check_against_reference(plan, tiles, layout=layout, labels=True)


@pytest.mark.parametrize("channels", [2, 3, 7, 8, 12, 21])
@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_labels_are_the_argmax_of_the_values(channels, layout):
    """Labels equal np.argmax of the blended values exactly (first maximum, first NaN), and the parallel
    kernels (tiles this large) equal the serial ones bit for bit, into an output or as fresh cells."""
    plan, _ = sf.plan_regular_grid((300, 270), 128, 40)
    rng = np.random.default_rng(channels)
    tiles = random_tiles(plan, rng, channels, np.float32)
    for tile in tiles:
        tie = rng.random(tile.shape[:2]) < 0.1
        tile[tie, 1] = tile[tie, 0]
        tile[rng.random(tile.shape) < 1e-4] = np.nan
    chw = layout == "chw"
    given = [np.ascontiguousarray(tiles[t].transpose(2, 0, 1)) if chw else tiles[t] for t in plan.load_order]
    values = sf.blend(plan, given, channel_first=chw, parallel=False)
    assert np.isnan(values).any()
    expected = np.argmax(values, axis=0 if chw else -1)
    for parallel in (False, True):
        np.testing.assert_array_equal(sf.blend(plan, given, channel_first=chw, parallel=parallel), values)
        np.testing.assert_array_equal(sf.blend(plan, given, channel_first=chw, labels=True, parallel=parallel),
                                      expected)
        for labels, want in ((False, values), (True, expected)):
            with sf.Blender(plan, channel_first=chw, labels=labels, parallel=parallel) as blender:
                for tile in given:
                    for cell in blender.push(tile):
                        where = (slice(None),) + cell.slices if chw and not labels else cell.slices
                        np.testing.assert_array_equal(cell.data, want[where])


def _rectilinear_irregular_grid(rng, size):
    """Random tile extents per axis: varying lengths and overlaps, ordered, covering [0, size)."""
    def axis():
        starts, ends = [0], [int(rng.integers(5, 40))]
        while ends[-1] < size:
            start = int(rng.integers(max(starts[-1] + 1, ends[-1] - 20), ends[-1] + 1))
            end = max(ends[-1] + 1, start + int(rng.integers(5, 40)))
            starts.append(start)
            ends.append(min(end, size))
        return np.array(starts), np.array(ends)
    (ys, ye), (xs, xe) = axis(), axis()
    return np.array([[shapely.box(y0, x0, y1, x1) for x0, x1 in zip(xs, xe)] for y0, y1 in zip(ys, ye)])


def _jittered_grid(rng, rows, cols, tile=32, stride=24, jitter=4):
    """A non-rectilinear grid: every tile moved by a few pixels, keeping the row/column order."""
    grid = np.empty((rows, cols), dtype=object)
    for i in range(rows):
        for j in range(cols):
            y0 = i * stride + (int(rng.integers(0, jitter + 1)) if i else 0)
            x0 = j * stride + (int(rng.integers(0, jitter + 1)) if j else 0)
            grid[i, j] = shapely.box(y0, x0, y0 + tile, x0 + tile)
    return grid


@pytest.mark.parametrize("seed", range(6))
def test_irregular_rectilinear_grids(seed):
    rng = np.random.default_rng(seed)
    plan = sf.plan_from_grid(_rectilinear_irregular_grid(rng, 150), window="pyramid")
    assert plan.normalised
    tiles = random_tiles(plan, rng, 2, np.float32)
    writes = check_against_reference(plan, tiles)
    assert (writes == 1).all()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("window", ["pyramid", "gaussian"])
def test_non_rectilinear_grids(seed, window):
    rng = np.random.default_rng(seed)
    plan = sf.plan_from_grid(_jittered_grid(rng, 5, 6), window=window)
    assert not plan.normalised
    tiles = random_tiles(plan, rng, 3, np.float64)
    writes = check_against_reference(plan, tiles)
    assert writes.sum() > 0.9 * writes.size


def test_two_dimensional_and_callable_windows():
    rng = np.random.default_rng(7)
    window = rng.random((24, 24)) + 0.1
    plan, _ = sf.plan_regular_grid((100, 90), 24, 8, window=window)
    assert not plan.normalised
    check_against_reference(plan, random_tiles(plan, rng, 2, np.float32))
    plan, _ = sf.plan_regular_grid((100, 90), 24, 8, window=lambda n: np.linspace(1, 2, n))
    check_against_reference(plan, random_tiles(plan, rng, 2, np.float32))


@pytest.mark.parametrize("area", [
    shapely.box(100, 120, 300, 260),
    shapely.Polygon([(10, 10), (390, 50), (200, 300)]),
    shapely.Point(200, 200).buffer(60),
    shapely.box(-50, -50, 40, 40),            # partly outside the image
    shapely.LineString([(0, 0), (399, 299)]),  # no area at all, still meets cells
    shapely.Point(333.5, 17.5),
])
def test_areas(area):
    plan, grid = sf.plan_regular_grid((400, 300), 64, 16, area=area)
    tiles = random_tiles(plan, np.random.default_rng(8), 2, np.float32)
    writes = check_against_reference(plan, tiles)
    # every pixel whose square reaches into the area is written
    ys, xs = np.nonzero(writes == 0)
    pixels = shapely.box(ys, xs, ys + 1, xs + 1)
    reached = shapely.intersects(area, pixels) & ~shapely.touches(area, pixels)
    assert not reached.any()


def test_buffer_reuse_is_safe():
    """The caller may overwrite its tile buffer as soon as push returns."""
    plan, _ = sf.plan_regular_grid((200, 170), 48, 12)
    rng = np.random.default_rng(9)
    tiles = random_tiles(plan, rng, 3, np.float32)
    buffer = np.empty((48, 48, 3), np.float32)
    expected = sf.blend(plan, [tiles[t] for t in plan.load_order])
    out = np.zeros_like(expected)
    with sf.Blender(plan) as blender:
        for t in plan.load_order:
            buffer[...] = tiles[t]
            for cell in blender.push(buffer):
                out[cell.slices] = cell.data
            buffer[...] = np.nan
    np.testing.assert_array_equal(out, expected)


def test_array_like_tiles():
    class Duck:
        def __init__(self, array):
            self.array = array

        def __array__(self, dtype=None, copy=None):
            return self.array

    plan, _ = sf.plan_regular_grid((60, 60), 32, 8)
    tiles = random_tiles(plan, np.random.default_rng(10), 2, np.float32)
    expected = sf.blend(plan, [tiles[t] for t in plan.load_order])
    np.testing.assert_array_equal(sf.blend(plan, [Duck(tiles[t]) for t in plan.load_order]), expected)
    from_lists = sf.blend(plan, [tiles[t].tolist() for t in plan.load_order])
    assert from_lists.dtype == np.float64  # nested lists of floats become float64 tiles
    np.testing.assert_allclose(from_lists, expected, atol=1e-6)


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    plan, _ = sf.plan_regular_grid((60, 60), 32, 8)
    tiles = random_tiles(plan, np.random.default_rng(11), 2, np.float32)
    expected = sf.blend(plan, [tiles[t] for t in plan.load_order])
    got = sf.blend(plan, [torch.from_numpy(tiles[t]) for t in plan.load_order])
    np.testing.assert_array_equal(got, expected)


def test_nan_propagates_and_check_finite_rejects():
    plan, _ = sf.plan_regular_grid((100, 100), 32, 8)
    tiles = random_tiles(plan, np.random.default_rng(12), 1, np.float32)
    bad = int(plan.load_order[5])
    tiles[bad][3, 4, 0] = np.nan
    out = sf.blend(plan, [tiles[t] for t in plan.load_order])
    ylo, xlo = plan.tile_boxes[bad, :2]
    assert np.isnan(out[ylo + 3, xlo + 4, 0])
    assert np.isnan(out).sum() == 1
    with pytest.raises(ValueError, match=r"tile 5 \(grid index .*\) contains NaN or inf"):
        sf.blend(plan, [tiles[t] for t in plan.load_order], check_finite=True)


def test_blend_into_memmap(tmp_path):
    plan, _ = sf.plan_regular_grid((90, 110), 32, 8)
    tiles = random_tiles(plan, np.random.default_rng(13), 2, np.float32)
    expected = sf.blend(plan, [tiles[t] for t in plan.load_order])
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(90, 110, 2))
    assert sf.blend(plan, [tiles[t] for t in plan.load_order], out=out) is out
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_disk_buffer_gives_same_result_and_is_removed(tmp_path):
    plan, _ = sf.plan_regular_grid((150, 120), 32, 8)
    tiles = random_tiles(plan, np.random.default_rng(14), 2, np.float32)
    expected = sf.blend(plan, [tiles[t] for t in plan.load_order])
    got = np.zeros_like(expected)
    for _, geom, data in sf.run_plan(plan, (tiles[t] for t in plan.load_order), max_tiles=1,
                                     disk_cache_dir=tmp_path / "cache"):
        got[sf.shape_to_slices(geom)] = data
        assert len(list((tmp_path / "cache").iterdir())) == 1
    np.testing.assert_array_equal(got, expected)
    assert list((tmp_path / "cache").iterdir()) == []


def test_disk_buffer_removed_after_error(tmp_path):
    plan, _ = sf.plan_regular_grid((150, 120), 32, 8)

    def tiles():
        yield np.zeros((32, 32, 1), np.float32)
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        list(sf.run_plan(plan, tiles(), max_tiles=1, disk_cache_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


@st.composite
def plans(draw):
    height = draw(st.integers(1, 160))
    width = draw(st.integers(1, 160))
    tile = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    overlap = (draw(st.integers(0, tile[0] - 1)), draw(st.integers(0, tile[1] - 1)))
    area = None
    if draw(st.booleans()):
        y0 = draw(st.integers(0, height - 1))
        x0 = draw(st.integers(0, width - 1))
        y1 = draw(st.integers(y0 + 1, height))
        x1 = draw(st.integers(x0 + 1, width))
        area = shapely.box(y0, x0, y1, x1)
    window = draw(st.sampled_from(["pyramid", "hann", "gaussian", "constant"]))
    return sf.plan_regular_grid((height, width), tile, overlap, area=area, window=window)[0]


@given(plan=plans(), channels=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(DTYPES), layout=st.sampled_from(["hwc", "chw", "hw"]), labels=st.booleans())
def test_random_regular_plans(plan, channels, seed, dtype, layout, labels):
    channels = 1 if layout == "hw" else channels
    tiles = random_tiles(plan, np.random.default_rng(seed), channels, dtype)
    writes = check_against_reference(plan, tiles, layout=layout, labels=labels and layout != "hw")
    assert writes.sum() > 0


@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 5), cols=st.integers(1, 5),
       tile=st.integers(4, 40), stride=st.integers(1, 40), jitter=st.integers(0, 8))
def test_random_jittered_grids(seed, rows, cols, tile, stride, jitter):
    rng = np.random.default_rng(seed)
    stride = min(stride, tile)
    plan = sf.plan_from_grid(_jittered_grid(rng, rows, cols, tile, stride, min(jitter, stride)))
    check_against_reference(plan, random_tiles(plan, rng, 2, np.float32))


@pytest.mark.parametrize("in_hardware", [False, True])
def test_float16_tiles_blend_the_same_by_either_conversion(monkeypatch, in_hardware):
    """The float16 tiles go through the software conversion or the F16C one (where numba's code has it):
    the same blend either way, equal to the blend of the same values given as float32."""
    tile_input = importlib.import_module("seamless_fast.engine._tile_input")
    if in_hardware and not tile_input.HALF_IN_HARDWARE:
        pytest.skip("no F16C conversion in numba's code on this machine")
    monkeypatch.setattr(tile_input, "HALF_IN_HARDWARE", in_hardware)
    plan, _ = sf.plan_regular_grid((70, 90), 32, 10)
    tiles = random_tiles(plan, np.random.default_rng(9), 3, np.float16)
    tiles[0].flat[:4] = [np.inf, -np.inf, np.nan, np.float16(2**-24)]
    given = [tiles[t] for t in plan.load_order]
    as_float32 = sf.blend(plan, [tile.astype(np.float32) for tile in given])
    np.testing.assert_array_equal(sf.blend(plan, given), as_float32)


def _two_dimensional_case(striped):
    budget = dict(max_buffer_bytes=32 * 70 * 4, channels=1) if striped else {}
    plan, _ = sf.plan_regular_grid((150, 200), 32, 8, **budget)
    assert (len(plan.stripes) > 1) == striped
    tiles = [tile[:, :, 0] for tile in random_tiles(plan, np.random.default_rng(15), 1, np.float32)]
    windows = [window_2d(plan.window, b[2] - b[0], b[3] - b[1]) for b in plan.tile_boxes.tolist()]
    expected, covered = reference_blend(plan.tile_boxes.tolist(), [t[:, :, None] for t in tiles], windows,
                                        plan.image_size)
    assert covered.all()
    return plan, [tiles[t] for t in plan.load_order.tolist()], expected[:, :, 0]


@pytest.mark.parametrize("striped", [False, True])
@pytest.mark.parametrize("channel_first", [False, True])
def test_two_dimensional_tiles_with_either_channel_flag(striped, channel_first):
    """A 2-D tile has no channel axis: channel_first does not apply, and every entry point gives the reference."""
    plan, given, expected = _two_dimensional_case(striped)
    close = dict(rtol=0, atol=1e-5)
    values = sf.blend(plan, given, channel_first=channel_first)
    assert values.shape == plan.image_size
    np.testing.assert_allclose(values, expected, **close)
    labels = sf.blend(plan, given, channel_first=channel_first, labels=True)
    assert labels.dtype == np.uint8 and labels.shape == plan.image_size and not labels.any()
    for label_run, want in ((False, values), (True, labels)):
        out = np.full(plan.image_size, 7, want.dtype)
        with sf.Blender(plan, channel_first=channel_first, labels=label_run, out=out) as blender:
            for tile in given:
                for cell in blender.push(tile):
                    assert cell.data.shape == tuple(b - a for a, b in zip(cell.box[:2], cell.box[2:]))
                    np.testing.assert_array_equal(cell.data, want[cell.slices])
        np.testing.assert_array_equal(out, want)
        for batch in (given, np.stack(given)):  # a list, and one array with a batch axis (one kernel call)
            out = np.full(plan.image_size, 7, want.dtype)
            with sf.Blender(plan, channel_first=channel_first, labels=label_run, out=out) as blender:
                blender.push_batch(batch[:3])
                blender.push_batch(batch[3:])
            np.testing.assert_array_equal(out, want)
        got = np.full(plan.image_size, 7, want.dtype)
        for _, geom, data in sf.run_plan(plan, given, channel_first=channel_first, labels=label_run):
            got[sf.shape_to_slices(geom)] = data
        np.testing.assert_array_equal(got, want)


def test_blend_takes_exactly_the_plans_tiles():
    plan, _ = sf.plan_regular_grid((70, 50), 32, 8)
    tile = np.ones((32, 32, 2), np.float32)
    with pytest.raises(ValueError, match=f"tiles holds {plan.n_loads + 1} tiles; the plan expects {plan.n_loads}"):
        sf.blend(plan, [tile] * (plan.n_loads + 1))
    pulled = []

    def endless():
        while True:
            pulled.append(1)
            yield tile

    assert np.allclose(sf.blend(plan, endless()), 1.0)
    assert len(pulled) == plan.n_loads


def test_labels_beyond_65536_classes_are_uint32_and_exact():
    plan, _ = sf.plan_regular_grid((12, 10), 8, 2)
    rng = np.random.default_rng(5)
    tiles = [rng.random((8, 8, 65_540), dtype=np.float32) for _ in range(plan.n_loads)]
    for tile in tiles:
        tile[..., 65_539] += 1  # the last class wins everywhere: labels beyond uint16
    labels = sf.blend(plan, tiles, labels=True)
    assert labels.dtype == np.uint32
    assert np.array_equal(labels, np.argmax(sf.blend(plan, tiles), axis=-1))
    assert labels.max() == 65_539
