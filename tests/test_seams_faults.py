"""Stripe seams under failing I/O: a striped run gives exactly the fault-free output or raises; never a wrong value.

The seam files are written with ``os.pwrite`` and read with ``os.preadv``;
here those return short counts, return 0, or fail with ENOSPC / EIO at random
points, as POSIX allows and a nearly full disk does.
"""

import errno
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.engine import _seams
from seamless_fast.plan import STEP_COLUMNS

from cases import check_against_reference, random_tiles, to_layout

REAL_PWRITE, REAL_PREADV = os.pwrite, os.preadv


def _plan(channels=3):
    plan, _ = sf.plan_regular_grid((150, 420), 32, 8, max_buffer_bytes=32 * 100 * 4 * channels, channels=channels,
                                   traverse="rows")
    assert len(plan.stripes) >= 3 and (plan.seams[:, 1] > plan.seams[:, 0]).all()
    return plan


PLAN = _plan()
TILES = random_tiles(PLAN, np.random.default_rng(7), 3, np.float32)
ORDERED = [TILES[t] for t in PLAN.load_order.tolist()]


@pytest.fixture(scope="module")
def expected():
    """The fault-free striped output, itself checked against the numpy reference."""
    check_against_reference(PLAN, TILES)
    return sf.blend(PLAN, ORDERED)


class Faults:
    """Fake pwrite/preadv: each call is, at random, whole, short, empty (returns 0) or an OSError."""

    def __init__(self, seed, short, empty, fail):
        self.rng = random.Random(seed)
        self.short, self.empty, self.fail = short, empty, fail
        self.events = []

    def _pick(self, name):
        u = self.rng.random()
        if u < self.fail:
            code = self.rng.choice([errno.ENOSPC, errno.EIO])
            self.events.append((name, "fail"))
            raise OSError(code, os.strerror(code))
        if u < self.fail + self.empty:
            self.events.append((name, "empty"))
            return 0.0
        if u < self.fail + self.empty + self.short:
            self.events.append((name, "short"))
            return self.rng.random()
        return 1.0

    def _length(self, name, size):
        part = self._pick(name)
        return max(1, int(size * part)) if part else 0

    def pwrite(self, fd, data, offset):
        data = memoryview(data)
        n = self._length("write", len(data))
        return REAL_PWRITE(fd, data[:n], offset) if n else 0

    def preadv(self, fd, buffers, offset):
        (buffer,) = buffers
        buffer = memoryview(buffer)
        n = self._length("read", len(buffer))
        return REAL_PREADV(fd, [buffer[:n]], offset) if n else 0


def _seam_files_in(folder):
    return [name for name in os.listdir(folder) if name.startswith("seam")]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), short=st.sampled_from([0.0, 0.3, 0.9]),
       empty=st.sampled_from([0.0, 0.0, 0.02]), fail=st.sampled_from([0.0, 0.0, 0.01, 0.05]))
def test_faulty_seam_io_gives_the_right_output_or_raises(expected, tmp_path_factory, seed, short, empty, fail):
    folder = tmp_path_factory.mktemp("cache")
    faults = Faults(seed, short, empty, fail)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "pwrite", faults.pwrite)
        patch.setattr(os, "preadv", faults.preadv)
        try:
            got = sf.blend(PLAN, ORDERED, cache_dir=folder)
        except OSError as error:
            assert error.filename is not None and os.path.basename(error.filename).startswith("seam")
            assert "offset" in str(error) and "bytes" in str(error)
            assert any(kind in ("fail", "empty") for _, kind in faults.events)
        else:
            assert not any(kind in ("fail", "empty") for _, kind in faults.events)
            np.testing.assert_array_equal(got, expected)
    assert os.listdir(folder) == []


def _case(name):
    """Other striped runs: an area the left stripe covers fewer rows of than the right one (rows it never
    spills), labels, (C, H, W) tiles and 2-D tiles."""
    if name == "area":
        area = shapely.Polygon([(0, 0), (40, 0), (150, 420), (0, 420)])
        plan, _ = sf.plan_regular_grid((150, 420), 32, 8, max_buffer_bytes=32 * 100 * 4 * 3, channels=3, area=area,
                                       traverse="rows")
    else:
        plan = PLAN
    channels = 1 if name == "hw" else 3
    tiles = random_tiles(plan, np.random.default_rng(8), channels, np.float32)
    layout = {"chw": "chw", "hw": "hw"}.get(name, "hwc")
    given = [to_layout(tiles[t], layout) for t in plan.load_order.tolist()]
    options = dict(labels=name == "labels", channel_first=name in ("chw", "hw"))
    check_against_reference(plan, tiles, layout=layout, labels=options["labels"])
    return plan, given, options, sf.blend(plan, given, **options)


