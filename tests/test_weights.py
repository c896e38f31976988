"""The per-tile API: overlap_weights / apply_weights against a plain numpy reference."""

import numpy as np
import pytest
import shapely
import shapely.affinity
from hypothesis import given
from hypothesis import strategies as st

from seamless_fast.geometry import shape_to_slices
from seamless_fast.weights import OverlapWeights, apply_weights, overlap_weights
from seamless_fast.windows import window_2d

WINDOW_NAMES = ["pyramid", "hann", "gaussian", "constant"]
TRIMS = [None, (0, 0, None, None), (3, 0, -2, None), (0, 4, 0, -1), (2, 2, -2, -2)]


def cosine_window(n):
    return 1.5 + np.cos(np.linspace(0, np.pi, n))


def reference(central, nearby, values, window, trim_bounds):
    """Blend on canvases covering all tiles, then cut out the trimmed central box."""
    boxes = [tuple(int(v) for v in g.bounds) for g in [central, *nearby]]
    y0, x0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    y1, x1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    numerator = np.zeros((y1 - y0, x1 - x0) + values[0].shape[2:])
    denominator = np.zeros((y1 - y0, x1 - x0))
    for (ylo, xlo, yhi, xhi), value in zip(boxes, values):
        w = window_2d(window, yhi - ylo, xhi - xlo)
        numerator[ylo - y0:yhi - y0, xlo - x0:xhi - x0] += w.reshape(w.shape + (1,) * (value.ndim - 2)) * value
        denominator[ylo - y0:yhi - y0, xlo - x0:xhi - x0] += w
    top, left, bottom, right = (0 if v is None else v for v in (trim_bounds or (0, 0, 0, 0)))
    ylo, xlo, yhi, xhi = boxes[0]
    ys = slice(ylo + top - y0, yhi + bottom - y0)
    xs = slice(xlo + left - x0, xhi + right - x0)
    return numerator[ys, xs] / denominator[ys, xs].reshape(denominator[ys, xs].shape + (1,) * (values[0].ndim - 2))


def random_case(rng, n_nearby, same_shape=False):
    """A central box and `n_nearby` boxes around it, some of which miss it entirely."""
    h, w = rng.integers(8, 40, size=2)
    central = shapely.box(20, 30, 20 + h, 30 + w)
    nearby = []
    for _ in range(n_nearby):
        nh, nw = (h, w) if same_shape else rng.integers(3, 40, size=2)
        if rng.random() < 0.2:  # far away: no overlap at all
            ylo, xlo = rng.integers(100, 140, size=2)
        else:
            ylo, xlo = rng.integers(0, 60, size=2)
        nearby.append(shapely.box(ylo, xlo, ylo + nh, xlo + nw))
    return central, nearby


def random_values(rng, geoms, layout, dtype, channels=3):
    values = []
    for g in geoms:
        ys, xs = shape_to_slices(g)
        shape = (ys.stop - ys.start, xs.stop - xs.start)
        values.append(rng.random(shape + ((channels,) if layout != "hw" else ())).astype(dtype))
    return values


def to_layout(value, layout):
    return np.ascontiguousarray(np.moveaxis(value, -1, 0)) if layout == "chw" else value


def check_blend(central, nearby, rng, *, window="pyramid", trim_bounds=None, layout="hwc", dtype=np.float64):
    values = random_values(rng, [central, *nearby], layout, dtype)
    weights = overlap_weights(central, nearby, trim_bounds, window=window)
    tiles = [to_layout(v, layout) for v in values]
    out_geom, out = apply_weights(tiles[0], tiles[1:], weights, channel_first=layout == "chw")
    expected = reference(central, nearby, values, window, trim_bounds)
    if layout == "chw":
        expected = np.moveaxis(expected, -1, 0)
    assert out_geom.equals(weights.out_geom)
    assert out.dtype == np.dtype(dtype) and out.shape == expected.shape
    assert np.abs(out - expected).max() <= (1e-6 if dtype == np.float64 else 1e-5)
    check_weights_sum_to_one(weights)
    return weights


def check_weights_sum_to_one(weights):
    total = weights.central_weights + weights.nearby_weights.sum(axis=0)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert weights.central_weights.dtype == weights.nearby_weights.dtype == np.float64
    assert weights.nearby_weights.shape == (len(weights.slice_pairs),) + weights.central_weights.shape


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("window", WINDOW_NAMES + [cosine_window])
def test_matches_reference_for_every_window(seed, window):
    rng = np.random.default_rng(seed)
    central, nearby = random_case(rng, int(rng.integers(0, 9)))
    check_blend(central, nearby, rng, window=window)


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_for_2d_array_window(seed):
    rng = np.random.default_rng(100 + seed)
    central, nearby = random_case(rng, int(rng.integers(0, 9)), same_shape=True)
    ys, xs = shape_to_slices(central)
    window = 0.1 + rng.random((ys.stop - ys.start, xs.stop - xs.start))
    check_blend(central, nearby, rng, window=window)


