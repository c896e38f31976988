"""ZarrWriter and NiftiWriter: every voxel once in any order, read back by zarr and nibabel; missing voxels, aborts
and a full disk leave nothing under the final name; spacing and affine survive read -> write -> read."""

import errno
import os
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seamless_fast.io import NiftiWriter, VolumeReader, ZarrWriter, volume_writer

zarr = pytest.importorskip("zarr")


def cells(shape, rng, pieces=(3, 3, 3)):
    """Boxes of a random rectilinear grid over `shape`, in emission order (z-layer, row, column)."""
    cuts = []
    for n, k in zip(shape, pieces):
        inner = sorted(rng.choice(np.arange(1, n), size=min(k - 1, n - 1), replace=False).tolist())
        cuts.append([0] + inner + [n])
    out = []
    for i in range(len(cuts[0]) - 1):
        for j in range(len(cuts[1]) - 1):
            for k in range(len(cuts[2]) - 1):
                out.append((cuts[0][i], cuts[1][j], cuts[2][k], cuts[0][i + 1], cuts[1][j + 1], cuts[2][k + 1]))
    return out


def window(volume, box):
    return volume[box[0]:box[3], box[1]:box[4], box[2]:box[5]]


def write_all(writer, volume, boxes):
    for box in boxes:
        writer.write(box, window(volume, box))


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if ".partial-" in name)


def volume_for(shape, channels, dtype, rng):
    if channels is None:
        return rng.integers(0, 7, shape).astype(dtype)
    return rng.random(shape + (channels,)).astype(dtype)


@pytest.mark.parametrize("ome", [True, False])
@pytest.mark.parametrize("channels, dtype", [(None, np.uint8), (3, np.float32), (2, np.float16)])
@pytest.mark.parametrize("seed", [0, 1])
def test_zarr_round_trip_any_order(tmp_path, ome, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (7, 11, 13)
    volume = volume_for(shape, channels, dtype, rng)
    boxes = cells(shape, rng)
    if seed:
        rng.shuffle(boxes)
    path = str(tmp_path / "out.zarr")
    with ZarrWriter(path, shape, channels=channels, dtype=dtype, chunks=(3, 4, 5), ome=ome) as writer:
        write_all(writer, volume, boxes)
    stored = zarr.open(path, mode="r")
    array = stored["0"] if ome else stored
    expected = volume if channels is None else np.moveaxis(volume, -1, 0)
    np.testing.assert_array_equal(np.asarray(array[:]), expected)
    assert array.chunks == ((channels,) if channels else ()) + (3, 4, 5)
    with VolumeReader(path) as reader:
        full = volume.reshape(shape + (-1,))
        np.testing.assert_array_equal(reader.read((-1, 0, 0, 8, 11, 13)), np.pad(full, [(1, 1)] + [(0, 0)] * 3))
    assert leftovers(tmp_path) == []


def test_ome_zarr_metadata_is_ngff_05(tmp_path):
    path = str(tmp_path / "probs.zarr")
    with ZarrWriter(path, (2, 3, 4), channels=2, dtype="float32", spacing=(2.0, 0.5, 0.25),
                    translation=(1.0, 0.0, -3.0)) as writer:
        writer.write((0, 0, 0, 2, 3, 4), np.zeros((2, 3, 4, 2), np.float32))
    ome = dict(zarr.open_group(path, mode="r").attrs)["ome"]
    assert ome["version"] == "0.5"
    image = ome["multiscales"][0]
    assert [(a["name"], a["type"]) for a in image["axes"]] == [("c", "channel"), ("z", "space"), ("y", "space"),
                                                              ("x", "space")]
    assert image["datasets"][0]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 2.0, 0.5, 0.25]}, {"type": "translation", "translation": [0.0, 1.0, 0.0, -3.0]}]
    with VolumeReader(path) as reader:
        assert reader.spacing == (2.0, 0.5, 0.25) and reader.channels == 2
        np.testing.assert_array_equal(reader.affine[:3, 3], [1.0, 0.0, -3.0])


