"""Planning: the seed's grid rule, output cells, which tiles are needed and when cells are final."""

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.geometry import boxes_overlap
from seamless_fast.plan import regular_grid

from reference import seed_axis_starts


@given(size=st.integers(1, 3000), tile=st.integers(1, 600), data=st.data())
def test_regular_axis_follows_seed_rule(size, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    plan, grid = sf.plan_regular_grid((size, 7), (tile, 7), (overlap, 0))
    starts, length = seed_axis_starts(size, tile, overlap)
    bounds = shapely.bounds(grid[:, 0])
    np.testing.assert_array_equal(bounds[:, 0], starts)
    np.testing.assert_array_equal(bounds[:, 2], np.array(starts) + length)
    assert bounds[-1, 2] == size or size > tile and bounds[-1, 2] == size


@given(size=st.integers(1, 2000), data=st.data())
def test_area_grid_is_a_window_of_the_whole_image_grid(size, data):
    # Unlike the seed, which started the grid at the area, an area plan keeps the whole image's tiles.
    tile = data.draw(st.integers(1, 64))
    overlap = data.draw(st.integers(0, tile - 1))
    lo = data.draw(st.floats(0, size - 0.5))
    hi = data.draw(st.floats(lo + 0.25, size + 5))
    area = shapely.box(lo, 0, hi, 7)
    whole, whole_grid = sf.plan_regular_grid((size, 7), (tile, 7), (overlap, 0))
    plan, grid = sf.plan_regular_grid((size, 7), (tile, 7), (overlap, 0), area=area)
    starts = shapely.bounds(whole_grid[:, 0])[:, 0]
    window = shapely.bounds(grid[:, 0])[:, 0]
    k0 = int(np.flatnonzero(starts == window[0])[0])
    np.testing.assert_array_equal(starts[k0:k0 + len(window)], window)
    # written: exactly the whole-image cells that meet (lo, hi); loaded: exactly the tiles they need
    cells = whole.cell_boxes
    meets = (cells[:, 0] < hi) & (cells[:, 2] > lo)
    assert sorted(map(tuple, plan.cell_boxes[plan.write_cells].tolist())) == sorted(map(tuple, cells[meets].tolist()))
    needed = boxes_overlap(whole.tile_boxes[:, None], cells[meets][None]).any(axis=1)
    assert sorted(map(tuple, plan.tile_boxes[plan.load_order].tolist())) == \
        sorted(map(tuple, whole.tile_boxes[needed].tolist()))
    assert len(window) <= needed.sum() + 1, "at most one tile beyond the needed ones (for the last cell's end)"


def test_grid_object_matches_plan():
    plan, grid = sf.plan_regular_grid((1000, 777), 128, 32)
    assert grid.shape == plan.grid_shape == (11, 8)
    np.testing.assert_array_equal(shapely.bounds(grid).reshape(-1, 4), plan.tile_boxes)
    for index, geom in sf.get_plan_input_geoms(plan):
        assert geom.equals(grid[index])


def _pixels(box):
    ylo, xlo, yhi, xhi = box
    return {(y, x) for y in range(ylo, yhi) for x in range(xlo, xhi)}


@given(height=st.integers(1, 200), width=st.integers(1, 200), tile=st.integers(1, 64), data=st.data())
def test_cells_partition_the_image(height, width, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    plan, _ = sf.plan_regular_grid((height, width), tile, overlap)
    count = np.zeros((height, width), np.int64)
    for c in plan.write_cells:
        ylo, xlo, yhi, xhi = plan.cell_boxes[c]
        box = plan.tile_boxes[c]
        assert box[0] <= ylo < yhi <= box[2] and box[1] <= xlo < xhi <= box[3], "cell inside its tile"
        count[ylo:yhi, xlo:xhi] += 1
    assert (count == 1).all()


def test_cells_end_where_the_next_tile_starts():
    plan, _ = sf.plan_regular_grid((1000, 1000), 256, 64)
    cells = plan.cell_boxes.reshape(*plan.grid_shape, 4)
    assert tuple(cells[1, 1]) == (192, 192, 384, 384)
    # regular starts 0, 192, 384, 576 end at 832 < 1000, so a flush tile starts at 744
    assert plan.tile_boxes.reshape(*plan.grid_shape, 4)[-1, 0, 0] == 744
    assert cells[-2, 0, 2] == cells[-1, 0, 0] == 744
    assert cells[-1, -1, 2] == cells[-1, -1, 3] == 1000


def test_each_cell_is_final_when_its_own_tile_arrives():
    plan, _ = sf.plan_regular_grid((1000, 777), 128, 32)
    np.testing.assert_array_equal(plan.write_cells, plan.load_order)
    np.testing.assert_array_equal(plan.emit_after, np.arange(plan.n_loads))


def _check_schedule(plan):
    """Each written cell is emitted after every tile touching it, and right after the last one."""
    position = {t: k for k, t in enumerate(plan.load_order.tolist())}
    boxes = plan.tile_boxes
    for c, step in zip(plan.write_cells.tolist(), plan.emit_after.tolist()):
        touching = np.flatnonzero(boxes_overlap(boxes, plan.cell_boxes[c][None]))
        assert all(t in position for t in touching.tolist()), "every tile a cell needs is requested"
        assert step == max(position[t] for t in touching.tolist())
    # exactly the tiles the written cells need are requested
    needed = set()
    for c in plan.write_cells.tolist():
        needed |= set(np.flatnonzero(boxes_overlap(boxes, plan.cell_boxes[c][None])).tolist())
    assert needed == set(plan.load_order.tolist())
    assert np.all(np.diff(plan.emit_after) >= 0) and np.all(np.diff(plan.live_from) >= 0)


@given(height=st.integers(1, 150), width=st.integers(1, 150), tile=st.integers(2, 48), data=st.data())
def test_schedule_is_exact_and_prompt(height, width, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    area = None
    if data.draw(st.booleans()):
        y0, x0 = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
        area = shapely.Point(y0, x0).buffer(data.draw(st.floats(0.5, 60)))
    plan, _ = sf.plan_regular_grid((height, width), tile, overlap, area=area)
    _check_schedule(plan)


def test_schedule_on_non_rectilinear_grid():
    rng = np.random.default_rng(0)
    grid = np.array([[shapely.box(i * 20 + (rng.integers(0, 5) if i else 0), j * 20 + (rng.integers(0, 5) if j else 0),
                                  i * 20 + 30, j * 20 + 30) for j in range(6)] for i in range(5)])
    plan = sf.plan_from_grid(grid, area=shapely.box(30, 30, 60, 70))
    _check_schedule(plan)


@pytest.mark.parametrize("image_size, tile, overlap", [
    ((4096, 4096), 256, 64), ((1000, 777), 128, 32), ((40000, 3000), 512, 128), ((999, 999), 100, 33),
    ((5000, 700), 256, 0), ((5000, 700), 256, 255), ((100, 700), 256, 64)])
def test_band_buffer_holds_the_largest_bottom_overlap(image_size, tile, overlap):
    plan, _ = sf.plan_regular_grid(image_size, tile, overlap, traverse="rows")
    starts, ends = np.unique(plan.tile_boxes[:, 0]), np.unique(plan.tile_boxes[:, 2])
    assert plan.layout == "band"
    assert plan.buffer_rows == max(1, int((ends[:-1] - starts[1:]).max(initial=0))) <= min(tile, image_size[0])
    assert plan.buffer_cols == (0, image_size[1])
    assert plan.right_buffer[0] == min(tile, image_size[0])


def test_ring_buffer_is_one_tile_height():
    """Plans in stripes keep the ring buffer, one tile high."""
    plan, _ = sf.plan_regular_grid((1000, 777), 128, 32, max_buffer_bytes=128 * 300 * 4)
    assert plan.layout == "ring" and len(plan.stripes) > 1
    assert plan.buffer_rows == 128 and plan.right_buffer == (0, 0)


def test_analyse_plan():
    plan, _ = sf.plan_regular_grid((4096, 4096), 256, 64)
    held, loaded, written = sf.analyse_plan(plan)
    stats = sf.analyse_plan(plan, channels=3)
    assert (loaded, written) == (441, 441)
    # the band, overlap high, and the right-overlap buffer, two tiles high
    assert plan.buffer_rows == 64 and plan.right_buffer == (256, 64)
    assert stats.buffer_bytes == (64 * 4096 + 2 * 256 * 64) * 3 * 4
    assert held == -(-(64 * 4096 + 2 * 256 * 64) // (256 * 256))
    big, _ = sf.plan_regular_grid((40000, 40000), 256, 64)
    # the seed's promise: under 1 % of a 40000 x 40000 image in memory (here 0.16 %)
    assert sf.analyse_plan(big, channels=3).buffer_bytes < 0.002 * 40000 * 40000 * 3 * 4
    general = sf.plan_from_grid(np.array([[shapely.box(0, 0, 10, 10), shapely.box(1, 5, 11, 15)]]))
    assert sf.analyse_plan(general, channels=2).buffer_bytes == general.buffer_rows * 15 * 3 * 4


def test_area_requests_fewer_tiles():
    full, _ = sf.plan_regular_grid((4096, 4096), 256, 64)
    part, grid = sf.plan_regular_grid((4096, 4096), 256, 64, area=shapely.Point(2000, 2000).buffer(300))
    assert part.n_loads < 0.1 * full.n_loads
    assert part.image_size == (4096, 4096)


def test_plan_arrays_are_read_only():
    plan, _ = sf.plan_regular_grid((100, 100), 32, 8)
    with pytest.raises(ValueError):
        plan.load_order[0] = 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=(0, 10)), r"image_size=\(0, 10\): every entry must be positive"),
    (dict(image_size=(-5, 10)), "image_size"),
    (dict(image_size=(10.5, 10)), r"image_size=10.5 is not an integer"),
    (dict(image_size="big"), "image_size"),
    (dict(image_size=(1, 2, 3, 4)), r"has 4 items; expected a \(y, x\) pair"),  # (D, H, W) plans a volume
    (dict(image_size=(True, 10)), "not an integer"),
    (dict(tile_size=0), "tile_size=0: every entry must be positive"),
    (dict(tile_size=(64, None)), "tile_size"),
    (dict(overlap=-1), "overlap=-1: every entry must be >= 0"),
    (dict(overlap=64), r"overlap=\(64, 64\) must be smaller than tile_size=\(64, 64\)"),
    (dict(overlap=(10, 70)), "must be smaller than tile_size"),
    (dict(area=shapely.box(200, 200, 300, 300)), "lies outside the image"),
    (dict(area=shapely.box(100, 0, 200, 50)), "lies outside the image"),  # touches the border only
    (dict(area=shapely.Polygon()), "empty geometry"),
    (dict(area=(0, 0, 10, 10)), "not a shapely geometry"),
    (dict(window="triangle"), "window='triangle' is not known"),
    (dict(window=np.zeros((64, 64))), "strictly positive"),
    (dict(window=np.ones((32, 32))), r"2-D window of shape \(32, 32\) cannot weight a tile of shape \(64, 64\)"),
    (dict(window=lambda n: np.ones(n + 1)), "returned shape"),
    (dict(window=lambda n: -np.ones(n)), "strictly positive"),
])
def test_bad_plan_arguments(kwargs, message):
    args = dict(image_size=(100, 100), tile_size=64, overlap=16) | kwargs
    with pytest.raises(ValueError, match=message):
        sf.plan_regular_grid(args.pop("image_size"), args.pop("tile_size"), args.pop("overlap"), **args)


