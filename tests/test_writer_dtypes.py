"""TiffWriter never stores a value other than the one given: exact labels (uint8/16/32) or a ValueError before
the file appears; probabilities in uint8/uint16 within half a quantisation step."""

import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seamless_fast.io import WRITER_DTYPES, ImageReader, TiffWriter, to_output_dtype

tifffile = pytest.importorskip("tifffile")

SIZE = (40, 52)
TILE = (16, 16)
# cells that cover the image: rows of 24 then 16, columns of 30 then 22 (not aligned to the 16-pixel tiles)
CELLS = [(y0, x0, y1, x1) for y0, y1 in ((0, 24), (24, 40)) for x0, x1 in ((0, 30), (30, 52))]


def write_all(path, data, dtype, **kwargs):
    with TiffWriter(path, SIZE, dtype=dtype, tile=TILE, channels=None if data.ndim == 2 else data.shape[2],
                    **kwargs) as writer:
        for y0, x0, y1, x1 in CELLS:
            writer.write((y0, x0, y1, x1), data[y0:y1, x0:x1])


def read_both(path):
    """The file as tifffile and as ImageReader read it (they must agree)."""
    from_tifffile = tifffile.imread(path)
    with ImageReader(path) as reader:
        from_reader = reader.read((0, 0) + SIZE)
    np.testing.assert_array_equal(from_reader.reshape(from_tifffile.shape), from_tifffile)
    return from_tifffile


def leftovers(folder):
    return sorted(os.listdir(folder))


def test_writer_dtypes_are_the_output_policy():
    assert WRITER_DTYPES == ("uint8", "uint16", "uint32", "float16", "float32")
    from seamless_fast import dtypes

    assert to_output_dtype is dtypes.to_output_dtype


@settings(max_examples=60, deadline=None)
@given(classes=st.integers(2, 70_000), dtype=st.sampled_from(["uint8", "uint16", "uint32"]),
       source=st.sampled_from(["int64", "int32", "uint32", "uint16"]), seed=st.integers(0, 2**32 - 1))
def test_labels_read_back_exactly_or_are_refused(tmp_path_factory, classes, dtype, source, seed):
    folder = tmp_path_factory.mktemp("labels")
    path = folder / "labels.tif"
    rng = np.random.default_rng(seed)
    top = min(classes - 1, np.iinfo(source).max)
    labels = rng.integers(0, top + 1, SIZE).astype(source)
    labels[rng.integers(SIZE[0]), rng.integers(SIZE[1])] = top  # the largest label is there
    if top > np.iinfo(dtype).max:
        # the first cell whose labels do not fit is refused (it need not hold the largest)
        with pytest.raises(ValueError, match=rf"data holds values from \d+ to \d+; {dtype} holds 0 to"):
            write_all(path, labels, dtype)
        assert leftovers(folder) == []  # no file under the final name, no partial
    else:
        write_all(path, labels, dtype)
        stored = read_both(path)
        assert stored.dtype == dtype
        np.testing.assert_array_equal(stored.astype(np.int64), labels.astype(np.int64))
        assert leftovers(folder) == ["labels.tif"]


def test_300_classes_into_uint8_is_refused_not_wrapped(tmp_path):
    """The report that started this: 300 classes written as uint8 wrapped 299 to 43, with exit 0."""
    labels = np.arange(np.prod(SIZE)).reshape(SIZE) % 300
    with pytest.raises(ValueError, match="data holds values from 0 to 299; uint8 holds 0 to 255"):
        write_all(tmp_path / "labels.tif", labels, np.uint8)
    assert leftovers(tmp_path) == []
    write_all(tmp_path / "labels.tif", labels, np.uint16)
    np.testing.assert_array_equal(read_both(tmp_path / "labels.tif"), labels)


def test_more_than_65536_classes_in_uint32(tmp_path):
    labels = np.random.default_rng(0).integers(0, 70_000, SIZE)
    labels[0, 0] = 69_999
    write_all(tmp_path / "labels.tif", labels, np.uint32, compression="zlib")
    stored = read_both(tmp_path / "labels.tif")
    assert stored.dtype == np.uint32 and np.array_equal(stored, labels)


