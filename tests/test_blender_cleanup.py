"""A Blender never closed leaves no files: seam files and the memory-mapped buffer go at collection or exit."""

import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import seamless_fast as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _striped_plan():
    plan, _ = sf.plan_regular_grid((150, 420), 32, 8, max_buffer_bytes=32 * 100 * 4 * 2, channels=2, traverse="rows")
    assert len(plan.stripes) >= 3
    return plan


UNCLOSED = textwrap.dedent("""
    import os, sys
    import numpy as np
    import seamless_fast as sf
    plan, _ = sf.plan_regular_grid((150, 420), 32, 8, max_buffer_bytes=32 * 100 * 4 * 2, channels=2, traverse="rows")
    blenders = [sf.Blender(plan),  # seam files in a private folder under TMPDIR
                sf.Blender(plan, cache_dir=sys.argv[1], buffer_on_disk=True)]  # seams and buffer in cache_dir
    for blender in blenders:
        for _ in range(5):
            blender.push(np.ones(blender.next_tile_shape + (2,), np.float32))
    print(sorted(os.listdir(os.environ["TMPDIR"])), sorted(os.listdir(sys.argv[1])))
    sys.stdout.flush()
    {exit}
""")


@pytest.mark.parametrize("exit", ["pass", "raise SystemExit(3)", "raise RuntimeError('model failed')"])
def test_unclosed_blender_leaves_nothing_at_exit(tmp_path, exit):
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    cache.mkdir()
    run = subprocess.run([sys.executable, "-c", UNCLOSED.format(exit=exit), str(cache)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(tmp)})
    assert run.returncode == {"pass": 0, "raise SystemExit(3)": 3}.get(exit, 1), run.stderr
    seen = run.stdout
    assert "seamless_fast_seams_" in seen and ".buf" in seen and "seam0_" in seen  # they were there
    assert os.listdir(tmp) == [] and os.listdir(cache) == []


def test_collected_blender_removes_its_files(tmp_path):
    plan = _striped_plan()
    blender = sf.Blender(plan, cache_dir=tmp_path, buffer_on_disk=True)
    blender.push(np.ones(blender.next_tile_shape + (2,), np.float32))
    assert len(os.listdir(tmp_path)) == len(plan.seams) + 1
    del blender
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_default_seam_folder_goes_with_the_blender(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    blender = sf.Blender(_striped_plan())
    blender.push(np.ones(blender.next_tile_shape + (2,), np.float32))
    assert len(os.listdir(tmp_path)) == 1
    del blender
    gc.collect()
    assert os.listdir(tmp_path) == []


FORK = textwrap.dedent("""
    import os, sys
    import numpy as np
    import seamless_fast as sf
    plan, _ = sf.plan_regular_grid((150, 420), 32, 8, max_buffer_bytes=32 * 100 * 4 * 2, channels=2, traverse="rows")
    blender = sf.Blender(plan, cache_dir=sys.argv[1], buffer_on_disk=True, parallel=False)
    blender.push(np.ones(blender.next_tile_shape + (2,), np.float32))
    before = sorted(os.listdir(sys.argv[1]))
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # a normal exit: the atexit hooks run the finalizers the child inherited
    os.waitpid(pid, 0)
    print("kept" if sorted(os.listdir(sys.argv[1])) == before and before else "REMOVED")
""")


def test_a_forked_child_leaves_the_parents_files(tmp_path):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    run = subprocess.run([sys.executable, "-c", FORK, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "kept"
    assert os.listdir(tmp_path) == []  # and the parent's own exit removed them


def test_a_buffer_on_a_full_disk_fails_at_the_start(monkeypatch, tmp_path):
    """The memory-mapped buffer gets its blocks up front: no SIGBUS half-way through when the disk fills up."""
    import errno

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    plan, _ = sf.plan_regular_grid((100, 120), 32, 8)
    blender = sf.Blender(plan, cache_dir=tmp_path, buffer_on_disk=True)
    with pytest.raises(OSError, match=r"could not reserve \d+ bytes") as info:
        blender.push(np.ones((32, 32, 2), np.float32))
    assert info.value.filename.endswith(".buf")
    assert os.listdir(tmp_path) == []


def test_buffer_on_disk_is_reserved_and_exact(tmp_path):
    plan, _ = sf.plan_regular_grid((100, 3000), 32, 8)  # a buffer of many pages, few touched by the first tile
    rng = np.random.default_rng(0)
    tiles = [rng.random((32, 32, 2)).astype(np.float32) for _ in range(plan.n_loads)]
    in_ram = sf.blend(plan, tiles)
    with sf.Blender(plan, cache_dir=tmp_path, buffer_on_disk=True, out=np.zeros_like(in_ram)) as blender:
        blender.push(tiles[0])
        (name,) = os.listdir(tmp_path)
        stat = os.stat(tmp_path / name)
        assert stat.st_size == blender._acc.nbytes
        assert stat.st_blocks * 512 >= stat.st_size  # not sparse: every block is the run's from the start
        for tile in tiles[1:]:
            blender.push(tile)
    np.testing.assert_array_equal(blender.out, in_ram)
    assert os.listdir(tmp_path) == []
