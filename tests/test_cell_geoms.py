"""The geometries run_plan yields and get_plan_input_geoms returns: real shapely boxes, made in blocks or
cached, that shape_to_slices reads without asking shapely for bounds."""

import gc
import itertools

import numpy as np
import pytest
import shapely

import seamless_fast as sf
from seamless_fast import geometry, plan as plan_module
from seamless_fast.engine.run import cell_geom_blocks

PLANS = {
    "regular": lambda: sf.plan_regular_grid((300, 260), 64, 16)[0],
    "area": lambda: sf.plan_regular_grid((300, 260), 64, 16, area=shapely.Point(150, 120).buffer(70))[0],
    "stripes": lambda: sf.plan_regular_grid((200, 600), 64, 16, max_buffer_bytes=64 * 200 * 4)[0],
    "irregular": lambda: sf.plan_from_grid(np.array(
        [[shapely.box(i * 40 + 3 * (i % 2), j * 40 + 5 * (j % 3), i * 40 + 64, j * 40 + 64) for j in range(5)]
         for i in range(4)])),
    "2d window": lambda: sf.plan_regular_grid((150, 170), 48, 12, window=np.ones((48, 48)))[0],
}


def _tiles(plan, channels=2):
    rng = np.random.default_rng(0)
    return [rng.random((yhi - ylo, xhi - xlo, channels)).astype(np.float32)
            for ylo, xlo, yhi, xhi in plan.tile_boxes[plan.load_order].tolist()]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_run_plan_yields_the_shapely_box_of_each_cell(name, monkeypatch):
    plan = PLANS[name]()

    def not_in_order(box):
        raise AssertionError(f"cell {box} came out of the plan's write order")
    monkeypatch.setattr("seamless_fast.engine.run.box_to_geom", not_in_order)  # every geometry from a block
    cells = list(sf.Blender(plan).push_batch(_tiles(plan)))
    seen = 0
    for (index, out_geom, out_tile), cell in zip(sf.run_plan(plan, _tiles(plan)), cells, strict=True):
        assert isinstance(out_geom, shapely.Polygon)
        assert index == cell.index
        assert shapely.equals_exact(out_geom, shapely.box(*cell.box), tolerance=0)
        assert out_geom.bounds == tuple(float(v) for v in cell.box)
        assert sf.shape_to_slices(out_geom) == cell.slices
        np.testing.assert_array_equal(out_tile, cell.data)
        seen += 1
    assert seen == plan.n_writes


def test_shape_to_slices_gives_the_same_slices_for_known_and_unknown_geometries():
    plan, _ = sf.plan_regular_grid((200, 200), 64, 16)
    kept = []
    for index, out_geom, _ in sf.run_plan(plan, _tiles(plan)):
        known = sf.shape_to_slices(out_geom)  # registered while its block is current
        assert known == sf.shape_to_slices(shapely.box(*out_geom.bounds))  # a geometry of its own
        kept.append((out_geom, known))
    assert not geometry._KNOWN_BOXES  # the run forgot its blocks
    for out_geom, known in kept:
        assert sf.shape_to_slices(out_geom) == known  # through shapely's bounds now
    with pytest.raises(ValueError, match="not a shapely geometry"):
        sf.shape_to_slices((0, 0, 1, 1))


@pytest.mark.parametrize("how", ["break", "error", "tiles run out"])
def test_a_run_that_stops_early_forgets_its_geometries(how):
    plan, _ = sf.plan_regular_grid((300, 300), 64, 16)
    tiles = _tiles(plan)
    if how == "tiles run out":
        with pytest.raises(ValueError, match="tiles ran out"):
            for _ in sf.run_plan(plan, iter(tiles[:5])):
                pass
    elif how == "error":
        with pytest.raises(RuntimeError):
            for _ in sf.run_plan(plan, tiles):
                raise RuntimeError
    else:
        run = sf.run_plan(plan, tiles)
        next(run)
        assert geometry._KNOWN_BOXES
        run.close()
    gc.collect()
    assert not geometry._KNOWN_BOXES


