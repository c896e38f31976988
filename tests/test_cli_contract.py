"""The command line's contract: exit 0 means a right output; a bad input is one line, exit 2, before any work.

Most cases call ``cli.main`` in this process (fast, kernels already
compiled); the model modules are written to a temporary folder under a
unique name and record every call in a file beside them.
"""

import contextlib
import io
import os
import sys
import textwrap
import uuid

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

tifffile = pytest.importorskip("tifffile")

import seamless_fast as sf  # noqa: E402
from seamless_fast import cli  # noqa: E402
from seamless_fast.dtypes import label_dtype, to_output_dtype  # noqa: E402
from seamless_fast.io import ImageReader, TiffWriter  # noqa: E402

MODELS = textwrap.dedent('''
    import os

    import numpy as np

    HERE = os.path.dirname(os.path.abspath(__file__))
    CALLS = os.path.join(HERE, "calls.txt")
    with open(os.path.join(HERE, "classes.txt")) as handle:
        CLASSES = int(handle.read())


    def _record(batch):
        with open(CALLS, "a") as handle:
            handle.write(f"{len(batch)}\\n")


    def labels(batch):
        """CLASSES logits peaking at the class the first channel names; a little context from the tile mean."""
        _record(batch)
        batch = np.asarray(batch, dtype=np.float32)
        k = np.minimum(np.floor(batch[:, :1] * CLASSES), CLASSES - 1)
        classes = np.arange(CLASSES, dtype=np.float32)[None, :, None, None]
        out = -np.abs(classes - k)
        out[:, :1] += 0.2 * batch.mean(axis=(1, 2, 3))[:, None, None, None]
        return out


    def softmax(batch):
        _record(batch)
        batch = np.asarray(batch, dtype=np.float32)
        centred = batch - batch.mean(axis=(2, 3), keepdims=True)
        e = np.exp(3 * centred)
        return e / e.sum(axis=1, keepdims=True)
''')


def write_tiff(path, image):
    tifffile.imwrite(path, image, tile=(16, 16), photometric="rgb" if image.shape[-1] == 3 else "minisblack")


@contextlib.contextmanager
def chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class Folder:
    """A folder with an input image and a uniquely named model module; `run` calls the command line in-process."""

    def __init__(self, path, image, classes=3):
        self.path, self.image = path, image
        self.module = f"contract_models_{uuid.uuid4().hex}"
        (path / f"{self.module}.py").write_text(MODELS)
        (path / "classes.txt").write_text(str(classes))
        write_tiff(path / "in.tif", image)

    def model(self, name):
        return f"{self.module}:{name}"

    @property
    def calls(self):
        calls = self.path / "calls.txt"
        return len(calls.read_text().split()) if calls.exists() else 0

    def run(self, *args):
        """(exit status, stderr lines) of ``seamless-fast ARGS`` run in the folder."""
        err = io.StringIO()
        with chdir(self.path), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = cli.main([str(a) for a in args])
            except SystemExit as exit:
                status = exit.code
        return status, err.getvalue().strip().splitlines()

    def outputs(self):
        """Files the runs left besides the inputs."""
        keep = {"in.tif", f"{self.module}.py", "classes.txt", "calls.txt", "__pycache__", "area.geojson"}
        return sorted(set(os.listdir(self.path)) - keep)

    def close(self):
        sys.modules.pop(self.module, None)


@pytest.fixture()
def folder(tmp_path):
    image = np.random.default_rng(1).random((40, 36, 3)).astype(np.float32)
    made = Folder(tmp_path, image)
    yield made
    made.close()


def reference(image, model, tile, overlap):
    """The blend of the model's tiles, computed directly (values, channel-first)."""
    plan, _ = sf.plan_regular_grid(image.shape[:2], tile, overlap)
    reader = ImageReader(image)
    tiles = [model(reader.read(tuple(b))[None].transpose(0, 3, 1, 2))[0]
             for b in plan.tile_boxes[plan.load_order].tolist()]
    return sf.blend(plan, tiles, channel_first=True, labels=False)


def imported(folder):
    sys.path.insert(0, str(folder.path))
    try:
        return __import__(folder.module)
    finally:
        sys.path.pop(0)


