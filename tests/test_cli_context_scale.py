"""``seamless-fast segment --context N --output-scale S`` as a subprocess, as users run it."""

import sys
import textwrap

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

import seamless_fast as sf  # noqa: E402
from seamless_fast.io import ImageReader  # noqa: E402

from test_cli import cli  # noqa: E402

MODEL = textwrap.dedent('''
    import numpy as np

    CONTEXT, SCALE, TILE = 8, 2, 64

    def shrink(batch):
        """Reads 80 x 80 windows (tile 64 and 8 of context), returns 32 x 32 tiles of three classes."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.shape[2:] != (TILE + 2 * CONTEXT,) * 2:
            raise ValueError(f"the model got windows of shape {batch.shape}")
        inner = batch[:, :, CONTEXT:-CONTEXT, CONTEXT:-CONTEXT]
        b, c, h, w = inner.shape
        down = inner.reshape(b, c, h // SCALE, SCALE, w // SCALE, SCALE).mean(axis=(3, 5))
        whole = batch.mean(axis=(2, 3))[:, :, None, None]  # the context changes the values
        first = down[:, :1] - whole[:, :1]
        return np.concatenate([first, -first, down[:, 1:2] - 0.5], axis=1)

    def same_size(batch):
        return np.asarray(batch, dtype=np.float32)[:, :2]
''')

SIZE = (301, 259)
OUT = (151, 130)


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "ctxmodels.py").write_text(MODEL)
    image = np.random.default_rng(5).random(SIZE + (3,)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(64, 64), resolution=(2.0, 3.0), photometric="rgb")
    return tmp_path


def _library_labels(path):
    sys.path.insert(0, str(path))
    try:
        import ctxmodels
    finally:
        sys.path.pop(0)
    plan, _ = sf.plan_regular_grid(SIZE, 64, 16, context=8, output_scale=2)
    labels = np.zeros(plan.image_size, np.uint8)

    def write_cells(cells):
        for cell in cells:
            labels[cell.slices] = cell.data

    with ImageReader(str(path / "in.tif")) as reader:
        sf.run_pipeline(plan, reader.read, ctxmodels.shrink, write_cells, labels=True)
    return labels


def test_segment_with_context_and_output_scale(workdir):
    options = ["--model", "ctxmodels:shrink", "--tile", "64", "--overlap", "16", "--context", "8",
               "--output-scale", "2", "--no-progress"]
    run = cli("segment", "in.tif", "out.tif", *options, cwd=workdir)
    assert run.returncode == 0, run.stderr
    with tifffile.TiffFile(workdir / "out.tif") as tif:
        labels = tif.asarray()
        resolution = tif.pages[0].resolution
    assert labels.shape == OUT
    np.testing.assert_array_equal(labels, _library_labels(workdir))
    assert resolution == pytest.approx((1.0, 1.5))  # pixels per unit, (x, y), divided by the scale
    for part in ("0/2", "1/2"):
        run = cli("segment", "in.tif", *options, "--part", part, "--store", "parts.zarr", cwd=workdir)
        assert run.returncode == 0, run.stderr
    run = cli("merge", "--store", "parts.zarr", "merged.tif", cwd=workdir)
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(tifffile.imread(workdir / "merged.tif"), labels)
    other = [o if o != "8" else "16" for o in options]
    run = cli("segment", "in.tif", *other, "--part", "0/2", "--store", "parts.zarr", cwd=workdir)
    assert run.returncode == 2 and "belongs to another job" in run.stderr and "context=(8, 8)" in run.stderr


@pytest.mark.parametrize("args, message", [
    (["--context", "-1"], "argument --context: '-1' must be 0 or more"),
    (["--output-scale", "0"], "argument --output-scale: '0' must be positive"),
    (["--tile", "63", "--output-scale", "2"], "--tile 63 is not a multiple of --output-scale 2"),
    (["--overlap", "15", "--output-scale", "2"], "--overlap 15 is not a multiple of --output-scale 2"),
    (["--context", "3", "--output-scale", "2"], "--context 3 is not a multiple of --output-scale 2"),
    (["--context", "8", "--output-scale", "2", "--model", "ctxmodels:same_size"], "--model returned shape"),
])
def test_bad_values_exit_2_with_one_line(workdir, args, message):
    base = ["--model", "ctxmodels:shrink", "--tile", "64", "--overlap", "16"]
    run = cli("segment", "in.tif", "out.tif", *base, *args, cwd=workdir)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (workdir / "out.tif").exists()


def test_plan_prints_the_read_window():
    run = cli("plan", "301x259", "--tile", "64", "--overlap", "16", "--context", "8", "--output-scale", "2")
    assert run.returncode == 0, run.stderr
    assert "model reads 80 x 80 windows (context 8) and returns 32 x 32 tiles (output scale 2); output 151 x 130" \
        in run.stdout
    run = cli("plan", "301x259", "--tile", "64", "--overlap", "16")
    assert "model reads" not in run.stdout
    for command in ("segment", "plan"):
        run = cli(command, "--help")
        assert "--context" in run.stdout and "--output-scale" in run.stdout
