"""Areas: a run with an area equals the whole-image run in every cell it writes, and bad areas are refused."""

import warnings

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.plan import regular_grid


def tile_dependent_model(box, channels):
    """Model output that depends on where the tile is, not only on the pixel: seeded by the tile's origin."""
    ylo, xlo, yhi, xhi = (int(v) for v in box)
    rng = np.random.default_rng([ylo, xlo])
    return (rng.random((yhi - ylo, xhi - xlo, channels)) + 0.01 * ylo + 0.003 * xlo).astype(np.float32)


def run(plan, channels, labels=False, via_run_plan=False, **options):
    """The plan's output with every pixel no cell writes left NaN (labels: 255), and the written mask."""
    tiles = (tile_dependent_model(plan.tile_boxes[t], channels) for t in plan.load_order.tolist())
    h, w = plan.image_size
    out = np.full((h, w), 255, np.uint8) if labels else np.full((h, w, channels), np.nan, np.float32)
    if via_run_plan:
        for _, geom, data in sf.run_plan(plan, tiles, labels=labels, **options):
            out[sf.shape_to_slices(geom)] = data
    else:
        sf.blend(plan, tiles, out=out, labels=labels, **options)
    written = np.zeros((h, w), bool)
    for ylo, xlo, yhi, xhi in plan.cell_boxes[plan.write_cells].tolist():
        assert not written[ylo:yhi, xlo:xhi].any(), "a pixel is written twice"
        written[ylo:yhi, xlo:xhi] = True
    return out, written


@st.composite
def areas(draw, height, width):
    kind = draw(st.sampled_from(["box", "disc", "triangle", "multi"]))
    y0, x0 = draw(st.floats(0, height)), draw(st.floats(0, width))
    if kind == "box":
        return shapely.box(y0, x0, draw(st.floats(y0 + 0.5, height + 20)), draw(st.floats(x0 + 0.5, width + 20)))
    if kind == "disc":
        return shapely.Point(y0, x0).buffer(draw(st.floats(0.5, max(height, width))))
    if kind == "triangle":
        return shapely.Polygon([(y0, x0), (draw(st.floats(0, height)), x0 + draw(st.floats(1, width))),
                                (y0 + draw(st.floats(1, height)), draw(st.floats(0, width)))])
    return shapely.union(shapely.box(y0, x0, y0 + 3.5, x0 + 2),
                         shapely.box(height - y0 / 2 - 1, width - x0 / 2 - 1, height, width))


def _area_or_none(height, width, area):
    """`area`, or None when it does not reach into the image or is degenerate (plan_regular_grid refuses it)."""
    image = shapely.box(0, 0, height, width)
    if not area.is_valid or shapely.area(area) <= 0:
        return None
    if not shapely.intersects(area, image) or shapely.touches(area, image):
        return None
    return area


