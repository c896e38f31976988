"""Plans that walk tile columns (traverse="columns"): the same contract as rows, in image coordinates."""

import numpy as np
import pytest
import shapely

import seamless_fast as sf
from seamless_fast.scale.partition import PartBlender, merge_lead_rows, partition_plan

from cases import check_against_reference, random_tiles, to_layout


def _random_case(seed):
    """A random regular plan walking columns, with what to run it with."""
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(20, 260)), int(rng.integers(20, 260)))
    tile = (int(rng.integers(8, 80)), int(rng.integers(8, 80)))
    overlap = tuple(int(rng.integers(0, t)) for t in tile)
    channels = int(rng.choice([1, 2, 3, 8, 130]))
    options = {}
    if rng.random() < 0.3:
        ylo, xlo = rng.integers(0, size[0]), rng.integers(0, size[1])
        options["area"] = shapely.box(ylo, xlo, ylo + rng.integers(5, 80), xlo + rng.integers(5, 80))
    if rng.random() < 0.4:  # about two tile rows per stripe
        options.update(max_buffer_bytes=min(tile[1], size[1]) * 2 * tile[0] * 4 * channels, channels=channels)
    try:
        plan, _ = sf.plan_regular_grid(size, tile, overlap, traverse="columns", **options)
    except ValueError:  # an area that meets no cell: drop it
        options.pop("area", None)
        plan, _ = sf.plan_regular_grid(size, tile, overlap, traverse="columns", **options)
    layout = str(rng.choice(["hwc", "chw", "hw"])) if channels == 1 else str(rng.choice(["hwc", "chw"]))
    labels = bool(rng.random() < 0.3) and layout != "hw"
    return plan, rng, channels, layout, labels


@pytest.mark.parametrize("seed", range(24))
def test_random_column_plans_match_the_reference(seed):
    plan, rng, channels, layout, labels = _random_case(seed)
    assert plan.traverse == "columns"
    tiles = random_tiles(plan, rng, channels, np.float32)
    writes = check_against_reference(plan, tiles, layout=layout, labels=labels)
    cells = plan.cell_boxes[plan.write_cells]
    assert writes.sum() == ((cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])).sum()


@pytest.mark.parametrize("dtype", [np.float64, np.uint8, np.float16])
def test_columns_with_other_dtypes(dtype):
    plan, _ = sf.plan_regular_grid((70, 200), (32, 40), (8, 12), traverse="columns")
    check_against_reference(plan, random_tiles(plan, np.random.default_rng(3), 3, dtype))


def test_columns_on_a_2d_window_and_an_irregular_grid():
    window = np.random.default_rng(0).random((30, 40)) + 0.1
    plan, _ = sf.plan_regular_grid((60, 150), (30, 40), (10, 15), window=window, traverse="columns")
    assert not plan.normalised
    check_against_reference(plan, random_tiles(plan, np.random.default_rng(1), 3, np.float32))
    check_against_reference(plan, random_tiles(plan, np.random.default_rng(1), 3, np.float32), labels=True)
    rng = np.random.default_rng(2)
    grid = np.array([[shapely.box(i * 20 + (rng.integers(0, 5) if i else 0), j * 20 + (rng.integers(0, 5) if j else 0),
                                  i * 20 + 30, j * 20 + 30) for j in range(7)] for i in range(3)])
    irregular = sf.plan_from_grid(grid, traverse="columns")
    for layout in ("hwc", "chw"):
        check_against_reference(irregular, random_tiles(irregular, np.random.default_rng(4), 2, np.float32), layout)


def test_public_view_is_in_image_coordinates():
    rows, _ = sf.plan_regular_grid((100, 300), 40, 10, traverse="rows")
    cols, grid = sf.plan_regular_grid((100, 300), 40, 10, traverse="columns")
    np.testing.assert_array_equal(cols.tile_boxes, rows.tile_boxes)
    np.testing.assert_array_equal(cols.cell_boxes, rows.cell_boxes)
    assert cols.grid_shape == rows.grid_shape == grid.shape
    # column-major order of arrival, with the grid indices and boxes of the image
    pairs = sf.get_plan_input_geoms(cols)
    i, j = rows.grid_shape
    assert [index for index, _ in pairs] == [(a, b) for b in range(j) for a in range(i)]
    for (a, b), geom in pairs:
        assert geom.equals(grid[a, b])
    assert sorted(cols.write_cells.tolist()) == sorted(rows.write_cells.tolist())
    assert cols.buffer_cols == (0, 100) and rows.buffer_cols == (0, 300)


