"""run_plan and the push interface: the seed's contract, callbacks, and every bad input."""

import itertools

import numpy as np
import pytest
import shapely

import seamless_fast as sf

from cases import random_tiles


def seed_readme_minimal_example(image_size, tile_size, overlap):
    """The seed README's minimal example, unchanged but for the import line."""
    import seamless_fast as seamless_seg

    def _input_generator(plan):
        for index, geom in seamless_seg.get_plan_input_geoms(plan):
            tile = np.ones((*tile_size, 3), dtype=np.uint8)
            tile *= np.random.randint(20, 255, (3,), dtype=np.uint8)
            yield tile

    plan, grid = seamless_seg.plan_regular_grid(image_size, tile_size, overlap)
    in_tiles = _input_generator(plan)
    out_img = np.zeros((*image_size, 3))
    for index, out_geom, out_tile in seamless_seg.run_plan(plan, in_tiles):
        y_slc, x_slc = seamless_seg.shape_to_slices(out_geom)
        out_img[y_slc, x_slc] = out_tile
    return out_img


@pytest.mark.parametrize("image_size", [(1000, 777), (512, 512), (300, 2000)])
def test_seed_readme_minimal_example_runs(image_size):
    out_img = seed_readme_minimal_example(image_size, (128, 128), (32, 32))
    # every pixel written with a blend of tile colours (20 to 255), to float32 rounding
    assert out_img.min() >= 20 * (1 - 1e-6) and out_img.max() <= 255 * (1 + 1e-6)


def test_seed_names_are_public():
    for name in ["plan_regular_grid", "plan_from_grid", "get_plan_input_geoms", "run_plan", "shape_to_slices",
                 "batched_tile_get", "threaded_batched_tile_get", "analyse_plan", "overlap_weights",
                 "apply_weights"]:
        assert callable(getattr(sf, name))


def test_run_plan_with_threaded_batches_matches_blend():
    plan, _ = sf.plan_regular_grid((300, 260), 64, 16)
    tiles = random_tiles(plan, np.random.default_rng(0), 3, np.float32)
    expected = sf.blend(plan, [tiles[t] for t in plan.load_order])

    def get_tiles(indices, geoms):
        return np.stack([tiles[i * plan.grid_shape[1] + j] for i, j in indices])

    geoms = sf.get_plan_input_geoms(plan)
    got = np.zeros_like(expected)
    for _, out_geom, out_tile in sf.run_plan(plan, sf.threaded_batched_tile_get(geoms, 5, get_tiles, 15)):
        got[sf.shape_to_slices(out_geom)] = out_tile
    np.testing.assert_array_equal(got, expected)


def test_callbacks_and_yield_order():
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    events = []
    tiles = (np.zeros((64, 64, 1)) for _ in range(plan.n_loads))
    run = sf.run_plan(plan, tiles, on_load=lambda i: events.append(("load", i)),
                      on_unload=lambda i: events.append(("unload", i)), on_step=lambda n: events.append(("step", n)))
    for index, geom, _ in run:
        events.append(("write", index))
        assert isinstance(geom, shapely.Polygon)
    first = plan.grid_index(plan.load_order[0])
    assert events[:4] == [("load", first), ("unload", first), ("write", first), ("step", 0)]
    assert [e for e in events if e[0] == "load"] == [("load", i) for i, _ in sf.get_plan_input_geoms(plan)]
    assert sum(e[0] == "write" for e in events) == plan.n_writes


def test_run_plan_checks_arguments_before_reading_tiles():
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    touched = []

    def tiles():
        touched.append(True)
        yield np.zeros((64, 64))

    for kwargs, message in [
        (dict(max_tiles=0), "max_tiles=0 must be a positive integer"),
        (dict(max_tiles=1), "max_tiles=1 is below the .* tile-equivalents"),
        (dict(disk_cache_dir="somewhere"), "disk_cache_dir is set but max_tiles is not"),
        (dict(on_load=3), "on_load=3 is not callable"),
        (dict(labels="yes"), "labels='yes' must be True or False"),
        (dict(dtype=np.int32), "dtype=int32 is not a supported accumulator"),
        (dict(dtype=np.float16), "dtype=float16 is not a supported accumulator"),
    ]:
        with pytest.raises(ValueError, match=message):
            sf.run_plan(plan, tiles(), **kwargs)
    with pytest.raises(ValueError, match="plan must be a Plan"):
        sf.run_plan([], tiles())
    assert not touched