@pytest.mark.parametrize("grid, message", [
    (np.array([[shapely.box(0, 0, 10, 10), shapely.Point(1, 1).buffer(3)]]), r"grid\[0, 1\] has bounds"),
    (np.array([[shapely.box(0, 0, 10.5, 10)]]), r"grid\[0, 0\] has bounds"),
    (np.array([[shapely.box(-2, 0, 10, 10)]]), "non-negative"),
    (np.array([[shapely.box(0, 10, 10, 20), shapely.box(0, 0, 10, 10)]]), "x bounds must not decrease along each row"),
    (np.array([[shapely.box(10, 0, 20, 10)], [shapely.box(0, 0, 10, 10)]]), "y bounds must not decrease"),
    (np.array([[shapely.box(0, 0, 10, 10), None]]), r"grid\[0, 1\] is None"),
    (np.array([shapely.box(0, 0, 10, 10)]), "2-D"),
])
def test_bad_grids(grid, message):
    with pytest.raises(ValueError, match=message):
        sf.plan_from_grid(grid)


def test_area_that_meets_no_cell():
    grid = np.array([[shapely.box(0, 0, 10, 10), shapely.box(0, 30, 10, 40)]])
    with pytest.raises(ValueError, match="meets no output cell"):
        sf.plan_from_grid(grid, area=shapely.box(0, 15, 10, 25))


