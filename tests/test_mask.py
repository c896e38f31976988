"""Masks: the cells a lower-resolution mask selects (N-D, against a brute-force reference), and masked plans that
equal the whole-image run in every cell they write and leave the rest as the documented fill."""

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.plan import boxes_meeting_mask, cells_meeting_mask, regular_grid

from test_area import tile_dependent_model


# -- the reference: upsample the mask to the image by the footprint rule, then any() per cell -------------

def upsample(mask, image_size):
    """Image pixel p (covering [p, p + 1)) of an axis is True where the footprint ``[i S / m, (i + 1) S / m)``
    of a True mask pixel i overlaps it with positive length: ``i S < (p + 1) m`` and ``(i + 1) S > p m``."""
    out = np.asarray(mask, bool)
    for axis, size in enumerate(image_size):
        m = out.shape[axis]
        p, i = np.arange(size)[:, None], np.arange(m)[None, :]
        meets = (i * size < (p + 1) * m) & ((i + 1) * size > p * m)  # (size, m)
        out = np.moveaxis(np.tensordot(meets.astype(np.int64), np.moveaxis(out, axis, 0).astype(np.int64),
                                       axes=(1, 0)) > 0, 0, axis)
    return out


def reference_boxes(mask, image_size, boxes):
    image = upsample(mask, image_size)
    n = len(image_size)
    return np.array([bool(image[tuple(slice(b[a], b[a + n]) for a in range(n))].any()) for b in boxes], bool)


@st.composite
def masks_and_edges(draw, ndim):
    size = tuple(draw(st.integers(1, 40 if ndim < 3 else 14)) for _ in range(ndim))
    shape = tuple(draw(st.integers(1, n)) for n in size)
    density = draw(st.sampled_from([0.02, 0.2, 0.7]))
    seed = draw(st.integers(0, 2**32 - 1))
    mask = np.random.default_rng(seed).random(shape) < density
    edges = [sorted([0, n] + draw(st.lists(st.integers(0, n), max_size=6))) for n in size]
    return mask, size, edges


@pytest.mark.parametrize("ndim", [1, 2, 3])
@given(data=st.data())
def test_cells_meeting_mask_equals_the_upsampled_reference(ndim, data):
    mask, size, edges = data.draw(masks_and_edges(ndim))
    got = cells_meeting_mask(mask, size, edges)
    cells = np.array(np.meshgrid(*[np.arange(len(e) - 1) for e in edges], indexing="ij")).reshape(ndim, -1).T
    boxes = [[edges[a][k[a]] for a in range(ndim)] + [edges[a][k[a] + 1] for a in range(ndim)] for k in cells]
    expected = reference_boxes(mask, size, boxes).reshape(got.shape)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == bool


@pytest.mark.parametrize("ndim", [1, 2, 3])
@given(data=st.data())
def test_boxes_meeting_mask_equals_the_upsampled_reference(ndim, data):
    mask, size, _ = data.draw(masks_and_edges(ndim))
    boxes = []
    for _ in range(data.draw(st.integers(0, 12))):
        lo = [data.draw(st.integers(0, n)) for n in size]
        boxes.append(lo + [data.draw(st.integers(0, n)) for n in size])  # some empty (hi <= lo)
    got = boxes_meeting_mask(mask, size, np.array(boxes, np.int64).reshape(-1, 2 * ndim))
    clipped = [b[:ndim] + [max(h, lo) for h, lo in zip(b[ndim:], b[:ndim])] for b in boxes]
    np.testing.assert_array_equal(got, reference_boxes(mask, size, clipped))