def test_disk_cache_dir_must_be_a_directory(tmp_path):
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        sf.run_plan(plan, [], max_tiles=1, disk_cache_dir=tmp_path / "file")


def test_max_tiles_within_budget_keeps_buffer_in_ram(tmp_path):
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    run = sf.run_plan(plan, (np.ones((64, 64)) for _ in range(plan.n_loads)), max_tiles=100,
                      disk_cache_dir=tmp_path / "cache")
    next(run)
    assert list((tmp_path / "cache").iterdir()) == []
    assert len(list(run)) == plan.n_writes - 1


def test_too_few_and_too_many_tiles():
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    n = plan.n_loads
    with pytest.raises(ValueError, match=f"tiles ran out after 5 tiles; the plan expects {n}"):
        list(sf.run_plan(plan, (np.zeros((64, 64)) for _ in range(5))))
    # a list (any sized sequence) of the wrong length is refused when run_plan is called, before any tile is read
    for count in (5, n + 1):
        with pytest.raises(ValueError, match=f"tiles holds {count} tiles; the plan expects {n}"):
            sf.run_plan(plan, [np.zeros((64, 64))] * count)
    with pytest.raises(ValueError, match=f"tiles holds {n + 1} tiles; the plan expects {n}"):
        sf.run_plan(plan, np.zeros((n + 1, 64, 64)))
    assert len(list(sf.run_plan(plan, [np.zeros((64, 64))] * n))) == plan.n_writes
    assert len(list(sf.run_plan(plan, np.zeros((n, 64, 64))))) == plan.n_writes


class CountingTiles:
    """An endless iterator of constant tiles that counts how many were taken."""

    def __init__(self, shape, value=1.0):
        self.tile, self.taken = np.full(shape, value, np.float32), 0

    def __iter__(self):
        return self

    def __next__(self):
        self.taken += 1
        return self.tile


@pytest.mark.parametrize("area", [None, shapely.Point(150, 100).buffer(40)])
@pytest.mark.parametrize("callbacks", [False, True])
def test_an_endless_generator_is_never_pulled_once_more(area, callbacks):
    plan, _ = sf.plan_regular_grid((300, 200), 64, 16, area=area)
    tiles = CountingTiles((64, 64, 2), 0.25)
    options = dict(on_load=lambda i: None, on_unload=lambda i: None, on_step=lambda k: None) if callbacks else {}
    cells = list(sf.run_plan(plan, tiles, **options))
    assert tiles.taken == plan.n_loads
    assert len(cells) == plan.n_writes
    assert all(np.allclose(data, 0.25, rtol=0, atol=1e-6) for _, _, data in cells)


def test_endless_generators_of_the_seed_examples():
    plan, _ = sf.plan_regular_grid((130, 170), 48, 8)
    counted = itertools.count()
    tiles = (np.full((48, 48, 3), 7, np.uint8) for _ in counted)  # endless, as itertools.count is
    out = np.zeros((130, 170, 3))
    for _, geom, data in sf.run_plan(plan, tiles):
        out[sf.shape_to_slices(geom)] = data
    assert next(counted) == plan.n_loads, "exactly n_loads tiles were taken"
    np.testing.assert_allclose(out, 7, rtol=1e-6)
    repeated = itertools.repeat(np.ones((48, 48), np.float32))
    assert len(list(sf.run_plan(plan, repeated))) == plan.n_writes
    endless = CountingTiles((48, 48))
    sf.blend(plan, endless)
    assert endless.taken == plan.n_loads