def test_zarr_spacing_survives_read_write_read(tmp_path):
    source = str(tmp_path / "in.zarr")
    with ZarrWriter(source, (4, 5, 6), dtype="uint16", spacing=(3.0, 0.7, 0.7), translation=(5.0, 1.0, 2.0),
                    unit="nm") as w:
        w.write((0, 0, 0, 4, 5, 6), np.arange(120, dtype=np.uint16).reshape(4, 5, 6))
    out = str(tmp_path / "out.zarr")
    with VolumeReader(source) as reader, ZarrWriter(out, reader.shape, dtype="uint16", source=reader) as writer:
        writer.write((0, 0, 0, 4, 5, 6), reader.read((0, 0, 0, 4, 5, 6))[..., 0])
        spacing, affine = reader.spacing, reader.affine
    with VolumeReader(out) as again:
        assert again.spacing == spacing and again.unit == "nanometer"
        np.testing.assert_array_equal(again.affine, affine)


def test_emission_order_holds_one_chunk_layer(tmp_path):
    shape, chunk = (16, 40, 48), (4, 8, 8)
    rng = np.random.default_rng(3)
    volume = rng.random(shape + (2,)).astype(np.float32)
    boxes = [(z, y, x, z + 4, y + 8, x + 8) for z in range(0, 16, 4) for y in range(0, 40, 8) for x in range(0, 48, 8)]
    with ZarrWriter(str(tmp_path / "a.zarr"), shape, channels=2, dtype="float32", chunks=chunk) as writer:
        for box in boxes:
            writer.write(box, window(volume, box))
            assert writer.held_bytes == 0  # cells aligned to the chunks: each completes one chunk
    misaligned = [(z, y, x, min(z + 6, 16), min(y + 10, 40), min(x + 12, 48))
                  for z in range(0, 16, 6) for y in range(0, 40, 10) for x in range(0, 48, 12)]
    with ZarrWriter(str(tmp_path / "b.zarr"), shape, channels=2, dtype="float32", chunks=chunk) as writer:
        write_all(writer, volume, misaligned)
        chunk_bytes = np.prod(chunk) * (2 * 4 + 1)
        layer = (40 // 8) * (48 // 8) * chunk_bytes
        # cells 6 deep over chunks 4 deep: at most the two chunk layers a cell layer meets
        assert 0 < writer.peak_held_bytes <= 2 * layer
    with VolumeReader(str(tmp_path / "b.zarr")) as reader:
        np.testing.assert_array_equal(reader.read((0, 0, 0) + shape), volume)


@pytest.mark.parametrize("suffix", [".zarr", ".nii", ".nii.gz", ".tif"])
def test_missing_voxels_abort_and_double_writes(tmp_path, suffix):
    if suffix.startswith(".nii"):
        pytest.importorskip("nibabel")
    path = str(tmp_path / f"out{suffix}")
    writer = volume_writer(path, (3, 4, 5), dtype="uint8")
    writer.write((0, 0, 0, 2, 4, 5), np.ones((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"^box=.*writes voxels already written"):
        writer.write((1, 1, 1, 3, 2, 2), np.ones((2, 1, 1), np.uint8))
    with pytest.raises(ValueError, match=r"^data holds values from 300 to 300; uint8 holds 0 to 255"):
        writer.write((2, 0, 0, 3, 4, 5), np.full((1, 4, 5), 300))
    with pytest.raises(ValueError, match=r"^data has shape \(1, 4, 4\); expected \(1, 4, 5\)"):
        writer.write((2, 0, 0, 3, 4, 5), np.ones((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"^box=.*reaches outside the volume"):
        writer.write((2, 0, 0, 4, 4, 5), np.ones((2, 4, 5), np.uint8))
    writer.write((2, 0, 0, 3, 4, 4), np.ones((1, 4, 4), np.uint8))  # still usable; 4 voxels stay missing
    with pytest.raises(ValueError, match=r": 4 of 60 voxels were never written; no file was made"):
        writer.close()
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="inside"):
        with volume_writer(path, (3, 4, 5), dtype="uint8") as writer:
            writer.write((0, 0, 0, 3, 4, 5), np.ones((3, 4, 5), np.uint8))
            raise RuntimeError("a failure inside the run")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".zarr", ".nii", ".nii.gz", ".tif"])
def test_full_disk_keeps_the_earlier_output_and_leaves_no_partial(tmp_path, monkeypatch, suffix):
    if suffix.startswith(".nii"):
        pytest.importorskip("nibabel")
    path = str(tmp_path / f"out{suffix}")
    shape = (6, 5, 4)
    old = np.full(shape + (2,), 0.25, np.float32)
    with volume_writer(path, shape, channels=2, dtype="float32") as writer:
        writer.write((0, 0, 0) + shape, old)
    if suffix == ".zarr":
        store = zarr.storage.LocalStore
        real, calls = store.set, []

        async def full_disk(self, key, value, *args, **kwargs):
            if "/c/" in "/" + key:
                calls.append(key)
                if len(calls) > 2:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return await real(self, key, value, *args, **kwargs)

        monkeypatch.setattr(store, "set", full_disk)
    elif suffix == ".tif":
        import tifffile

        real_write, room = tifffile.FileHandle.write, [1000]

        def full_disk(self, data):
            room[0] -= len(data)
            if room[0] < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(self, data)

        monkeypatch.setattr(tifffile.FileHandle, "write", full_disk)
    else:
        from seamless_fast.io import _nifti

        real_open = _nifti._open_output

        class FullDisk:
            def __init__(self, handle):
                self.handle, self.room = handle, 600

            def write(self, data):
                if len(data) > self.room:
                    raise OSError(errno.ENOSPC, "No space left on device")
                self.room -= len(data)
                return self.handle.write(data)

            def __getattr__(self, name):
                return getattr(self.handle, name)

        monkeypatch.setattr(_nifti, "_open_output", lambda *args: FullDisk(real_open(*args)))
    new = np.full(shape + (2,), 0.75, np.float32)
    with pytest.raises((OSError, RuntimeError), match="No space left"):  # RuntimeError: from tifffile's thread
        with volume_writer(path, shape, channels=2, dtype="float32", **({"chunks": 2} if suffix == ".zarr" else {})) \
                as writer:
            for z in range(shape[0]):
                writer.write((z, 0, 0, z + 1, 5, 4), new[z:z + 1])
    monkeypatch.undo()
    assert leftovers(tmp_path) == []
    with VolumeReader(path) as reader:
        np.testing.assert_array_equal(reader.read((0, 0, 0) + shape), old)


def test_nifti_short_write_is_an_error(tmp_path, monkeypatch):
    pytest.importorskip("nibabel")
    from seamless_fast.io import _nifti

    class Short:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            return self.handle.write(data[:len(data) // 2]) if len(data) > 400 else self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    real_open = _nifti._open_output
    monkeypatch.setattr(_nifti, "_open_output", lambda *args: Short(real_open(*args)))
    path = str(tmp_path / "short.nii")
    with pytest.raises(OSError, match=r"bytes written"):
        with NiftiWriter(path, (2, 30, 30), dtype="uint8") as writer:
            writer.write((0, 0, 0, 2, 30, 30), np.zeros((2, 30, 30), np.uint8))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("channels, dtype", [(None, np.uint16), (3, np.float32)])
@pytest.mark.parametrize("seed", [0, 1])
def test_nifti_round_trip_any_order(tmp_path, suffix, channels, dtype, seed):
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(seed)
    shape = (6, 9, 8)
    volume = volume_for(shape, channels, dtype, rng)
    boxes = cells(shape, rng)
    if seed:
        rng.shuffle(boxes)
    path = str(tmp_path / f"out{suffix}")
    affine = np.array([[2.0, 0, 0.1, 4], [0, 0.5, 0, -2], [0.2, 0, 0.5, 1], [0, 0, 0, 1]])  # (z, y, x)
    with NiftiWriter(path, shape, channels=channels, dtype=dtype, affine=affine) as writer:
        write_all(writer, volume, boxes)
        if not seed:  # cells in emission order: only the planes of one cell layer are held
            assert writer.peak_held_bytes <= 6 * 9 * 8 * (writer.dtype.itemsize * (channels or 1) + 1)
    image = nibabel.load(path)
    assert image.get_data_dtype() == dtype
    stored = np.asarray(image.dataobj)
    expected = volume.transpose(2, 1, 0) if channels is None else volume.transpose(2, 1, 0, 3)
    np.testing.assert_array_equal(stored, expected)
    with VolumeReader(path) as reader:
        np.testing.assert_allclose(reader.affine, affine)
        np.testing.assert_array_equal(reader.read((0, 0, 0) + shape), volume.reshape(shape + (-1,)))
    assert leftovers(tmp_path) == []


def test_nifti_affine_and_header_survive_read_write_read(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    theta = 0.4
    affine = np.array([[np.cos(theta), 0, np.sin(theta), -30.0], [0, 1.2, 0, 5.0],
                       [-np.sin(theta), 0, np.cos(theta), 2.0], [0, 0, 0, 1]])
    data = np.random.default_rng(5).normal(size=(10, 8, 6)).astype(np.float32)
    image = nibabel.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    source = str(tmp_path / "scan.nii.gz")
    nibabel.save(image, source)
    out = str(tmp_path / "labels.nii.gz")
    with VolumeReader(source) as reader, NiftiWriter(out, reader.shape, dtype="uint8", source=reader) as writer:
        for z in range(reader.shape[0]):
            window = reader.read((z, 0, 0, z + 1) + reader.shape[1:])[..., 0]
            writer.write((z, 0, 0, z + 1) + reader.shape[1:], (window > 0).astype(np.uint8))
    written = nibabel.load(out)
    np.testing.assert_allclose(written.affine, affine)
    assert written.header.get_xyzt_units() == ("mm", "sec")
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    np.testing.assert_array_equal(np.asarray(written.dataobj), (data > 0).astype(np.uint8))
    zarr_out = str(tmp_path / "labels.zarr")  # the spacing goes on to a zarr (its orientation does not)
    with VolumeReader(out) as reader, ZarrWriter(zarr_out, reader.shape, dtype="uint8", source=reader) as writer:
        writer.write((0, 0, 0) + reader.shape, reader.read((0, 0, 0) + reader.shape)[..., 0])
        spacing = reader.spacing
        assert reader.unit == "millimeter"
    with VolumeReader(zarr_out) as reader:
        np.testing.assert_allclose(reader.spacing, spacing)
        assert reader.unit == "millimeter"
        back = str(tmp_path / "back.nii")  # and from the zarr to a NIfTI again: millimetres, the spacing
        with NiftiWriter(back, reader.shape, dtype="uint8", source=reader) as writer:
            writer.write((0, 0, 0) + reader.shape, reader.read((0, 0, 0) + reader.shape)[..., 0])
    assert nibabel.load(back).header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(nibabel.load(back).header.get_zooms(), spacing[::-1])


@pytest.mark.parametrize("call, match", [
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2), dtype="uint8"), r"^shape=\(2, 2\) has 2 items"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype="int8"), r"^dtype='int8' is not supported"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype=None), r"^dtype=None: expected"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype="uint8", chunks=(0, 1, 1)), r"^chunks=\(0, 1, 1\)"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype="uint8", spacing=(1, -1, 1)), r"^spacing=.*positive"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype="uint8", channels=0), r"^channels=0 must be a positive"),
    (lambda p: ZarrWriter(p + "/no/a.zarr", (2, 2, 2), dtype="uint8"), r"^path=.*does not exist"),
    (lambda p: ZarrWriter(p, (2, 2, 2), dtype="uint8"), r"^path=.*is an existing folder"),
    (lambda p: volume_writer(p + "/a.png", (2, 2, 2), dtype="uint8"), r"^path=.*expected a .zarr, .nii"),
    (lambda p: NiftiWriter(p + "/a.nii", (2, 2, 2), dtype="float16"), r"^dtype=float16 is no NIfTI data type"),
    (lambda p: NiftiWriter(p + "/a.img", (2, 2, 2), dtype="uint8"), r"^path=.*expected a .nii or .nii.gz"),
    (lambda p: NiftiWriter(p + "/a.nii", (2, 2, 2), dtype="uint8", compresslevel=0), r"^compresslevel=0"),
    (lambda p: NiftiWriter(p + "/a.nii", (2, 2, 2), dtype="uint8", affine=np.eye(3)), r"^affine=.*not a finite 4x4"),
    (lambda p: NiftiWriter(p + "/a.nii", (2, 2, 2), dtype="uint8", source="x.nii"), r"^source='x.nii' is not a Vol"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype="uint8", source=3), r"^source=3 is not a VolumeReader"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype="uint8", unit="furlong"), r"^unit='furlong' is not a len"),
    (lambda p: ZarrWriter(p + "/a.zarr", (2, 2, 2), dtype="uint8", source=VolumeReader(np.zeros((2, 2, 4)))),
     r"^source has shape \(2, 2, 4\) but the output \(2, 2, 2\)"),
])
def test_bad_writer_arguments_refused(tmp_path, call, match):
    if "NIfTI" in match or ".nii or" in match or "compresslevel" in match or "affine" in match or "x.nii" in match:
        pytest.importorskip("nibabel")
    with pytest.raises(ValueError, match=match) as info:
        call(str(tmp_path))
    assert "\n" not in str(info.value)
    assert leftovers(tmp_path) == []


