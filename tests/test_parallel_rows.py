"""Rows over a pool of Python threads (`seamless_fast._rows_pool`): bit for bit the serial blend, no leaks."""

import contextlib
import importlib
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast import _rows_pool
blend_module = importlib.import_module("seamless_fast.blend")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def pool_of(workers, chunks_per_slot=2):
    """The process's pool made one of `workers` threads (more slots than this machine has cores),
    cutting steps into `chunks_per_slot` chunks a thread, for tiles of any size."""
    pool = _rows_pool.RowsPool(workers)
    saved = _rows_pool._DEFAULT, blend_module.ROWS_CHUNKS_PER_SLOT, blend_module.PARALLEL_MIN_ELEMENTS
    _rows_pool._DEFAULT, blend_module.ROWS_CHUNKS_PER_SLOT, blend_module.PARALLEL_MIN_ELEMENTS = \
        pool, chunks_per_slot, 0
    try:
        yield pool
    finally:
        _rows_pool._DEFAULT, blend_module.ROWS_CHUNKS_PER_SLOT, blend_module.PARALLEL_MIN_ELEMENTS = saved
        pool.close()


def run(plan, tiles, parallel, layout, labels, out=True):
    chw = layout == "chw"
    given_tiles = [np.ascontiguousarray(tiles[t].transpose(2, 0, 1)) if chw else tiles[t] for t in plan.load_order]
    if out:
        return sf.blend(plan, given_tiles, channel_first=chw, labels=labels, parallel=parallel)
    cells = []
    with sf.Blender(plan, channel_first=chw, labels=labels, parallel=parallel) as blender:
        for tile in given_tiles:
            cells.extend((cell.box, cell.data) for cell in blender.push(tile))
    return cells


