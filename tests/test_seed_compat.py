"""Code written against the seed (``seamless_seg``) runs unchanged with ``import seamless_fast as seamless_seg``."""

import inspect
import itertools

import numpy as np
import pytest
import shapely

import seamless_fast as seamless_seg
import seamless_fast as sf
from seamless_fast.windows import window_2d

from reference import reference_blend
from test_run import seed_readme_minimal_example

SEED_SIGNATURES = {
    "plan_regular_grid": ["image_size", "tile_size", "overlap", "area", "traversal_fnc"],
    "plan_from_grid": ["grid", "margin", "area", "traversal_fnc"],
    "run_plan": ["plan", "tiles", "max_tiles", "disk_cache_dir", "on_load", "on_unload", "on_step",
                 "on_disk_evict", "on_disk_restore"],
    "get_plan_input_geoms": ["plan"],
    "get_plan_logit_geoms": ["plan"],
    "analyse_plan": ["plan"],
    "overlap_weights": ["central", "nearby", "trim_bounds"],
    "apply_weights": ["central_tile", "nearby_tiles", "weights"],
    "batched_tile_get": ["geoms", "batch_size", "get_tiles_fnc"],
    "threaded_batched_tile_get": ["geoms", "batch_size", "get_tiles_fnc", "max_prefetched"],
    "shape_to_slices": ["shp"],
    "regular_grid": ["image_size", "tile_size", "overlap", "area"],
    "row_by_row_traversal": ["grid", "add_load", "add_unload", "add_write"],
}


@pytest.mark.parametrize("name, params", SEED_SIGNATURES.items())
def test_seed_parameters_in_the_seed_order(name, params):
    signature = inspect.signature(getattr(seamless_seg, name))
    positional = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert positional[:len(params)] == params
    extra = [p for p in signature.parameters.values() if p.name not in params]
    assert all(p.kind == p.KEYWORD_ONLY or p.default is not p.empty for p in extra), "new parameters are optional"


def test_readme_minimal_example_matches_the_reference():
    image_size, tile_size, overlap = (300, 420), (96, 96), (32, 32)
    np.random.seed(3)
    out_img = seed_readme_minimal_example(image_size, tile_size, overlap)
    np.random.seed(3)  # the example's colours, drawn again in the same order
    plan, _ = sf.plan_regular_grid(image_size, tile_size, overlap)
    tiles = []
    for _ in sf.get_plan_input_geoms(plan):
        tile = np.ones((*tile_size, 3), dtype=np.uint8)
        tile *= np.random.randint(20, 255, (3,), dtype=np.uint8)
        tiles.append(tile)
    boxes = plan.tile_boxes[plan.load_order].tolist()
    windows = [window_2d(plan.window, b[2] - b[0], b[3] - b[1]) for b in boxes]
    expected, covered = reference_blend(boxes, tiles, windows, image_size)
    assert covered.all()
    np.testing.assert_allclose(out_img, expected, rtol=0, atol=1e-3)


def seed_readme_batched_example(image, model, tile_size, overlap):
    """The seed README's batched, threaded example, with a numpy array for the GeoTIFF and a numpy model."""
    batch_size = 16

    def _run_tiles(indexs, geoms):
        imgs = []
        for in_geom in geoms:
            in_slices = seamless_seg.shape_to_slices(in_geom)
            imgs.append(image[(slice(None), *in_slices)])
        out = model(np.stack(imgs))
        return out.transpose((0, 2, 3, 1))

    def _input_generator(plan):
        geoms = seamless_seg.get_plan_input_geoms(plan)
        return seamless_seg.threaded_batched_tile_get(geoms, batch_size, _run_tiles, batch_size * 3)

    plan, grid = seamless_seg.plan_regular_grid(image.shape[1:], tile_size, overlap)
    in_tiles = _input_generator(plan)
    out = np.zeros(image.shape[1:], np.int64) - 1
    for index, out_geom, out_tile in seamless_seg.run_plan(plan, in_tiles):
        seg = out_tile.argmax(axis=-1)
        out[seamless_seg.shape_to_slices(out_geom)] = seg
    return out


@pytest.mark.parametrize("image_size", [(200, 333), (224, 224), (500, 90)])
def test_readme_batched_threaded_example(image_size):
    rng = np.random.default_rng(0)
    image = rng.random((3, *image_size)).astype(np.float32)

    def pixelwise_model(batch):  # the same value at a pixel from every tile: the blend must give it back
        return np.concatenate([batch, 1 - batch], axis=1)

    labels = seed_readme_batched_example(image, pixelwise_model, (64, 64), (16, 16))
    expected = np.concatenate([image, 1 - image]).argmax(axis=0)
    margin = np.sort(np.concatenate([image, 1 - image]), axis=0)
    clear = margin[-1] - margin[-2] > 1e-5  # ties within float rounding may go either way
    assert (labels >= 0).all()
    np.testing.assert_array_equal(labels[clear], expected[clear])


