"""The command line, run as a subprocess as users run it."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

import seamless_fast as sf  # noqa: E402


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sf.__file__)))


def cli_env(**extra):
    """The environment of a subprocess that imports this checkout's seamless_fast, installed or not."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env


def cli(*args, cwd=None, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "seamless_fast", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env or cli_env())


MODEL = textwrap.dedent('''
    import numpy as np

    def segmenter(batch):
        """Two classes from the first channel, relative to the tile mean: context-dependent."""
        batch = np.asarray(batch, dtype=np.float32)
        first = batch[:, :1]
        centred = first - first.mean(axis=(2, 3), keepdims=True)
        return np.concatenate([centred, -centred, np.zeros_like(centred)], axis=1)

    def broken(batch):
        raise RuntimeError("the model broke on purpose")

    class Doubler:
        def __call__(self, batch):
            return np.asarray(batch, dtype=np.float32) * 2
''')


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "toymodels.py").write_text(MODEL)
    image = np.random.default_rng(0).random((300, 260, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(64, 64), resolution=(2.0, 2.0), photometric="rgb")
    return tmp_path, image


def test_segment_labels_equal_the_library(workdir):
    path, image = workdir
    run = cli("segment", "in.tif", "out.tif", "--model", "toymodels:segmenter", "--tile", "64", "--overlap", "16",
              "--batch-size", "5", "--no-progress", cwd=path)
    assert run.returncode == 0, run.stderr
    labels = tifffile.imread(path / "out.tif")
    sys.path.insert(0, str(path))
    try:
        import toymodels
    finally:
        sys.path.pop(0)
    plan, _ = sf.plan_regular_grid(image.shape[:2], 64, 16)
    from seamless_fast.io import ImageReader

    reader = ImageReader(image)
    tiles = [toymodels.segmenter(reader.read(tuple(b))[None].transpose(0, 3, 1, 2))[0]
             for b in plan.tile_boxes[plan.load_order].tolist()]
    expected = sf.blend(plan, tiles, channel_first=True, labels=True)
    np.testing.assert_array_equal(labels, expected)
    assert not [p for p in os.listdir(path) if "partial" in p]


def test_segment_probabilities_and_area(workdir):
    path, image = workdir
    (path / "area.geojson").write_text(json.dumps(
        {"type": "Polygon", "coordinates": [[[10, 10], [200, 30], [120, 250], [10, 10]]]}))
    run = cli("segment", "in.tif", "out.tif", "--model", "toymodels:Doubler", "--probabilities", "--dtype",
              "float32", "--area", "area.geojson", "--tile", "64", "--overlap", "16", "--no-progress",
              "--channel-first", cwd=path)
    assert run.returncode == 0, run.stderr
    values = tifffile.imread(path / "out.tif")
    assert values.shape == (300, 260, 3) and values.dtype == np.float32
    inside = values[100, 80]  # (row 100, column 80) lies inside the polygon
    np.testing.assert_allclose(inside, 2 * image[100, 80], atol=1e-5)
    assert np.isnan(values[290, 250]).all()  # outside the area: the nodata the file records for floats
    with tifffile.TiffFile(path / "out.tif") as tif:
        assert tif.pages[0].tags["GDAL_NODATA"].value.strip("\x00") == "nan"


def test_model_failure_exits_1_with_traceback(workdir):
    path, _ = workdir
    run = cli("segment", "in.tif", "out.tif", "--model", "toymodels:broken", "--no-progress", cwd=path)
    assert run.returncode == 1
    assert "Traceback" in run.stderr and "the model broke on purpose" in run.stderr
    assert not (path / "out.tif").exists()
    assert not [p for p in os.listdir(path) if "partial" in p]


@pytest.mark.parametrize("args, message", [
    (["segment", "missing.tif", "out.tif", "--model", "toymodels:segmenter"], "input 'missing.tif' does not exist"),
    (["segment", "in.tif", "out.tif", "--model", "nomodule:thing"], "cannot import 'nomodule'"),
    (["segment", "in.tif", "out.tif", "--model", "toymodels"], "is not MODULE:NAME"),
    (["segment", "in.tif", "out.tif", "--model", "toymodels:segmenter", "--tile", "0"], "'0' must be positive"),
    (["segment", "in.tif", "out.tif", "--model", "toymodels:segmenter", "--overlap", "256"],
     "--overlap 256 must be smaller than --tile 256"),
    (["segment", "in.tif", "out.tif", "--model", "toymodels:segmenter", "--dtype", "float32"],
     "does not hold labels"),
    (["segment", "in.tif", "out.tif"], "the following arguments are required: --model"),
    (["plan", "12x"], "neither a file nor a size"),
    (["bogus"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(workdir, args, message):
    path, _ = workdir
    run = cli(*args, cwd=path)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_help_documents_every_option():
    run = cli("segment", "--help")
    assert run.returncode == 0
    for option in ["--model", "--tile", "--overlap", "--batch-size", "--window", "--labels", "--probabilities",
                   "--dtype", "--area", "--channel-first", "--channel-last", "--pad", "--compression",
                   "--no-progress"]:
        assert option in run.stdout


def test_plan_command(workdir):
    path, _ = workdir
    run = cli("plan", "40000x40000", "--json")
    figures = json.loads(run.stdout)
    assert figures["tiles"] == 208 * 208 and figures["buffer_rows"] == 64
    assert figures["buffer_bytes"] < 0.01 * figures["output_bytes"]
    run = cli("plan", path / "in.tif", "--tile", "64", "--overlap", "16")
    assert run.returncode == 0 and "image 300 x 260" in run.stdout
    run = cli("plan", "4096x200000", "--max-memory", str(64 * 2**20))
    assert run.returncode == 0 and "stripes" in run.stdout


def test_demo_shows_seams_only_when_naive(tmp_path):
    run = cli("demo", "--size", "1536", "--out", tmp_path / "demo", "--no-progress")
    assert run.returncode == 0, run.stderr
    scores = run.stdout.split("seam score (about 1 = no seam): naive ")[1].split("\n")[0]
    naive, seamless = float(scores.split(",")[0]), float(scores.split("seamless ")[1])
    assert naive > 2 * seamless and seamless < 1.5
    for name in ("naive.tif", "seamless.tif", "naive_vs_seamless.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
    assert tifffile.imread(tmp_path / "demo" / "seamless.tif").shape == (1536, 1536)
