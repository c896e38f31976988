"""The output dtype policy: choices, refusals, and conversions that never change a value silently."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seamless_fast.dtypes import OUTPUT_DTYPES, label_dtype, output_dtype, to_output_dtype


@pytest.mark.parametrize("classes, expected", [(1, "uint8"), (2, "uint8"), (256, "uint8"), (257, "uint16"),
                                               (65536, "uint16"), (65537, "uint32"), (70_000, "uint32")])
def test_label_dtype_is_the_smallest_that_holds_every_label(classes, expected):
    assert label_dtype(classes) == np.dtype(expected)
    assert np.iinfo(expected).max >= classes - 1


def test_output_dtype_refuses_labels_it_cannot_hold():
    assert output_dtype("uint16", labels=True, classes=300) == np.uint16
    with pytest.raises(ValueError, match="dtype=uint8 holds labels up to 255, but the model gives 300 classes"):
        output_dtype("uint8", labels=True, classes=300)
    with pytest.raises(ValueError, match="does not store labels"):
        output_dtype("float32", labels=True, classes=3)
    with pytest.raises(ValueError, match="does not store values"):
        output_dtype("uint32", labels=False)
    with pytest.raises(ValueError, match="is not supported"):
        output_dtype("int64", labels=False)
    with pytest.raises(ValueError, match="classes must be given"):
        output_dtype(None, labels=True)
    assert output_dtype(None, labels=False) == np.float32


def _expected_labels(labels, dtype):
    """The plain definition: every label kept, or a refusal."""
    return labels.max() <= np.iinfo(dtype).max


@settings(max_examples=200, deadline=None)
@given(classes=st.integers(2, 70_000), dtype=st.sampled_from(["uint8", "uint16", "uint32"]),
       source=st.sampled_from(["uint8", "uint16", "int32", "int64"]), seed=st.integers(0, 2**32 - 1))
def test_labels_are_stored_exactly_or_refused(classes, dtype, source, seed):
    rng = np.random.default_rng(seed)
    top = min(classes - 1, np.iinfo(source).max)
    labels = rng.integers(0, top + 1, size=(7, 9)).astype(source)
    labels.flat[rng.integers(labels.size)] = top
    if _expected_labels(labels, dtype):
        stored = to_output_dtype(labels, dtype)
        assert stored.dtype == dtype and np.array_equal(stored.astype(np.int64), labels.astype(np.int64))
    else:
        with pytest.raises(ValueError, match=f"holds values from .* to {top}; {dtype} holds"):
            to_output_dtype(labels, dtype)


@pytest.mark.parametrize("dtype, top", [("uint8", 255), ("uint16", 65535)])
def test_probabilities_fill_the_whole_integer_range(dtype, top):
    p = np.linspace(0, 1, 1001)
    stored = to_output_dtype(p, dtype)
    assert stored.dtype == dtype
    assert stored[0] == 0 and stored[-1] == top
    assert np.abs(stored / top - p).max() <= 0.5 / top + 1e-12
    assert np.array_equal(to_output_dtype(np.array([1 + 1e-6, -1e-6]), dtype), [top, 0])  # float rounding


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("bad", [np.nan, 1.5, -0.2, 7.0, np.inf])
def test_values_that_are_not_probabilities_are_refused_not_clipped(dtype, bad):
    with pytest.raises(ValueError, match="NaN|not probabilities"):
        to_output_dtype(np.array([0.2, bad], np.float32), dtype)


def test_float16_refuses_overflow_but_keeps_nan_and_inf():
    with pytest.raises(ValueError, match="beyond the range of float16"):
        to_output_dtype(np.array([1.0, 70000.0], np.float32), np.float16)
    kept = to_output_dtype(np.array([np.nan, np.inf, -np.inf, 0.5], np.float32), np.float16)
    assert np.isnan(kept[0]) and kept[1] == np.inf and kept[2] == -np.inf and kept[3] == 0.5


def test_integers_into_floats_only_when_exact():
    assert to_output_dtype(np.array([0, 2048], np.int32), np.float16).tolist() == [0.0, 2048.0]
    with pytest.raises(ValueError, match="cannot store exactly"):
        to_output_dtype(np.array([2049], np.int32), np.float16)


def test_every_output_dtype_is_a_target():
    for name in OUTPUT_DTYPES:
        assert to_output_dtype(np.zeros(3, np.uint8), name).dtype == name


def test_as_output_dtype_names_the_bad_value():
    from seamless_fast.dtypes import as_output_dtype

    assert as_output_dtype(">u2") == np.uint16 and as_output_dtype(">u2").byteorder in "=|"
    with pytest.raises(ValueError, match="dtype='int64' is not supported; expected one of"):
        as_output_dtype("int64")
    with pytest.raises(ValueError, match="is not a data type"):
        as_output_dtype(object())
    with pytest.raises(ValueError, match="is not supported"):
        as_output_dtype(np.float64)


def test_check_not_an_input_skips_none_and_refuses_links(tmp_path):
    from seamless_fast._files import check_not_an_input

    source = tmp_path / "in.tif"
    source.write_bytes(b"x")
    (tmp_path / "link.tif").symlink_to(source)
    check_not_an_input(tmp_path / "out.tif", [None, source])
    with pytest.raises(ValueError, match="--store='.*link.tif' is the input"):
        check_not_an_input(tmp_path / "link.tif", [source], name="--store")
