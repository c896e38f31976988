"""A PartStore of a volume job: parts in any order, run twice, killed midway, damaged; the merge equals one
process bit for bit, in every volume format, or refuses with one line before any output is written."""

import json
import os

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import seamless_fast as sf  # noqa: E402
from seamless_fast.dtypes import to_output_dtype  # noqa: E402
from seamless_fast.io import VolumeReader  # noqa: E402
from seamless_fast.scale.store import Job, PartStore  # noqa: E402

SIZE, TILE, OVERLAP = (30, 21, 17), (8, 12, 10), (2, 4, 3)
VOLUME = np.random.default_rng(4).random(SIZE + (2,), np.float32)


def read_tile(box):
    with VolumeReader(VOLUME, pad="reflect") as reader:
        return reader.read(box)


def model(batch):
    """(B, 3, d, h, w) from (B, 2, d, h, w): depends on the tile, so that the blend shows."""
    batch = np.asarray(batch, np.float32)
    first = batch[:, :1] - batch[:, :1].mean(axis=(2, 3, 4), keepdims=True)
    return np.concatenate([first, -first, batch[:, 1:2]], axis=1)


def single(labels, dtype):
    plan, _ = sf.plan_regular_grid(SIZE, TILE, OVERLAP)
    tiles = (model(np.moveaxis(read_tile(box), -1, 0)[None])[0] for box in plan.read_boxes().tolist())
    values = sf.blend(plan, tiles, labels=labels, channel_first=True)
    return to_output_dtype(values if labels else np.moveaxis(values, 0, -1), dtype)


def read_volume(path):
    with VolumeReader(str(path)) as reader:
        data = reader.read((0, 0, 0) + SIZE)
    return data[..., 0] if data.shape[-1] == 1 and data.dtype.kind == "u" else data


@pytest.mark.parametrize("labels, output, dtype", [(True, "out.zarr", "uint8"), (False, "out.nii.gz", "float32"),
                                                   (False, "out.tif", "float32"), (True, "out.nii", "uint16")])
def test_parts_in_any_order_merge_exactly(tmp_path, labels, output, dtype):
    job = Job.from_options(SIZE, TILE, OVERLAP, parts=3, labels=labels)
    store = PartStore(tmp_path / "s.zarr", job)
    results = [store.run_part(q, read_tile, model, batch_size=3) for q in (2, 0, 1)]
    assert sorted(r.part for r in results) == [0, 1, 2]
    assert sum(r.tiles for r in results) == sf.plan_regular_grid(SIZE, TILE, OVERLAP)[0].n_loads
    assert all(r.seam_bytes > 0 for r in results)
    store.merge(tmp_path / output, dtype=dtype)
    np.testing.assert_array_equal(read_volume(tmp_path / output), single(labels, np.dtype(dtype)))


def test_a_part_run_twice_is_not_run_again_and_a_killed_one_is(tmp_path):
    store = PartStore(tmp_path / "s.zarr", Job.from_options(SIZE, TILE, OVERLAP, parts=2))
    first = store.run_part(0, read_tile, model)
    assert store.run_part(0, read_tile, lambda batch: 1 / 0) == first  # complete: not run again
    calls = []

    def dies(batch):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("killed")
        return model(batch)

    with pytest.raises(RuntimeError, match="killed"):
        store.run_part(1, read_tile, dies, batch_size=1)
    assert store.missing_parts() == [1]
    with pytest.raises(ValueError, match=r"parts \[1\] of 2 are not complete"):
        store.merge(tmp_path / "out.zarr")
    assert not os.path.exists(tmp_path / "out.zarr")
    store.run_part(1, read_tile, model)
    store.merge(tmp_path / "out.zarr", dtype="float32")
    np.testing.assert_array_equal(read_volume(tmp_path / "out.zarr"), single(False, np.dtype("float32")))


@pytest.fixture()
def complete(tmp_path):
    store = PartStore(tmp_path / "s.zarr", Job.from_options(SIZE, TILE, OVERLAP, parts=3, labels=True))
    for q in range(3):
        store.run_part(q, read_tile, model)
    return store


def first_chunk(folder):
    chunk = next((folder / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    return chunk


@pytest.mark.parametrize("array", ["voxels", "crop", "lead"])
def test_a_tampered_or_missing_chunk_is_refused_with_one_line(tmp_path, complete, array):
    part = {"voxels": 1, "crop": 1, "lead": 0}[array]
    chunk = first_chunk(tmp_path / "s.zarr" / f"part{part}" / array)
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"part {part}: array {array} chunk .* was changed") as error:
        complete.merge(tmp_path / "out.zarr")
    assert "\n" not in str(error.value) and not os.path.exists(tmp_path / "out.zarr")
    os.remove(chunk)
    with pytest.raises(ValueError, match=rf"part {part}: array {array} chunk .* is missing"):
        complete.merge(tmp_path / "out.zarr")
    assert complete.parts_to_run() == [part]
    complete.run_part(part, read_tile, model)  # damaged: run again
    complete.merge(tmp_path / "out.zarr")
    np.testing.assert_array_equal(read_volume(tmp_path / "out.zarr"), single(True, np.dtype("uint8")))


def test_an_edited_record_or_job_is_refused(tmp_path, complete):
    meta_path = tmp_path / "s.zarr" / "part2" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["complete"]["metadata"] = {"spacing": [9, 9, 9]}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="part 2: its completion record was changed"):
        complete.merge(tmp_path / "out.zarr")
    with pytest.raises(ValueError, match="belongs to another job: parts=3"):
        PartStore(tmp_path / "s.zarr", Job.from_options(SIZE, TILE, OVERLAP, parts=2, labels=True))


