"""``seamless-fast segment --mask``, run as a subprocess: a tissue-like mask at 1/16 resolution, the library's
values in the cells it selects, the output's nodata outside, exit 2 with one line for a bad mask."""

import os
import sys

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
Image = pytest.importorskip("PIL.Image")

import seamless_fast as sf  # noqa: E402
from seamless_fast.io import ImageReader  # noqa: E402

from test_cli import MODEL, cli, cli_env  # noqa: E402

HEIGHT, WIDTH = 320, 288
GDAL_NODATA = 42113


def tissue(height, width):
    """A tissue-like mask: two blobs, one with a hole, on a background."""
    yy, xx = np.mgrid[:height, :width] + 0.5
    blob = ((yy - 0.35 * height) / (0.25 * height)) ** 2 + ((xx - 0.3 * width) / (0.2 * width)) ** 2 < 1
    hole = ((yy - 0.35 * height) / (0.08 * height)) ** 2 + ((xx - 0.3 * width) / (0.06 * width)) ** 2 < 1
    small = ((yy - 0.8 * height) / (0.1 * height)) ** 2 + ((xx - 0.75 * width) / (0.12 * width)) ** 2 < 1
    return (blob & ~hole) | small


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "toymodels.py").write_text(MODEL)
    image = np.random.default_rng(0).random((HEIGHT, WIDTH, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(64, 64), photometric="rgb")
    mask = tissue(HEIGHT // 16, WIDTH // 16)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    return tmp_path, image, mask


def library_run(path, image, labels, mask=None):
    """The library's blend of the toy model over the image (the whole-image run without a mask), and the pixels
    the masked plan writes."""
    sys.path.insert(0, str(path))
    try:
        import toymodels
    finally:
        sys.path.pop(0)
    plan, _ = sf.plan_regular_grid(image.shape[:2], 64, 16)
    reader = ImageReader(image)
    tiles = [toymodels.segmenter(reader.read(tuple(b))[None].transpose(0, 3, 1, 2))[0]
             for b in plan.tile_boxes[plan.load_order].tolist()]
    whole = sf.blend(plan, tiles, channel_first=True, labels=labels)
    masked, _ = sf.plan_regular_grid(image.shape[:2], 64, 16, mask=mask)
    written = np.zeros(image.shape[:2], bool)
    for ylo, xlo, yhi, xhi in masked.cell_boxes[masked.write_cells].tolist():
        written[ylo:yhi, xlo:xhi] = True
    return whole, written


def segment(path, *args):
    return cli("segment", "in.tif", *args, "--model", "toymodels:segmenter", "--tile", "64", "--overlap", "16",
               "--no-progress", cwd=path)


def test_labels_inside_the_mask_equal_the_library_and_nodata_outside(workdir):
    path, image, mask = workdir
    run = segment(path, "out.tif", "--mask", "mask.png")
    assert run.returncode == 0, run.stderr
    whole, written = library_run(path, image, labels=True, mask=mask)
    assert 0.2 < written.mean() < 0.9
    with tifffile.TiffFile(path / "out.tif") as tif:
        labels = tif.asarray()
        assert tif.pages[0].tags[GDAL_NODATA].value == "255"
    np.testing.assert_array_equal(labels[written], whole[written])
    assert (labels[~written] == 255).all()
    # the same mask as .npy (integers) and as a TIFF gives the same file contents
    np.save(path / "mask.npy", mask.astype(np.int16) * 7)
    tifffile.imwrite(path / "mask.tif", mask.astype(np.uint8))
    for other in ("mask.npy", "mask.tif"):
        run = segment(path, f"out_{other}.tif", "--mask", other)
        assert run.returncode == 0, run.stderr
        np.testing.assert_array_equal(tifffile.imread(path / f"out_{other}.tif"), labels)


def test_probabilities_with_a_mask_and_an_area(workdir):
    path, image, mask = workdir
    run = segment(path, "out.tif", "--mask", "mask.png", "--probabilities", "--dtype", "float32",
                  "--area", "POLYGON ((0 0, 150 0, 150 320, 0 320, 0 0))")  # x < 150: the left part
    assert run.returncode == 0, run.stderr
    values = tifffile.imread(path / "out.tif")
    whole, written = library_run(path, image, labels=False, mask=mask)
    in_area = np.zeros_like(written)
    in_area[:, :150] = True
    inside = written & in_area  # pixels of the cells meeting both whose centre lies in the area
    assert inside.any() and (written & ~in_area).any()
    np.testing.assert_array_equal(values[inside], whole.transpose(1, 2, 0)[inside])
    assert np.isnan(values[~inside]).all()


def test_explicit_nodata_with_a_mask(workdir):
    path, image, mask = workdir
    run = segment(path, "out.tif", "--mask", "mask.png", "--nodata", "7", "--dtype", "uint16")
    assert run.returncode == 0, run.stderr
    labels = tifffile.imread(path / "out.tif")
    whole, written = library_run(path, image, labels=True, mask=mask)
    np.testing.assert_array_equal(labels[written], whole[written])
    assert labels.dtype == np.uint16 and (labels[~written] == 7).all()


def _bad_masks(path):
    np.save(path / "big.npy", np.ones((HEIGHT + 1, 10), bool))
    np.save(path / "three_d.npy", np.ones((4, 4, 4), bool))
    np.save(path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(path / "empty.npy", np.zeros((20, 18), bool))
    np.save(path / "strings.npy", np.array([["a", "b"]]))
    Image.fromarray(np.zeros((20, 18, 3), np.uint8)).save(path / "rgb.png")
    (path / "text.png").write_text("not a PNG\n")
    (path / "text.tif").write_text("not a TIFF\n")
    tifffile.imwrite(path / "rgb.tif", np.ones((20, 18, 3), np.uint8), photometric="rgb")
    (path / "folder.npy").mkdir()
    (path / "mask.jpg").write_bytes(b"")


BAD = {
    "missing": ("missing.png", "--mask 'missing.png' does not exist"),
    "folder": ("folder.npy", "is a folder"),
    "extension": ("mask.jpg", "--mask 'mask.jpg' has an unknown extension"),
    "larger than the image": ("big.npy", "has shape (321, 10); expected a 2-D image of at most the input's (320, 288)"),
    "3-D": ("three_d.npy", "has shape (4, 4, 4); expected a 2-D image"),
    "NaN": ("nan.npy", "not finite"),
    "all zero": ("empty.npy", "has no nonzero pixel"),
    "strings": ("strings.npy", "holds <U1 values"),
    "RGB PNG": ("rgb.png", "is a PNG in mode RGB; expected a single-channel"),
    "not a PNG": ("text.png", "cannot be read"),
    "not a TIFF": ("text.tif", "--mask 'text.tif' cannot be read: "),
    "RGB TIFF": ("rgb.tif", "has 3 channels"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_mask_exits_2_with_one_line_and_writes_nothing(workdir, case):
    path, _, _ = workdir
    _bad_masks(path)
    name, message = BAD[case]
    run = segment(path, "out.tif", "--mask", name)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not os.path.exists(path / "out.tif")
    assert not [p for p in os.listdir(path) if "partial" in p]


def test_mask_is_not_overwritten_and_goes_with_a_whole_run_only(workdir):
    path, _, _ = workdir
    np.save(path / "m.npy", np.ones((4, 4), bool))
    tifffile.imwrite(path / "m.tif", np.ones((4, 4), np.uint8))
    run = segment(path, "m.tif", "--mask", "m.tif")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert tifffile.imread(path / "m.tif").shape == (4, 4)
    run = segment(path, "--mask", "m.npy", "--part", "0/2", "--store", "s.zarr")
    assert run.returncode == 2 and "--mask goes with a whole run" in run.stderr, run.stderr


def test_a_png_mask_without_pillow_is_one_clear_line(workdir):
    path, _, _ = workdir
    blocker = path / "nopil" / "PIL"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('Pillow is blocked for this test')\n")
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(path / "nopil"), env["PYTHONPATH"]])
    run = cli("segment", "in.tif", "out.tif", "--mask", "mask.png", "--model", "toymodels:segmenter", "--tile", "64",
              "--overlap", "16", "--no-progress", cwd=path, env=env)
    assert run.returncode == 2, run.stderr
    assert "reading a PNG needs Pillow" in run.stderr and len(run.stderr.strip().splitlines()) == 1
