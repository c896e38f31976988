"""TiffWriter and the file system: partials, a disk that fills, a killed or forgetful process, odd paths."""

import gc
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from seamless_fast._files import partial_prefix
from seamless_fast.io import ImageReader, TiffWriter

tifffile = pytest.importorskip("tifffile")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(code, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def write_rows(writer, rows, width, value=1):
    for row in range(0, rows, 64):
        writer.write((row, 0, row + 64, width), np.full((64, width), value, np.uint8))


def partial_files(folder):
    return [name for name in os.listdir(folder) if ".partial-" in name]


def test_exception_inside_with_leaves_no_file(tmp_path):
    path = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="model crashed"):
        with TiffWriter(path, (300, 300), tile=(64, 64)) as writer:
            writer.write((0, 0, 150, 300), np.ones((150, 300), np.uint8))
            raise RuntimeError("model crashed")
    assert os.listdir(tmp_path) == []
    assert "aborted" in repr(writer)
    with pytest.raises(ValueError, match="aborted"):
        writer.write((150, 0, 300, 300), np.ones((150, 300), np.uint8))


def test_existing_file_replaced_only_on_success(tmp_path):
    path = tmp_path / "out.tif"
    path.write_bytes(b"old result")
    with pytest.raises(KeyError):
        with TiffWriter(path, (40, 40), tile=(16, 16)) as writer:
            writer.write((0, 0, 20, 40), np.ones((20, 40), np.uint8))
            raise KeyError("stop")
    assert path.read_bytes() == b"old result" and partial_files(tmp_path) == []
    with TiffWriter(path, (40, 40), tile=(16, 16)) as writer:
        writer.write((0, 0, 20, 40), np.ones((20, 40), np.uint8))
        assert path.read_bytes() == b"old result"  # not yet replaced
    assert (tifffile.imread(path)[:20] == 1).all()


def test_forgotten_writer_stops_its_thread_and_cleans_up(tmp_path):
    writer = TiffWriter(tmp_path / "out.tif", (64, 64), tile=(16, 16))
    writer.write((0, 0, 16, 64), np.ones((16, 64), np.uint8))
    thread = writer._thread
    del writer
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive() and os.listdir(tmp_path) == []


def test_background_failure_surfaces_in_caller(tmp_path, monkeypatch):
    def failing_write(self, data=None, **kwargs):
        next(data)
        raise OSError("disk full")

    monkeypatch.setattr(tifffile.TiffWriter, "write", failing_write)
    path = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="disk full"):
        with TiffWriter(path, (16 * 40, 32), tile=(16, 16)) as writer:
            for row in range(0, 16 * 40, 16):
                writer.write((row, 0, row + 16, 32), np.ones((16, 32), np.uint8))
    assert os.listdir(tmp_path) == []
    assert not writer._thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("TiffWriter(")]


def test_partial_is_made_by_make_partial_beside_the_output(tmp_path):
    writer = TiffWriter(tmp_path / "out.tif", (64, 64), tile=(16, 16))
    try:
        (name,) = os.listdir(tmp_path)
        host_pid = name[len(partial_prefix("out.tif")):]
        assert name.startswith(".out.tif.partial-") and f"-{os.getpid()}-" in f"-{host_pid}"
    finally:
        writer.abort()
    assert os.listdir(tmp_path) == []


def test_existing_folder_as_path_is_refused(tmp_path):
    (tmp_path / "out.tif").mkdir()
    with pytest.raises(ValueError, match="path=.*out.tif' is an existing folder"):
        TiffWriter(tmp_path / "out.tif", (32, 32), tile=(16, 16))
    assert os.listdir(tmp_path) == ["out.tif"] and os.listdir(tmp_path / "out.tif") == []
    with pytest.raises(ValueError, match="folder .* does not exist"):
        TiffWriter(tmp_path / "missing" / "out.tif", (32, 32), tile=(16, 16))


DISK_FULL_CHILD = """
import resource, signal, sys
import numpy as np
from seamless_fast.io import TiffWriter

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    with TiffWriter(sys.argv[1], (1024, 1024), tile=(64, 64)) as writer:
        for row in range(0, 1024, 64):
            writer.write((row, 0, row + 64, 1024), np.full((64, 1024), 3, np.uint8))
except Exception as exc:
    print("refused", type(exc).__name__, exc, flush=True)
    sys.exit(0)
print("written", flush=True)
sys.exit(3)
"""


