"""Serial or split over numba's threads, tile by tile (`seamless_fast.engine._adaptive`): bit for bit the serial
blend whatever the mix, shared choosers that follow the timings, several threads at once, no leaks."""

import contextlib
import importlib
import itertools
import math
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
from seamless_fast.engine import _adaptive, _background

blend_module = importlib.import_module("seamless_fast.engine.blender")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def ways(pattern):
    """Every chooser picks the ways of `pattern` (0 serial, 1 split) in turn, for tiles of any size; a parallel
    kernel not yet compiled is compiled at once (not in the background) so that the split runs."""
    turns = itertools.cycle(pattern)
    saved = _adaptive.Chooser.choose, blend_module.PARALLEL_MIN_ELEMENTS, _background.WAIT_FOR_COMPILES
    _adaptive.Chooser.choose, blend_module.PARALLEL_MIN_ELEMENTS = lambda self: next(turns), 0
    _background.WAIT_FOR_COMPILES = True
    try:
        yield
    finally:
        (_adaptive.Chooser.choose, blend_module.PARALLEL_MIN_ELEMENTS,
         _background.WAIT_FOR_COMPILES) = saved


def run(plan, tiles, layout, labels, out=True, **options):
    chw = layout == "chw"
    given_tiles = [np.ascontiguousarray(tiles[t].transpose(2, 0, 1)) if chw else tiles[t] for t in plan.load_order]
    if out:
        return sf.blend(plan, given_tiles, channel_first=chw, labels=labels, **options)
    cells = []
    with sf.Blender(plan, channel_first=chw, labels=labels, **options) as blender:
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


@given(seed=st.integers(0, 2**32 - 1), pattern=st.lists(st.integers(0, 1), min_size=1, max_size=5),
       channels=st.sampled_from([1, 3, 8]), layout=st.sampled_from(["hwc", "chw"]), labels=st.booleans(),
       stripes=st.booleans(), parallel=st.sampled_from([True, None]))
def test_any_mix_of_serial_and_split_tiles_equals_serial_bit_for_bit(seed, pattern, channels, layout, labels,
                                                                      stripes, parallel):
    rng = np.random.default_rng(seed)
    plan = random_plan(rng, stripes)
    tiles = tiles_for(plan, rng, channels)
    expected = run(plan, tiles, layout, labels, parallel=False)
    with ways(pattern):
        np.testing.assert_array_equal(run(plan, tiles, layout, labels, parallel=parallel), expected)


@pytest.mark.parametrize("layout", ["hwc", "chw"])
@pytest.mark.parametrize("labels", [False, True])
def test_fresh_cells_of_split_tiles_equal_serial(layout, labels):
    rng = np.random.default_rng(7)
    plan = sf.plan_regular_grid((300, 420), 128, 40)[0]
    tiles = tiles_for(plan, rng, 3)
    expected = run(plan, tiles, layout, labels, out=False, parallel=False)
    with ways([1]):
        cells = run(plan, tiles, layout, labels, out=False)
    for (box, data), (want_box, want) in zip(cells, expected, strict=True):
        assert box == want_box
        np.testing.assert_array_equal(data, want)


@pytest.mark.parametrize("layout", ["hwc", "chw"])
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("pattern", [[1], [0, 1], [1, 1, 0]], ids=["split", "alternate", "mixed"])
def test_batches_into_out_split_or_not_equal_serial(layout, labels, pattern):
    """`push_batch` into `out` runs a batch serially in one kernel call or tile by tile split, as the chooser
    says: the same output, bit for bit."""
    rng = np.random.default_rng(11)
    plan = sf.plan_regular_grid((300, 420), 128, 40)[0]
    tiles = tiles_for(plan, rng, 3)
    expected = run(plan, tiles, layout, labels, parallel=False)
    chw = layout == "chw"
    given = np.stack([np.ascontiguousarray(tiles[t].transpose(2, 0, 1)) if chw else tiles[t]
                      for t in plan.load_order])
    out = np.zeros_like(expected)
    with ways(pattern), sf.Blender(plan, labels=labels, channel_first=chw, out=out) as blender:
        blender.push(given[0])  # the buffers are made with the first tile
        cells = [cell for start in range(1, plan.n_loads, 4) for cell in blender.push_batch(given[start:start + 4])]
    np.testing.assert_array_equal(out, expected)
    assert all(cell.data.base is not None for cell in cells)  # views of out


