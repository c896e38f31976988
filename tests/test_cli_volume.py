"""``seamless-fast segment`` on volumes, run as a subprocess: zarr, NIfTI and TIFF stacks in and out, equal to the
library's run of the same plan, the NIfTI affine carried, bad options refused with exit 2 and one line."""

import os
import textwrap

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")

import seamless_fast as sf  # noqa: E402
from seamless_fast.io import VolumeReader  # noqa: E402

from test_cli import cli  # noqa: E402

MODEL = textwrap.dedent('''
    import numpy as np

    def segmenter(batch):
        """Three classes from the first channel, relative to the tile's mean: a model whose output depends on
        the tile it sees, so the blend shows."""
        batch = np.asarray(batch, dtype=np.float32)
        first = batch[:, :1]
        centred = first - first.mean(axis=(2, 3, 4), keepdims=True)
        return np.concatenate([centred, -centred, np.full_like(centred, 0.1)], axis=1)

    def probabilities(batch):
        """Softmax of segmenter: values in [0, 1]."""
        logits = segmenter(batch)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def flat(batch):
        return np.zeros(batch.shape[:1] + (2,) + batch.shape[2:4], np.float32)
''')

SHAPE = (37, 45, 52)
TILE, OVERLAP = (16, 24, 24), (4, 8, 6)


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "toyvolumes.py").write_text(MODEL)
    volume = np.random.default_rng(3).random(SHAPE).astype(np.float32)
    return tmp_path, volume


def library_run(volume, model, *, labels, window="pyramid"):
    """The same plan blended in-process from the model's output on every tile (channel-first, as the CLI)."""
    plan, _ = sf.plan_regular_grid(SHAPE, TILE, OVERLAP, window=window)
    with VolumeReader(volume[..., None], pad="reflect") as reader:
        tiles = [model(np.moveaxis(reader.read(tuple(box)), -1, 0)[None])[0] for box in plan.read_boxes().tolist()]
    return sf.blend(plan, tiles, labels=labels, channel_first=True)


def toy(name, path):
    namespace = {}
    exec(compile((path / "toyvolumes.py").read_text(), "toyvolumes.py", "exec"), namespace)
    return namespace[name]


def tile_args():
    return ["--tile", ",".join(map(str, TILE)), "--overlap", ",".join(map(str, OVERLAP)), "--no-progress"]


def test_zarr_labels_equal_the_library(workdir):
    path, volume = workdir
    zarr.save_array(str(path / "ct.zarr"), volume)
    run = cli("segment", "ct.zarr", "labels.zarr", "--model", "toyvolumes:segmenter", *tile_args(), cwd=path)
    assert run.returncode == 0, run.stderr
    with VolumeReader(path / "labels.zarr") as reader:  # an OME-Zarr image: its level 0
        written = reader.read((0, 0, 0) + SHAPE)[..., 0]
    expected = library_run(volume, toy("segmenter", path), labels=True)
    assert written.dtype == np.uint8 and written.shape == SHAPE
    np.testing.assert_array_equal(written, expected)


def test_nifti_probabilities_carry_the_affine(workdir):
    nibabel = pytest.importorskip("nibabel")
    path, volume = workdir
    affine = np.array([[0.0, 0.0, 1.5, -20.0], [0.0, 0.8, 0.0, 5.0], [2.0, 0.0, 0.0, 7.5], [0, 0, 0, 1]])
    # NIfTI keeps (x, y, z): the volume's (z, y, x) axes reversed
    nibabel.save(nibabel.Nifti1Image(volume.transpose(2, 1, 0), affine), str(path / "mri.nii.gz"))
    run = cli("segment", "mri.nii.gz", "probs.nii.gz", "--probabilities", "--model", "toyvolumes:probabilities",
              *tile_args(), cwd=path)
    assert run.returncode == 0, run.stderr
    image = nibabel.load(str(path / "probs.nii.gz"))
    np.testing.assert_allclose(image.affine, affine)
    with VolumeReader(path / "probs.nii.gz") as reader:
        written = reader.read((0, 0, 0) + SHAPE)
    expected = library_run(volume, toy("probabilities", path), labels=False)
    np.testing.assert_array_equal(written, np.moveaxis(expected, 0, -1).astype(np.float32))


def test_tiff_stack_in_and_out(workdir):
    path, volume = workdir
    tifffile.imwrite(path / "stack.tif", volume, imagej=True, metadata={"axes": "ZYX"})
    run = cli("segment", "stack.tif", "labels.tif", "--model", "toyvolumes:segmenter", "--window", "gaussian",
              *tile_args(), cwd=path)
    assert run.returncode == 0, run.stderr
    with VolumeReader(path / "labels.tif") as reader:
        written = reader.read((0, 0, 0) + SHAPE)[..., 0]
    np.testing.assert_array_equal(written, library_run(volume, toy("segmenter", path), labels=True,
                                                       window="gaussian"))