@pytest.mark.parametrize("layout", ["hwc", "chw", "hw"])
@pytest.mark.parametrize("labels", [False, True])
def test_out_arrays_memmaps_run_plan_and_push_batch_agree(tmp_path, layout, labels):
    if labels and layout == "hw":
        pytest.skip("labels need channels")
    plan, _ = sf.plan_regular_grid((90, 250), 32, 8, traverse="columns")
    tiles = [to_layout(t, layout) for t in random_tiles(plan, np.random.default_rng(5), 1 if layout == "hw" else 4,
                                                         np.float32)]
    ordered = [tiles[t] for t in plan.load_order.tolist()]
    channel_first = layout == "chw"
    reference = sf.blend(plan, ordered, labels=labels, channel_first=channel_first)
    memmap = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=reference.dtype, shape=reference.shape)
    sf.blend(plan, ordered, labels=labels, channel_first=channel_first, out=memmap)
    np.testing.assert_array_equal(memmap, reference)
    pulled = np.zeros_like(reference)
    for index, geom, data in sf.run_plan(plan, iter(ordered), labels=labels, channel_first=channel_first):
        ys, xs = sf.shape_to_slices(geom)
        assert sf.shape_to_slices(sf.get_plan_input_geoms(plan)[0][1])  # geoms stay shapely boxes
        target = pulled[:, ys, xs] if channel_first and not labels else pulled[ys, xs]
        target[...] = data
        box = plan.cell_boxes[index[0] * plan.grid_shape[1] + index[1]]
        assert (ys.start, xs.start, ys.stop, xs.stop) == tuple(box.tolist())
    np.testing.assert_array_equal(pulled, reference)
    if layout != "hw":
        batched = np.zeros_like(reference)
        with sf.Blender(plan, labels=labels, channel_first=channel_first, out=batched) as blender:
            for start in range(0, plan.n_loads, 5):
                blender.push_batch(np.stack(ordered[start:start + 5]))
        np.testing.assert_array_equal(batched, reference)


def test_auto_walks_the_long_axis():
    assert sf.plan_regular_grid((1024, 40960), 256, 64)[0].traverse == "columns"
    assert sf.plan_regular_grid((40960, 1024), 256, 64)[0].traverse == "rows"
    assert sf.plan_regular_grid((4096, 4096), 256, 64)[0].traverse == "rows"  # a tie walks rows
    assert sf.plan_regular_grid((300, 601), 64, 16)[0].traverse == "columns"
    assert sf.plan_regular_grid((300, 600), 64, 16)[0].traverse == "rows"  # columns must halve the buffer
    assert sf.plan_regular_grid((300, 1000), (64, 300), 16)[0].traverse == "rows"  # wide tiles: rows are smaller
    wide = np.array([[shapely.box(0, x, 50, x + 60) for x in range(0, 400, 50)]])
    assert sf.plan_from_grid(wide).traverse == "columns"
    assert sf.plan_from_grid(wide, traverse="rows").traverse == "rows"
    stats = sf.analyse_plan(sf.plan_regular_grid((1024, 40960), 256, 64)[0], channels=3)
    assert stats.buffer_bytes == (64 * 1024 + 2 * 256 * 64) * 3 * 4  # the band across the height, the right buffer
    assert sf.analyse_plan(sf.plan_regular_grid((1024, 40960), 256, 64, traverse="rows")[0],
                           channels=3).buffer_bytes == (64 * 40960 + 2 * 256 * 64) * 3 * 4


def test_an_area_plan_walks_as_the_whole_image_and_equals_it_bit_for_bit():
    area = shapely.box(10, 200, 70, 420)  # taller than wide: judged alone, it would walk rows
    whole, _ = sf.plan_regular_grid((100, 600), 32, 8)
    part, _ = sf.plan_regular_grid((100, 600), 32, 8, area=area)
    assert whole.traverse == part.traverse == "columns"
    rng = np.random.default_rng(6)
    tiles = {tuple(b): rng.random((b[2] - b[0], b[3] - b[1], 3)).astype(np.float32) for b in whole.tile_boxes.tolist()}
    full = sf.blend(whole, [tiles[tuple(whole.tile_boxes[t].tolist())] for t in whole.load_order.tolist()])
    mine = sf.blend(part, [tiles[tuple(part.tile_boxes[t].tolist())] for t in part.load_order.tolist()])
    assert mine.shape == full.shape
    for ylo, xlo, yhi, xhi in part.cell_boxes[part.write_cells].tolist():
        np.testing.assert_array_equal(mine[ylo:yhi, xlo:xhi], full[ylo:yhi, xlo:xhi])