def test_footprints_at_non_integer_boundaries_are_exact():
    # 3 mask pixels over 10 image pixels: footprints [0, 10/3), [10/3, 20/3), [20/3, 10).
    mask = np.array([False, True, False])
    got = cells_meeting_mask(mask, (10,), ([0, 3, 4, 6, 7, 10],))
    assert got.tolist() == [False, True, True, True, False]  # [3, 4) meets (10/3, 4); [6, 7) meets (6, 20/3)
    # a cell ending exactly where a footprint starts does not meet it (open intersection)
    assert cells_meeting_mask([False, True], (10,), ([0, 5, 10],)).tolist() == [False, True]
    # huge sizes stay exact: no float rounding
    big = 2**53 - 1
    assert cells_meeting_mask([True, False], (big,), ([0, big // 2, big // 2 + 1, big],)).tolist() == \
        [True, True, False]
    # and a * m past int64: mask pixel 2**20 - 1 of 2**20 starts at (2**20 - 1) * big / 2**20
    start = -(-(2**20 - 1) * big // 2**20)
    last = np.zeros(2**20, bool)
    last[-1] = True
    assert cells_meeting_mask(last, (big,), ([0, start - 1, start, big],)).tolist() == [False, True, True]


def test_integer_masks_and_full_resolution():
    mask = np.zeros((6, 5), np.uint8)
    mask[2, 3] = 1
    assert cells_meeting_mask(mask, (6, 5), ([0, 2, 3, 6], [0, 3, 4, 5])).tolist() == \
        [[False, False, False], [False, True, False], [False, False, False]]


@pytest.mark.parametrize("mask, size, message", [
    (np.ones((4, 4), np.float32), (8, 8), r"mask has shape \(4, 4\) and dtype float32; expected a boolean"),
    (np.array([[0, 2]]), (8, 8), r"mask has shape \(1, 2\) and dtype int64"),
    (np.ones((9, 4), bool), (8, 8), r"mask has shape \(9, 4\) and dtype bool; .* each from 1 to the image's \(8, 8\)"),
    (np.ones(4, bool), (8, 8), r"mask has shape \(4,\) .* of 2 axes"),
    (np.ones((0, 4), bool), (8, 8), r"mask has shape \(0, 4\)"),
    (np.array([["a"]]), (8, 8), r"mask has shape \(1, 1\) and dtype <U1"),
])
def test_bad_masks_are_refused_in_one_line(mask, size, message):
    with pytest.raises(ValueError, match=message):
        cells_meeting_mask(mask, size, ([0, size[0]], [0, size[1]]))
    with pytest.raises(ValueError, match=message):
        sf.plan_regular_grid(size, 4, 1, mask=mask)
    with pytest.raises(ValueError, match=message):
        sf.plan_from_grid(regular_grid(size, 4, 1), mask=mask)


@pytest.mark.parametrize("edges, message", [
    (([0, 5, 3, 8], [0, 8]), r"edges\[0\] = \[0, 5, 3, 8\] are not the sorted cell boundaries"),
    (([0, 9], [0, 8]), r"edges\[0\] .* axis of size 8"),
    (([0, 8],), "edges has 1 axes"),
    (([4], [0, 8]), "at least 2"),
])
def test_bad_edges_are_refused(edges, message):
    with pytest.raises(ValueError, match=message):
        cells_meeting_mask(np.ones((2, 2), bool), (8, 8), edges)


def test_a_mask_that_selects_nothing_is_refused():
    with pytest.raises(ValueError, match="mask selects no output cell: it is False everywhere"):
        sf.plan_regular_grid((100, 100), 32, 8, mask=np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="mask selects no output cell"):
        sf.plan_from_grid(regular_grid((100, 100), 32, 8), mask=np.zeros((10, 10), bool))
    mask = np.zeros((10, 10), bool)
    mask[9, 9] = True
    with pytest.raises(ValueError, match="area with bounds .* and the mask meet no common output cell"):
        sf.plan_regular_grid((100, 100), 16, 4, mask=mask, area=shapely.box(0, 0, 20, 20))
    mask[0, 9] = True  # the box of the mask's cells meets the area's, its cells do not
    with pytest.raises(ValueError, match="area with bounds .* meets no output cell of the grid the mask selects"):
        sf.plan_regular_grid((100, 100), 16, 4, mask=mask, area=shapely.box(40, 90, 60, 100))


# -- masked plans against the whole-image run ----------------------------------------------------------

def run(plan, channels, labels=False, fill=None, via_run_plan=False):
    """The plan's output into an array prefilled with `fill` (None: blend allocates it), and the written pixels."""
    tiles = (tile_dependent_model(plan.tile_boxes[t], channels) for t in plan.load_order.tolist())
    h, w = plan.image_size
    if fill is None:
        out = sf.blend(plan, tiles, labels=labels)
    else:
        out = np.full((h, w) if labels else (h, w, channels), fill, np.uint8 if labels else np.float32)
        if via_run_plan:
            for _, geom, data in sf.run_plan(plan, tiles, labels=labels):
                out[sf.shape_to_slices(geom)] = data
        else:
            sf.blend(plan, tiles, out=out, labels=labels)
    written = np.zeros((h, w), bool)
    for ylo, xlo, yhi, xhi in plan.cell_boxes[plan.write_cells].tolist():
        assert not written[ylo:yhi, xlo:xhi].any(), "a pixel is written twice"
        written[ylo:yhi, xlo:xhi] = True
    return out, written


def expected_written(whole_plan, mask, input_size, scale=(1, 1)):
    """Pixels of the whole-image plan's cells that meet the mask (the reference), in output pixels."""
    cells = whole_plan.cell_boxes
    boxes = np.minimum(cells * np.array(scale * 2), np.array(tuple(input_size) * 2))
    hit = reference_boxes(mask, input_size, boxes.tolist())
    written = np.zeros(whole_plan.image_size, bool)
    for ylo, xlo, yhi, xhi in cells[hit].tolist():
        written[ylo:yhi, xlo:xhi] = True
    return written


def random_mask(rng, height, width):
    """A blob-like mask at a random lower resolution (some with one True pixel)."""
    m = (int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1)))
    if rng.random() < 0.2:
        mask = np.zeros(m, bool)
        mask[rng.integers(0, m[0]), rng.integers(0, m[1])] = True
        return mask
    yy, xx = np.mgrid[:m[0], :m[1]]
    cy, cx, r = rng.uniform(0, m[0]), rng.uniform(0, m[1]), rng.uniform(0.5, max(m) / 2 + 1)
    mask = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 < r * r
    if not mask.any():
        mask[int(cy), int(cx)] = True
    return mask


@given(height=st.integers(1, 200), width=st.integers(1, 200), tile=st.integers(2, 50), data=st.data())
def test_masked_run_equals_whole_image_run_bit_for_bit(height, width, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mask = random_mask(rng, height, width)
    window = data.draw(st.sampled_from(["pyramid", "hann", "constant"]))
    labels = data.draw(st.booleans())
    traverse = data.draw(st.sampled_from(["rows", "columns"]))
    channels = data.draw(st.integers(1, 3))
    whole_plan, _ = sf.plan_regular_grid((height, width), tile, overlap, window=window, traverse=traverse)
    plan, grid = sf.plan_regular_grid((height, width), tile, overlap, window=window, traverse=traverse, mask=mask)
    fill = 255 if labels else np.nan
    whole, _ = run(whole_plan, channels, labels, fill)
    part, written = run(plan, channels, labels, fill, via_run_plan=data.draw(st.booleans()))
    np.testing.assert_array_equal(written, expected_written(whole_plan, mask, (height, width)))
    assert np.array_equal(part[written], whole[written]), "a masked run differs from the whole-image run"
    assert (part[~written] == 255).all() if labels else np.isnan(part[~written]).all()
    whole_tiles = {tuple(b) for b in whole_plan.tile_boxes.tolist()}
    assert {tuple(b) for b in plan.tile_boxes[plan.load_order].tolist()} <= whole_tiles
    assert grid.shape == plan.grid_shape and plan.image_size == (height, width)


@pytest.mark.parametrize("options", [dict(), dict(labels=True), dict(max_buffer_bytes=48 * 40 * 4 * 2),
                                     dict(max_buffer_bytes=48 * 40 * 4 * 2, labels=True), dict(area=True),
                                     dict(output_scale=2), dict(traverse="columns", max_buffer_bytes=48 * 40 * 8)])
def test_masked_plans_fixed_cases(options):
    """Stripes (max_buffer_bytes), an area with the mask (cells meeting both), an output scale: every written
    cell equals the whole-image run's, and blend(out=None) leaves the rest zero."""
    options = dict(options)
    labels = options.pop("labels", False)
    with_area = options.pop("area", False)
    scale = options.get("output_scale", 1)
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(10):
        height, width = rng.integers(60, 400, 2).tolist()
        tile = 2 * int(rng.integers(8, 24))
        overlap = 2 * int(rng.integers(0, tile // 2))
        mask = random_mask(rng, max(1, height // 16), max(1, width // 16))
        area = shapely.Point(rng.uniform(0, height), rng.uniform(0, width)).buffer(rng.uniform(20, 200)) \
            if with_area else None
        whole_plan, _ = sf.plan_regular_grid((height, width), tile, overlap, channels=2, **options)
        try:
            plan, _ = sf.plan_regular_grid((height, width), tile, overlap, channels=2, mask=mask, area=area,
                                           **options)
        except ValueError as error:  # an area and a mask without a common cell
            assert with_area and "area" in str(error)
            continue
        whole, _ = run(whole_plan, 2, labels)
        part, written = run(plan, 2, labels)
        expected = expected_written(whole_plan, mask, (height, width), (scale, scale))
        if area is not None:
            area_plan, _ = sf.plan_regular_grid((height, width), tile, overlap, channels=2, area=area, **options)
            _, in_area = run(area_plan, 2, labels)
            expected &= in_area
        np.testing.assert_array_equal(written, expected)
        assert np.array_equal(part[written], whole[written])
        assert (part[~written] == 0).all()  # blend(out=None) allocates zeros
        checked += 1
    assert checked >= 5


def test_mask_on_a_custom_grid_equals_the_whole_grid_run():
    rng = np.random.default_rng(3)
    for traverse in ("rows", "columns"):
        ys = np.array([0, 30, 52, 90, 131])
        xs = np.array([0, 25, 61, 80])
        grid = np.array([[shapely.box(y, x, y + 60, x + 45) for x in xs] for y in ys])  # 191 x 125
        irregular = grid.copy()
        irregular[1, 1] = shapely.box(34, 27, 90, 70)  # not rectilinear: the general path
        for g in (grid, irregular):
            mask = random_mask(rng, 191 // 8, 125 // 8)
            whole_plan = sf.plan_from_grid(g, traverse=traverse)
            plan = sf.plan_from_grid(g, traverse=traverse, mask=mask)
            whole, _ = run(whole_plan, 2)
            part, written = run(plan, 2)
            np.testing.assert_array_equal(written, expected_written(whole_plan, mask, (191, 125)))
            assert np.array_equal(part[written], whole[written])
            assert (part[~written] == 0).all()


def test_tiff_writer_stores_its_nodata_outside_the_masked_cells(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from seamless_fast.io import TiffWriter

    mask = np.zeros((12, 10), bool)
    mask[3:6, 2:5] = True  # 1/16 resolution of a 192 x 160 image
    plan, _ = sf.plan_regular_grid((192, 160), 32, 8, mask=mask, traverse="rows")
    tiles = (tile_dependent_model(plan.tile_boxes[t], 3) for t in plan.load_order.tolist())
    with TiffWriter(tmp_path / "out.tif", plan.image_size, dtype=np.uint8, tile=(16, 16), nodata=255) as writer:
        for _, geom, labels in sf.run_plan(plan, tiles, labels=True):
            ys, xs = sf.shape_to_slices(geom)
            writer.write((ys.start, xs.start, ys.stop, xs.stop), labels)
    stored = tifffile.imread(tmp_path / "out.tif")
    whole_plan, _ = sf.plan_regular_grid((192, 160), 32, 8, traverse="rows")
    whole, _ = run(whole_plan, 3, labels=True)
    written = expected_written(whole_plan, mask, (192, 160))
    assert written.any() and not written.all()
    np.testing.assert_array_equal(stored[written], whole[written])
    assert (stored[~written] == 255).all()


def test_masked_plan_of_a_large_image_loads_only_what_the_mask_needs():
    mask = np.zeros((1000, 1000), bool)
    mask[400:420, 700:760] = True  # 800 x 2400 pixels of a 40000 x 40000 image
    plan, grid = sf.plan_regular_grid((40000, 40000), 256, 64, mask=mask)
    assert plan.n_loads < 0.003 * 208 * 208 and grid.shape == plan.grid_shape
    assert (plan.tile_boxes[:, :2] % 192 == 0).all(), "tiles sit where the whole-image grid puts them"
    cells = plan.cell_boxes[plan.write_cells]
    assert cells[:, 0].min() <= 16000 and cells[:, 2].max() >= 16800  # the mask rows [400, 420) of 1000


def test_custom_grid_with_an_output_scale_writes_what_the_regular_grid_writes():
    rng = np.random.default_rng(9)
    for traverse in ("rows", "columns"):
        mask = random_mask(rng, 13, 11)
        regular, _ = sf.plan_regular_grid((200, 170), 32, 8, output_scale=2, mask=mask, traverse=traverse)
        custom = sf.plan_from_grid(regular_grid((200, 170), 32, 8), output_scale=2, mask=mask, traverse=traverse)
        assert {tuple(c) for c in regular.cell_boxes[regular.write_cells].tolist()} == \
            {tuple(c) for c in custom.cell_boxes[custom.write_cells].tolist()}
        whole, _ = sf.plan_regular_grid((200, 170), 32, 8, output_scale=2, traverse=traverse)
        _, written = run(custom, 1)
        np.testing.assert_array_equal(written, expected_written(whole, mask, (200, 170), (2, 2)))


def test_the_planning_profile_runs():
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling",
                          "mask_planning.py")
    out = subprocess.run([sys.executable, script, "--size", "4000", "--mask", "100", "--rounds", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("image 4000 x 4000") and lines[-2].startswith("masked / whole:")
    assert "cells selected by cells_meeting_mask" in lines[-1]


@pytest.mark.parametrize("traverse", ["rows", "columns"])
def test_an_area_that_meets_none_of_the_masks_cells_is_named_in_image_terms(traverse):
    mask = np.zeros((10, 10), bool)
    mask[0, 9] = mask[9, 9] = True
    area = shapely.box(40, 90, 60, 100)
    with pytest.raises(ValueError, match=r"area with bounds \(40.0, 90.0, 60.0, 100.0\) meets no output cell of "
                                         "the grid the mask selects"):
        sf.plan_regular_grid((100, 100), 16, 4, mask=mask, area=area, traverse=traverse)
