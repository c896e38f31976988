"""VolumeReader: windows of arrays, zarr (v2, v3, OME-Zarr 0.4 and 0.5), TIFF stacks and NIfTI, against the whole
array as zarr, tifffile and nibabel read it."""

import os

import numpy as np
import pytest

from seamless_fast.io import VolumeReader, open_volume

zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")


def reference(full, box, pad="constant", fill=0):
    """The window of (D, H, W, C) `full` by np.pad."""
    lo, hi = box[:3], box[3:]
    before = [max(0, -l) for l in lo]
    after = [max(0, h - n) for h, n in zip(hi, full.shape[:3])]
    kwargs = {"constant_values": fill} if pad == "constant" else {}
    padded = np.pad(full, list(zip(before, after)) + [(0, 0)], mode=pad, **kwargs)
    return padded[tuple(slice(l + b, h + b) for l, h, b in zip(lo, hi, before))]


def random_boxes(shape, rng, n=25, margin=4):
    for _ in range(n):
        lo = [int(rng.integers(-margin, s + margin)) for s in shape]
        hi = [l + int(rng.integers(1, s + 2 * margin)) for l, s in zip(lo, shape)]
        yield tuple(lo + hi)


def check_windows(reader, full, seed, pads=("constant",)):
    rng = np.random.default_rng(seed)
    assert reader.shape == full.shape[:3] and reader.channels == full.shape[3]
    for box in random_boxes(full.shape[:3], rng):
        got = reader.read(box)
        assert got.flags.c_contiguous and got.dtype == full.dtype
        np.testing.assert_array_equal(got, reference(full, box, reader._pad, 0), err_msg=str(box))