def test_two_python_threads_blending_at_once_with_the_default_are_exact():
    plan = sf.plan_regular_grid((700, 900), 256, 64)[0]
    tiles = tiles_for(plan, np.random.default_rng(0), 4)
    expected = {labels: run(plan, tiles, "hwc", labels, parallel=False) for labels in (False, True)}
    failures = []

    def work(i):
        for round in range(4):
            labels = (i + round) % 2 == 1
            try:
                result = run(plan, tiles, "hwc", labels)
            except BaseException as exc:  # reported by the main thread
                failures.append((i, round, repr(exc)))
                continue
            if not np.array_equal(result, expected[labels]):
                failures.append((i, round, labels))

    before = threading.active_count()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert threading.active_count() == before  # the blend starts no Python threads


EXIT_SCRIPT = textwrap.dedent("""
    import threading
    import numpy as np
    import seamless_fast as sf

    plan, _ = sf.plan_regular_grid((700, 700), 256, 64)
    tiles = [np.random.default_rng(0).random((256, 256, 3)).astype(np.float32) for _ in range(plan.n_loads)]
    expected = sf.blend(plan, tiles, parallel=False)
    results = []
    threads = [threading.Thread(target=lambda: results.append(np.array_equal(sf.blend(plan, tiles), expected)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("ok" if results == [True] * 3 else results, threading.active_count(), flush=True)
""")


def test_a_process_that_blended_in_threads_exits_at_once():
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "1"]


def test_choosers_are_shared_per_kind_of_tile():
    plan = sf.plan_regular_grid((600, 600), 256, 64)[0]
    tile = np.zeros((256, 256, 3), np.float32)
    choosers = []
    for labels in (False, False, True):
        with sf.Blender(plan, labels=labels) as blender:
            for _ in range(plan.n_loads):
                blender.push(tile)
            choosers.append(blender._choosers.get(tile.size))
    if choosers[0] is None:
        pytest.skip("numba has one thread here: every tile runs serially")
    assert choosers[0] is choosers[1] is _adaptive.chooser_for((False, 1, 3, "f", tile.size.bit_length()), 2)
    assert choosers[2] is not choosers[0]