# -- 1. labels and probabilities in the right dtype --------------------------------------------------

def _tiff_takes_uint32():
    import tempfile

    with tempfile.TemporaryDirectory() as temp:
        try:
            TiffWriter(os.path.join(temp, "x.tif"), (1, 1), dtype=np.uint32).abort()
        except ValueError:
            return False
    return True


TIFF_UINT32 = _tiff_takes_uint32()  # io.TiffWriter writes uint32 once its change lands


@settings(max_examples=12, deadline=None)
@given(classes=st.one_of(st.integers(2, 300), st.integers(2, 70_000), st.sampled_from([256, 257, 65536, 65537])),
       dtype=st.sampled_from([None, "uint8", "uint16", "uint32"]), seed=st.integers(0, 2**32 - 1))
@example(classes=70_000, dtype=None, seed=0)
@example(classes=65_537, dtype="uint16", seed=1)
@example(classes=300, dtype=None, seed=2)
def test_labels_are_exact_or_refused(tmp_path_factory, classes, dtype, seed):
    path = tmp_path_factory.mktemp("labels")
    rng = np.random.default_rng(seed)
    image = rng.random((12, 14, 1)).astype(np.float32)
    image.flat[rng.integers(image.size)] = (classes - 0.5) / classes  # the top class appears
    folder = Folder(path, image, classes)
    try:
        args = ["segment", "in.tif", "out.tif", "--model", folder.model("labels"), "--tile", "8", "--overlap", "2",
                "--batch-size", "3", "--no-progress"] + ([] if dtype is None else ["--dtype", dtype])
        status, err = folder.run(*args)
        fits = dtype is None or np.iinfo(dtype).max >= classes - 1
        stored = label_dtype(classes) if dtype is None else np.dtype(dtype)
        if not fits or (stored == np.uint32 and not TIFF_UINT32):
            assert status == 2 and len(err) == 1, err
            assert folder.outputs() == []
            if not fits:
                assert "classes" in err[0] and folder.calls == 1  # only the probe tile ran
            return
        assert status == 0, err
        out = tifffile.imread(path / "out.tif")
        expected = np.argmax(reference(image, imported(folder).labels, 8, 2), axis=0)
        assert out.dtype == stored
        np.testing.assert_array_equal(out.astype(np.int64), expected)
        assert expected.max() == classes - 1
    finally:
        folder.close()


def test_300_classes_default_to_uint16(folder):
    (folder.path / "classes.txt").write_text("300")
    folder.image[..., 0] = np.linspace(0, 1, folder.image[..., 0].size, endpoint=False).reshape(40, 36)
    write_tiff(folder.path / "in.tif", folder.image)
    status, err = folder.run("segment", "in.tif", "out.tif", "--model", folder.model("labels"), "--tile", "16",
                             "--overlap", "4", "--no-progress")
    assert status == 0, err
    out = tifffile.imread(folder.path / "out.tif")
    expected = np.argmax(reference(folder.image, imported(folder).labels, 16, 4), axis=0)
    assert out.dtype == np.uint16 and expected.max() > 255
    np.testing.assert_array_equal(out, expected)


def test_too_narrow_dtype_is_refused_after_the_probe_tile_only(folder):
    (folder.path / "classes.txt").write_text("300")
    status, err = folder.run("segment", "in.tif", "out.tif", "--model", folder.model("labels"), "--dtype", "uint8",
                             "--tile", "16", "--overlap", "4", "--no-progress")
    assert status == 2 and len(err) == 1
    assert "dtype=uint8 holds labels up to 255, but the model gives 300 classes" in err[0]
    assert folder.calls == 1 and folder.outputs() == []