@pytest.mark.parametrize("tile, message", [
    (np.zeros((64, 60, 3)), r"tile 0 \(grid index \(0, 0\)\) has shape \(64, 60, 3\); expected \(64, 64, 'C'\)"),
    (np.zeros((3, 64, 64)), r"tile 0 .* has shape \(3, 64, 64\); expected \(64, 64, 'C'\)"),
    (np.zeros((64,)), r"tile 0 .* has shape \(64,\); expected \(H, W, C\) or \(H, W\)"),
    (np.zeros((64, 64, 0)), "has no channels"),
    (np.zeros((64, 64, 3), np.complex64), "has dtype complex64; expected a real float, integer or bool dtype"),
    (np.full((64, 64), "a"), "has dtype <U1"),
    (np.array(None), "has dtype object"),
])
def test_bad_tiles(tile, message):
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    with pytest.raises(ValueError, match=message):
        sf.Blender(plan).push(tile)


def test_tile_errors_name_the_tile_and_leave_state_unchanged():
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    tiles = random_tiles(plan, np.random.default_rng(1), 2, np.float32)
    blender = sf.Blender(plan)
    blender.push(tiles[plan.load_order[0]])
    index = plan.grid_index(plan.load_order[1])
    with pytest.raises(ValueError, match=rf"tile 1 \(grid index {re_tuple(index)}\) has shape \(64, 64, 3\); "
                                         r"expected \(64, 64, 2\)"):
        blender.push(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"tile 1 .* has 2 dimensions; earlier tiles had 3"):
        blender.push(np.zeros((64, 64), np.float32))
    for t in plan.load_order[1:]:
        blender.push(tiles[t])
    blender.close()
    with pytest.raises(ValueError, match="this Blender is closed"):
        blender.push(tiles[0])


def re_tuple(index):
    return r"\(" + ", ".join(map(str, index)) + r"\)"


def test_channel_first_mismatch_message():
    plan, _ = sf.plan_regular_grid((200, 150), 64, 16)
    with pytest.raises(ValueError, match=r"expected \('C', 64, 64\) \(channel_first=True\)"):
        sf.Blender(plan, channel_first=True).push(np.zeros((64, 64, 3)))


def test_blender_counts_tiles():
    plan, _ = sf.plan_regular_grid((100, 100), 64, 16)
    blender = sf.Blender(plan)
    assert blender.next_index == (0, 0) and blender.next_tile_shape == (64, 64)
    blender.push(np.zeros((64, 64)))
    with pytest.raises(ValueError, match=f"blend closed after 1 tiles; the plan expects {plan.n_loads}"):
        blender.close()
    blender = sf.Blender(plan)
    cells = blender.push_batch(np.zeros((plan.n_loads, 64, 64, 2)))
    assert blender.done and len(cells) == plan.n_writes
    with pytest.raises(ValueError, match=f"more tiles than the {plan.n_loads} the plan expects"):
        blender.push(np.zeros((64, 64, 2)))
    blender.close()


def test_blender_context_keeps_the_original_error():
    plan, _ = sf.plan_regular_grid((100, 100), 64, 16)
    with pytest.raises(RuntimeError, match="model failed"):
        with sf.Blender(plan) as blender:
            blender.push(np.zeros((64, 64)))
            raise RuntimeError("model failed")


def test_blender_bad_options(tmp_path):
    plan, _ = sf.plan_regular_grid((100, 100), 64, 16)
    with pytest.raises(ValueError, match="cache_dir='.*missing' is not an existing directory"):
        sf.Blender(plan, cache_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="channel_first=1 must be True or False"):
        sf.Blender(plan, channel_first=1)