def random_plan(rng, stripes):
    size = (int(rng.integers(40, 400)), int(rng.integers(40, 400)))
    tile = int(rng.integers(16, 160))
    overlap = int(rng.integers(0, tile // 2))
    columns = rng.uniform(1.3, 3.5)  # tile columns a stripe's budget holds
    budget = dict(max_buffer_bytes=int(min(tile, size[0]) * columns * tile * 4 * 8)) if stripes else {}
    return sf.plan_regular_grid(size, tile, overlap, channels=8, **budget)[0]


def tiles_for(plan, rng, channels):
    tiles = []
    for ylo, xlo, yhi, xhi in plan.tile_boxes.tolist():
        tile = rng.random((yhi - ylo, xhi - xlo, channels)).astype(np.float32)
        tie = rng.random(tile.shape[:2]) < 0.1
        tile[tie, -1] = tile[tie, 0]  # ties: the first maximum wins
        tiles.append(tile)
    return tiles


@given(seed=st.integers(0, 2**32 - 1), workers=st.integers(1, 4), chunks_per_slot=st.integers(1, 5),
       channels=st.sampled_from([1, 3, 8]), layout=st.sampled_from(["hwc", "chw"]), labels=st.booleans(),
       stripes=st.booleans(), parallel=st.sampled_from([True, None]))
def test_rows_over_the_pool_equal_serial_bit_for_bit(seed, workers, chunks_per_slot, channels, layout, labels,
                                                      stripes, parallel):
    rng = np.random.default_rng(seed)
    plan = random_plan(rng, stripes)
    tiles = tiles_for(plan, rng, channels)
    expected = run(plan, tiles, False, layout, labels)
    with pool_of(workers, chunks_per_slot):
        np.testing.assert_array_equal(run(plan, tiles, parallel, layout, labels), expected)


@pytest.mark.parametrize("layout", ["hwc", "chw"])
@pytest.mark.parametrize("labels", [False, True])
def test_fresh_cells_from_the_pool_equal_serial(layout, labels):
    rng = np.random.default_rng(7)
    plan = sf.plan_regular_grid((300, 420), 128, 40)[0]
    tiles = tiles_for(plan, rng, 3)
    expected = run(plan, tiles, False, layout, labels, out=False)
    with pool_of(3):
        cells = run(plan, tiles, True, layout, labels, out=False)
    for (box, data), (want_box, want) in zip(cells, expected, strict=True):
        assert box == want_box
        np.testing.assert_array_equal(data, want)


def test_two_python_threads_blending_at_once_with_the_default_are_exact():
    plan = sf.plan_regular_grid((700, 900), 256, 64)[0]
    rng = np.random.default_rng(0)
    tiles = tiles_for(plan, rng, 4)
    expected = {labels: run(plan, tiles, False, "hwc", labels) for labels in (False, True)}
    failures = []

    def work(i):
        for round in range(4):
            labels = (i + round) % 2 == 1
            try:
                result = run(plan, tiles, None, "hwc", labels)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append((i, round, repr(exc)))
                continue
            if not np.array_equal(result, expected[labels]):
                failures.append((i, round, labels))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_every_chunk_runs_once_and_no_two_running_chunks_share_a_slot():
    pool = _rows_pool.RowsPool(3)
    try:
        for n in (1, 2, 5, 40):
            ran, busy, clashes, lock = [], set(), [], threading.Lock()

            def chunk(c, slot):
                with lock:
                    if slot in busy:
                        clashes.append(slot)
                    busy.add(slot)
                    ran.append(c)
                sum(range(2000))  # some work, so that the threads overlap
                with lock:
                    busy.discard(slot)

            pool.run(chunk, n)
            assert sorted(ran) == list(range(n)) and clashes == []
            assert 0 <= max(pool.slots - 1, 0) < pool.slots
    finally:
        pool.close()


def test_a_chunk_error_reaches_the_caller_after_the_others_finish():
    pool = _rows_pool.RowsPool(2)
    ran = []

    def chunk(c, slot):
        if c == 3:
            raise ZeroDivisionError("chunk 3")
        ran.append(c)

    try:
        with pytest.raises(ZeroDivisionError, match="chunk 3"):
            pool.run(chunk, 8)
        assert sorted(ran) == [0, 1, 2, 4, 5, 6, 7]
        pool.run(lambda c, slot: None, 4)  # the pool still works
    finally:
        pool.close()


def test_pool_threads_are_daemons_shared_by_every_blender_and_closed_on_request():
    pool = _rows_pool.RowsPool(2)
    before = threading.active_count()
    for _ in range(5):
        pool.run(lambda c, slot: None, 4)
    assert threading.active_count() == before + 2
    assert all(thread.daemon for thread in pool._threads)
    pool.close()
    assert threading.active_count() == before
    pool.run(lambda c, slot: None, 4)  # starts afresh
    pool.close()


def test_the_default_pool_is_one_per_process():
    assert _rows_pool.default_pool() is _rows_pool.default_pool()
    assert _rows_pool.default_pool().workers == _rows_pool.default_workers()


EXIT_SCRIPT = textwrap.dedent("""
    import os
    import sys
    import threading
    import numpy as np
    import seamless_fast as sf
    from seamless_fast import _rows_pool

    _rows_pool._DEFAULT = _rows_pool.RowsPool(3)
    plan, _ = sf.plan_regular_grid((600, 600), 256, 64)
    tiles = [np.random.default_rng(0).random((256, 256, 3)).astype(np.float32) for _ in range(plan.n_loads)]
    expected = sf.blend(plan, tiles, parallel=False)
    assert np.array_equal(sf.blend(plan, tiles, parallel=True), expected)
    assert threading.active_count() == 4, threading.enumerate()
    pid = os.fork()
    if pid == 0:  # the child has none of the parent's pool threads, and blends all the same
        ok = np.array_equal(sf.blend(plan, tiles, parallel=True), expected)
        os._exit(0 if ok else 3)
    assert os.waitpid(pid, 0)[1] == 0
    print("ok", flush=True)
    # exits with the pool's threads blocked on their queues
""")


def test_the_process_exits_with_the_pool_running_and_a_forked_child_blends():
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


class TestChooser:
    def feed(self, chooser, costs, pushes):
        ways = []
        for _ in range(pushes):
            way = chooser.choose()
            ways.append(way)
            chooser.record(way, costs[way])
        return ways

    def test_tries_both_then_keeps_the_faster_and_probes_the_other_ever_less_often(self):
        chooser = _rows_pool.Chooser()
        ways = self.feed(chooser, {0: 2.0, 1: 1.0}, 400)
        assert ways[:2] == [0, 1]
        probes = [i for i, way in enumerate(ways) if way == 0][1:]
        gaps = np.diff(probes)
        assert gaps[0] == chooser.MIN_INTERVAL * 2 and gaps.max() == chooser.MAX_INTERVAL
        assert list(gaps) == sorted(gaps)

    def test_follows_a_change_of_load(self):
        chooser = _rows_pool.Chooser()
        self.feed(chooser, {0: 1.0, 1: 0.5}, 300)
        assert chooser.best == 1
        ways = self.feed(chooser, {0: 1.0, 1: 3.0}, 300)  # the pool got slow: serial wins within a probe or so
        assert chooser.best == 0 and ways[-100:].count(1) <= 100 // chooser.MIN_INTERVAL
        self.feed(chooser, {0: 1.0, 1: 0.5}, 2 * chooser.MAX_INTERVAL)
        assert chooser.best == 1