@pytest.mark.parametrize("pad", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_numpy_windows_every_pad(pad, channels):
    rng = np.random.default_rng(1)
    shape = (5, 7, 6) + (() if channels is None else (channels,))
    volume = rng.integers(0, 1000, shape).astype(np.uint16)
    full = volume.reshape(5, 7, 6, -1)
    with VolumeReader(volume, pad=pad) as reader:
        check_windows(reader, full, 2)
    with VolumeReader(np.moveaxis(full, -1, 0), channel_axis=0, pad=pad) as reader:
        check_windows(reader, full, 3)


def test_constant_fill_and_window_is_a_copy():
    volume = np.zeros((2, 2, 2), np.float32)
    with VolumeReader(volume, fill=-1.5) as reader:
        window = reader.read((-1, 0, 0, 2, 2, 2))
        assert window[0].min() == -1.5 and window[1:].max() == 0
        window[...] = 9
        assert volume.max() == 0


def test_zarr_v3_and_v2_arrays(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.random((9, 10, 11)).astype(np.float32)
    for fmt in (2, 3):
        path = str(tmp_path / f"v{fmt}.zarr")
        array = zarr.create_array(path, shape=data.shape, chunks=(4, 3, 5), dtype=data.dtype, zarr_format=fmt)
        array[:] = data
        with VolumeReader(path) as reader:
            full = np.asarray(zarr.open(path, mode="r")[:])[..., None]
            check_windows(reader, full, fmt)
            assert reader.spacing is None and reader.affine is None and len(reader.levels) == 1


def test_zarr_4d_channels_from_names_keyword_or_refused(tmp_path):
    data = np.arange(3 * 4 * 5 * 6, dtype=np.uint8).reshape(3, 4, 5, 6)  # (C, D, H, W)
    named = str(tmp_path / "named.zarr")
    array = zarr.create_array(named, shape=data.shape, chunks=(3, 2, 2, 2), dtype="u1",
                              dimension_names=("c", "z", "y", "x"))
    array[:] = data
    with VolumeReader(named) as reader:
        check_windows(reader, np.moveaxis(data, 0, -1), 5)
    bare = str(tmp_path / "bare.zarr")
    zarr.create_array(bare, shape=data.shape, chunks=(3, 2, 2, 2), dtype="u1")[:] = data
    with pytest.raises(ValueError, match=r"^source=.*4 axes.*pass channel_axis=0"):
        VolumeReader(bare)
    with VolumeReader(bare, channel_axis=0) as reader:
        check_windows(reader, np.moveaxis(data, 0, -1), 6)
    with VolumeReader(bare, channel_axis=-1) as reader:  # read as (D, H, W, C)
        check_windows(reader, data, 7)
    with VolumeReader(zarr.open(bare, mode="r"), channel_axis=0) as reader:  # an open zarr array
        assert reader.shape == (4, 5, 6) and reader.channels == 3


def _ome_group(path, levels, version, axes, outer=None):
    """An OME-Zarr image written by hand with zarr, as NGFF `version` lays it out."""
    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(path, mode="w", zarr_format=fmt)
    datasets = []
    for number, (data, scale, translation) in enumerate(levels):
        group.create_array(str(number), shape=data.shape, chunks=tuple(max(1, s // 2) for s in data.shape),
                           dtype=data.dtype)[:] = data
        transforms = [{"type": "scale", "scale": scale}]
        if translation is not None:
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(number), "coordinateTransformations": transforms})
    image = {"axes": axes, "datasets": datasets, "name": "image"}
    if outer is not None:
        image["coordinateTransformations"] = outer
    if version == "0.4":
        image["version"] = "0.4"
        group.attrs["multiscales"] = [image]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [image]}
    return group


def test_ome_zarr_04_levels_spacing_and_channels(tmp_path):
    rng = np.random.default_rng(8)
    level0 = rng.integers(0, 60000, (2, 8, 10, 12)).astype(np.uint16)  # (c, z, y, x)
    level1 = level0[:, ::2, ::2, ::2].copy()
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    path = str(tmp_path / "image.ome.zarr")
    _ome_group(path, [(level0, [1, 2.0, 0.5, 0.5], [0, 10.0, 0, 0]), (level1, [1, 4.0, 1.0, 1.0], [0, 10.0, 0, 0])],
               "0.4", axes)
    with VolumeReader(path) as reader:
        assert [lev.shape for lev in reader.levels] == [(8, 10, 12), (4, 5, 6)]
        assert [lev.spacing for lev in reader.levels] == [(2.0, 0.5, 0.5), (4.0, 1.0, 1.0)]
        assert reader.spacing == (2.0, 0.5, 0.5) and reader.channels == 2 and reader.unit == "micrometer"
        np.testing.assert_array_equal(reader.affine @ [1, 2, 3, 1], [12.0, 1.0, 1.5, 1])
        check_windows(reader, np.moveaxis(level0, 0, -1), 9)
    with VolumeReader(path, level=1, pad="edge") as reader:
        assert reader.level == 1 and reader.spacing == (4.0, 1.0, 1.0)
        check_windows(reader, np.moveaxis(level1, 0, -1), 10)
    with pytest.raises(ValueError, match=r"^level=2 is not a level of .*expected 0 to 1"):
        VolumeReader(path, level=2)
    with pytest.raises(ValueError, match=r"^channel_axis=0 is not needed"):
        VolumeReader(path, channel_axis=0)


def test_ome_zarr_05_time_axis_and_outer_transform(tmp_path):
    data = np.arange(1 * 5 * 6 * 7, dtype=np.float32).reshape(1, 5, 6, 7)  # (t, z, y, x)
    axes = [{"name": "t", "type": "time"}] + [{"name": a, "type": "space"} for a in "zyx"]
    path = str(tmp_path / "t1.zarr")
    outer = [{"type": "scale", "scale": [1.0, 2.0, 2.0, 2.0]}]
    _ome_group(path, [(data, [1.0, 3.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0])], "0.5", axes, outer)
    with VolumeReader(path) as reader:
        assert reader.shape == (5, 6, 7) and reader.channels == 1
        assert reader.spacing == (6.0, 2.0, 2.0)
        np.testing.assert_array_equal(reader.affine[:3, 3], [2.0, 0, 0])
        check_windows(reader, data[0][..., None], 11)
    longer = str(tmp_path / "t2.zarr")
    _ome_group(longer, [(np.zeros((2, 3, 3, 3), np.float32), [1.0] * 4, None)], "0.5", axes)
    with pytest.raises(ValueError, match=r"^source=.*axis of length 2 that is neither z, y, x nor channels"):
        VolumeReader(longer)
    flat = str(tmp_path / "yx.zarr")
    _ome_group(flat, [(np.zeros((3, 3), np.float32), [1.0] * 2, None)], "0.5",
               [{"name": a, "type": "space"} for a in "yx"])
    with pytest.raises(ValueError, match=r"^source=.*2 space axes.*expected a volume"):
        VolumeReader(flat)


def test_imagej_hyperstack_written_by_tifffile(tmp_path):
    rng = np.random.default_rng(12)
    data = rng.integers(0, 255, (6, 3, 20, 17)).astype(np.uint8)  # Z, C, Y, X
    path = str(tmp_path / "hyper.tif")
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "um"})
    with VolumeReader(path) as reader:
        assert reader.spacing == pytest.approx((1.5, 0.25, 0.25)) and reader.unit == "micrometer"
        check_windows(reader, np.moveaxis(tifffile.imread(path), 1, -1), 13)