@pytest.mark.parametrize("trim_bounds", TRIMS)
@pytest.mark.parametrize("layout", ["hw", "hwc", "chw"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_for_layouts_trims_and_dtypes(trim_bounds, layout, dtype):
    rng = np.random.default_rng(7)
    for _ in range(4):
        central, nearby = random_case(rng, int(rng.integers(0, 9)))
        check_blend(central, nearby, rng, trim_bounds=trim_bounds, layout=layout, dtype=dtype)


@given(data=st.data(), n_nearby=st.integers(0, 8), window=st.sampled_from(WINDOW_NAMES))
def test_matches_reference_hypothesis(data, n_nearby, window):
    h, w = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 30))
    central = shapely.box(10, 10, 10 + h, 10 + w)
    nearby = []
    for _ in range(n_nearby):
        ylo, xlo = data.draw(st.integers(0, 50)), data.draw(st.integers(0, 50))
        nearby.append(shapely.box(ylo, xlo, ylo + data.draw(st.integers(1, 30)), xlo + data.draw(st.integers(1, 30))))
    top, left = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    bottom = data.draw(st.one_of(st.none(), st.integers(top + 1 - h, 0)))
    right = data.draw(st.one_of(st.none(), st.integers(left + 1 - w, 0)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    check_blend(central, nearby, rng, window=window, trim_bounds=(top, left, bottom, right))


def test_integer_tiles_give_float32():
    a, b = shapely.box(0, 0, 10, 10), shapely.box(0, 5, 10, 15)
    _, out = apply_weights(np.full((10, 10), 2, np.uint8), [np.full((10, 10), 4, np.int16)], overlap_weights(a, [b]))
    assert out.dtype == np.float32 and out.min() >= 2 and out.max() <= 4


def test_lone_central_tile_has_unit_weights():
    weights = overlap_weights(shapely.box(0, 0, 37, 50), [])
    assert np.array_equal(weights.central_weights, np.ones((37, 50)))
    assert weights.nearby_weights.shape == (0, 37, 50) and weights.slice_pairs == []
    tile = np.random.default_rng(0).random((37, 50, 2))
    _, out = apply_weights(tile, [], weights)
    np.testing.assert_allclose(out, tile)


def test_result_unpacks_as_the_old_five_tuple():
    a, b = shapely.box(0, 0, 100, 100), shapely.box(0, 60, 100, 160)
    weights = overlap_weights(a, [b], (0, 0, None, -20))
    out_geom, central_weights, centre_from_tile_slc, nearby_weights, slice_pairs = weights
    assert isinstance(weights, OverlapWeights) and OverlapWeights._fields == (
        "out_geom", "central_weights", "centre_from_tile_slc", "nearby_weights", "slice_pairs")
    assert out_geom.bounds == (0, 0, 100, 80)
    assert centre_from_tile_slc == (slice(0, 100), slice(0, 80))
    assert central_weights.shape == (100, 80) and nearby_weights.shape == (1, 100, 80)
    assert slice_pairs == [((slice(0, 100), slice(60, 80)), (slice(0, 100), slice(0, 20)))]


def test_old_library_documented_example():
    geom_a, geom_b = shapely.box(0, 0, 100, 100), shapely.box(0, 60, 100, 160)
    out_a = overlap_weights(geom_a, [geom_b]).out_geom
    out_b = overlap_weights(geom_b, [geom_a]).out_geom
    assert out_a.intersection(out_b).area == 40 * 100
    out_a = overlap_weights(geom_a, [geom_b], trim_bounds=(0, 0, None, -20)).out_geom
    out_b = overlap_weights(geom_b, [geom_a], trim_bounds=(0, 20, None, None)).out_geom
    assert out_a.intersection(out_b).area == 0


def test_nearby_tile_that_misses_gets_empty_slices_and_zero_weight():
    central = shapely.box(0, 0, 20, 20)
    nearby = [shapely.box(100, 100, 120, 120), shapely.box(0, 20, 20, 40), shapely.box(10, 10, 30, 30)]
    weights = overlap_weights(central, nearby, (0, 0, None, None))
    assert weights.slice_pairs[0] == ((slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0)))
    assert weights.slice_pairs[1] == ((slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0)))  # only touches
    assert not weights.nearby_weights[:2].any()
    check_weights_sum_to_one(weights)
    # the missing tiles still need a value array, of any size
    tiles = [np.ones((20, 20)), np.zeros((20, 20)), np.zeros((20, 20)), np.ones((20, 20))]
    _, out = apply_weights(tiles[0], tiles[1:], weights)
    np.testing.assert_allclose(out[:10, :10], 1.0)
    np.testing.assert_allclose(out[10:, 10:], 1.0)