# -- sizes and inputs that would reach a MemoryError, a GEOS or a numpy error ----------------------

@pytest.mark.parametrize("args, message", [
    (((10**9, 10**9), 256, 64), r"image_size=\(1000000000, 1000000000\) with tile_size=\(256, 256\) and "
                                r"overlap=\(64, 64\) needs a grid of 5208333 x 5208333 = 27126732638889 tiles; "
                                r"a plan holds at most 4194304"),
    (((10**9, 7), (2, 7), (1, 0)), "needs a grid of 999999999 x 1 = 999999999 tiles"),
    (((2**53 + 1, 5), 4, 1), r"image_size=\(9007199254740993, 5\) is too large: each side must be at most"),
    (((10**12, 10), 10**12, 0), "tiles of up to 1000000000000 x 10 pixels .* need 1000000000010 window weights"),
])
def test_sizes_too_large_for_a_plan_are_refused_naming_them(args, message):
    with pytest.raises(ValueError, match=message):
        sf.plan_regular_grid(*args)


def test_huge_image_with_an_area_plans_only_its_window():
    side = 10**12
    area = shapely.box(side - 300, side - 500, side - 10, side - 20)
    plan, grid = sf.plan_regular_grid((side, side), 256, 64, area=area)
    assert grid.size <= 16 and plan.image_size == (side, side)
    assert plan.tile_boxes[:, 2:].max() == side, "the flush tiles of the whole image's grid"
    assert regular_grid((side, side), 256, 64, area).shape == grid.shape
    with pytest.raises(ValueError, match="needs a grid of .* tiles around the area with bounds"):
        sf.plan_regular_grid((side, side), 256, 64, area=shapely.box(0, 0, 10**6, 10**6))