def test_probabilities_quantised_through_the_dtype_policy(tmp_path):
    path = str(tmp_path / "p.zarr")
    with ZarrWriter(path, (1, 2, 2), channels=1, dtype="uint8") as writer:
        with pytest.raises(ValueError, match="not probabilities"):
            writer.write((0, 0, 0, 1, 2, 2), np.full((1, 2, 2, 1), 1.5))
        writer.write((0, 0, 0, 1, 2, 2), np.array([0.0, 0.5, 1.0, 0.25]).reshape(1, 2, 2, 1))
    with VolumeReader(path) as reader:
        assert reader.read((0, 0, 0, 1, 2, 2)).ravel().tolist() == [0, 128, 255, 64]


@pytest.mark.parametrize("channels, dtype", [(None, np.uint8), (2, np.float32)])
@pytest.mark.parametrize("seed", [0, 1])
def test_tiff_stack_round_trip_any_order(tmp_path, channels, dtype, seed):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(seed)
    shape = (5, 9, 7)
    volume = volume_for(shape, channels, dtype, rng)
    boxes = cells(shape, rng)
    if seed:
        rng.shuffle(boxes)
    path = str(tmp_path / "stack.tif")
    with volume_writer(path, shape, channels=channels, dtype=dtype, spacing=(2.5, 0.5, 0.25), unit="um") as writer:
        write_all(writer, volume, boxes)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == ("ZYX" if channels is None else "ZCYX")
        stored = tif.series[0].asarray()
    np.testing.assert_array_equal(stored, volume if channels is None else np.moveaxis(volume, -1, 1))
    with VolumeReader(path) as reader:
        assert reader.spacing == pytest.approx((2.5, 0.5, 0.25)) and reader.unit == "micrometer"
        np.testing.assert_array_equal(reader.read((0, 0, 0) + shape), volume.reshape(shape + (-1,)))
    assert leftovers(tmp_path) == []


