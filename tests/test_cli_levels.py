"""``seamless-fast segment --level / --mpp`` and ``seamless-fast plan FILE`` on pyramids, run as users run them."""

import json
import os
import re
import sys

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

import seamless_fast as sf  # noqa: E402
from seamless_fast.io import ImageReader  # noqa: E402
from test_cli import MODEL, cli  # noqa: E402
from test_io_levels import image, tifffile_level, write_subifds  # noqa: E402


@pytest.fixture()
def slide(tmp_path):
    """An OME-TIFF pyramid of 300 x 260, 150 x 130 and 75 x 65 pixels at 0.5, 1 and 2 micrometres per pixel."""
    (tmp_path / "toymodels.py").write_text(MODEL)
    path = tmp_path / "slide.ome.tif"
    write_subifds(path, image(seed=3), ome=True, photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER",
                  metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    return path


def expected_labels(path, level, tile, overlap):
    """The library's blend of the toy segmenter over level `level` as tifffile reads it."""
    sys.path.insert(0, str(path.parent))
    try:
        import toymodels
    finally:
        sys.path.pop(0)
    data = tifffile_level(path, level)
    plan, _ = sf.plan_regular_grid(data.shape[:2], tile, overlap)
    reader = ImageReader(data)
    tiles = [toymodels.segmenter(reader.read(tuple(b))[None].transpose(0, 3, 1, 2))[0]
             for b in plan.tile_boxes[plan.load_order].tolist()]
    return sf.blend(plan, tiles, channel_first=True, labels=True)


@pytest.mark.parametrize("choice, level", [(["--level", "1"], 1), (["--mpp", "1.7"], 2)])
def test_segment_a_level(slide, choice, level):
    run = cli("segment", slide.name, "out.tif", "--model", "toymodels:segmenter", "--tile", "32", "--overlap", "8",
              "--no-progress", *choice, cwd=slide.parent)
    assert run.returncode == 0, run.stderr
    labels = tifffile.imread(slide.parent / "out.tif")
    np.testing.assert_array_equal(labels, expected_labels(slide, level, 32, 8))
    with tifffile.TiffFile(slide.parent / "out.tif") as tif:  # the resolution of the level read
        assert tif.pages[0].resolution == (2e4 / 2**level, 2e4 / 2**level)


@pytest.mark.parametrize("choice, message", [
    (["--level", "3"], r"--level 3 is out of range: '.*slide\.ome\.tif' has 3 levels \(0 to 2\)"),
    (["--level", "-1"], "argument --level: '-1' must be 0 or more"),
    (["--level", "one"], "argument --level: 'one' is not a whole number"),
    (["--mpp", "0"], "argument --mpp: '0' is not a positive number of micrometres per pixel"),
    (["--mpp", "nan"], "argument --mpp: 'nan' is not a positive number"),
    (["--level", "1", "--mpp", "2"], "argument --mpp: not allowed with argument --level"),
])
def test_bad_level_or_mpp_exits_2(slide, choice, message):
    run = cli("segment", slide.name, "out.tif", "--model", "toymodels:segmenter", *choice, cwd=slide.parent)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert re.search(message, run.stderr), run.stderr
    assert not os.path.exists(slide.parent / "out.tif")


def test_mpp_without_a_resolution_exits_2(tmp_path):
    (tmp_path / "toymodels.py").write_text(MODEL)
    tifffile.imwrite(tmp_path / "plain.tif", image(), tile=(64, 64))
    run = cli("segment", "plain.tif", "out.tif", "--model", "toymodels:segmenter", "--mpp", "0.5", cwd=tmp_path)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "--mpp 0.5 cannot pick a level: 'plain.tif' gives no resolution in micrometres per pixel" in run.stderr
    run = cli("plan", "300x260", "--level", "1")
    assert run.returncode == 2 and "--level and --mpp pick a level of a file" in run.stderr


def test_plan_lists_the_levels(slide):
    run = cli("plan", slide, "--tile", "64", "--overlap", "16", "--level", "1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[:5] == [
        "3 levels:",
        "  level 0: 300 x 260, downsample 1 x 1, 0.5 x 0.5 um/pixel",
        "  level 1: 150 x 130, downsample 2 x 2, 1 x 1 um/pixel  <- read",
        "  level 2: 75 x 65, downsample 4 x 4, 2 x 2 um/pixel",
        "image 150 x 130, tile 64, overlap 16"]
    figures = json.loads(cli("plan", slide, "--json", "--mpp", "3").stdout)
    assert figures["level"] == 2 and figures["image_size"] == [75, 65]
    assert figures["levels"][1] == {"level": 1, "size": [150, 130], "downsample": [2.0, 2.0], "mpp": [1.0, 1.0]}
    plain = slide.parent / "plain.tif"
    tifffile.imwrite(plain, image(), tile=(64, 64))
    run = cli("plan", plain)
    assert run.stdout.splitlines()[:2] == ["1 level:", "  level 0: 300 x 260, downsample 1 x 1, resolution unknown  "
                                                       "<- read"]
    assert "levels" not in json.loads(cli("plan", "300x260", "--json").stdout)


def test_segment_a_level_with_context_and_output_scale(slide):
    """--level with --context and --output-scale: the output is the level's size divided by the scale, at the
    level's resolution divided by the scale."""
    from test_cli_context_scale import MODEL as CONTEXT_MODEL

    (slide.parent / "ctxmodels.py").write_text(CONTEXT_MODEL)
    run = cli("segment", slide.name, "out.tif", "--model", "ctxmodels:shrink", "--tile", "64", "--overlap", "16",
              "--context", "8", "--output-scale", "2", "--level", "1", "--no-progress", cwd=slide.parent)
    assert run.returncode == 0, run.stderr
    sys.path.insert(0, str(slide.parent))
    try:
        import ctxmodels
    finally:
        sys.path.pop(0)
    plan, _ = sf.plan_regular_grid((150, 130), 64, 16, context=8, output_scale=2)
    expected = np.zeros(plan.image_size, np.uint8)

    def write_cells(cells):
        for cell in cells:
            expected[cell.slices] = cell.data

    with ImageReader(slide, level=1) as reader:
        sf.run_pipeline(plan, reader.read, ctxmodels.shrink, write_cells, labels=True)
    with tifffile.TiffFile(slide.parent / "out.tif") as tif:
        assert tif.pages[0].shape == (75, 65) and tif.pages[0].resolution == (5e3, 5e3)
        np.testing.assert_array_equal(tif.asarray(), expected)
