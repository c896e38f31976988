"""``seamless-fast segment VOLUME --part K/N --store DIR`` and ``seamless-fast merge``, run as subprocesses: equal to
the single-process ``segment`` bit for bit (zarr and NIfTI in and out, the affine carried), bad options exit 2
with one line."""

import os

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("tifffile")

from seamless_fast.io import VolumeReader  # noqa: E402

from test_cli import cli  # noqa: E402
from test_cli_volume import MODEL  # noqa: E402

SHAPE = (37, 45, 52)
TILING = ("--tile", "16,24,24", "--overlap", "4,8,6", "--no-progress")


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "toyvolumes.py").write_text(MODEL)
    zarr.save_array(str(tmp_path / "ct.zarr"), np.random.default_rng(3).random(SHAPE).astype(np.float32))
    return tmp_path


def ok(run):
    assert run.returncode == 0, run.stderr
    return run


def read(path):
    with VolumeReader(str(path)) as reader:
        return reader.read((0, 0, 0) + tuple(reader.shape))


def test_parts_and_merge_equal_segment_on_a_zarr_volume(workdir):
    model = ("--model", "toyvolumes:segmenter")
    for part in ("1/2", "0/2"):
        run = ok(cli("segment", "ct.zarr", "--part", part, "--store", "s.zarr", *model, *TILING, cwd=workdir))
        assert "MiB of voxels" in run.stderr
    assert "already complete" in ok(cli("segment", "ct.zarr", "--part", "0/2", "--store", "s.zarr", *model,
                                        *TILING, cwd=workdir)).stderr
    ok(cli("merge", "--store", "s.zarr", "merged.zarr", cwd=workdir))
    ok(cli("segment", "ct.zarr", "single.zarr", *model, *TILING, cwd=workdir))
    merged, single = read(workdir / "merged.zarr"), read(workdir / "single.zarr")
    assert merged.dtype == np.uint8 and np.array_equal(merged, single)


def test_parts_and_merge_equal_segment_on_a_nifti_volume_with_its_affine(workdir):
    nibabel = pytest.importorskip("nibabel")
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    data = np.random.default_rng(1).random(SHAPE[::-1]).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, affine), workdir / "ct.nii.gz")
    options = ("--model", "toyvolumes:probabilities", "--probabilities", *TILING)
    for part in ("2/3", "0/3", "1/3"):
        ok(cli("segment", "ct.nii.gz", "--part", part, "--store", "s.zarr", *options, cwd=workdir))
    ok(cli("merge", "--store", "s.zarr", "merged.nii.gz", cwd=workdir))
    ok(cli("merge", "--store", "s.zarr", "merged.tif", "--dtype", "uint16", cwd=workdir))
    ok(cli("segment", "ct.nii.gz", "single.nii.gz", *options, cwd=workdir))
    ok(cli("segment", "ct.nii.gz", "single.tif", "--dtype", "uint16", *options, cwd=workdir))
    merged, single = nibabel.load(workdir / "merged.nii.gz"), nibabel.load(workdir / "single.nii.gz")
    assert np.array_equal(np.asanyarray(merged.dataobj), np.asanyarray(single.dataobj))
    np.testing.assert_allclose(merged.affine, affine, rtol=1e-6)
    assert np.array_equal(read(workdir / "merged.tif"), read(workdir / "single.tif"))


@pytest.mark.parametrize("args, message", [
    (["--part", "0/2"], "--part needs --store DIR"),
    (["--store", "s.zarr"], "--store goes with --part K/N"),
    (["out.zarr", "--part", "0/2", "--store", "s.zarr"], "a --part run writes to --store"),
    (["--part", "0/2", "--store", "s.zarr", "--dtype", "uint8"], "--dtype is chosen at `seamless-fast merge`"),
    (["--part", "0/2", "--store", "s.zarr", "--mask", "m.npy"], "--mask goes with a whole run"),
    (["--part", "0/9", "--store", "s.zarr"], "parts=9 is more than the 3 slabs of tile layers"),
    (["--part", "0/2", "--store", "ct.zarr"], "--store"),
    (["--part", "0/2", "--store", "s.zarr", "--area", "POLYGON ((0 0, 9 0, 9 9, 0 0))"],
     "--area (a 2-D polygon) applies to 2-D images"),
])
def test_bad_part_options_exit_2_with_one_line(workdir, args, message):
    np.save(workdir / "m.npy", np.ones((4, 4, 4), bool))
    run = cli("segment", "ct.zarr", *args, "--model", "toyvolumes:segmenter", *TILING, cwd=workdir)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not os.path.exists(workdir / "s.zarr")


def test_bad_merges_exit_2_with_one_line(workdir):
    from seamless_fast.scale.store import Job, PartStore

    model = ("--model", "toyvolumes:segmenter")
    ok(cli("segment", "ct.zarr", "--part", "0/2", "--store", "s.zarr", *model, *TILING, cwd=workdir))
    PartStore(workdir / "image.zarr", Job.from_options((60, 50), 32, 8, parts=1))
    for args, message in [(["--store", "s.zarr", "out.zarr"], "parts [1] of 2 are not complete"),
                          (["--store", "image.zarr", "out.nii.gz"], "is a volume format; the store holds a 2-D"),
                          (["--store", "s.zarr", "out.png"], "has an unknown extension")]:
        run = cli("merge", *args, cwd=workdir)
        assert run.returncode == 2 and message in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    other = ("--tile", "16,24,24", "--overlap", "4,8,8", "--no-progress")
    run = cli("segment", "ct.zarr", "--part", "1/2", "--store", "s.zarr", *model, *other, cwd=workdir)
    assert run.returncode == 2 and "belongs to another job: overlap=" in run.stderr, run.stderr
    assert not os.path.exists(workdir / "out.zarr")
