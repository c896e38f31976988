"""The parts store: restart rules, a part killed midway, bad input, and the command line parts."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import seamless_fast as sf

zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")

from seamless_fast.scale.store import Job, PartStore  # noqa: E402

IMAGE = np.random.default_rng(7).random((230, 190, 3), np.float32)
JOB = Job.from_options(IMAGE.shape[:2], 48, 16, parts=3, labels=False, chunk=64)


def read_tile(box):
    return IMAGE[box[0]:box[2], box[1]:box[3]]


def model(batch):
    """Context-dependent, and tile by tile so that its numbers do not depend on how tiles are batched."""
    return np.stack([np.concatenate([tile - tile.mean(axis=(1, 2), keepdims=True), tile[:1] ** 2])
                     for tile in np.ascontiguousarray(batch, np.float32)])


def expected_output():
    plan = JOB.plan()
    out = np.zeros((4,) + IMAGE.shape[:2], np.float32)
    sf.blend(plan, (model(read_tile(b)[None].transpose(0, 3, 1, 2))[0] for b in plan.tile_boxes[plan.load_order]),
             out=out, channel_first=True)
    return out.transpose(1, 2, 0)


def test_a_complete_part_is_not_run_again(tmp_path):
    store = PartStore(tmp_path / "s.zarr", JOB)
    first = store.run_part(1, read_tile, model)

    def broken(batch):
        raise AssertionError("the model must not run for a complete part")

    again = PartStore(tmp_path / "s.zarr", JOB).run_part(1, read_tile, broken)
    assert again == first
    assert store.missing_parts() == [0, 2]


def test_merge_needs_every_part_and_output_is_exact_as_tiff_and_zarr(tmp_path):
    store = PartStore(tmp_path / "s.zarr", JOB)
    store.run_part(0, read_tile, model)
    with pytest.raises(ValueError, match=r"parts \[1, 2\] of 3 are not complete"):
        store.merge(tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()
    for part in (2, 1):
        store.run_part(part, read_tile, model)
    handed_over = sum(store.result(part).seam_bytes for part in range(3))
    assert handed_over == store.partition.seam_bytes(channels=4) > 0
    store.merge(tmp_path / "out.tif", dtype="float32")
    store.merge(tmp_path / "out.zarr")
    want = expected_output()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), want)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], want)
    with pytest.raises(ValueError, match="not probabilities in"):  # the model's values are not in [0, 1]
        store.merge(tmp_path / "out.zarr", dtype="uint8")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], want)  # earlier output kept
    store.merge(tmp_path / "out.zarr", dtype="float16")  # replaces the earlier output once complete
    assert zarr.open_array(tmp_path / "out.zarr", mode="r").dtype == np.float16
    assert sorted(os.listdir(tmp_path)) == ["out.tif", "out.zarr", "s.zarr"]  # no temporary left


def test_a_failing_merge_leaves_no_output(tmp_path, monkeypatch):
    store = PartStore(tmp_path / "s.zarr", JOB)
    for part in range(3):
        store.run_part(part, read_tile, model)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("seamless_fast.scale.store.merge_lead_rows", fail)
    for name in ("out.zarr", "out.tif"):
        with pytest.raises(RuntimeError, match="disk full"):
            store.merge(tmp_path / name)
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]


def test_a_part_that_fails_midway_is_not_complete_and_reruns_from_the_start(tmp_path):
    store = PartStore(tmp_path / "s.zarr", JOB)
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return model(batch)

    with pytest.raises(RuntimeError, match="worker lost"):
        store.run_part(1, read_tile, flaky, batch_size=2)
    assert store.result(1) is None
    result = store.run_part(1, read_tile, model, batch_size=2)
    assert result.tiles == len(store.partition.steps_of(1))
    for part in (0, 2):
        store.run_part(part, read_tile, model)
    store.merge(tmp_path / "out.zarr")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], expected_output())


KILLED_PART = textwrap.dedent('''
    import os, sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_store import JOB, model, read_tile
    from seamless_fast.scale.store import PartStore

    calls = []
    def slow(batch):
        calls.append(1)
        if len(calls) == 3:
            open({marker!r}, "w").close()  # rows and seams of earlier batches are in the store by now
            time.sleep(60)
        return model(batch)

    PartStore({store!r}, JOB).run_part(0, read_tile, slow, batch_size=2)
''')


def test_a_killed_part_leaves_nothing_counted_as_done(tmp_path):
    marker, store_path = tmp_path / "started", tmp_path / "s.zarr"
    script = KILLED_PART.format(tests=os.path.dirname(__file__), marker=str(marker), store=str(store_path))
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, "the part ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    store = PartStore(store_path)
    assert store.result(0) is None
    for part in (0, 1, 2):
        store.run_part(part, read_tile, model)
    store.merge(tmp_path / "out.zarr")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], expected_output())


def test_parts_starting_together_share_one_store(tmp_path):
    path, errors, stores = tmp_path / "s.zarr", [], []

    def open_store():
        try:
            stores.append(PartStore(path, JOB))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(stores) == 4
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]


def test_store_errors_name_the_problem(tmp_path):
    PartStore(tmp_path / "s.zarr", JOB)
    other = Job.from_options(IMAGE.shape[:2], 48, 16, parts=2, chunk=64)
    with pytest.raises(ValueError, match=r"belongs to another job: parts=3 \(this run: 2\)"):
        PartStore(tmp_path / "s.zarr", other)
    with pytest.raises(ValueError, match="does not exist"):
        PartStore(tmp_path / "missing.zarr")
    with pytest.raises(ValueError, match="part=3 is out of range"):
        PartStore(tmp_path / "s.zarr").run_part(3, read_tile, model)
    with pytest.raises(ValueError, match="job must be a Job"):
        PartStore(tmp_path / "t.zarr", {"parts": 2})
    with pytest.raises(ValueError, match="window='bartlett'"):
        Job.from_options((100, 100), 32, 8, parts=2, window="bartlett")
    with pytest.raises(ValueError, match="parts=9 is more than the 4 tile rows"):
        Job.from_options((100, 100), 32, 8, parts=9)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="cannot be opened as a zarr group|not a seamless_fast parts store"):
        PartStore(tmp_path / "plain")


def test_a_store_outside_an_existing_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        PartStore(tmp_path / "nowhere" / "s.zarr", JOB)


def test_merge_output_name_must_say_its_format(tmp_path):
    store = PartStore(tmp_path / "s.zarr", JOB)
    for part in range(3):
        store.run_part(part, read_tile, model)
    with pytest.raises(ValueError, match="expected a .tif, .tiff or .zarr name"):
        store.merge(tmp_path / "out.png")


# -- command line ------------------------------------------------------------

CLI_MODEL = textwrap.dedent('''
    import numpy as np

    def segmenter(batch):
        batch = np.asarray(batch, dtype=np.float32)
        centred = batch[:, :1] - batch[:, :1].mean(axis=(2, 3), keepdims=True)
        return np.concatenate([centred, -centred, batch[:, 1:2] - 0.5], axis=1)
''')


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "seamless_fast", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_command_line_parts_in_any_order_then_merge_equal_one_segment_run(tmp_path):
    (tmp_path / "toymodel.py").write_text(CLI_MODEL)
    tifffile.imwrite(tmp_path / "in.tif", IMAGE, tile=(64, 64), photometric="rgb")
    common = ["--model", "toymodel:segmenter", "--tile", "64", "--overlap", "16", "--no-progress"]
    run = cli("segment", "in.tif", "whole.tif", *common, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for part in (1, 0):
        run = cli("segment", "in.tif", *common, "--part", f"{part}/2", "--store", "parts.zarr", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    assert "missing parts: none" in run.stderr
    run = cli("segment", "in.tif", *common, "--part", "1/2", "--store", "parts.zarr", cwd=tmp_path)
    assert run.returncode == 0 and "already complete" in run.stderr
    chunk = next(p for p in sorted((tmp_path / "parts.zarr" / "part1").rglob("*")) if p.is_file()
                 and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])  # a damaged part is run again
    run = cli("segment", "in.tif", *common, "--part", "1/2", "--store", "parts.zarr", cwd=tmp_path)
    assert run.returncode == 0 and "already complete" not in run.stderr and "tiles in" in run.stderr
    run = cli("merge", "--store", "parts.zarr", "merged.tif", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "merged.tif"), tifffile.imread(tmp_path / "whole.tif"))


@pytest.mark.parametrize("args, message", [
    (["segment", "in.tif", "--part", "0/2"], "--part needs --store DIR"),
    (["segment", "in.tif", "out.tif", "--part", "0/2", "--store", "s.zarr"], "give the output 'out.tif'"),
    (["segment", "in.tif", "--store", "s.zarr"], "--store goes with --part"),
    (["segment", "in.tif"], "the output TIFF is missing"),
    (["segment", "in.tif", "--part", "2/2", "--store", "s.zarr"], "'2/2' is not K/N with 0 <= K < N"),
    (["segment", "in.tif", "--part", "0/2", "--store", "s.zarr", "--dtype", "uint16"], "--dtype is chosen at"),
    (["merge", "--store", "nothing.zarr", "out.tif"], "does not exist"),
])
def test_command_line_part_errors(tmp_path, args, message):
    (tmp_path / "toymodel.py").write_text(CLI_MODEL)
    tifffile.imwrite(tmp_path / "in.tif", IMAGE[:64, :64], photometric="rgb")
    model = ["--model", "toymodel:segmenter"] if args[0] == "segment" else []
    run = cli(*args, *model, cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr


def test_merge_before_every_part_is_done_is_a_usage_error(tmp_path):
    (tmp_path / "toymodel.py").write_text(CLI_MODEL)
    tifffile.imwrite(tmp_path / "in.tif", IMAGE, photometric="rgb")
    run = cli("segment", "in.tif", "--model", "toymodel:segmenter", "--tile", "64", "--overlap", "16",
              "--no-progress", "--part", "0/2", "--store", "p.zarr", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    run = cli("merge", "--store", "p.zarr", "out.tif", cwd=tmp_path)
    assert run.returncode == 2 and "parts [1] of 2 are not complete" in run.stderr
    assert not (tmp_path / "out.tif").exists()