def test_stripes_of_a_column_plan_are_bands_of_image_rows():
    plan, _ = sf.plan_regular_grid((300, 700), 64, 24, max_buffer_bytes=64 * 130 * 4 * 2, channels=2,
                                   traverse="columns")
    assert len(plan.stripes) > 1 and plan.stripes[-1, 1] == 300
    assert sf.analyse_plan(plan, channels=2).buffer_bytes <= 64 * 130 * 4 * 2
    for layout in ("hwc", "chw", "hw"):
        check_against_reference(plan, random_tiles(plan, np.random.default_rng(7), 1 if layout == "hw" else 2,
                                                   np.float32), layout)


@pytest.mark.parametrize("value", ["diagonal", "Rows", None, 1, ("rows",)])
def test_bad_traverse_is_one_line_naming_it(value):
    grid = np.array([[shapely.box(0, 0, 10, 10)]])
    for call in (lambda: sf.plan_regular_grid((100, 100), 32, 8, traverse=value),
                 lambda: sf.plan_from_grid(grid, traverse=value)):
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert message.startswith(f"traverse={value!r} ") and "\n" not in message
        assert "'auto', 'rows' or 'columns'" in message


def test_budget_errors_of_a_column_plan_speak_of_image_rows():
    with pytest.raises(ValueError, match=r"^max_buffer_bytes=100 is too small: a stripe starting at image row 0 "
                                         r"needs 4096 bytes \(tile row and seam\)$"):
        sf.plan_regular_grid((100, 400), 32, 8, max_buffer_bytes=100, traverse="columns")
    grid = np.array([[shapely.box(0, x, 40, x + 40) for x in range(0, 200, 30)]])
    with pytest.raises(ValueError, match="starting at image row 0"):
        sf.plan_from_grid(grid, max_buffer_bytes=100, traverse="columns")


def test_seed_traversal_fnc_is_still_accepted_and_not_called():
    def never(*args):
        raise AssertionError("called")

    plan, _ = sf.plan_regular_grid((100, 400), 32, 8, None, never, traverse="columns")
    assert plan.traverse == "columns"


@pytest.mark.parametrize("layout", ["hwc", "chw"])
@pytest.mark.parametrize("parts", [2, 3, 5])
def test_parts_of_a_column_plan_merge_bit_for_bit(layout, parts):
    """Parts are bands of tile columns; the merged lead columns equal the single-process run bit for bit."""
    plan, _ = sf.plan_regular_grid((150, 400), 48, 20)
    assert plan.traverse == "columns"
    rng = np.random.default_rng(8)
    tiles = [to_layout(rng.random((b[2] - b[0], b[3] - b[1], 3), np.float32), layout) for b in plan.tile_boxes.tolist()]
    channel_first = layout == "chw"
    expected = sf.blend(plan, (tiles[t] for t in plan.load_order.tolist()), channel_first=channel_first)
    partition = partition_plan(plan, parts)
    assert all(len(set((plan.load_order[list(partition.steps_of(q))] % plan.grid_shape[1]).tolist())
                   & set((plan.load_order[list(partition.steps_of(q + 1))] % plan.grid_shape[1]).tolist())) == 0
               for q in range(parts - 1))  # whole tile columns per part
    got, crops, leads = np.zeros_like(expected), {}, {}
    for part in range(parts):
        with PartBlender(partition, part, on_crop=crops.__setitem__, channel_first=channel_first,
                         on_lead=lambda acc, part=part: leads.__setitem__(part, acc.copy())) as blender:
            for step in partition.steps_of(part):
                for cell in blender.push(tiles[plan.load_order[step]]):
                    got[(slice(None),) + cell.slices if channel_first else cell.slices] = cell.data
    group = 1 if channel_first else 3
    for part, lead in leads.items():
        lo, hi = partition.lead[part]  # image columns
        merged = merge_lead_rows(partition, part, lead, crops.__getitem__, group)  # (P, columns, rows * group)
        if channel_first:
            got[:, :, lo:hi] = merged.transpose(0, 2, 1)
        else:
            got[:, lo:hi] = merged[0].reshape(hi - lo, 150, 3).transpose(1, 0, 2)
    np.testing.assert_array_equal(got, expected)


def test_the_job_layer_plans_rows():
    from seamless_fast.jobs import plan_grid

    assert plan_grid((100, 4000), 64, 16).traverse == "rows"  # the TIFF writer completes bands of rows