class TestChooser:
    def feed(self, chooser, costs, pushes):
        ways = []
        for _ in range(pushes):
            way = chooser.choose()
            ways.append(way)
            chooser.record(way, costs[way])
        return ways

    def test_tries_both_then_keeps_the_faster_and_tries_the_other_as_often_as_the_budget_allows(self):
        chooser = _adaptive.Chooser()
        ways = self.feed(chooser, {0: 1.0, 1: 0.5}, 400)
        assert ways[:4] == [0, 0, 1, 1] and chooser.best == 1  # each way's first push is not counted
        tries = [i for i, way in enumerate(ways) if way == 0]
        assert set(np.diff(tries[2:])) == {round(1.0 / _adaptive.PROBE_BUDGET)}  # serial is 2 x: every 20
        chooser = _adaptive.Chooser()
        ways = self.feed(chooser, {0: 1.0, 1: 60.0}, 10000)
        assert chooser.best == 0 and chooser.interval == chooser.MAX_INTERVAL
        assert ways.count(1) <= 2 + 2 * (1 + 10000 // chooser.interval)  # a split try is two pushes
        assert sum(60.0 if way else 1.0 for way in ways) < 10000 * (1 + 3 * _adaptive.PROBE_BUDGET)

    def test_follows_a_change_of_load(self):
        chooser = _adaptive.Chooser()
        self.feed(chooser, {0: 1.0, 1: 0.6}, 300)
        assert chooser.best == 1
        ways = self.feed(chooser, {0: 1.0, 1: 20.0}, 300)  # the split got slow: serial at once
        assert ways[:2] == [1, 0] and ways.count(1) <= 2 + 300 // chooser.interval
        assert chooser.best == 0
        self.feed(chooser, {0: 1.0, 1: 0.6}, chooser.interval + 2)  # and back at the next try
        assert chooser.best == 1

    def test_a_few_slow_pushes_do_not_flip_the_choice(self):
        chooser = _adaptive.Chooser()
        self.feed(chooser, {0: 1.0, 1: 0.6}, 300)
        for _ in range(chooser.TRIM):
            chooser.record(chooser.choose(), 1.2)  # preempted for a while
        assert chooser.best == 1
        chooser.record(chooser.choose(), 3.5)  # but a split push far slower than serial ends the split
        assert chooser.best == 0

    def test_neither_the_first_push_nor_an_unlucky_serial_try_puts_serial_off_for_long(self):
        chooser = _adaptive.Chooser(threads=2)
        chooser.record(chooser.choose(), 1000.0)  # numba loading the kernel
        self.feed(chooser, {0: 1.0, 1: 0.6}, 100)
        assert chooser.cost[0] == 1.0
        chooser.count = chooser.interval
        assert chooser.choose() == 0
        chooser.record(0, 1000.0)  # a serial try that lost the processor
        assert chooser.best == 1 and chooser.cost[0] == 1.0  # the try before counts: the faster of the two
        assert chooser.interval == math.ceil((1 / 0.6 - 1) / _adaptive.PROBE_BUDGET)
        chooser.record(0, 1000.0)  # and two unlucky tries in a row put it off for at most threads - 1 / budget
        assert chooser.interval == round(1 / _adaptive.PROBE_BUDGET)

    def test_the_first_push_of_a_split_try_is_not_counted(self):
        chooser = _adaptive.Chooser()
        self.feed(chooser, {0: 1.0, 1: 2.0}, 100)
        assert chooser.best == 0
        chooser.count = chooser.interval
        assert chooser.choose() == 1
        chooser.record(1, 50.0)  # waking numba's threads
        assert chooser.choose() == 1
        chooser.record(1, 0.5)
        assert chooser.best == 1 and chooser.cost[1] == 0.5

    def test_equal_ways_are_both_tried_often(self):
        chooser = _adaptive.Chooser()
        ways = self.feed(chooser, {0: 1.0, 1: 1.0}, 100)
        assert chooser.interval == chooser.MIN_INTERVAL and 0 < ways.count(1) < 100


def test_the_contention_script_measures_every_policy_in_every_condition():
    script = os.path.join(ROOT, "profiling", "contention.py")
    done = subprocess.run([sys.executable, script, "--size", "512", "--rounds", "1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [(row[1], row[2]) for row in rows] == [(c, p) for c in ("quiet", "thread", "process")
                                                  for p in ("default", "serial", "numba")]
    assert all(row[0] == "omp" and float(row[3]) > 0 for row in rows)
    assert [float(row[4]) for row in rows if row[2] == "serial"] == [1.0] * 3


def test_a_chooser_shared_by_threads_never_fails():
    import random

    from seamless_fast.engine._adaptive import Chooser

    chooser = Chooser(2)
    errors = []

    def hammer(seed):
        rng = random.Random(seed)
        try:
            for _ in range(20_000):
                way = chooser.choose()
                # now and then a split push far slower than serial, which clears the split's record
                chooser.record(way, rng.choice([1.0, 1.1, 0.6, 50.0]) if way else rng.choice([1.0, 0.9]))
        except Exception as error:  # noqa: BLE001 -- any failure is the finding
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between almost any two bytecodes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert chooser.best in (0, 1) and all(cost is None or cost > 0 for cost in chooser.cost)