@pytest.mark.parametrize("grid, message", [
    (np.array([[shapely.box(0, 0, 10, np.inf)]]), r"grid\[0, 0\] has bounds \(0.0, 0.0, 10.0, inf\); every "
                                                  r"coordinate must be finite and at most 9007199254740992"),
    (np.array([[shapely.box(0, 0, 10, 10), shapely.box(0, 5, 10, 1e300)]]), r"grid\[0, 1\] has bounds .*1e\+300"),
    # a box with a 1 x 1 notch: its area is within 1e-5 of its bounds' area, and still not a box
    (np.array([[shapely.Polygon([(0, 0), (0, 1000), (1000, 1000), (1000, 1), (999, 1), (999, 0)])]]),
     r"grid\[0, 0\] has bounds .*expected an axis-aligned"),
])
def test_grids_with_far_or_non_box_tiles_are_refused(grid, message):
    with pytest.raises(ValueError, match=message):
        sf.plan_from_grid(grid)


def test_the_band_check_sees_every_row_of_an_irregular_grid():
    # row 0 spans 15 columns, row 1 spans 60: the buffer needs 60 columns of 10 rows
    grid = np.array([[shapely.box(0, 0, 10, 10), shapely.box(0, 5, 10, 15)],
                     [shapely.box(5, 0, 15, 40), shapely.box(5, 20, 15, 60)]])
    with pytest.raises(ValueError, match="max_buffer_bytes=1000 is below the 2400 bytes one band"):
        sf.plan_from_grid(grid, max_buffer_bytes=1000)
    plan = sf.plan_from_grid(grid, max_buffer_bytes=2400)
    assert sf.analyse_plan(plan).buffer_bytes <= 2 * 2400  # values and the weight-sum plane


@pytest.mark.parametrize("call, message", [
    (lambda p: sf.analyse_plan([]), "plan must be a Plan"),
    (lambda p: sf.analyse_plan(p, dtype="banana"), "dtype='banana' is not an accumulator dtype"),
    (lambda p: sf.analyse_plan(p, dtype=np.int8), "dtype=int8 is not an accumulator dtype"),
    (lambda p: sf.analyse_plan(p, channels=0), "channels=0 must be a positive integer"),
    (lambda p: sf.plan_regular_grid((100, 100), 32, 8, dtype="banana"), "dtype='banana' is not an accumulator"),
    (lambda p: sf.get_plan_input_geoms(None), "plan must be a Plan"),
    (lambda p: sf.shape_to_slices(shapely.Polygon()), "shp=POLYGON EMPTY has no finite bounds"),
    (lambda p: sf.shape_to_slices((0, 0, 4, 4)), r"shp=\(0, 0, 4, 4\) is not a shapely geometry"),
    (lambda p: sf.run_plan(p, [], max_tiles=100, disk_cache_dir=3), "disk_cache_dir=3 is not a path"),
])
def test_bad_arguments_to_plan_helpers(call, message):
    plan, _ = sf.plan_regular_grid((100, 100), 32, 8)
    with pytest.raises(ValueError, match=message):
        call(plan)