def triangle():
    return shapely.Polygon([(0, 0), (10, 0), (0, 10)])


@pytest.mark.parametrize("central, nearby, name", [
    (triangle(), [], "central"),
    (shapely.box(0, 0, 10.5, 10), [], "central"),
    (shapely.box(0, 0, 10, 10), [shapely.box(0, 5, 10, 15), triangle()], r"nearby\[1\]"),
    (shapely.box(0, 0, 10, 10), [shapely.box(0, 5, 10, 15), shapely.box(0, 0, 10, 10).buffer(1)], r"nearby\[1\]"),
    (shapely.box(0, 0, 10, 10), [None], r"nearby\[0\]"),
    (shapely.box(0, 0, 10, 10), [shapely.Polygon()], r"nearby\[0\]"),
    (shapely.box(0, 0, 0, 10), [], "central"),
    (shapely.affinity.rotate(shapely.box(0, 0, 10, 10), 30), [], "central"),
    (shapely.MultiPolygon([shapely.box(0, 0, 5, 10), shapely.box(5, 0, 10, 10)]), [], "central"),
])
def test_bad_geometry_is_named(central, nearby, name):
    with pytest.raises(ValueError, match=name):
        overlap_weights(central, nearby)


@pytest.mark.parametrize("trim_bounds", [
    (0, 0, 1, None),  # yhi must be <= 0
    (-1, 0, None, None),  # ylo must be >= 0
    (0, 0.5, None, None),  # not an integer
    (True, 0, None, None),
    (0, 0, None),  # wrong length
    5,  # not a sequence
    (5, 0, -5, None),  # nothing left
    (0, 10, None, None),
])
def test_bad_trim_bounds_is_named(trim_bounds):
    with pytest.raises(ValueError, match="trim_bounds") as info:
        overlap_weights(shapely.box(0, 0, 10, 10), [], trim_bounds)
    assert "expected" in str(info.value)


def test_bad_window_raises():
    with pytest.raises(ValueError, match="window"):
        overlap_weights(shapely.box(0, 0, 10, 10), [], window="nope")
    with pytest.raises(ValueError, match="shape"):
        overlap_weights(shapely.box(0, 0, 10, 10), [shapely.box(0, 5, 10, 20)], window=np.ones((10, 10)))


@pytest.fixture
def pair():
    a, b = shapely.box(0, 0, 10, 10), shapely.box(0, 5, 10, 15)
    return overlap_weights(a, [b])


def test_wrong_number_of_nearby_tiles(pair):
    with pytest.raises(ValueError, match="nearby_tiles has 2 tiles"):
        apply_weights(np.ones((10, 10)), [np.ones((10, 10))] * 2, pair)
    with pytest.raises(ValueError, match="nearby_tiles has 0 tiles"):
        apply_weights(np.ones((10, 10)), [], pair)


@pytest.mark.parametrize("central_tile, nearby_tile, name, channel_first", [
    (np.ones((9, 10, 3)), np.ones((10, 10, 3)), "central_tile", False),
    (np.ones((10, 10, 3)), np.ones((10, 4, 3)), r"nearby_tiles\[0\]", False),
    (np.ones((3, 10, 10)), np.ones((3, 4, 10)), r"nearby_tiles\[0\]", True),
    (np.ones((10, 10, 3)), np.ones((10, 10, 2)), r"nearby_tiles\[0\]", False),
    (np.ones((10, 10, 3)), np.ones((10, 10)), r"nearby_tiles\[0\]", False),
    (np.ones((10, 10)), np.ones((10, 10, 1, 1)), r"nearby_tiles\[0\]", False),
    (np.array([["a"] * 10] * 10), np.ones((10, 10)), "central_tile", False),
    (np.ones((10, 10), complex), np.ones((10, 10)), "central_tile", False),
])
def test_bad_tiles_are_named(pair, central_tile, nearby_tile, name, channel_first):
    with pytest.raises(ValueError, match=name) as info:
        apply_weights(central_tile, [nearby_tile], pair, channel_first=channel_first)
    assert "shape" in str(info.value)


def test_accepts_lists_and_channel_first_2d(pair):
    _, out = apply_weights(np.ones((10, 10)).tolist(), [np.zeros((10, 10))], pair, channel_first=True)
    assert out.shape == (10, 10) and out.dtype == np.float64
