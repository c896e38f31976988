"""The parts store: parts killed at random moments, re-runs, label dtypes, and where (and how) outputs are written."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import seamless_fast as sf

zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")

from seamless_fast import _files  # noqa: E402
from seamless_fast.scale.store import Job, PartStore  # noqa: E402

IMAGE = np.random.default_rng(3).random((200, 170, 3), np.float32)
JOB = Job.from_options(IMAGE.shape[:2], 48, 16, parts=3, chunk=32)
TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def read_tile(box):
    return IMAGE[box[0]:box[2], box[1]:box[3]]


def model(batch):
    """Context-dependent, tile by tile (so batching does not change its numbers)."""
    return np.stack([np.concatenate([t - t.mean(axis=(1, 2), keepdims=True), t[:1] ** 2])
                     for t in np.ascontiguousarray(batch, np.float32)])


def single_process(job=JOB, model=model, labels=False, out=None):
    plan = job.plan()
    tiles = (model(read_tile(b)[None].transpose(0, 3, 1, 2))[0] for b in plan.tile_boxes[plan.load_order])
    sf.blend(plan, tiles, out=out, labels=labels, channel_first=True)
    return out


def expected_values():
    return single_process(out=np.zeros((4,) + IMAGE.shape[:2], np.float32)).transpose(1, 2, 0)


def complete(path, job=JOB, model=model):
    store = PartStore(path, job)
    for part in range(job.parts):
        store.run_part(part, read_tile, model)
    return store


# -- re-runs and kills --------------------------------------------------------

def test_a_part_rerun_over_a_failed_attempt_while_others_are_complete_verifies(tmp_path):
    store = PartStore(tmp_path / "s.zarr", JOB)
    for part in (0, 2):
        store.run_part(part, read_tile, model)
    calls = []

    def flaky(batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker lost")
        return model(batch)

    with pytest.raises(RuntimeError, match="worker lost"):
        store.run_part(1, read_tile, flaky, batch_size=2)
    assert store.missing_parts() == [1]
    store.verify([0, 2])
    store.run_part(1, read_tile, model, batch_size=3)
    assert [r.part for r in store.verify()] == [0, 1, 2]
    store.merge(tmp_path / "out.zarr")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], expected_values())


def test_a_complete_part_damaged_later_is_run_again(tmp_path):
    store = complete(tmp_path / "s.zarr")
    os.remove(tmp_path / "s.zarr" / "part1" / "lead" / "c" / "0" / "0" / "0")
    with pytest.raises(ValueError, match="part 1: array lead chunk c/0/0/0 is missing"):
        store.verify()
    assert store.parts_to_run() == [1]
    store.run_part(1, read_tile, model)
    store.verify()
    store.merge(tmp_path / "out.zarr")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], expected_values())


KILLED = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_store_safety import JOB, model, read_tile
    from seamless_fast.scale.store import PartStore

    store = PartStore({store!r}, JOB)
    store.run_part(0, read_tile, model)  # warm: kernels compiled or loaded
    open({marker!r}, "w").close()
    for part in (1, 2):
        store.run_part(part, read_tile, lambda batch: (time.sleep(0.01), model(batch))[1], batch_size=2)
    open({marker!r} + ".done", "w").close()
''')


def test_parts_killed_at_random_moments_leave_nothing_counted_as_complete_that_is_not(tmp_path):
    """SIGKILL at a random moment of parts 1 and 2: each part is either not complete or verifies fully."""
    rng = np.random.default_rng(2024)
    want = expected_values()
    span = None
    for trial in range(10):
        folder = tmp_path / str(trial)
        folder.mkdir()
        store_path, marker = folder / "s.zarr", folder / "started"
        script = KILLED.format(tests=TESTS, store=str(store_path), marker=str(marker))
        process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                                   env=dict(os.environ, PYTHONPATH=ROOT))
        try:
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert process.poll() is None, "the run ended before it started its parts"
                assert time.monotonic() < deadline
                time.sleep(0.01)
            started = time.monotonic()
            if span is None:  # the first trial measures how long parts 1 and 2 take, then runs to its end
                done = folder / "started.done"
                while not done.exists():
                    assert process.poll() is None, "the run ended before it finished its parts"
                    time.sleep(0.001)
                span = time.monotonic() - started
                assert process.wait(timeout=300) == 0
            else:
                time.sleep(rng.uniform(0, span))
                os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        store = PartStore(store_path)
        for part in range(3):
            if store.result(part) is not None:
                store.verify([part])
        print("trial", trial, "complete after the kill:", [store.result(q) is not None for q in range(3)])
        assert store.result(0) is not None
        for part in range(3):
            store.run_part(part, read_tile, model)
        store.merge(folder / "out.zarr")
        np.testing.assert_array_equal(zarr.open_array(folder / "out.zarr", mode="r")[:], want)
        assert set(os.listdir(folder)) <= {"s.zarr", "out.zarr", "started", "started.done"}  # no partial


# -- labels ---------------------------------------------------------------------

def classes_model(classes):
    def run(batch):
        batch = np.asarray(batch, np.float32)
        k = np.arange(classes, dtype=np.float32)[None, :, None, None]
        return -(batch[:, :1] * (classes - 1) - k) ** 2 + batch[:, 1:2]
    return run


def test_a_300_class_labels_job_merges_to_uint16_with_every_label_right(tmp_path):
    job = Job.from_options(IMAGE.shape[:2], 48, 16, parts=3, chunk=32, labels=True)
    store = complete(tmp_path / "s.zarr", job, classes_model(300))
    with pytest.raises(ValueError, match="dtype=uint8 holds labels up to 255, but the model gives 300 classes"):
        store.merge(tmp_path / "out.tif", dtype="uint8")
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]
    want = single_process(job, classes_model(300), labels=True, out=np.zeros(IMAGE.shape[:2], np.uint16))
    assert want.max() > 255
    store.merge(tmp_path / "out.zarr")
    store.merge(tmp_path / "out.tif")
    store.merge(tmp_path / "wide.zarr", dtype="uint32")
    for name, dtype in [("out.zarr", np.uint16), ("wide.zarr", np.uint32)]:
        got = zarr.open_array(tmp_path / name, mode="r")[:]
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    got = tifffile.imread(tmp_path / "out.tif")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)


def test_probabilities_are_quantised_to_the_whole_uint16_range(tmp_path):
    def softmax(batch):
        values = model(batch)
        e = np.exp(values - values.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    store = complete(tmp_path / "s.zarr", model=softmax)
    want = single_process(model=softmax, out=np.zeros((4,) + IMAGE.shape[:2], np.float32)).transpose(1, 2, 0)
    store.merge(tmp_path / "p.zarr", dtype="uint16")
    store.merge(tmp_path / "p.tif", dtype="uint16", compression=None)
    quantised = np.rint(np.clip(want.astype(np.float64), 0, 1) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "p.zarr", mode="r")[:], quantised)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "p.tif"), quantised)


# -- outputs ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def done_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("done") / "s.zarr"
    complete(path)
    return path


@pytest.mark.parametrize("name, message", [
    ("s.zarr", "is the input"),
    ("link.zarr", "is the input"),
    ("s.zarr/out.zarr", "lies inside the input"),
    ("s.zarr/part0/rows.zarr", "lies inside the input"),
    ("plain.zarr", "is an existing folder"),
    ("folder.tif", "is an existing folder"),
    ("out.png", r"expected a .tif, .tiff or .zarr name"),
])
def test_merge_refuses_an_output_that_is_the_store_inside_it_or_a_folder(done_store, name, message):
    folder = done_store.parent
    for extra in ("link.zarr", "plain.zarr", "folder.tif"):
        if not os.path.lexists(folder / extra):
            if extra == "link.zarr":
                os.symlink(done_store, folder / extra)
            else:
                (folder / extra).mkdir()
    before = sorted(os.listdir(folder))
    with pytest.raises(ValueError, match=message):
        PartStore(done_store).merge(folder / name)
    assert sorted(os.listdir(folder)) == before
    PartStore(done_store).verify()


def test_zarr_output_and_store_take_their_permissions_from_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        store = complete(tmp_path / "s.zarr")
        store.merge(tmp_path / "out.zarr")
    finally:
        os.umask(old)
    for name in ("s.zarr", "out.zarr"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "out.zarr" / "zarr.json").stat().st_mode & 0o777 == 0o640


FULL_DISK = textwrap.dedent('''
    import resource, signal, sys
    from seamless_fast.scale.store import PartStore

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    PartStore({store!r}).merge({output!r})
''')


@pytest.mark.parametrize("name", ["out.zarr", "out.tif"])
def test_a_full_disk_during_a_merge_leaves_no_partial_and_no_output(done_store, tmp_path, name):
    path = tmp_path / "s.zarr"
    os.symlink(done_store, path)  # the store is read only
    run = subprocess.run([sys.executable, "-c", FULL_DISK.format(store=str(path), output=str(tmp_path / name))],
                         capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert run.returncode != 0
    assert "File too large" in run.stderr or "EFBIG" in run.stderr or "No space" in run.stderr, run.stderr
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_merge_and_a_new_store_remove_stale_partials_of_their_own_name(done_store, tmp_path):
    host = _files._host()
    stale = [f".out.zarr.partial-{host}-{dead_pid()}-abc", f".s.zarr.partial-{host}-{dead_pid()}-def"]
    kept = f".out.zarr.partial-otherhost-{os.getpid()}-ghi"  # another host's: left alone
    for name in stale + [kept]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "zarr.json").write_text("{}")
    PartStore(done_store).merge(tmp_path / "out.zarr")
    PartStore(tmp_path / "s.zarr", JOB)
    assert sorted(os.listdir(tmp_path)) == sorted(["out.zarr", "s.zarr", kept])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_a_part_is_on_the_disk_before_its_record_says_it_is_done(tmp_path, monkeypatch):
    """Every file a part wrote is flushed before its completion record is written, and the record after."""
    synced, real = [], os.fsync

    def fsync(handle):
        synced.append(os.readlink(f"/proc/self/fd/{handle}"))
        real(handle)

    store = PartStore(tmp_path / "s.zarr", JOB)
    monkeypatch.setattr(os, "fsync", fsync)
    store.run_part(1, read_tile, model)
    group = str(tmp_path / "s.zarr" / "part1")
    files = {os.path.join(root, name) for root, _, names in os.walk(group) for name in names}
    record = os.path.join(group, "zarr.json")
    assert files - {record} <= set(synced[:-1]) and len(files) > 3
    assert synced[-1] == record