@pytest.mark.parametrize("dtype, top", [("uint16", 65535), ("uint8", 255)])
def test_probabilities_fill_the_integer_range(folder, dtype, top):
    status, err = folder.run("segment", "in.tif", "out.tif", "--model", folder.model("softmax"), "--probabilities",
                             "--dtype", dtype, "--tile", "16", "--overlap", "4", "--no-progress")
    assert status == 0, err
    out = tifffile.imread(folder.path / "out.tif")
    values = reference(folder.image, imported(folder).softmax, 16, 4).transpose(1, 2, 0)
    assert out.dtype == dtype and out.max() > top // 2
    # batches and single tiles may round the model's float32 sums differently: one step at most
    np.testing.assert_allclose(out.astype(np.int64), to_output_dtype(values, dtype).astype(np.int64), rtol=0, atol=1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_integer_probabilities_of_logits_are_refused_after_the_probe_tile(folder, dtype):
    status, err = folder.run("segment", "in.tif", "out.tif", "--model", folder.model("labels"), "--probabilities",
                             "--dtype", dtype, "--tile", "16", "--overlap", "4", "--no-progress")
    assert status == 2 and len(err) == 1 and "not probabilities in [0, 1]" in err[0], err
    assert folder.calls == 1 and folder.outputs() == []


def test_values_beyond_float16_are_refused_after_the_probe_tile(folder):
    (folder.path / "huge.py").write_text("import numpy as np\n\ndef model(batch):\n"
                                         "    return np.asarray(batch, np.float32) * 1e6\n")
    try:
        status, err = folder.run("segment", "in.tif", "out.tif", "--model", "huge:model", "--probabilities",
                                 "--dtype", "float16", "--tile", "16", "--overlap", "4", "--no-progress")
    finally:
        sys.modules.pop("huge", None)
    assert status == 2 and len(err) == 1 and "beyond the range of float16" in err[0], err
    assert folder.outputs() == ["huge.py"]


@pytest.mark.parametrize("body, layout", [("return batch[:, :, :8]", "--channel-first"),
                                          ("return batch[0]", "--channel-first"),
                                          ("return batch", "--channel-last"),
                                          ("return np.concatenate([batch, batch])", "--channel-first")])
def test_model_output_of_the_wrong_shape_is_refused_at_the_probe(folder, body, layout):
    name = f"shape_{uuid.uuid4().hex}"
    (folder.path / f"{name}.py").write_text(f"import numpy as np\n\ndef model(batch):\n    {body}\n")
    try:
        status, err = folder.run("segment", "in.tif", "out.tif", "--model", f"{name}:model", layout, "--tile", "16",
                                 "--overlap", "4", "--no-progress")
    finally:
        sys.modules.pop(name, None)
    if layout == "--channel-last":  # (1, 16, 16, 3) read as channel-last is right
        assert status == 0, err
        return
    assert status == 2 and len(err) == 1 and "--model returned shape" in err[0], err
    assert not (folder.path / "out.tif").exists()


def _store(folder, labels=True, parts=2):
    for part in range(parts):
        status, err = folder.run("segment", "in.tif", "--part", f"{part}/{parts}", "--store", "s.zarr", "--model",
                                 folder.model("labels" if labels else "softmax"), "--tile", "16", "--overlap", "4",
                                 "--no-progress", *([] if labels else ["--probabilities"]))
        assert status == 0, err


def test_merge_chooses_and_checks_the_label_dtype(folder):
    (folder.path / "classes.txt").write_text("300")
    _store(folder)
    status, err = folder.run("merge", "--store", "s.zarr", "narrow.tif", "--dtype", "uint8")
    assert status == 2 and len(err) == 1 and "300 classes" in err[0]
    assert not (folder.path / "narrow.tif").exists()
    status, err = folder.run("merge", "--store", "s.zarr", "out.tif")
    assert status == 0, err
    out = tifffile.imread(folder.path / "out.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.argmax(reference(folder.image, imported(folder).labels, 16, 4), axis=0))


# -- 2. outputs that would destroy an input ---------------------------------------------------------

def test_output_that_is_the_input_is_refused(folder):
    before = (folder.path / "in.tif").read_bytes()
    os.symlink(folder.path / "in.tif", folder.path / "link.tif")
    os.link(folder.path / "in.tif", folder.path / "hard.tif")
    for output in ("in.tif", "link.tif", "hard.tif", "./in.tif", folder.path / "in.tif"):
        status, err = folder.run("segment", "in.tif", output, "--model", folder.model("labels"), "--no-progress")
        assert status == 2 and len(err) == 1 and "is the input" in err[0], err
    for source in ("link.tif", "hard.tif"):
        status, err = folder.run("segment", source, "in.tif", "--model", folder.model("labels"), "--no-progress")
        assert status == 2 and "is the input" in err[0], err
    assert (folder.path / "in.tif").read_bytes() == before and folder.calls == 0


def test_merge_into_its_own_store_is_refused(folder):
    _store(folder)
    listing = sorted(os.listdir(folder.path / "s.zarr"))
    for output in ("s.zarr", "s.zarr/out.tif", "s.zarr/part0", "./s.zarr/"):
        status, err = folder.run("merge", "--store", "s.zarr", output)
        assert status == 2 and len(err) == 1, (output, err)
    assert sorted(os.listdir(folder.path / "s.zarr")) == listing
    assert folder.run("merge", "--store", "s.zarr", "out.zarr")[0] == 0  # the store still merges
    assert folder.run("merge", "--store", "s.zarr", "out.zarr")[0] == 0  # and may replace its own zarr output


def test_store_that_is_the_input_is_refused(folder):
    before = (folder.path / "in.tif").read_bytes()
    status, err = folder.run("segment", "in.tif", "--part", "0/2", "--store", "in.tif", "--model",
                             folder.model("labels"), "--no-progress")
    assert status == 2 and len(err) == 1 and "is the input" in err[0]
    assert (folder.path / "in.tif").read_bytes() == before and folder.calls == 0


# -- 3. every bad input: one line, exit 2, nothing written, the model never called -------------------

def _bad_inputs(path):
    (path / "text.tif").write_text("not a TIFF at all\n")
    data = (path / "in.tif").read_bytes()
    (path / "corrupt.tif").write_bytes(data[:8] + b"\xff" * 64 + data[72:])  # first IFD overwritten
    (path / "truncated.tif").write_bytes(data[:len(data) // 2])
    (path / "notastore").mkdir()
    (path / "import_fails.py").write_text("raise RuntimeError('cannot load the weights')\n")
    (path / "syntax_error.py").write_text("def model(:\n")
    (path / "area.geojson").write_text('{"type": "Polygon", "coordinates": [[[1000, 1000], [1100, 1000], '
                                       '[1100, 1100], [1000, 1000]]]}')


BAD = {
    "not a TIFF": (["text.tif", "out.tif"], "is not a readable TIFF"),
    "corrupt TIFF": (["corrupt.tif", "out.tif"], "is not a readable TIFF"),
    "truncated TIFF": (["truncated.tif", "out.tif"], "truncated.tif"),  # io.ImageReader's check at open
    "missing input": (["missing.tif", "out.tif"], "does not exist"),
    "missing output folder": (["in.tif", "missing/out.tif"], "does not exist"),
    "unknown extension": (["in.tif", "out.png"], "unknown extension"),
    "existing folder": (["in.tif", "."], "unknown extension"),
    "existing folder named .tif": (["in.tif", "folder.tif"], "is an existing folder"),
    "NaN area": (["in.tif", "out.tif", "--area", "POLYGON ((0 0, nan 5, 10 10, 0 10, 0 0))"], "not finite"),
    "area outside": (["in.tif", "out.tif", "--area", "area.geojson"], "lies outside the image"),
    "area no polygon": (["in.tif", "out.tif", "--area", "LINESTRING (0 0, 10 10)"], "encloses no area"),
    "area not WKT": (["in.tif", "out.tif", "--area", "POLYGON ((0 0"], "neither a GeoJSON file nor WKT"),
    "overlap >= tile": (["in.tif", "out.tif", "--tile", "16", "--overlap", "16"], "must be smaller than --tile"),
    "model import fails": (["in.tif", "out.tif", "--model", "import_fails:model"], "cannot load the weights"),
    "model syntax error": (["in.tif", "out.tif", "--model", "syntax_error:model"], "SyntaxError"),
    "model missing": (["in.tif", "out.tif", "--model", "no_such_module:model"], "cannot import"),
    "labels as float": (["in.tif", "out.tif", "--dtype", "float32"], "does not hold labels"),
    "probabilities as uint32": (["in.tif", "out.tif", "--probabilities", "--dtype", "uint32"], "labels only"),
    "bad dtype": (["in.tif", "out.tif", "--dtype", "int8"], "invalid choice"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_before_any_work(folder, case):
    _bad_inputs(folder.path)
    (folder.path / "folder.tif").mkdir()
    args, message = BAD[case]
    if "--model" not in args:
        args = args + ["--model", folder.model("labels")]
    before = folder.outputs()
    status, err = folder.run("segment", *args, "--no-progress")
    assert status == 2, err
    assert len(err) == 1 and message in err[0], err
    assert folder.outputs() == before
    assert folder.calls == 0


@pytest.mark.parametrize("args, message", [
    (["plan", "10000000000x10000000000"], "too large to plan"),
    (["plan", "0x100"], "must be positive"),
    (["plan", "text.tif"], "is not a readable TIFF"),
    (["plan", "100x100", "--tile", "32", "--overlap", "40"], "must be smaller than --tile"),
    (["merge", "--store", "missing.zarr", "out.tif"], "does not exist"),
    (["merge", "--store", "in.tif", "out.tif"], "is not a folder"),
    (["merge", "--store", "notastore", "out.tif"], "is not a seamless_fast parts store"),
    (["merge", "--store", "s.zarr", "out.png"], "unknown extension"),
    (["demo", "--size", "64", "--tile", "64", "--overlap", "16", "--out", "d"], "must be larger than --tile"),
    (["demo", "--out", "in.tif"], "is a file"),
    (["demo", "--out", "missing/d"], "does not exist"),
])
def test_other_commands_refuse_bad_input_on_one_line(folder, args, message):
    _bad_inputs(folder.path)
    before = folder.outputs()
    status, err = folder.run(*args)
    assert status == 2, err
    assert len(err) == 1 and message in err[0], err
    assert folder.outputs() == before


def test_model_failure_while_running_is_exit_1_and_leaves_nothing(folder):
    (folder.path / "late.py").write_text(textwrap.dedent('''
        import numpy as np
        calls = []

        def model(batch):
            calls.append(1)
            if len(calls) > 2:
                raise RuntimeError("failed on the third call")
            return np.asarray(batch, np.float32)
    '''))
    try:
        status, err = folder.run("segment", "in.tif", "out.tif", "--model", "late:model", "--tile", "16",
                                 "--overlap", "4", "--batch-size", "1", "--no-progress")
    finally:
        sys.modules.pop("late", None)
    assert status == 1 and "failed on the third call" in "\n".join(err)
    assert folder.outputs() == ["late.py"]


# -- 5. the working directory never shadows an installed package -----------------------------------

def test_working_directory_comes_last_on_the_path(folder, tmp_path_factory, monkeypatch):
    name = f"shadowed_{uuid.uuid4().hex}"
    installed = tmp_path_factory.mktemp("site")
    (installed / f"{name}.py").write_text("SCALE = 1.0\n")
    (folder.path / f"{name}.py").write_text("raise ImportError('the stray copy in the working directory')\n")
    (folder.path / "uses_it.py").write_text(textwrap.dedent(f'''
        import numpy as np
        import {name}

        def model(batch):
            return np.asarray(batch, np.float32) * {name}.SCALE
    '''))
    monkeypatch.syspath_prepend(str(installed))
    try:
        status, err = folder.run("segment", "in.tif", "out.tif", "--model", "uses_it:model", "--tile", "16",
                                 "--overlap", "4", "--probabilities", "--no-progress")
        assert status == 0, err
        assert str(folder.path) not in sys.path
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop("uses_it", None)
    np.testing.assert_allclose(tifffile.imread(folder.path / "out.tif"), folder.image, atol=1e-6)


@pytest.mark.parametrize("layout", ["--channel-first", "--channel-last"])
def test_one_channel_probabilities_are_a_2d_image(folder, layout):
    (folder.path / "one.py").write_text("import numpy as np\n\ndef model(batch):\n"
                                        "    axis = 1 if batch.shape[1] == 3 else 3\n"
                                        "    return np.take(np.asarray(batch, np.float32), [0], axis=axis)\n")
    try:
        status, err = folder.run("segment", "in.tif", "out.tif", "--model", "one:model", "--probabilities", layout,
                                 "--tile", "16", "--overlap", "4", "--no-progress")
    finally:
        sys.modules.pop("one", None)
    assert status == 0, err
    np.testing.assert_allclose(tifffile.imread(folder.path / "out.tif"), folder.image[..., 0], rtol=1e-6)
