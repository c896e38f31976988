"""blend() and Blender refuse what cannot work with one ValueError naming it: sizes too large, ragged tiles, outputs
too narrow for the labels; and a refused run leaves nothing behind."""

import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import shapely

import seamless_fast as sf
from seamless_fast.engine._arrays import accumulator_dtype

from cases import random_tiles

blend_module = importlib.import_module("seamless_fast.engine.blender")  # the package exports the function blend
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _small_plan():
    plan, _ = sf.plan_regular_grid((100, 90), 32, 8)
    tiles = random_tiles(plan, np.random.default_rng(0), 2, np.float32)
    return plan, [tiles[t] for t in plan.load_order.tolist()]


def test_an_output_beyond_any_address_space_is_a_value_error():
    """More than 2**63 bytes: numpy's own "array is too big" becomes ours, naming the output and the bytes."""
    plan, _ = sf.plan_regular_grid((10**7, 10**7), 8, 2, area=shapely.box(0, 0, 10, 10))
    tiles = (np.zeros((8, 8, 12000), np.float32) for _ in range(plan.n_loads))
    with pytest.raises(ValueError, match=r"the output is too large: shape \(10000000, 10000000, 12000\) of float64 "
                                         r"needs 9600000000000000000 bytes"):
        sf.blend(plan, tiles, dtype=np.float64)


MEMORY = textwrap.dedent("""
    import resource
    import numpy as np
    import shapely
    import seamless_fast as sf

    sf.blend(sf.plan_regular_grid((64, 64), 32, 8)[0], [np.ones((32, 32, 1), np.float32)] * 9)  # compile first
    huge, _ = sf.plan_regular_grid((10**7, 10**7), 256, 64, area=shapely.box(0, 0, 100, 100))
    wide, _ = sf.plan_regular_grid((1024, 3_000_000), 512, 256, traverse="rows")  # a 3 GB band, one channel
    tile = np.ones((512, 512, 1), np.float32)
    with open("/proc/self/status") as status:
        used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    cases = {
        "output": lambda: sf.blend(huge, [np.ones((256, 256, 3), np.float32)] * huge.n_loads),
        "buffer": lambda: sf.Blender(wide).push(tile),
        "copy": lambda: sf.Blender(huge).push(np.broadcast_to(np.float32(1), (256, 256, 5000))),
    }
    for name, case in cases.items():
        try:
            case()
        except Exception as error:
            print(name, type(error).__name__, error)
        else:
            print(name, "no error")
""")


