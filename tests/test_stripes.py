"""Plans split into vertical stripes by a memory budget: same output, bounded buffer, files cleaned up."""

import os

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

import seamless_fast as sf

from cases import check_against_reference, random_tiles


def _striped(image_size, tile, overlap, columns, channels=2, **kwargs):
    """A plan whose budget fits about `columns` tile columns per stripe."""
    budget = int(min(tile, image_size[0]) * (columns * tile) * 4 * channels)
    return sf.plan_regular_grid(image_size, tile, overlap, max_buffer_bytes=budget, channels=channels, **kwargs)[0]


@pytest.mark.parametrize("columns", [1.3, 2, 3.5])
@pytest.mark.parametrize("layout", ["hwc", "chw", "hw"])
def test_striped_plan_matches_reference(columns, layout):
    plan = _striped((300, 700), 64, 24, columns)
    assert len(plan.stripes) > 1
    tiles = random_tiles(plan, np.random.default_rng(0), 1 if layout == "hw" else 2, np.float32)
    writes = check_against_reference(plan, tiles, layout=layout)
    assert (writes == 1).all()


def test_striped_labels_and_area():
    area = shapely.Polygon([(20, 30), (280, 200), (100, 690)])
    plan = _striped((300, 700), 64, 16, 2, channels=5, area=area)
    assert len(plan.stripes) > 1
    check_against_reference(plan, random_tiles(plan, np.random.default_rng(1), 5, np.float32), labels=True)


def test_buffer_fits_the_budget():
    budget = 3 * 2**20
    plan, _ = sf.plan_regular_grid((2000, 9000), 256, 64, max_buffer_bytes=budget, channels=3)
    width = (plan.stripes[:, 1] - plan.stripes[:, 0]).max()
    assert plan.buffer_rows * width * 3 * 4 <= budget
    assert len(plan.stripes) > 1
    assert sf.analyse_plan(plan, channels=3).buffer_bytes <= budget


def test_seams_are_the_overlaps_between_stripes():
    plan = _striped((300, 700), 64, 24, 2)
    for (lo, hi), left, right in zip(plan.seams.tolist(), plan.stripes[:-1].tolist(), plan.stripes[1:].tolist()):
        assert lo == right[0] and hi == left[1] and hi - lo >= 24  # wider at the flush tile


@given(height=st.integers(1, 120), width=st.integers(30, 300), tile=st.integers(4, 40), data=st.data())
def test_random_striped_plans(height, width, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    columns = data.draw(st.floats(1.0, 4.0))
    channels = data.draw(st.integers(1, 3))
    try:
        plan = _striped((height, width), tile, overlap, columns, channels=channels)
    except ValueError as error:  # a budget below one tile column and its seam is refused
        assert "too small" in str(error)
        return
    tiles = random_tiles(plan, np.random.default_rng(data.draw(st.integers(0, 99))), channels, np.float32)
    writes = check_against_reference(plan, tiles)
    assert (writes == 1).all()


def test_seam_files_live_in_cache_dir_and_are_removed(tmp_path):
    plan = _striped((200, 600), 64, 16, 2)
    tiles = random_tiles(plan, np.random.default_rng(2), 2, np.float32)
    with sf.Blender(plan, cache_dir=tmp_path) as blender:
        blender.push(tiles[plan.load_order[0]])
        assert len(os.listdir(tmp_path)) == len(plan.seams)
        for t in plan.load_order[1:]:
            blender.push(tiles[t])
    assert os.listdir(tmp_path) == []


def test_seam_files_removed_after_an_error(tmp_path):
    plan = _striped((200, 600), 64, 16, 2)

    def tiles():
        yield np.zeros((64, 64, 2), np.float32)
        yield np.zeros((64, 64, 2), np.float32)
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        sf.blend(plan, tiles(), cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_default_seam_folder_is_private_and_removed(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    plan = _striped((200, 600), 64, 16, 2)
    sf.blend(plan, random_tiles(plan, np.random.default_rng(3), 2, np.float32)[:0] or
             [np.zeros((64, 64, 2), np.float32)] * plan.n_loads)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_buffer_bytes=1000), "max_buffer_bytes=1000 is too small"),
    (dict(max_buffer_bytes=0), "max_buffer_bytes=0 must be a positive integer"),
    (dict(max_buffer_bytes=10**6, channels=0), "channels=0 must be a positive integer"),
    (dict(max_buffer_bytes=10**6, dtype=np.int16), "dtype=int16 is not an accumulator dtype"),
])
def test_bad_budgets(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sf.plan_regular_grid((500, 2000), 64, 16, **kwargs)


def test_budget_on_a_non_rectilinear_grid():
    grid = np.array([[shapely.box(0, 0, 40, 40), shapely.box(3, 30, 43, 70), shapely.box(0, 60, 40, 100)]])
    with pytest.raises(ValueError, match="only rectilinear grids with a separable window can be split"):
        sf.plan_from_grid(grid, max_buffer_bytes=40 * 50 * 4, traverse="rows")