def test_an_area_window_far_from_the_origin_normalises_like_the_whole_image():
    # an area plan keeps weight sums over its window only: they equal the whole image's over its written cells
    whole, _ = sf.plan_regular_grid((3000, 2000), 100, 30)
    part, _ = sf.plan_regular_grid((3000, 2000), 100, 30, area=shapely.box(2500, 1500, 2600, 1700))
    cells = part.cell_boxes[part.write_cells]
    lo, hi = cells[:, :2].min(axis=0), cells[:, 2:].max(axis=0)  # a box area: its cells make a rectangle
    rows = {tuple(b): k for k, b in enumerate(whole.tile_boxes.tolist())}
    for t in part.load_order.tolist():
        w = rows[tuple(part.tile_boxes[t].tolist())]
        for axis, offsets in ((0, "weight_y"), (1, "weight_x")):
            start, end = part.tile_boxes[t, axis], part.tile_boxes[t, axis + 2]
            a, b = max(lo[axis], start) - start, min(hi[axis], end) - start
            assert b > a
            mine = getattr(part, offsets)[t]
            theirs = getattr(whole, offsets)[w]
            np.testing.assert_array_equal(part.weights[mine + a:mine + b], whole.weights[theirs + a:theirs + b])


@given(size=st.integers(1, 3000), tile=st.integers(1, 300), height=st.integers(1, 40), data=st.data())
def test_stripes_of_a_regular_axis_are_cut_as_on_the_whole_grid(size, tile, height, data):
    # An area plan cuts its columns into stripes where the whole image's grid is cut (so its additions happen
    # in the same order): the closed form must equal the greedy cut of the whole grid, errors included.
    from seamless_fast.plan._schedule import regular_column_stripes, split_columns

    overlap = data.draw(st.integers(0, tile - 1))
    whole, _ = sf.plan_regular_grid((height, size), (height, tile), (0, overlap))
    boxes = whole.tile_boxes.reshape(*whole.grid_shape, 4)
    row_bytes = int(boxes[0, 0, 2] - boxes[0, 0, 0]) * 4
    budget = data.draw(st.integers(1, size * row_bytes * 2 + 2))
    cols = whole.grid_shape[1]
    try:
        expected = split_columns(boxes, budget, 4, True)
    except ValueError as error:
        with pytest.raises(ValueError, match="is too small"):
            regular_column_stripes(size, tile, overlap, 0, cols, row_bytes, budget)
        assert "is too small" in str(error)
        return
    np.testing.assert_array_equal(regular_column_stripes(size, tile, overlap, 0, cols, row_bytes, budget), expected)
    k0 = data.draw(st.integers(0, cols - 1))
    k1 = data.draw(st.integers(k0 + 1, cols))
    np.testing.assert_array_equal(regular_column_stripes(size, tile, overlap, k0, k1, row_bytes, budget),
                                  expected[k0:k1])


@given(height=st.integers(1, 400), width=st.integers(1, 400), tile=st.integers(2, 96), data=st.data())
def test_rectilinear_schedule_equals_the_general_one(height, width, tile, data):
    """The rectilinear schedule (searched per grid row and column, every tile needed when every cell is
    written) gives what the STRtree schedule for any grid gives."""
    from seamless_fast.plan._schedule import schedule_general, schedule_rectilinear
    from seamless_fast.geometry import grid_cells

    overlap = data.draw(st.integers(0, tile - 1))
    boxes = np.asarray(shapely.bounds(regular_grid((height, width), tile, overlap))).astype(np.int64)
    cells = grid_cells(boxes)
    flat_cells = cells.reshape(-1, 4)
    selected = (flat_cells[:, 2] > flat_cells[:, 0]) & (flat_cells[:, 3] > flat_cells[:, 1])
    if data.draw(st.booleans()):  # some cells left out, as an area leaves them
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        selected &= rng.random(len(selected)) < data.draw(st.floats(0.01, 0.99))
    if not selected.any():
        return
    fast = schedule_rectilinear(boxes, cells, selected)
    general = schedule_general(boxes.reshape(-1, 4), flat_cells, selected)
    for a, b in zip(fast, general):
        np.testing.assert_array_equal(a, b)