@given(height=st.integers(1, 220), width=st.integers(1, 220), tile=st.integers(2, 60), data=st.data())
def test_area_run_equals_whole_image_run_bit_for_bit(height, width, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    area = _area_or_none(height, width, data.draw(areas(height, width)))
    if area is None:
        return
    window = data.draw(st.sampled_from(["pyramid", "hann", "constant"]))
    labels = data.draw(st.booleans())
    channels = data.draw(st.integers(1, 3))
    full_plan, full_grid = sf.plan_regular_grid((height, width), tile, overlap, window=window)
    part_plan, part_grid = sf.plan_regular_grid((height, width), tile, overlap, area=area, window=window)
    full, full_written = run(full_plan, channels, labels)
    part, written = run(part_plan, channels, labels, via_run_plan=data.draw(st.booleans()))
    assert full_written.all()
    assert written.any()
    assert np.array_equal(part[written], full[written]), "an area run differs from the whole-image run"
    assert np.isnan(part[~written]).all() if not labels else (part[~written] == 255).all()
    # every pixel whose centre lies inside the area is written
    yy, xx = np.mgrid[:height, :width]
    assert written[shapely.contains_xy(area, yy + 0.5, xx + 0.5)].all()
    # same tile placements: every tile of the area plan is a tile of the whole-image grid
    whole = {tuple(b) for b in full_plan.tile_boxes.tolist()}
    assert {tuple(b) for b in part_plan.tile_boxes[part_plan.load_order].tolist()} <= whole
    assert part_grid.shape == part_plan.grid_shape


@pytest.mark.parametrize("options", [dict(), dict(labels=True), dict(parallel=True),
                                     dict(max_buffer_bytes=48 * 40 * 4 * 2)])
def test_area_run_equals_whole_image_run_fixed_cases(options):
    options = dict(options)
    plan_options = {"max_buffer_bytes": options.pop("max_buffer_bytes")} if "max_buffer_bytes" in options else {}
    rng = np.random.default_rng(11)
    for _ in range(12):
        height, width = rng.integers(60, 400, 2).tolist()
        tile = int(rng.integers(16, 48))
        overlap = int(rng.integers(0, tile))
        area = shapely.Point(rng.uniform(0, height), rng.uniform(0, width)).buffer(rng.uniform(5, 120))
        if _area_or_none(height, width, area) is None:
            continue
        full_plan, _ = sf.plan_regular_grid((height, width), tile, overlap, channels=2, **plan_options)
        part_plan, _ = sf.plan_regular_grid((height, width), tile, overlap, area=area, channels=2, **plan_options)
        full, _ = run(full_plan, 2, **options)
        part, written = run(part_plan, 2, **options)
        assert np.array_equal(part[written], full[written])


def test_area_plan_loads_only_what_its_cells_need_and_keeps_whole_image_cells():
    full, _ = sf.plan_regular_grid((4096, 4096), 256, 64)
    part, grid = sf.plan_regular_grid((4096, 4096), 256, 64, area=shapely.Point(2000, 2000).buffer(300))
    assert part.n_loads < 0.1 * full.n_loads
    full_cells = {tuple(c) for c in full.cell_boxes.tolist()}
    assert {tuple(c) for c in part.cell_boxes[part.write_cells].tolist()} <= full_cells
    # the grid returned is the window of the whole-image grid the area needs, in the same placements
    assert grid.shape == part.grid_shape
    np.testing.assert_array_equal(shapely.bounds(grid).reshape(-1, 4), part.tile_boxes)


def test_area_plan_on_a_huge_image_is_cheap():
    # The whole-image grid here has 5208 x 5208 tiles; an area plan only builds the window it needs.
    plan, grid = sf.plan_regular_grid((10**6, 10**6), 256, 64, area=shapely.box(500000, 500000, 500100, 500300))
    assert grid.size <= 16 and plan.n_writes >= 1
    starts = plan.tile_boxes[:, :2]
    assert (starts % 192 == 0).all(), "tiles sit where the whole-image grid puts them"


def _random_area(rng, height, width):
    y, x = rng.uniform(-10, height + 10), rng.uniform(-10, width + 10)
    kind = rng.integers(0, 7)
    if kind == 0:
        return shapely.Point(y, x).buffer(rng.uniform(0.5, 80))
    if kind == 1:  # a polygon with a hole, on integer coordinates (edges along cell borders)
        y0, x0 = int(y), int(x)
        return shapely.Polygon(shapely.box(y0, x0, y0 + 60, x0 + 90).exterior.coords,
                               [shapely.box(y0 + 16, x0 + 16, y0 + 32, x0 + 48).exterior.coords])
    if kind == 2:
        return shapely.LineString(rng.uniform(0, max(height, width), (4, 2)))
    if kind == 3:  # points, some on cell borders
        return shapely.MultiPoint(np.r_[rng.uniform(0, height, (5, 2)), rng.integers(0, height, (5, 2))])
    if kind == 4:
        return shapely.GeometryCollection([shapely.Point(y, x), shapely.box(y, x, y + 20, x + 20),
                                           shapely.LineString([(y, 0), (y, width)])])
    if kind == 5:  # a box on integer coordinates
        return shapely.box(int(y), int(x), int(y) + int(rng.integers(1, 100)), int(x) + int(rng.integers(1, 100)))
    return shapely.Polygon(rng.uniform(0, max(height, width), (3, 2)))


def test_cells_selected_are_exactly_those_whose_interior_meets_the_area():
    rng = np.random.default_rng(5)
    for _ in range(60):
        height, width = rng.integers(20, 600, 2).tolist()
        tile = int(rng.integers(4, 40))
        overlap = int(rng.integers(0, tile))
        area = _random_area(rng, height, width)
        if not area.is_valid or area.is_empty:
            continue
        whole, _ = sf.plan_regular_grid((height, width), tile, overlap)
        geoms = np.array([shapely.box(*c) for c in whole.cell_boxes.tolist()])
        expected = shapely.intersects(area, geoms) & ~shapely.touches(area, geoms)
        if not expected.any():
            with pytest.raises(ValueError):
                sf.plan_regular_grid((height, width), tile, overlap, area=area)
            continue
        plan, _ = sf.plan_regular_grid((height, width), tile, overlap, area=area)
        got = {tuple(c) for c in plan.cell_boxes[plan.write_cells].tolist()}
        assert got == {tuple(c) for c in whole.cell_boxes[expected].tolist()}


def _quad(ylo, xlo, yhi, xhi):
    """A box built vertex by vertex (shapely.box gives None for a NaN bound)."""
    return shapely.Polygon([(ylo, xlo), (yhi, xlo), (yhi, xhi), (ylo, xhi)])


BOWTIE = shapely.Polygon([(10, 10), (60, 60), (60, 10), (10, 60)])


@pytest.mark.parametrize("make_area, message", [
    (lambda: _quad(10, 10, np.nan, 50), r"area has a non-finite coordinate: vertex 1 is \(nan, 10.0\)"),
    (lambda: _quad(10, 10, np.inf, 50), r"area has a non-finite coordinate: vertex 1 is \(inf, 10.0\)"),
    (lambda: _quad(-np.inf, 10, 20, 50), r"area has a non-finite coordinate: vertex 0 is \(-inf, 10.0\)"),
    (lambda: shapely.LineString([(1, 1), (np.nan, 50)]), r"non-finite coordinate: vertex 1 is \(nan, 50.0\)"),
    (lambda: shapely.Point(np.nan, 5), r"area (is an empty geometry|has a non-finite coordinate)"),
    (lambda: shapely.MultiPoint([(1, 1), (np.inf, 3)]), "area has a non-finite coordinate"),
    (lambda: BOWTIE, r"area is not a valid geometry \(Self-intersection.*shapely.make_valid"),
    (lambda: shapely.Polygon([(0, 0), (50, 0), (50, 50), (0, 50)], [[(10, 10), (60, 10), (60, 20), (10, 20)]]),
     "area is not a valid geometry"),
])
@pytest.mark.parametrize("planner", ["regular", "from_grid", "job"])
def test_bad_areas_are_refused_naming_area(make_area, message, planner):
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shapely warns while building a NaN geometry
        area = make_area()
    if planner == "regular":
        call = lambda: sf.plan_regular_grid((100, 100), 32, 8, area=area)  # noqa: E731
    elif planner == "from_grid":
        call = lambda: sf.plan_from_grid(regular_grid((100, 100), 32, 8), area=area)  # noqa: E731
    else:
        from seamless_fast.scale.store import Job
        call = lambda: Job.from_options((100, 100), 32, 8, parts=2, area=area)  # noqa: E731
    with pytest.raises(ValueError, match=message):
        call()


def test_a_repaired_bowtie_is_planned_as_its_two_triangles():
    repaired = shapely.make_valid(BOWTIE)
    plan, _ = sf.plan_regular_grid((100, 100), 16, 4, area=repaired)
    written = np.zeros((100, 100), bool)
    for ylo, xlo, yhi, xhi in plan.cell_boxes[plan.write_cells].tolist():
        written[ylo:yhi, xlo:xhi] = True
    assert written[20, 34] and written[50, 34] and not written[90, 90]