CASES = {}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["area", "labels", "chw", "hw"]), seed=st.integers(0, 2**32 - 1),
       short=st.sampled_from([0.3, 0.9]), fail=st.sampled_from([0.0, 0.02]))
def test_faulty_seam_io_in_other_runs(tmp_path_factory, name, seed, short, fail):
    if name not in CASES:
        CASES[name] = _case(name)
    plan, given, options, expected = CASES[name]
    folder = tmp_path_factory.mktemp("cache")
    faults = Faults(seed, short, 0.0, fail)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "pwrite", faults.pwrite)
        patch.setattr(os, "preadv", faults.preadv)
        try:
            got = sf.blend(plan, given, cache_dir=folder, **options)
        except OSError as error:
            assert os.path.basename(error.filename).startswith("seam") and "offset" in str(error)
            assert any(kind == "fail" for _, kind in faults.events)
        else:
            assert not any(kind == "fail" for _, kind in faults.events)
            np.testing.assert_array_equal(got, expected)
    assert os.listdir(folder) == []


def test_short_writes_and_reads_are_completed(expected, monkeypatch, tmp_path):
    """Every call short (a quarter of what was asked): still exactly the fault-free output."""
    calls = []

    def pwrite(fd, data, offset):
        data = memoryview(data)
        calls.append("w")
        return REAL_PWRITE(fd, data[:max(1, len(data) // 4)], offset)

    def preadv(fd, buffers, offset):
        buffer = memoryview(buffers[0])
        calls.append("r")
        return REAL_PREADV(fd, [buffer[:max(1, len(buffer) // 4)]], offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "preadv", preadv)
    np.testing.assert_array_equal(sf.blend(PLAN, ORDERED, cache_dir=tmp_path), expected)
    assert "w" in calls and "r" in calls
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_failed_write_names_file_offset_and_counts(monkeypatch, tmp_path, code):
    def pwrite(fd, data, offset):
        data = memoryview(data)
        if offset > 0:  # a first part went through, then the disk filled up
            raise OSError(code, os.strerror(code))
        return REAL_PWRITE(fd, data[:len(data) // 2], offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(OSError, match=r"wrote \d+ of \d+ bytes at offset \d+") as info:
        sf.blend(PLAN, ORDERED, cache_dir=tmp_path)
    assert info.value.errno == code
    assert os.path.dirname(info.value.filename) == str(tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_file_ending_early_is_an_error_not_zeros(monkeypatch, tmp_path):
    """A read at the end of a seam file (truncated behind the run's back) raises instead of reading zeros."""
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, offset: 0)
    with pytest.raises(OSError, match=r"read 0 of \d+ bytes at offset \d+, then the file ended"):
        sf.blend(PLAN, ORDERED, cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_disk_full_fails_at_the_start(monkeypatch, tmp_path):
    """No room for the seam files: an OSError naming the file and the bytes at the first tile, before any blending."""
    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writes = []
    monkeypatch.setattr(os, "posix_fallocate", no_room)
    monkeypatch.setattr(os, "pwrite", lambda *args: writes.append(args) or REAL_PWRITE(*args))
    blender = sf.Blender(PLAN, cache_dir=tmp_path)
    with pytest.raises(OSError, match=r"could not reserve \d+ bytes") as info:
        blender.push(ORDERED[0])
    assert info.value.errno == errno.ENOSPC and os.path.basename(info.value.filename).startswith("seam")
    assert writes == [] and blender.step == 0
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="stopped when tile 0 raised OSError"):
        blender.push(ORDERED[0])


def test_file_systems_without_fallocate_get_sparse_files(expected, monkeypatch, tmp_path):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    np.testing.assert_array_equal(sf.blend(PLAN, ORDERED, cache_dir=tmp_path), expected)


def test_seam_files_get_their_size_up_front_and_go_when_read(tmp_path):
    blender = sf.Blender(PLAN, cache_dir=tmp_path)
    blender.push(ORDERED[0])
    sizes = {name: os.path.getsize(tmp_path / name) for name in _seam_files_in(tmp_path)}
    widths = (PLAN.seams[:, 1] - PLAN.seams[:, 0]).tolist()
    assert sorted(sizes.values()) == sorted(PLAN.image_size[0] * w * 3 * 4 for w in widths)
    stripe = PLAN.steps[:, STEP_COLUMNS.index("stripe")]
    for k in range(1, PLAN.n_loads):
        blender.push(ORDERED[k])
        if stripe[k] >= 2:  # stripe 1 is done: seam 0's file is gone
            assert not any(name.startswith("seam0_") for name in _seam_files_in(tmp_path))
    blender.close()
    assert os.listdir(tmp_path) == []


def test_a_failed_push_stops_the_blender_and_frees_its_files(monkeypatch, tmp_path):
    """After an error half-way through a tile the buffer holds part of it: a retried push must not add it twice."""
    blender = sf.Blender(PLAN, cache_dir=tmp_path)
    stripe = PLAN.steps[:, STEP_COLUMNS.index("stripe")]
    first_right = int(np.argmax(stripe == 1))
    for k in range(first_right):
        blender.push(ORDERED[k])
    monkeypatch.setattr(os, "preadv", lambda *args: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        blender.push(ORDERED[first_right])
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(os, "preadv", REAL_PREADV)
    with pytest.raises(ValueError, match=f"stopped when tile {first_right} raised OSError"):
        blender.push(ORDERED[first_right])
    blender.close()  # nothing left to release, and no second error


def test_unit_read_and_write_helpers(tmp_path):
    path = str(tmp_path / "f.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        _seams.reserve(fd, path, 64)
        data = np.arange(8, dtype=np.float64)
        _seams.write_all(fd, path, data, 0)
        back = np.empty(8)
        _seams.read_all(fd, path, back, 0)
        np.testing.assert_array_equal(back, data)
        with pytest.raises(OSError, match=r"read 16 of 32 bytes at offset 48, then the file ended") as info:
            _seams.read_all(fd, path, np.empty(4), 48)
        assert info.value.filename == path
    finally:
        os.close(fd)


FSIZE_SCRIPT = textwrap.dedent("""
    import os, resource, signal, sys
    import numpy as np
    import seamless_fast as sf
    sys.path.insert(0, "tests")
    from cases import random_tiles
    plan, _ = sf.plan_regular_grid((150, 420), 32, 8, max_buffer_bytes=32 * 100 * 4 * 3, channels=3,
                                   traverse="rows")
    tiles = random_tiles(plan, np.random.default_rng(7), 3, np.float32)
    ordered = [tiles[t] for t in plan.load_order.tolist()]
    expected = sf.blend(plan, ordered)  # compiles before the limit
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit a write fails with EFBIG instead
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        got = sf.blend(plan, ordered, cache_dir=sys.argv[1])
    except OSError as error:
        print("raised", error.errno, error)
    else:
        print("exact" if np.array_equal(got, expected) else "WRONG")
""")


@pytest.mark.parametrize("limit, outcome", [(1000, "raised"), (10**6, "exact")])
def test_a_real_file_size_limit(tmp_path, limit, outcome):
    """The kernel's own limit on file size (RLIMIT_FSIZE), a disk that fills up at a given byte."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, str(tmp_path), str(limit)], cwd=root,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": root})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(outcome), run.stdout
    if outcome == "raised":
        assert f" {errno.EFBIG} " in run.stdout and "could not reserve" in run.stdout
    assert os.listdir(tmp_path) == []


NEARLY_FULL = textwrap.dedent("""
    import os, sys
    import numpy as np
    import seamless_fast as sf
    plan, _ = sf.plan_regular_grid((3000, 3000), 256, 64, max_buffer_bytes=256 * 1100 * 12, channels=3)
    def tiles():
        for t in plan.load_order.tolist():
            ylo, xlo, yhi, xhi = plan.tile_boxes[t].tolist()
            yield np.random.default_rng(t).random((yhi - ylo, xhi - xlo, 3)).astype(np.float32)
    if sys.argv[2] == "size":
        print(sum((hi - lo) * 3 * 4 * 3000 for lo, hi in plan.seams.tolist()))
        sys.exit()
    expected = sf.blend(plan, tiles())
    try:
        got = sf.blend(plan, tiles(), cache_dir=sys.argv[1])
    except OSError as error:
        print("raised", error.errno, error)
    else:
        print("exact" if np.array_equal(got, expected) else f"WRONG {int((got != expected).sum())} values")
""")


@pytest.mark.parametrize("short_by", [50_000, -50_000])
def test_a_nearly_full_file_system(tmp_path, short_by):
    """The reported case on a real small file system (a tmpfs; needs root): the seams do not fit, by a few rows.
    Before, the last rows of a seam were silently lost (wrong values); now the run refuses at the first tile."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}

    def script(*args):
        return subprocess.run([sys.executable, "-c", NEARLY_FULL, *args], cwd=root, capture_output=True, text=True,
                              timeout=600, env=env)

    needed = int(script(str(tmp_path), "size").stdout)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={needed - short_by}", "tmpfs", str(tmp_path)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        run = script(str(tmp_path), "blend")
        left = os.listdir(tmp_path)
    finally:
        subprocess.run(["umount", str(tmp_path)], check=True)
    assert run.returncode == 0, run.stderr
    if short_by > 0:
        assert run.stdout.startswith(f"raised {errno.ENOSPC} [Errno {errno.ENOSPC}] could not reserve"), run.stdout
    else:
        assert run.stdout.strip() == "exact", run.stdout
    assert left == []