def test_the_merge_carries_the_recorded_spacing_and_affine(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    affine = np.diag([0.5, 0.75, 2.0, 1.0])
    affine[:3, 3] = [1, 2, 3]
    nibabel.save(nibabel.Nifti1Image(np.moveaxis(VOLUME[..., 0], [0, 2], [2, 0]), affine), tmp_path / "in.nii.gz")
    from seamless_fast.scale._volume_store import source_metadata

    with VolumeReader(str(tmp_path / "in.nii.gz")) as reader:
        store = PartStore(tmp_path / "s.zarr", Job.from_options(reader.shape, TILE, OVERLAP, parts=2))
        for q in range(2):
            store.run_part(q, reader.read, model, metadata=source_metadata(reader))
    store.merge(tmp_path / "out.nii.gz")
    store.merge(tmp_path / "out.zarr")
    np.testing.assert_allclose(nibabel.load(tmp_path / "out.nii.gz").affine, affine)
    with VolumeReader(str(tmp_path / "out.zarr")) as reader:
        assert reader.spacing == (2.0, 0.75, 0.5)


def test_volume_jobs_round_trip_and_two_d_jobs_keep_their_json():
    job = Job.from_options(SIZE, TILE, OVERLAP, parts=2, context=(1, 2, 2))
    assert job.volume and Job.from_json(job.to_json()) == job and job.to_json()["context"] == [1, 2, 2]
    plain = Job.from_options(SIZE, 8, 2, parts=2)
    assert "context" not in plain.to_json() and "output_scale" not in plain.to_json()
    image = Job.from_options((60, 50), 32, 8, parts=2)
    assert set(image.to_json()) == {"image_size", "tile_size", "overlap", "parts", "window", "area", "labels",
                                    "channel_first", "chunk"} and not image.volume


@pytest.mark.parametrize("options, message", [
    (dict(parts=2, area="POLYGON ((0 0, 1 0, 1 1, 0 0))"), "area applies to 2-D images"),
    (dict(parts=2, output_scale=2), "output_scale=2 applies to 2-D images"),
    (dict(parts=2, window="triangle"), "window='triangle'"),
    (dict(parts=99), "parts=99 is more than the 5 slabs"),
])
def test_bad_volume_jobs_are_refused_with_one_line(options, message):
    with pytest.raises(ValueError, match=message) as error:
        Job.from_options(SIZE, TILE, OVERLAP, **options)
    assert "\n" not in str(error.value)


def test_a_bad_output_is_refused_before_it_is_opened(tmp_path, complete):
    with pytest.raises(ValueError, match=r"expected a .zarr, .nii, .nii.gz, .tif or .tiff name for a volume"):
        complete.merge(tmp_path / "out.png")
    with pytest.raises(ValueError, match="dtype=float16 is no NIfTI data type"):
        _probabilities_store(tmp_path).merge(tmp_path / "out.nii", dtype="float16")
    assert not os.path.exists(tmp_path / "out.nii")
    with pytest.raises(ValueError, match="which are not probabilities in"):  # found while writing: nothing is left
        _probabilities_store(tmp_path).merge(tmp_path / "out.tif", dtype="uint16")
    assert sorted(os.listdir(tmp_path)) == ["p.zarr", "s.zarr"]


def _probabilities_store(tmp_path):
    store = PartStore(tmp_path / "p.zarr", Job.from_options(SIZE, TILE, OVERLAP, parts=2))
    for q in range(2):
        store.run_part(q, read_tile, model)
    return store


def test_the_profiling_script_times_parts_and_merge():
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling", "volume_parts.py")
    out = subprocess.run([sys.executable, script, "--size", "20", "24", "24", "--tile", "8", "12", "12", "--overlap",
                          "2", "4", "4", "--channels", "2", "--parts", "2", "--rounds", "1", "--labels"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("20 x 24 x 24") and lines[1].startswith("seam MiB per part")
    assert lines[-1].startswith("median: single") and float(lines[-1].split()[-1]) > 0


@pytest.mark.parametrize("metadata, message", [
    ([1, 2], "expected a dict of spacing, unit and affine"),
    ({"spacing": [1, 0, 1]}, "metadata spacing=.*three positive numbers"),
    ({"unit": "parsec"}, "metadata unit='parsec' is not a length unit"),
    ({"affine": np.eye(3)}, "metadata affine is not a finite 4x4 matrix"),
    ({"origin": 1}, "expected a dict of spacing, unit and affine"),
])
def test_bad_metadata_is_refused_before_the_part_runs(tmp_path, metadata, message):
    store = PartStore(tmp_path / "s.zarr", Job.from_options(SIZE, TILE, OVERLAP, parts=2))
    with pytest.raises(ValueError, match=message) as error:
        store.run_part(0, read_tile, lambda batch: 1 / 0, metadata=metadata)
    assert "\n" not in str(error.value) and store.missing_parts() == [0, 1]
    image = PartStore(tmp_path / "i.zarr", Job.from_options((60, 50), 32, 8, parts=2))
    with pytest.raises(ValueError, match="metadata= is recorded for a volume job only"):
        image.run_part(0, lambda box: np.zeros((32, 32, 1)), lambda batch: batch, metadata={})
