"""examples/unet_segment.py: a PyTorch U-Net segmenting a GeoTIFF and a pyramidal slide through run_pipeline.

Each output is compared with the numpy reference blend (tests/reference.py) of the same network run on every
tile of the image, and with seamless_fast.blend of those tiles. Skipped without torch; the library itself must
not import torch (checked without it).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seamless_fast as sf
from seamless_fast.demo import SyntheticScene
from seamless_fast.windows import window_2d

from reference import reference_blend, reference_labels_agree

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "unet_segment.py"
SAMPLES = ROOT / "examples" / "make_samples.py"
SMALL = ["--tile", "64", "--overlap", "16", "--batch-size", "4", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def example():
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("unet_segment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def torch_threads():
    """The example sets torch's thread count (--threads): put it back after each test."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    yield
    if before is not None:
        torch.set_num_threads(before)


def _scene(height, width):
    return np.rint(SyntheticScene(256, seed=1).read((0, 0, height, width)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def geotiff(tmp_path_factory):
    """A tiled GeoTIFF written by GDAL (rasterio): UTM 33N, 10 m pixels."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    path = tmp_path_factory.mktemp("geo") / "scene.tif"
    image = _scene(150, 130)
    with rasterio.open(path, "w", driver="GTiff", width=130, height=150, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, 500_000, 0, -10, 4_600_000), tiled=True,
                       blockxsize=64, blockysize=64, compress="deflate") as dataset:
        dataset.write(image.transpose(2, 0, 1))
    return path


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A pyramidal OME-TIFF: full resolution with two reduced levels in SubIFDs, as slide scanners write them."""
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path_factory.mktemp("slide") / "slide.ome.tif"
    image = _scene(140, 170)
    with tifffile.TiffWriter(path, ome=True) as tiff:
        options = dict(tile=(32, 32), compression="zlib", photometric="rgb")
        tiff.write(image, subifds=2, metadata={"axes": "YXS", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0},
                   **options)
        for level in (1, 2):
            tiff.write(image[::2 ** level, ::2 ** level], subfiletype=1, **options)
    return path


def reference(example, path, *, tile=64, overlap=16, batch_size=4, classes=5, padding="same", level=0,
              **model_options):
    """The network on every tile, batched as the pipeline batches them; the numpy reference blend and
    seamless_fast.blend of those outputs. Returns (values (H, W, classes), blended labels)."""
    import torch

    torch.set_num_threads(1)
    with sf.io.ImageReader(path, level=level) as reader:
        plan, context = example.plan_tiles(reader.shape, tile, overlap, example.CONTEXT[padding])
        model = example.Segmenter(example.build_model(reader.channels, classes, padding=padding, **model_options),
                                  1 / 255, context)
        reads = [tuple(int(v) for v in geom.bounds) for _, geom in sf.get_plan_input_geoms(plan)]  # load order
        outputs = []
        for start in range(0, len(reads), batch_size):
            batch = np.stack([reader.read(box).transpose(2, 0, 1) for box in reads[start:start + batch_size]])
            outputs.extend(model(batch))
    boxes = plan.tile_boxes[plan.load_order].tolist()
    windows = [window_2d(plan.window, b[2] - b[0], b[3] - b[1]) for b in boxes]
    values, covered = reference_blend(boxes, [out.transpose(1, 2, 0) for out in outputs], windows, plan.image_size)
    assert covered.all()
    return values, sf.blend(plan, outputs, channel_first=True, labels=True)


def read_tiff(path):
    import tifffile

    return tifffile.imread(path)


def test_geotiff_labels_by_command_line(example, geotiff, tmp_path):
    out = tmp_path / "labels.tif"
    run = subprocess.run([sys.executable, str(SCRIPT), str(geotiff), str(out), *SMALL], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stderr
    labels = read_tiff(out)
    assert labels.shape == (150, 130) and labels.dtype == np.uint8
    values, blended = reference(example, geotiff)
    assert reference_labels_agree(labels, values)
    np.testing.assert_array_equal(labels, blended)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_slide_probabilities_by_function(example, slide, tmp_path, padding):
    out = tmp_path / "probabilities.tif"
    result = example.segment(slide, out, tile=64, overlap=16, batch_size=4, labels=False, padding=padding,
                             threads=1, seed=3)
    probabilities = read_tiff(out)
    assert probabilities.shape == (140, 170, 5) and probabilities.dtype == np.float32
    assert result.tiles == 12 and result.batches == 3
    plan, context = example.plan_tiles((140, 170), 64, 16, example.CONTEXT[padding])
    grown = plan.read_boxes() - plan.tile_boxes[plan.load_order]
    assert context == (8 if padding == "valid" else 0) and (grown == [-context] * 2 + [context] * 2).all()
    values, _ = reference(example, slide, padding=padding, seed=3)
    np.testing.assert_allclose(probabilities, values, rtol=0, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1, atol=1e-5)


def test_slide_labels_by_function_with_other_classes(example, slide, tmp_path):
    out = tmp_path / "labels.tiff"
    example.segment(slide, out, tile=48, overlap=8, batch_size=3, classes=3, threads=1, dtype="uint16")
    labels = read_tiff(out)
    assert labels.shape == (140, 170) and labels.dtype == np.uint16 and labels.max() <= 2
    values, blended = reference(example, slide, tile=48, overlap=8, batch_size=3, classes=3)
    assert reference_labels_agree(labels, values)
    np.testing.assert_array_equal(labels, blended)


@pytest.mark.parametrize("choice", [["--level", "1"], ["--mpp", "2.2"]])
def test_slide_level_by_command_line(example, slide, tmp_path, choice):
    """Level 1 of the slide (70 x 85), chosen by number or by the resolution nearest 2.2 um/pixel (level 0
    is 1 um/pixel), segmented as the reference segments that level."""
    out = tmp_path / "level1.tif"
    assert example.main([str(slide), str(out), *SMALL, *choice]) == 0
    labels = read_tiff(out)
    assert labels.shape == (70, 85)
    values, blended = reference(example, slide, level=1)
    assert reference_labels_agree(labels, values)
    np.testing.assert_array_equal(labels, blended)


def test_quantised_probabilities(example, geotiff, tmp_path):
    out = tmp_path / "p8.tif"
    example.main([str(geotiff), str(out), *SMALL, "--probabilities", "--dtype", "uint8"])
    stored = read_tiff(out)
    values, _ = reference(example, geotiff)
    assert stored.dtype == np.uint8 and stored.shape == (150, 130, 5)
    assert np.abs(stored / 255 - values).max() <= 0.5 / 255 + 1e-5


def test_docstring_examples(example):
    import doctest

    result = doctest.testmod(example, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


def test_seed_and_weights(example, tmp_path):
    import torch

    one, again, other = (example.build_model(3, seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(one[k], again[k]) for k in one)
    assert not all(torch.equal(one[k], other[k]) for k in one)
    assert 2_000 < sum(v.numel() for v in one.values()) < 10_000
    torch.save(other, tmp_path / "unet.pt")
    loaded = example.build_model(3, seed=0, weights=tmp_path / "unet.pt").state_dict()
    assert all(torch.equal(loaded[k], other[k]) for k in one)


def test_model_runs_under_inference_mode_with_the_threads_asked(example, geotiff, tmp_path):
    import torch

    seen = []
    build = example.build_model

    def build_recording(*args, **kwargs):
        net = build(*args, **kwargs)
        net.register_forward_hook(lambda *_: seen.append((torch.is_inference_mode_enabled(),
                                                           torch.get_num_threads())))
        return net

    example.build_model = build_recording
    try:
        example.segment(geotiff, tmp_path / "labels.tif", tile=64, overlap=16, batch_size=8, threads=1)
    finally:
        example.build_model = build
    assert seen == [(True, 1)] * 2  # 9 tiles in batches of 8


def test_valid_network_reads_context(example):
    import torch

    net = example.UNet(3, 4, padding="valid")
    assert net.context == 8
    assert net(torch.zeros(2, 3, 48, 48)).shape == (2, 4, 32, 32)
    assert example.UNet(3, 4)(torch.zeros(2, 3, 48, 48)).shape == (2, 4, 48, 48)
    # given the context, the segmenter returns the tile only; without it, it pads the tile itself
    batch = np.zeros((1, 3, 47, 45), np.uint8)
    assert example.Segmenter(net, 1 / 255, context=8)(batch).shape == (1, 4, 31, 29)
    assert example.Segmenter(net, 1 / 255)(batch).shape == (1, 4, 47, 45)


def bad_argument_cases(folder, geotiff):
    existing = folder / "existing.tif"
    existing.write_bytes(b"")
    not_tiff = folder / "notes.tif"
    not_tiff.write_text("not a TIFF")
    out = str(folder / "out.tif")
    return {
        "missing input": ([str(folder / "absent.tif"), out], "absent.tif"),
        "not a TIFF": ([str(not_tiff), out], "notes.tif"),
        "output is the input": ([str(geotiff), str(geotiff)], "is the input"),
        "output extension": ([str(geotiff), str(folder / "out.png")], "out.png"),
        "missing output folder": ([str(geotiff), str(folder / "no" / "out.tif")], "out.tif"),
        "overlap not below tile": ([str(geotiff), out, "--tile", "64", "--overlap", "64"], "--overlap"),
        "zero tile": ([str(geotiff), out, "--tile", "0"], "--tile"),
        "one class": ([str(geotiff), out, "--classes", "1"], "--classes"),
        "labels as float": ([str(geotiff), out, "--dtype", "float32"], "float32"),
        "level beyond": ([str(geotiff), out, "--level", "5"], "level"),
        "negative level": ([str(geotiff), out, "--level", "-1"], "level"),
        "weights not a file": ([str(geotiff), out, "--weights", str(existing)], "--weights"),
        "training on 3 classes": ([str(geotiff), out, "--train-steps", "2", "--classes", "3"], "--train-steps"),
        "not a number": ([str(geotiff), out, "--tile", "big"], "--tile"),
        "unknown option": ([str(geotiff), out, "--colour"], "--colour"),
    }


def test_bad_arguments_exit_2_with_one_line(example, geotiff, tmp_path, capsys):
    for name, (argv, named) in bad_argument_cases(tmp_path, geotiff).items():
        try:
            status = example.main(argv + ["--no-progress"])
        except SystemExit as exit:  # argparse's own errors
            status = exit.code
        err = capsys.readouterr().err
        assert status == 2, name
        assert len(err.strip().splitlines()) == 1 and named in err, (name, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.tif", "notes.tif"], name


def test_bad_argument_exit_2_by_command_line(example, geotiff, tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), str(geotiff), str(tmp_path / "out.tif"), "--overlap", "300"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "--overlap" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_help(example, capsys):
    with pytest.raises(SystemExit) as exit:
        example.main(["--help"])
    assert exit.value.code == 0 and "--probabilities" in capsys.readouterr().out


def test_make_samples(tmp_path):
    """The README's sample inputs: a GeoTIFF GDAL places in UTM 33N, a slide with three levels."""
    rasterio = pytest.importorskip("rasterio")
    tifffile = pytest.importorskip("tifffile")
    run = subprocess.run([sys.executable, str(SAMPLES), str(tmp_path / "samples"), "--size", "96"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stderr
    with rasterio.open(tmp_path / "samples" / "scene.tif") as dataset:
        assert dataset.crs.to_epsg() == 32633 and dataset.shape == (96, 96) and dataset.count == 3
        assert tuple(dataset.transform)[:6] == (10, 0, 500_000, 0, -10, 4_600_000)
        scene = dataset.read().transpose(1, 2, 0)
    with tifffile.TiffFile(tmp_path / "samples" / "slide.ome.tif") as tiff:
        assert tiff.is_ome and [level.shape for level in tiff.series[0].levels] == [(96, 96, 3), (48, 48, 3),
                                                                                      (24, 24, 3)]
        np.testing.assert_array_equal(tiff.series[0].levels[0].asarray(), scene)
    with sf.io.ImageReader(tmp_path / "samples" / "slide.ome.tif") as reader:
        assert reader.metadata["resolution"] == (40_000, 40_000)  # 0.25 micrometres per pixel, per centimetre


def test_without_torch(tmp_path):
    """Where torch cannot be imported, the script says so in one line (exit 2) and make_samples.py still works."""
    hide_torch = "import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", hide_torch + "runpy.run_path(sys.argv[0], run_name='__main__')",
                          str(SCRIPT), "in.tif", "out.tif"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [
        "unet_segment.py: error: this example needs PyTorch: pip install torch==2.13.0 (the CPU build; see "
        "examples/README.md)"]
    run = subprocess.run([sys.executable, "-c", hide_torch + "runpy.run_path(sys.argv[0], run_name='__main__')",
                          str(SAMPLES), str(tmp_path), "--size", "32"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "slide.ome.tif"]


def test_the_library_does_not_import_torch(tmp_path):
    """torch is the example's, not the library's: a whole pipeline with TIFF in and out loads no torch."""
    code = ("import sys, numpy as np, seamless_fast as sf\n"
            "from seamless_fast.io import ImageReader, TiffWriter, metadata_for_output\n"
            "import seamless_fast.cli, seamless_fast.jobs, seamless_fast.demo\n"
            "plan, _ = sf.plan_regular_grid((40, 30), 16, 4)\n"
            "with ImageReader(np.zeros((40, 30, 2), np.uint8)) as reader, "
            f"TiffWriter({str(tmp_path / 'o.tif')!r}, (40, 30), **metadata_for_output(reader)) as writer:\n"
            "    sf.run_pipeline(plan, reader.read, lambda b: b, lambda cells: [writer.write(c.box, c.data) "
            "for c in cells], labels=True)\n"
            "print('torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_geotiff_keeps_crs_and_transform_and_writes_overviews(example, tmp_path):
    """A scene taller than one TIFF tile (256): its labels get GDAL overviews, and GDAL's CRS and transform."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    scene = tmp_path / "tall.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=100, height=520, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, 500_000, 0, -10, 4_600_000), tiled=True,
                       blockxsize=64, blockysize=64) as dataset:
        dataset.write(_scene(520, 100).transpose(2, 0, 1))
    out = tmp_path / "labels.tif"
    assert example.main([str(scene), str(out), *SMALL, "--pyramid"]) == 0
    with rasterio.open(scene) as source, rasterio.open(out) as result:
        assert result.crs == source.crs and result.transform == source.transform
        assert result.overviews(1) == [2, 4] and result.nodata is None
        labels = result.read(1)
    _, blended = reference(example, scene)
    np.testing.assert_array_equal(labels, blended)