def test_newer_readme_example_with_get_plan_logit_geoms():
    image_size, tile_size, overlap = (1024, 1024), (224, 224), (64, 64)
    colours = {}

    def random_logits(geom):
        tile = np.ones((*tile_size, 3), dtype=np.uint8)
        tile *= colours.setdefault(geom.bounds, np.uint8(7))
        return tile

    def tile_generator(plan, get_logits):
        for index, geom in seamless_seg.get_plan_logit_geoms(plan):
            yield get_logits(geom)

    out_img = np.zeros((*image_size, 3))
    plan, grid = seamless_seg.plan_regular_grid(image_size, tile_size, overlap)
    for index, out_geom, out_tile in seamless_seg.run_plan(plan, tile_generator(plan, random_logits)):
        out_img[seamless_seg.shape_to_slices(out_geom)] = out_tile
    np.testing.assert_allclose(out_img, 7, rtol=1e-6)
    assert len(colours) == plan.n_loads


def test_plan_from_grid_takes_the_seed_margin_and_traversal():
    grid = seamless_seg.regular_grid((300, 250), 64, 16)
    plain = sf.plan_from_grid(grid)
    called = []
    traversal = lambda *args: called.append(args)  # noqa: E731
    area = shapely.box(50, 50, 200, 120)
    for plan in [sf.plan_from_grid(grid, (8, 8)), sf.plan_from_grid(grid, margin=(8, 8)),
                 sf.plan_from_grid(grid, (8, 8), None, traversal), sf.plan_from_grid(grid, 8),
                 sf.plan_from_grid(grid, margin=(0, 0), traversal_fnc=seamless_seg.row_by_row_traversal)]:
        np.testing.assert_array_equal(plan.load_order, plain.load_order)
        np.testing.assert_array_equal(plan.cell_boxes, plain.cell_boxes)
    with_area = sf.plan_from_grid(grid, (8, 8), area, traversal)
    np.testing.assert_array_equal(with_area.write_cells, sf.plan_from_grid(grid, area=area).write_cells)
    assert with_area.n_writes < plain.n_writes
    regular, _ = sf.plan_regular_grid((300, 250), 64, 16, area, traversal)
    np.testing.assert_array_equal(regular.cell_boxes[regular.write_cells], with_area.cell_boxes[with_area.write_cells])
    assert called == [], "the order is the plan's own: traversal_fnc is never called"


@pytest.mark.parametrize("call, message", [
    (lambda g: sf.plan_from_grid(g, shapely.box(0, 0, 50, 50)), "margin=.* is a geometry; .* pass the area by keyword"),
    (lambda g: sf.plan_from_grid(g, (-1, 0)), r"margin=\(-1, 0\): every entry must be >= 0"),
    (lambda g: sf.plan_from_grid(g, (1, 2, 3)), "margin=.* has 3 items"),
    (lambda g: sf.plan_from_grid(g, (8, 8), None, "rows"), "traversal_fnc='rows' is not callable"),
    (lambda g: sf.plan_regular_grid((100, 100), 32, 8, None, 3), "traversal_fnc=3 is not callable"),
])
def test_seed_arguments_that_make_no_sense_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(seamless_seg.regular_grid((100, 100), 32, 8))


def test_regular_grid_is_the_grid_plan_regular_grid_plans():
    for area in [None, shapely.Point(150, 90).buffer(40)]:
        plan, grid = sf.plan_regular_grid((300, 250), 64, 16, area=area)
        same = seamless_seg.regular_grid((300, 250), 64, 16, area)
        assert shapely.equals(grid, same).all()
        again = sf.plan_from_grid(same, area=area)
        for field in ("tile_boxes", "cell_boxes", "load_order", "write_cells", "steps", "weights"):
            np.testing.assert_array_equal(getattr(again, field), getattr(plan, field))


def test_row_by_row_traversal_describes_the_plan_order():
    plan, grid = sf.plan_regular_grid((300, 250), 64, 16)
    loads, writes = [], []
    seamless_seg.row_by_row_traversal(grid, lambda i, j: loads.append((i, j)), lambda i, j: None,
                                      lambda i, j: writes.append((i, j)))
    assert loads == [index for index, _ in seamless_seg.get_plan_input_geoms(plan)]
    assert writes == [plan.grid_index(c) for c in plan.write_cells]


def test_get_plan_logit_geoms_is_get_plan_input_geoms():
    plan, _ = sf.plan_regular_grid((300, 250), 64, 16, area=shapely.box(10, 10, 100, 100))
    logit = seamless_seg.get_plan_logit_geoms(plan)
    assert [i for i, _ in logit] == [i for i, _ in sf.get_plan_input_geoms(plan)]
    assert all(a.equals(b) for (_, a), (_, b) in zip(logit, sf.get_plan_input_geoms(plan)))
    with pytest.raises(ValueError, match="plan must be a Plan"):
        seamless_seg.get_plan_logit_geoms([])


def test_seed_run_plan_positional_arguments(tmp_path):
    plan, _ = sf.plan_regular_grid((200, 150), (64, 64), (16, 16))
    events = []
    tiles = itertools.repeat(np.ones((64, 64, 2), np.float32))
    run = sf.run_plan(plan, tiles, 100, tmp_path / "cache", lambda i: events.append("load"),
                      lambda i: events.append("unload"), lambda n: events.append("step"), lambda i: 1 / 0,
                      lambda i: 1 / 0)
    assert len(list(run)) == plan.n_writes
    assert events.count("load") == events.count("unload") == events.count("step") == plan.n_loads