def test_blend_out_checks():
    plan, _ = sf.plan_regular_grid((100, 100), 64, 16)
    tiles = [np.zeros((64, 64, 2), np.float32)] * plan.n_loads
    for out, message in [
        (np.zeros((100, 99, 2), np.float32), r"out has shape \(100, 99, 2\); expected \(H, W, C\) or \(H, W\)"),
        (np.zeros((100, 100, 3), np.float32), r"does not fit tiles with 2 channel\(s\)"),
        (np.zeros((100, 100, 2), np.float64), "out has dtype float64; this run produces float32"),
        (np.zeros((100, 100, 2), np.float32).transpose(1, 0, 2), "channels next to each other"),
        (np.zeros((2, 100, 100), np.float32).transpose(1, 2, 0), "channels next to each other"),
        (np.broadcast_to(np.float32(0), (100, 100, 2)), "read-only"),
        ([[0.0]], "out must be a 2-D or 3-D array"),
    ]:
        with pytest.raises(ValueError, match=message):
            sf.blend(plan, tiles, out=out)
    with pytest.raises(ValueError, match=r"expected \(H, W\)"):
        sf.blend(plan, tiles, out=np.zeros((100, 100, 2), np.uint8), labels=True)
    out = np.zeros((2, 100, 100), np.float32)
    assert sf.blend(plan, [np.ones((2, 64, 64), np.float32)] * plan.n_loads, out=out, channel_first=True) is out
    np.testing.assert_allclose(out, 1, atol=1e-6)


@pytest.mark.parametrize("layout", ["hwc", "chw", "hw", "labels"])
def test_blender_writes_into_out_and_returns_views(layout):
    plan, _ = sf.plan_regular_grid((150, 130), 48, 12)
    tiles = random_tiles(plan, np.random.default_rng(3), 1 if layout == "hw" else 3, np.float32)
    chw = layout == "chw"
    given = [tiles[t].transpose(2, 0, 1) if chw else tiles[t][:, :, 0] if layout == "hw" else tiles[t]
             for t in plan.load_order]
    expected = sf.blend(plan, [g.copy() for g in given], channel_first=chw, labels=layout == "labels")
    out = np.full_like(expected, 7)
    with sf.Blender(plan, channel_first=chw, labels=layout == "labels", out=out) as blender:
        for tile in given:
            for cell in blender.push(tile):
                assert np.shares_memory(cell.data, out)
    np.testing.assert_array_equal(out, expected)
    fresh = np.zeros_like(expected)
    with sf.Blender(plan, channel_first=chw, labels=layout == "labels") as blender:
        for tile in given:
            for cell in blender.push(tile):
                assert not np.shares_memory(cell.data, out)
                fresh[(slice(None),) + cell.slices if chw else cell.slices] = cell.data
    np.testing.assert_array_equal(fresh, expected)


def test_analyse_plan_unpacks_like_the_seed():
    plan, _ = sf.plan_regular_grid((1000, 777), 128, 32)
    max_loaded, total_loaded, writes = sf.analyse_plan(plan)
    assert total_loaded == len(sf.get_plan_input_geoms(plan)) and writes == plan.n_writes
    assert 0 < max_loaded < total_loaded


@pytest.mark.parametrize("layout", ["hwc", "chw", "hw", "labels"])
@pytest.mark.parametrize("image_size, area", [((150, 130), None), ((200, 170), shapely.Point(100, 90).buffer(50))])
def test_batches_into_out_equal_single_pushes(layout, image_size, area):
    plan, _ = sf.plan_regular_grid(image_size, 48, 12, area=area)
    tiles = random_tiles(plan, np.random.default_rng(4), 1 if layout == "hw" else 3, np.float32)
    chw = layout == "chw"
    given = np.stack([tiles[t].transpose(2, 0, 1) if chw else tiles[t][:, :, 0] if layout == "hw" else tiles[t]
                      for t in plan.load_order])
    expected = sf.blend(plan, list(given), channel_first=chw, labels=layout == "labels")
    out = np.zeros_like(expected)
    emitted = []
    with sf.Blender(plan, channel_first=chw, labels=layout == "labels", out=out) as blender:
        emitted += blender.push(given[0])  # the first tile sets the buffers up
        for start in range(1, plan.n_loads, 7):
            emitted += blender.push_batch(given[start:start + 7])
    np.testing.assert_array_equal(out, expected)
    assert [c.index for c in emitted] == [plan.grid_index(c) for c in plan.write_cells]
    for cell in emitted:
        assert np.shares_memory(cell.data, out)