def test_ome_tiff_z_stack_and_plain_page_stack(tmp_path):
    rng = np.random.default_rng(14)
    data = rng.random((7, 12, 9)).astype(np.float32)
    ome = str(tmp_path / "stack.ome.tif")
    tifffile.imwrite(ome, data, ome=True, tile=(16, 16),
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.4})
    with VolumeReader(ome, pad="reflect") as reader:
        assert reader.spacing == (2.0, 0.5, 0.4) and reader.unit == "micrometer"
        check_windows(reader, tifffile.imread(ome)[..., None], 15)
    plain = str(tmp_path / "pages.tif")
    with tifffile.TiffWriter(plain) as tif:
        for page in data:
            tif.write(page, metadata=None, compression="zlib")
    with VolumeReader(plain) as reader:
        assert reader.spacing is None and reader.unit is None
        check_windows(reader, data[..., None], 16)


def test_tiff_window_decodes_only_its_pages(tmp_path):
    data = np.arange(6 * 16 * 16, dtype=np.uint16).reshape(6, 16, 16)
    path = str(tmp_path / "pages.tif")
    with tifffile.TiffWriter(path) as tif:
        for page in data:
            tif.write(page, metadata=None, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    with open(path, "r+b") as handle:  # page 0's bytes no longer inflate
        handle.seek(offset)
        handle.write(b"\xff" * count)
    with VolumeReader(path) as reader:
        np.testing.assert_array_equal(reader.read((2, 0, 0, 5, 16, 16))[..., 0], data[2:5])
        with pytest.raises(ValueError, match=r"^source=.*pages.tif.*: reading z 0:1, y 0:16, x 0:16 failed"):
            reader.read((0, 0, 0, 1, 16, 16))


def test_tiff_2d_refused(tmp_path):
    path = str(tmp_path / "flat.tif")
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"^source=.*is a 2-D image.*expected a volume"):
        VolumeReader(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_by_nibabel_with_affine(tmp_path, suffix):
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(17)
    data = rng.normal(size=(11, 9, 7)).astype(np.float32)  # (x, y, z)
    theta = 0.3
    affine = np.array([[np.cos(theta) * 0.8, -np.sin(theta), 0, -40.0],
                       [np.sin(theta) * 0.8, np.cos(theta), 0, 12.5],
                       [0, 0, 2.5, 7.0], [0, 0, 0, 1]])
    path = str(tmp_path / f"scan{suffix}")
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    with VolumeReader(path) as reader:
        assert reader.shape == (7, 9, 11)
        np.testing.assert_allclose(reader.spacing, (2.5, 1.0, 0.8))
        full = np.asarray(nibabel.load(path).dataobj).transpose(2, 1, 0)[..., None]
        check_windows(reader, full, 18)
        np.testing.assert_array_equal(reader.nifti_affine, nibabel.load(path).affine)
        z, y, x = 3, 5, 8
        world = reader.affine @ [z, y, x, 1]
        np.testing.assert_allclose(world[:3][::-1], (reader.nifti_affine @ [x, y, z, 1])[:3])


def test_nifti_4d_channels_and_scaled_integers(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    data = np.arange(5 * 4 * 3 * 2, dtype=np.int16).reshape(5, 4, 3, 2)  # (x, y, z, c)
    image = nibabel.Nifti1Image(data, np.eye(4))
    image.header.set_slope_inter(0.5, 1.0)
    path = str(tmp_path / "four.nii")
    nibabel.save(image, path)
    with VolumeReader(path) as reader:
        assert reader.shape == (3, 4, 5) and reader.channels == 2 and reader.dtype.kind == "f"
        full = np.asarray(nibabel.load(path).dataobj).transpose(2, 1, 0, 3)
        check_windows(reader, full, 19)


def test_nifti_without_nibabel_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nibabel(name, *args, **kwargs):
        if name == "nibabel" or name.startswith("nibabel."):
            raise ImportError("no nibabel")
        return real_import(name, *args, **kwargs)

    path = tmp_path / "x.nii"
    path.write_bytes(b"\0" * 400)
    monkeypatch.setattr(builtins, "__import__", no_nibabel)
    with pytest.raises(ImportError, match=r"pip install 'seamless_fast\[nifti\]'"):
        VolumeReader(str(path))


@pytest.mark.parametrize("make, match", [
    (lambda p: np.zeros((3, 3)), r"^source=.*shape \(3, 3\); expected \(D, H, W\)"),
    (lambda p: os.path.join(p, "missing.zarr"), r"^source=.*does not exist"),
    (lambda p: _write(os.path.join(p, "notes.txt")), r"^source=.*not a volume this reader knows"),
    (lambda p: _write(os.path.join(p, "bad.nii")), r"^source=.*not a NIfTI file"),
    (lambda p: _write(os.path.join(p, "bad.tif")), r"^source=.*not a TIFF file"),
    (lambda p: p, r"^source=.*not a zarr array or group"),
    (lambda p: 42, r"^source=int is neither a path nor an array-like"),
])
def test_bad_sources_refused_in_one_line(tmp_path, make, match):
    if "NIfTI" in match:
        pytest.importorskip("nibabel")
    with pytest.raises(ValueError, match=match) as info:
        VolumeReader(make(str(tmp_path)))
    assert "\n" not in str(info.value)


def _write(path):
    with open(path, "wb") as handle:
        handle.write(b"not a volume at all " * 30)
    return path


@pytest.mark.parametrize("kwargs, box, match", [
    ({"pad": "wrap"}, None, r"^pad='wrap' is not a pad mode"),
    ({"fill": 300}, None, r"^fill=300 cannot be stored as uint8"),
    ({"level": -1}, None, r"^level=-1 is negative"),
    ({"level": 1}, None, r"^level=1: an array source has one level"),
    ({"channel_axis": 2}, None, r"^channel_axis=2 is not supported"),
    ({}, (0, 0, 0, 1, 1), r"^box=.*has 5 items; expected 6"),
    ({}, (0, 0, 0, 1, 0, 1), r"^box=.*is empty"),
    ({}, (0, 0, 0.5, 1, 1, 1), r"^box=.*non-integer entry"),
])
def test_bad_arguments_refused(kwargs, box, match):
    with pytest.raises(ValueError, match=match):
        reader = VolumeReader(np.zeros((2, 2, 2), np.uint8), **kwargs)
        reader.read(box)


def test_closed_reader_and_open_volume():
    reader = open_volume(np.zeros((2, 3, 4), np.uint8))
    assert "shape=(2, 3, 4)" in repr(reader)
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="is closed"):
        reader.read((0, 0, 0, 1, 1, 1))


def test_ome_tiff_pyramid_level(tmp_path):
    rng = np.random.default_rng(20)
    data = rng.integers(0, 255, (4, 32, 48)).astype(np.uint8)
    path = str(tmp_path / "pyramid.ome.tif")
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(data, subifds=1, tile=(16, 16),
                  metadata={"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5})
        tif.write(data[:, ::2, ::2], subfiletype=1, tile=(16, 16))
    with VolumeReader(path, level=1) as reader:
        assert [lev.shape for lev in reader.levels] == [(4, 32, 48), (4, 16, 24)]
        assert reader.spacing == (3.0, 1.0, 1.0) and reader.level == 1
        with tifffile.TiffFile(path) as tif:
            check_windows(reader, tif.series[0].levels[1].asarray()[..., None], 21)
    with pytest.raises(ValueError, match=r"^level=2 is not a level of .*expected 0 to 1"):
        VolumeReader(path, level=2)