def test_negative_labels_are_refused(tmp_path):
    labels = np.zeros(SIZE, np.int32)
    labels[5, 5] = -1
    for dtype in ("uint8", "uint16", "uint32"):
        with pytest.raises(ValueError, match="data holds values from -1 to 0"):
            write_all(tmp_path / "labels.tif", labels, dtype)
    assert leftovers(tmp_path) == []


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(["uint8", "uint16"]), source=st.sampled_from(["float32", "float64", "float16"]),
       channels=st.sampled_from([None, 1, 3]), seed=st.integers(0, 2**32 - 1))
def test_probabilities_read_back_within_half_a_step(tmp_path_factory, dtype, source, channels, seed):
    folder = tmp_path_factory.mktemp("probabilities")
    rng = np.random.default_rng(seed)
    shape = SIZE if channels is None else SIZE + (channels,)
    p = rng.random(shape)
    p.flat[:4] = [0.0, 1.0, 0.5, 1 + 5e-5]  # the ends, the middle, a float-rounding excess
    p = p.astype(source)
    write_all(folder / "p.tif", p, dtype)
    stored = read_both(folder / "p.tif")
    top = np.iinfo(dtype).max
    assert stored.dtype == dtype and stored.flat[0] == 0 and stored.flat[1] == top and stored.flat[3] == top
    error = np.abs(stored.reshape(shape) / top - np.clip(p.astype(np.float64), 0, 1))
    assert error.max() <= 0.5 / top + 1e-12
    assert leftovers(folder) == ["p.tif"]


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("bad", [np.nan, 1.01, -0.01, 255.0])
def test_values_that_are_not_probabilities_are_refused(tmp_path, dtype, bad):
    p = np.full(SIZE, 0.25, np.float32)
    p[-1, -1] = bad  # in the last cell: earlier cells went to the file, which must not appear
    with pytest.raises(ValueError, match="NaN|not probabilities"):
        write_all(tmp_path / "p.tif", p, dtype)
    assert leftovers(tmp_path) == []


def test_float_outputs(tmp_path):
    values = np.random.default_rng(1).standard_normal(SIZE).astype(np.float32) * 100
    values[0, :3] = [np.nan, np.inf, -np.inf]
    write_all(tmp_path / "f32.tif", values, np.float32)
    np.testing.assert_array_equal(read_both(tmp_path / "f32.tif"), values)
    write_all(tmp_path / "f16.tif", values, np.float16)
    np.testing.assert_array_equal(read_both(tmp_path / "f16.tif"), values.astype(np.float16))
    values[1, 1] = 70_000.0  # beyond float16: refused, not stored as inf
    with pytest.raises(ValueError, match="beyond the range of float16"):
        write_all(tmp_path / "big.tif", values, np.float16)
    assert leftovers(tmp_path) == ["f16.tif", "f32.tif"]


def test_refused_write_keeps_the_writer_usable(tmp_path):
    """A refused write stores nothing of itself: the box can be written again with good data."""
    with TiffWriter(tmp_path / "labels.tif", SIZE, dtype=np.uint8, tile=TILE) as writer:
        with pytest.raises(ValueError, match="uint8 holds 0 to 255"):
            writer.write((0, 0) + SIZE, np.full(SIZE, 256))
        writer.write((0, 0) + SIZE, np.full(SIZE, 255))
    assert (read_both(tmp_path / "labels.tif") == 255).all()


@pytest.mark.parametrize("data", [np.full(SIZE, 1 + 1j, np.complex64), np.full(SIZE, 0.5 + 0j),
                                  np.full(SIZE, np.datetime64("2026-01-01")), np.full(SIZE, "1")])
def test_data_that_are_not_real_numbers_are_refused(tmp_path, data):
    """Complex data lost their imaginary part (with a ComplexWarning) or were refused with a wrong message."""
    for dtype in ("uint8", "float32"):
        with pytest.raises(ValueError, match=re.escape(f"data of dtype {data.dtype} cannot be stored as {dtype}; "
                                                       "expected real numbers")):
            write_all(tmp_path / "out.tif", data, dtype)
    assert leftovers(tmp_path) == []