@pytest.mark.parametrize("extra, message", [
    (["--tile", "16,24"], "--tile 16,24 gives 2 sizes"),
    (["--overlap", "16,8,8"], "--overlap 16 must be smaller than --tile 16"),
    (["--area", "POLYGON ((0 0, 10 0, 10 10, 0 0))"], "--area (a 2-D polygon) applies to 2-D images"),
    (["--model", "toyvolumes:flat"], "--model returned shape (1, 2, 16, 24)"),
])
def test_bad_options_exit_2_with_one_line(workdir, extra, message):
    path, volume = workdir
    zarr.save_array(str(path / "ct.zarr"), volume)
    args = ["segment", "ct.zarr", "out.zarr", "--model", "toyvolumes:segmenter", *tile_args(), *extra]
    run = cli(*args, cwd=path)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not os.path.exists(path / "out.zarr")


def test_unknown_output_extension_is_refused(workdir):
    path, volume = workdir
    zarr.save_array(str(path / "ct.zarr"), volume)
    run = cli("segment", "ct.zarr", "out.png", "--model", "toyvolumes:segmenter", *tile_args(), cwd=path)
    assert run.returncode == 2 and "unknown extension for a volume" in run.stderr, run.stderr


def test_plan_of_a_volume_size_and_file(workdir):
    import json

    path, volume = workdir
    run = cli("plan", "256x384x384", "--tile", "128", "--overlap", "32", "--channels", "16", "--json")
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    plan, _ = sf.plan_regular_grid((256, 384, 384), 128, 32)
    assert figures["grid"] == list(plan.grid_shape) == [3, 4, 4] and figures["tiles"] == plan.n_loads
    assert figures["slab_depth"] == plan.slab_depth == 96  # the flush layer [128, 256) reaches 96 into [96, 224)
    assert figures["buffer_bytes"] == sf.analyse_plan(plan, channels=16).buffer_bytes
    zarr.save_array(str(path / "ct.zarr"), volume)
    run = cli("plan", "ct.zarr", "--tile", ",".join(map(str, TILE)), "--overlap", ",".join(map(str, OVERLAP)),
              cwd=path)
    assert run.returncode == 0 and run.stdout.startswith(f"volume {' x '.join(map(str, SHAPE))}"), run.stderr


def test_an_image_takes_one_tile_size(tmp_path):
    run = cli("plan", "4000x3000", "--tile", "256,256")
    assert run.returncode == 2 and "a 2-D image takes one" in run.stderr, run.stderr


def test_a_body_mask_segments_only_the_cells_it_meets(workdir):
    path, volume = workdir
    zarr.save_array(str(path / "ct.zarr"), volume)
    mask = np.zeros((5, 6, 7), bool)
    mask[1:3, 2:5, 3:6] = True  # a "body" at a seventh of the resolution
    np.save(path / "body.npy", mask)
    run = cli("segment", "ct.zarr", "labels.zarr", "--model", "toyvolumes:segmenter", "--mask", "body.npy",
              *tile_args(), cwd=path)
    assert run.returncode == 0, run.stderr
    with VolumeReader(path / "labels.zarr") as reader:
        written = reader.read((0, 0, 0) + SHAPE)[..., 0]
    masked, _ = sf.plan_regular_grid(SHAPE, TILE, OVERLAP, mask=mask)
    inside = np.zeros(SHAPE, bool)
    for c in masked.cell_boxes[masked.write_cells]:
        inside[c[0]:c[3], c[1]:c[4], c[2]:c[5]] = True
    assert 0 < inside.sum() < inside.size
    expected = library_run(volume, toy("segmenter", path), labels=True)
    np.testing.assert_array_equal(written[inside], expected[inside])
    assert (written[~inside] == 0).all()


@pytest.mark.parametrize("mask, message", [
    (np.zeros((5, 6, 7), bool), "has no nonzero voxel"),
    (np.ones((50, 6, 7), bool), "expected a volume of at most the input's"),
    (np.ones((6, 7), bool), "expected a volume of at most the input's"),
])
def test_bad_volume_masks_exit_2(workdir, mask, message):
    path, volume = workdir
    zarr.save_array(str(path / "ct.zarr"), volume)
    np.save(path / "body.npy", mask)
    run = cli("segment", "ct.zarr", "out.zarr", "--model", "toyvolumes:segmenter", "--mask", "body.npy",
              *tile_args(), cwd=path)
    assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not os.path.exists(path / "out.zarr")