@pytest.mark.parametrize("block", [1, 3, 256])
def test_cell_geoms_in_blocks(block):
    plan = PLANS["area"]()
    got = list(itertools.chain.from_iterable(cell_geom_blocks(plan, block)))
    assert [index for index, _ in got] == [plan.grid_index(c) for c in plan.write_cells.tolist()]
    expected = shapely.box(*plan.cell_boxes[plan.write_cells].T.astype(float))
    assert all(shapely.equals_exact(g, e, tolerance=0) for (_, g), e in zip(got, expected))
    assert not geometry._KNOWN_BOXES


def test_cell_geoms_registers_only_the_current_block():
    plan = PLANS["regular"]()
    blocks = cell_geom_blocks(plan, 4)
    first = [g for _, g in next(blocks)]
    assert len(first) == 4 and all(id(g) in geometry._KNOWN_BOXES for g in first)
    fifth = next(next(blocks))[1]
    assert id(fifth) in geometry._KNOWN_BOXES and not any(id(g) in geometry._KNOWN_BOXES for g in first)
    blocks.close()
    assert not geometry._KNOWN_BOXES


def test_boxes_to_geoms_makes_the_rings_of_shapely_box():
    boxes = np.array([[0, 0, 5, 7], [3, 2, 3, 9], [10, 20, 30, 40], [2**52, 0, 2**52 + 2, 1]])
    geoms = geometry.boxes_to_geoms(boxes)
    for box, g in zip(boxes.tolist(), geoms):
        assert shapely.equals_exact(g, shapely.box(*box), tolerance=0)
        np.testing.assert_array_equal(shapely.get_coordinates(g), shapely.get_coordinates(shapely.box(*box)))
    assert isinstance(geometry.boxes_to_geoms(boxes[0]), shapely.Polygon)
    assert geometry.boxes_to_geoms(boxes.reshape(2, 2, 4)).shape == (2, 2)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_input_geoms_are_the_tile_boxes_and_cached(name):
    plan = PLANS[name]()
    first = sf.get_plan_input_geoms(plan)
    again = sf.get_plan_input_geoms(plan)
    assert first is not again and all(a is b for (_, a), (_, b) in zip(first, again))
    assert [index for index, _ in first] == [plan.grid_index(t) for t in plan.load_order.tolist()]
    for (_, g), box in zip(first, plan.tile_boxes[plan.load_order].tolist()):
        assert shapely.equals_exact(g, shapely.box(*box), tolerance=0)
    first.clear()  # a caller's list is its own
    assert len(sf.get_plan_input_geoms(plan)) == plan.n_loads


def test_the_grid_and_the_input_geoms_share_geometries():
    area = shapely.box(50, 50, 180, 120)
    plan, grid = sf.plan_regular_grid((300, 260), 64, 16, area=area)
    flat = grid.reshape(-1)
    assert all(g is flat[t] for (_, g), t in zip(sf.get_plan_input_geoms(plan), plan.load_order.tolist()))
    grid[0, 0] = shapely.Point(0, 0)  # the caller's grid is its own array
    assert isinstance(sf.get_plan_input_geoms(plan)[0][1], shapely.Polygon)


def test_input_geoms_cache_follows_the_plan_and_its_size_limit(monkeypatch):
    plan, _ = sf.plan_regular_grid((300, 300), 64, 16)
    assert plan in plan_module._INPUT_GEOMS
    del plan
    gc.collect()
    assert not any(p.image_size == (300, 300) for p in plan_module._INPUT_GEOMS.keys())
    monkeypatch.setattr(plan_module, "INPUT_GEOMS_CACHED", 3)
    big, _ = sf.plan_regular_grid((300, 300), 64, 16)
    assert big not in plan_module._INPUT_GEOMS
    geoms = sf.get_plan_input_geoms(big)
    assert big not in plan_module._INPUT_GEOMS and len(geoms) == big.n_loads
