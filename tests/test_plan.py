"""Planning: the seed's grid rule, output cells, which tiles are needed and when cells are final."""

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.geometry import boxes_overlap

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
def test_buffer_is_one_tile_height(image_size, tile, overlap):
    plan, _ = sf.plan_regular_grid(image_size, tile, overlap)
    assert plan.buffer_rows == min(tile, image_size[0])
    assert plan.buffer_cols == (0, image_size[1])


def test_analyse_plan():
    plan, _ = sf.plan_regular_grid((4096, 4096), 256, 64)
    held, loaded, written = sf.analyse_plan(plan)
    stats = sf.analyse_plan(plan, channels=3)
    assert (loaded, written) == (441, 441)
    assert stats.buffer_bytes == plan.buffer_rows * 4096 * 3 * 4
    assert held == -(-plan.buffer_rows * 4096 // (256 * 256))
    big, _ = sf.plan_regular_grid((40000, 40000), 256, 64)
    # the seed's promise: under 1 % of a 40000 x 40000 image in memory (here 0.64 %)
    assert sf.analyse_plan(big, channels=3).buffer_bytes < 0.01 * 40000 * 40000 * 3 * 4
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
    (dict(image_size=(1, 2, 3)), r"has 3 items; expected a \(y, x\) pair"),
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