def test_allocations_that_fail_are_value_errors():
    """Under an address-space limit, the output, the buffer and a tile's copy fail as ValueErrors with the bytes."""
    pytest.importorskip("resource")
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc")
    run = subprocess.run([sys.executable, "-c", MEMORY], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert lines["output"].startswith("ValueError the output is too large: shape (10000000, 10000000, 3) of "
                                      f"float32 needs {10**14 * 12} bytes"), lines["output"]
    assert lines["buffer"].startswith("ValueError the blend buffer is too large: shape (1, 256, 3000000) of "
                                      f"float32 needs {256 * 3 * 10**6 * 4} bytes"), lines["buffer"]
    assert lines["copy"].startswith("ValueError the float32 copy of tile 0 (grid index (0, 0)) is too large: "
                                    f"shape (256, 256, 5000) of float32 needs {256 * 256 * 5000 * 4} bytes"), \
        lines["copy"]


def test_a_first_tile_numpy_cannot_stack_names_the_tile_and_its_shape():
    plan, tiles = _small_plan()
    ragged = [[0.0, 1.0], [2.0]]
    with pytest.raises(ValueError, match=r"^tile 0 \(grid index \(0, 0\)\) could not be converted to an array of "
                                         r"shape \(32, 32, C\) \(channel_first=False\) or \(32, 32\): "):
        sf.blend(plan, [ragged] + tiles[1:])
    with pytest.raises(ValueError, match=r"^tile 0 .* could not be converted to an array of shape "
                                         r"\(C, 32, 32\) \(channel_first=True\) or \(32, 32\)"):
        sf.blend(plan, [ragged] + tiles[1:], channel_first=True)


def test_a_later_tile_numpy_cannot_stack_names_the_tile_and_its_shape():
    plan, tiles = _small_plan()
    with sf.Blender(plan) as blender:
        with pytest.raises(ValueError, match=r"^tile 2 \(grid index \(0, 2\)\) could not be converted to an array "
                                             r"of shape \(32, 32, 2\) \(channel_first=False\): "):
            blender.push_batch(tiles[:2] + [[[0.0, 1.0], [2.0]]])
        blender.push_batch(tiles[2:])  # the refused tile changed nothing


@pytest.mark.parametrize("channel_first", [False, True])
def test_ragged_lists_name_the_tile_and_its_expected_shape(channel_first):
    plan, tiles = _small_plan()
    if channel_first:
        tiles = [np.ascontiguousarray(t.transpose(2, 0, 1)) for t in tiles]
    expected = sf.blend(plan, tiles, channel_first=channel_first)
    want = r"\(2, 32, 32\)" if channel_first else r"\(32, 32, 2\)"
    ragged = list(tiles)
    column_short = (Ellipsis, slice(0, -1)) if channel_first else (Ellipsis, slice(0, -1), slice(None))
    ragged[3] = ragged[3][column_short]
    got = r"\(2, 32, 31\)" if channel_first else r"\(32, 31, 2\)"
    with pytest.raises(ValueError, match=rf"^tile 3 \(grid index \(0, 3\)\) has shape {got}; "
                                         rf"expected {want} \(channel_first={channel_first}\)$"):
        sf.blend(plan, ragged, channel_first=channel_first)
    out = np.zeros_like(expected)
    with sf.Blender(plan, channel_first=channel_first, out=out) as blender:
        with pytest.raises(ValueError, match=rf"^tile 3 .* expected {want}"):
            blender.push_batch(ragged)
        assert blender.step == 3
        blender.push_batch(tiles[3:])
    np.testing.assert_array_equal(out, expected)
    blender = sf.Blender(plan, channel_first=channel_first)  # a batch array of the wrong tile shape
    first = r"\('C', 32, 32\)" if channel_first else r"\(32, 32, 'C'\)"
    with pytest.raises(ValueError, match=rf"^tile 0 .* expected {first} \(channel_first={channel_first}\)$"):
        blender.push_batch(np.stack(tiles[:3])[column_short])
    assert blender.step == 0
    with pytest.raises(ValueError, match=f"{plan.n_loads} missing"):
        blender.close()


@pytest.mark.parametrize("channels, out_dtype, message", [
    (300, np.uint8, "out has dtype uint8; this run produces uint16"),
    (70000, np.uint16, "out has dtype uint16; this run produces uint32"),
])
def test_labels_out_too_narrow_for_the_classes_is_refused_before_any_work(tmp_path, channels, out_dtype, message):
    """Labels of 300 classes cannot go into uint8: refused at the first tile, nothing written, nothing reserved."""
    plan, _ = sf.plan_regular_grid((40, 150), 16, 4, max_buffer_bytes=16 * 60 * 4 * channels, channels=channels,
                                   traverse="rows")
    assert len(plan.stripes) > 1
    out = np.full(plan.image_size, 9, out_dtype)
    tile = np.ones((16, 16, channels), np.float32)
    blender = sf.Blender(plan, labels=True, out=out, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        blender.push(tile)
    assert (out == 9).all() and blender.step == 0 and os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match=message):
        sf.blend(plan, [tile] * plan.n_loads, labels=True, out=out, cache_dir=tmp_path)
    assert (out == 9).all() and os.listdir(tmp_path) == []


def test_labels_dtype_follows_the_classes():
    plan, _ = sf.plan_regular_grid((20, 20), 16, 4)
    for channels, dtype in ((256, np.uint8), (257, np.uint16)):
        tile = np.zeros((16, 16, channels), np.float32)
        tile[..., channels - 1] = 1
        labels = sf.blend(plan, [tile] * plan.n_loads, labels=True)
        assert labels.dtype == dtype and (labels == channels - 1).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(dtype=np.longdouble), "dtype=float(128|96|64) is not a supported accumulator"),
    (dict(dtype="no such dtype"), "dtype='no such dtype' is not a supported accumulator"),
    (dict(dtype=np.int16), "dtype=int16 is not a supported accumulator"),
    (dict(labels="yes"), "labels='yes' must be True or False"),
    (dict(out=np.zeros((3, 3))), r"out has shape \(3, 3\)"),
])
def test_blend_checks_its_options_before_reading_a_tile(kwargs, message):
    """A bad option is refused before the first tile is taken (it may cost a model run) or the output allocated."""
    plan, _ = _small_plan()
    touched = []

    def tiles():
        touched.append(True)
        yield np.zeros((32, 32, 2), np.float32)

    with pytest.raises(ValueError, match=message):
        sf.blend(plan, tiles(), **kwargs)
    assert not touched


def test_blend_wants_an_iterable():
    plan, _ = _small_plan()
    with pytest.raises(ValueError, match="tiles must be an iterable of arrays; got int"):
        sf.blend(plan, 5)


def test_tiles_wider_than_float64_are_refused_not_rounded():
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is float64 here")
    plan, _ = _small_plan()
    tile = np.full((32, 32, 2), 1, np.longdouble) + np.longdouble(2) ** -60  # not a float64
    for dtype in (None, np.float64):
        with pytest.raises(ValueError, match=r"^tile 0 \(grid index \(0, 0\)\) has dtype float\d+; expected a real "
                                             "float of at most 64 bits \\(blending would round it to float64\\)$"):
            sf.blend(plan, [tile] * plan.n_loads, dtype=dtype)
    with pytest.raises(ValueError, match="tile dtype float\\d+ is not supported"):
        accumulator_dtype(np.longdouble)