def test_tiff_stack_refuses_dtypes_imagej_cannot_read(tmp_path):
    with pytest.raises(ValueError, match=r"^dtype=uint32 is not an ImageJ sample type"):
        volume_writer(str(tmp_path / "a.tif"), (2, 2, 2), dtype="uint32")
    assert os.listdir(tmp_path) == []


def test_nifti_from_a_big_endian_vector_source(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    data = np.arange(4 * 3 * 2 * 1 * 3, dtype=">f4").reshape(4, 3, 2, 1, 3)  # (x, y, z, 1, c): a vector image
    image = nibabel.Nifti1Image(data, np.diag([0.5, 0.6, 0.7, 1.0]), header=nibabel.Nifti1Header(endianness=">"))
    image.header.set_intent("vector")
    source = str(tmp_path / "vector.nii")
    nibabel.save(image, source)
    out = str(tmp_path / "out.nii")
    with VolumeReader(source) as reader:
        assert reader.shape == (2, 3, 4) and reader.channels == 3 and reader.nifti_header.endianness == ">"
        values = reader.read((0, 0, 0) + reader.shape)
        with NiftiWriter(out, reader.shape, channels=3, dtype="float32", source=reader) as writer:
            writer.write((0, 0, 0) + reader.shape, values)
    written = nibabel.load(out)
    assert written.header.endianness == "<" and written.header.get_intent()[0] == "none"
    np.testing.assert_array_equal(np.asarray(written.dataobj), data[:, :, :, 0, :].astype(np.float32))
    np.testing.assert_allclose(written.header.get_zooms()[:3], (0.5, 0.6, 0.7))


def test_profiling_script_runs_small():
    pytest.importorskip("nibabel")
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling", "volume_io.py")
    out = subprocess.run([sys.executable, script, "--size", "12", "16", "16", "--window", "4", "--cell", "4", "8", "8",
                          "--chunk", "4", "8", "8", "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("NIfTI window 4^3") and any(line.strip().startswith(".zarr") for line in lines)


@pytest.mark.parametrize("suffix", [".zarr", ".nii.gz", ".tif"])
def test_fill_gives_voxels_never_written_a_value(tmp_path, suffix):
    if suffix.startswith(".nii"):
        pytest.importorskip("nibabel")
    path = str(tmp_path / f"out{suffix}")
    shape = (5, 6, 7)
    with volume_writer(path, shape, dtype="uint16", fill=9, **({"chunks": 2} if suffix == ".zarr" else {})) as w:
        w.write((1, 2, 3, 3, 5, 6), np.ones((2, 3, 3), np.uint16))
    expected = np.full(shape, 9, np.uint16)
    expected[1:3, 2:5, 3:6] = 1
    with VolumeReader(path) as reader:
        np.testing.assert_array_equal(reader.read((0, 0, 0) + shape)[..., 0], expected)
    with pytest.raises(ValueError, match=r"^fill=-1 cannot be stored as uint16"):
        volume_writer(str(tmp_path / f"other{suffix}"), shape, dtype="uint16", fill=-1)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".zarr", ".nii", ".nii.gz", ".tif"])
def test_a_writer_never_closed_leaves_no_partial(tmp_path, suffix):
    import gc

    if suffix.startswith(".nii"):
        pytest.importorskip("nibabel")
    writer = volume_writer(str(tmp_path / f"out{suffix}"), (2, 3, 4), channels=2, dtype="float32")
    writer.write((0, 0, 0, 1, 3, 4), np.zeros((1, 3, 4, 2), np.float32))
    assert leftovers(tmp_path) != []
    del writer
    gc.collect()
    assert os.listdir(tmp_path) == []


@st.composite
def writes(draw):
    shape = tuple(draw(st.integers(1, 7)) for _ in range(3))
    cuts = [sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=3)))) if n > 1 else [] for n in shape]
    edges = [[0] + c + [n] for c, n in zip(cuts, shape)]
    boxes = [(z0, y0, x0, z1, y1, x1) for z0, z1 in zip(edges[0], edges[0][1:]) for y0, y1 in zip(edges[1], edges[1][1:])
             for x0, x1 in zip(edges[2], edges[2][1:])]
    order = draw(st.permutations(range(len(boxes))))
    chunks = tuple(draw(st.integers(1, 4)) for _ in range(3))
    return shape, [boxes[i] for i in order], chunks, draw(st.sampled_from([".zarr", ".nii", ".nii.gz", ".tif"]))


@given(writes())
def test_any_order_writes_every_voxel_once(case):
    shape, boxes, chunks, suffix = case
    if suffix.startswith(".nii"):
        pytest.importorskip("nibabel")
    volume = np.random.default_rng(len(boxes)).random(shape + (2,)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out" + suffix)
        options = {"chunks": chunks} if suffix == ".zarr" else {}
        with volume_writer(path, shape, channels=2, dtype="float32", **options) as writer:
            for box in boxes:
                writer.write(box, window(volume, box))
                with pytest.raises(ValueError, match="already written"):
                    writer.write(box, window(volume, box))
        assert writer.held_bytes == 0 and sorted(os.listdir(folder)) == ["out" + suffix]
        with VolumeReader(path) as reader:
            np.testing.assert_array_equal(reader.read((0, 0, 0) + shape), volume)