@pytest.mark.parametrize("limit", [100, 5_000, 300_000, 1_048_000])
def test_disk_full_gives_an_error_and_leaves_nothing(tmp_path, limit):
    """A file limit (as a full disk: writes fail with EFBIG) while the header, the tiles or the last bytes go
    out: an error, and neither the file nor a partial remains."""
    path = tmp_path / "out.tif"
    child = run_child(DISK_FULL_CHILD, path, limit)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and out.startswith("refused"), (out, err)
    assert "OSError" in out or "File too large" in out, out
    assert os.listdir(tmp_path) == []


def test_failure_when_closing_the_file_leaves_nothing(tmp_path, monkeypatch):
    original = tifffile.TiffWriter.close

    def failing_close(self):  # the last bytes do not reach the disk
        original(self)
        raise OSError(28, "No space left on device")

    path = tmp_path / "out.tif"
    writer = TiffWriter(path, (128, 128), tile=(64, 64))
    write_rows(writer, 128, 128)
    monkeypatch.setattr(tifffile.TiffWriter, "close", failing_close)
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [] and "aborted" in repr(writer)


def test_failure_of_the_rename_leaves_nothing(tmp_path, monkeypatch):
    def failing_replace(source, target):
        raise OSError(5, "Input/output error")

    path = tmp_path / "out.tif"
    writer = TiffWriter(path, (128, 128), tile=(64, 64))
    write_rows(writer, 128, 128)
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output error"):
        writer.close()
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


KILLED_CHILD = """
import sys, time
import numpy as np
from seamless_fast.io import TiffWriter

writer = TiffWriter(sys.argv[1], (4096, 4096), tile=(256, 256), compression="zlib")
for row in range(0, 1024, 256):
    writer.write((row, 0, row + 256, 4096), np.ones((256, 4096), np.uint8))
print("ready", flush=True)
time.sleep(60)
"""


def test_killed_process_leaves_a_partial_that_the_next_writer_removes(tmp_path):
    path = tmp_path / "out.tif"
    other = tmp_path / f"{partial_prefix('other.tif')}x-1-y"  # another output's partial is not touched
    other.write_bytes(b"")
    child = run_child(KILLED_CHILD, path)
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    assert not path.exists()
    (stale,) = [name for name in os.listdir(tmp_path) if name.startswith(partial_prefix(path))]
    assert f"-{child.pid}-" in stale
    with TiffWriter(path, (64, 64), tile=(16, 16)) as writer:
        assert stale not in os.listdir(tmp_path)  # removed when the writer started
        writer.write((0, 0, 64, 64), np.full((64, 64), 9, np.uint8))
    assert sorted(os.listdir(tmp_path)) == sorted([other.name, "out.tif"])
    assert (tifffile.imread(path) == 9).all()


FORGETFUL_CHILD = """
import sys
import numpy as np
from seamless_fast.io import TiffWriter

writer = TiffWriter(sys.argv[1], (256, 256), tile=(64, 64))
writer.write((0, 0, 64, 256), np.ones((64, 256), np.uint8))
print("exiting", flush=True)
"""


def test_writer_never_closed_leaves_nothing_when_the_process_exits(tmp_path):
    child = run_child(FORGETFUL_CHILD, tmp_path / "out.tif")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "exiting", err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("change", [-1, 1])
def test_tile_count_mismatch_is_an_error_not_a_hang(tmp_path, change):
    """If tifffile ever expects other than the tiles sent, close raises (it waited forever on too few)."""
    writer = TiffWriter(tmp_path / "out.tif", (64, 64), tile=(16, 16))
    writer._n_bands += change
    writer.write((0, 0, 48, 64), np.zeros((48, 64), np.uint8))
    outcome = []
    closer = threading.Thread(target=lambda: outcome.append(_try(writer.close)), daemon=True)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive(), "close() hangs"
    assert isinstance(outcome[0], RuntimeError), outcome
    assert os.listdir(tmp_path) == []


def _try(function):
    try:
        function()
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


@pytest.mark.parametrize("ome", [False, True])
def test_one_channel_output(tmp_path, ome):
    """channels=1 (a one-class probability output) failed in tifffile (one contiguous sample); it is stored as
    a 2-D image and reads back as one channel."""
    image = np.random.default_rng(0).random((40, 50, 1)).astype(np.float32)
    path = tmp_path / "one.tif"
    with TiffWriter(path, (40, 50), channels=1, dtype=np.float32, tile=(16, 16), ome=ome) as writer:
        assert writer.channels == 1
        writer.write((0, 0, 40, 30), image[:, :30])
        writer.write((0, 30, 40, 50), image[:, 30:])
    np.testing.assert_array_equal(tifffile.imread(path), image[..., 0])
    with ImageReader(path) as reader:
        assert reader.channels == 1 and reader.metadata["ome"] == ome
        np.testing.assert_array_equal(reader.read((0, 0, 40, 50)), image)
