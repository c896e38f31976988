"""Tests of seamless_fast.engine.batching: batched and threaded tile fetching."""

import math
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seamless_fast import get_plan_input_geoms, plan_regular_grid
from seamless_fast.engine.batching import THREAD_NAME, batched_tile_get, threaded_batched_tile_get

JOIN_TIMEOUT_S = 10


def make_geoms(count):
    """(index, geom) pairs; the geom is a stand-in, get_tiles_fnc only passes it through."""
    return [((i // 7, i % 7), f"geom-{i}") for i in range(count)]


class RecordingTiles:
    """get_tiles_fnc that records its calls and returns one distinct tile per geom."""

    def __init__(self, as_array=False, fail_on_call=None, delay_s=0.0):
        self.calls = []
        self.as_array = as_array
        self.fail_on_call = fail_on_call
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.raised = None

    def __call__(self, batch_indices, batch_geoms):
        with self.lock:
            self.calls.append((list(batch_indices), list(batch_geoms)))
            call_number = len(self.calls)
        if self.delay_s:
            time.sleep(self.delay_s)
        if call_number == self.fail_on_call:
            self.raised = RuntimeError(f"model failed on call {call_number}")
            raise self.raised
        if self.as_array:
            return np.stack([np.full((2, 3), int(g.split("-")[1])) for g in batch_geoms])
        return [("tile", index, geom) for index, geom in zip(batch_indices, batch_geoms)]


def expected_tiles(geoms, as_array):
    if as_array:
        return [np.full((2, 3), i) for i in range(len(geoms))]
    return [("tile", index, geom) for index, geom in geoms]


def assert_same_tiles(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(got, want)
        else:
            assert got == want


def tile_getters(max_prefetched=4):
    return {
        "plain": lambda geoms, bs, fnc: batched_tile_get(geoms, bs, fnc),
        "threaded": lambda geoms, bs, fnc: threaded_batched_tile_get(geoms, bs, fnc, max_prefetched),
    }


GETTERS = tile_getters()
BAD_POSITIVE_INTS = [0, -1, 2.5, "3", True, None]


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def assert_workers_stop():
    for thread in prefetch_threads():
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive()


@pytest.fixture(autouse=True)
def no_leftover_workers():
    yield
    assert_workers_stop()


# --- order, identity and batching -------------------------------------------------------------

@pytest.mark.parametrize("getter", GETTERS)
@pytest.mark.parametrize("as_array", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, "count", "more"])
def test_tiles_in_order_for_each_batch_size(getter, as_array, batch_size):
    geoms = make_geoms(10)
    batch_size = {"count": 10, "more": 25}.get(batch_size, batch_size)
    get_tiles = RecordingTiles(as_array=as_array)
    tiles = list(GETTERS[getter](geoms, batch_size, get_tiles))
    assert_same_tiles(tiles, expected_tiles(geoms, as_array))
    assert len(get_tiles.calls) == math.ceil(10 / batch_size)


@pytest.mark.parametrize("getter", GETTERS)
def test_list_tiles_are_yielded_as_the_same_objects(getter):
    geoms = make_geoms(5)
    returned = []

    def get_tiles(batch_indices, batch_geoms):
        batch = [object() for _ in batch_indices]
        returned.extend(batch)
        return batch

    tiles = list(GETTERS[getter](geoms, 2, get_tiles))
    assert len(tiles) == 5
    assert all(got is want for got, want in zip(tiles, returned))


@pytest.mark.parametrize("getter", GETTERS)
def test_array_tiles_are_slices_along_the_batch_axis(getter):
    def get_tiles(batch_indices, batch_geoms):
        return np.arange(len(batch_indices) * 6).reshape(-1, 2, 3)

    tiles = list(GETTERS[getter](make_geoms(4), 3, get_tiles))
    assert [t.shape for t in tiles] == [(2, 3)] * 4
    np.testing.assert_array_equal(tiles[3], np.arange(6).reshape(2, 3))


# The autouse fixture only checks for leftover threads, so running it once per test is right.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(0, 40), batch_size=st.integers(1, 50), as_array=st.booleans(),
       max_prefetched=st.integers(1, 8), threaded=st.booleans())
def test_batches_cover_geoms_in_order_without_empty_calls(count, batch_size, as_array, max_prefetched, threaded):
    geoms = make_geoms(count)
    get_tiles = RecordingTiles(as_array=as_array)
    getter = tile_getters(max_prefetched)["threaded" if threaded else "plain"]
    tiles = list(getter(geoms, batch_size, get_tiles))
    assert_same_tiles(tiles, expected_tiles(geoms, as_array))
    assert len(get_tiles.calls) == math.ceil(count / batch_size)
    assert all(0 < len(indices) <= batch_size for indices, _ in get_tiles.calls)
    assert [pair for indices, batch_geoms in get_tiles.calls for pair in zip(indices, batch_geoms)] == geoms


@pytest.mark.parametrize("getter", GETTERS)
def test_empty_geoms_yield_nothing_and_never_call(getter):
    get_tiles = RecordingTiles()
    assert list(GETTERS[getter]([], 4, get_tiles)) == []
    assert list(GETTERS[getter](iter([]), 4, get_tiles)) == []
    assert get_tiles.calls == []


@pytest.mark.parametrize("getter", GETTERS)
def test_accepts_a_generator_of_geoms(getter):
    geoms = make_geoms(7)
    tiles = list(GETTERS[getter]((pair for pair in geoms), 3, RecordingTiles()))
    assert_same_tiles(tiles, expected_tiles(geoms, False))


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_threaded_matches_unthreaded_on_a_plan(batch_size):
    plan, _ = plan_regular_grid((300, 200), 64, 16)
    geoms = get_plan_input_geoms(plan)

    def get_tiles(batch_indices, batch_geoms):
        return np.stack([np.full((4, 4), y * 1000 + x) for y, x in batch_indices])

    plain = list(batched_tile_get(geoms, batch_size, get_tiles))
    threaded = list(threaded_batched_tile_get(geoms, batch_size, get_tiles, 3))
    assert len(plain) == len(geoms)
    assert_same_tiles(threaded, plain)


def test_threaded_with_one_prefetched_tile_yields_everything():
    geoms = make_geoms(23)
    tiles = list(threaded_batched_tile_get(geoms, 4, RecordingTiles(), max_prefetched=1))
    assert_same_tiles(tiles, expected_tiles(geoms, False))


# --- wrong tile counts ------------------------------------------------------------------------

@pytest.mark.parametrize("getter", GETTERS)
@pytest.mark.parametrize("returned_count", [0, 2, 4])
def test_wrong_number_of_tiles_raises(getter, returned_count):
    geoms = make_geoms(6)

    def get_tiles(batch_indices, batch_geoms):
        return [None] * (len(batch_indices) if batch_indices[0] == geoms[0][0] else returned_count)

    tiles = GETTERS[getter](geoms, 3, get_tiles)
    with pytest.raises(ValueError, match=rf"returned {returned_count} tiles.*batch 1.*\(0, 3\).*expected 3"):
        list(tiles)


@pytest.mark.parametrize("getter", GETTERS)
def test_tiles_without_len_raise(getter):
    tiles = GETTERS[getter](make_geoms(3), 2, lambda idx, geoms: (None for _ in idx))
    with pytest.raises(ValueError, match="returned generator.*expected a sequence or array of 2 tiles"):
        list(tiles)


# --- argument validation ----------------------------------------------------------------------

@pytest.mark.parametrize("getter", GETTERS)
@pytest.mark.parametrize("batch_size", BAD_POSITIVE_INTS)
def test_bad_batch_size_rejected_at_call_time(getter, batch_size):
    get_tiles = RecordingTiles()
    with pytest.raises(ValueError, match="batch_size"):
        GETTERS[getter](make_geoms(3), batch_size, get_tiles)
    assert get_tiles.calls == []


@pytest.mark.parametrize("getter", GETTERS)
@pytest.mark.parametrize("get_tiles", [None, 3, "model"])
def test_non_callable_get_tiles_fnc_rejected_at_call_time(getter, get_tiles):
    with pytest.raises(ValueError, match="get_tiles_fnc"):
        GETTERS[getter](make_geoms(3), 2, get_tiles)


@pytest.mark.parametrize("getter", GETTERS)
def test_non_iterable_geoms_rejected_at_call_time(getter):
    get_tiles = RecordingTiles()
    with pytest.raises(ValueError, match="geoms"):
        GETTERS[getter](42, 2, get_tiles)
    assert get_tiles.calls == []


@pytest.mark.parametrize("max_prefetched", BAD_POSITIVE_INTS)
def test_bad_max_prefetched_rejected_at_call_time(max_prefetched):
    get_tiles = RecordingTiles()
    with pytest.raises(ValueError, match="max_prefetched"):
        threaded_batched_tile_get(make_geoms(3), 2, get_tiles, max_prefetched)
    assert get_tiles.calls == []
    assert prefetch_threads() == []


# --- threaded: errors and early stop ----------------------------------------------------------

def test_worker_exception_reaches_consumer_after_earlier_tiles():
    geoms = make_geoms(12)
    get_tiles = RecordingTiles(fail_on_call=3)
    tiles = threaded_batched_tile_get(geoms, 2, get_tiles, max_prefetched=3)
    received = []
    with pytest.raises(RuntimeError, match="^model failed on call 3$") as caught:
        for tile in tiles:
            received.append(tile)
    assert_same_tiles(received, expected_tiles(geoms[:4], False))
    # The original exception object, its traceback still reaching into get_tiles_fnc.
    assert caught.value is get_tiles.raised
    assert any(entry.name == "__call__" for entry in caught.traceback)
    assert_workers_stop()
    assert len(get_tiles.calls) == 3


def test_exception_while_iterating_geoms_reaches_consumer():
    def geoms():
        yield from make_geoms(5)
        raise KeyError("broken plan")

    received = []
    with pytest.raises(KeyError, match="broken plan"):
        for tile in threaded_batched_tile_get(geoms(), 2, RecordingTiles(), max_prefetched=2):
            received.append(tile)
    assert_same_tiles(received, expected_tiles(make_geoms(4), False))
    assert_workers_stop()


def test_exception_while_iterating_geoms_unthreaded():
    def geoms():
        yield from make_geoms(2)
        raise KeyError("broken plan")

    with pytest.raises(KeyError, match="broken plan"):
        list(batched_tile_get(geoms(), 1, RecordingTiles()))


@pytest.mark.parametrize("how", ["close", "drop"])
def test_early_stop_stops_the_worker(how):
    batch_size, geom_count = 2, 2000
    get_tiles = RecordingTiles(delay_s=0.002)
    tiles = threaded_batched_tile_get(make_geoms(geom_count), batch_size, get_tiles, max_prefetched=4)
    received = [next(tiles), next(tiles)]
    assert_same_tiles(received, expected_tiles(make_geoms(2), False))
    assert len(prefetch_threads()) == 1
    if how == "close":
        tiles.close()
    else:
        del tiles
    assert_workers_stop()
    calls_after_stop = len(get_tiles.calls)
    # Prefetching is bounded: queued tiles plus the batch in progress, never all batches.
    assert calls_after_stop <= 2 + 4 // batch_size + 2
    assert calls_after_stop < geom_count // batch_size
    time.sleep(0.05)
    assert len(get_tiles.calls) == calls_after_stop


def test_break_in_for_loop_stops_the_worker():
    get_tiles = RecordingTiles(delay_s=0.002)

    def consume_two():
        received = []
        for tile in threaded_batched_tile_get(make_geoms(2000), 2, get_tiles, max_prefetched=4):
            received.append(tile)
            if len(received) == 2:
                break
        return received

    assert_same_tiles(consume_two(), expected_tiles(make_geoms(2), False))
    assert_workers_stop()
    assert len(get_tiles.calls) < 10


def test_unstarted_generator_starts_no_thread():
    get_tiles = RecordingTiles()
    tiles = threaded_batched_tile_get(make_geoms(10), 2, get_tiles, max_prefetched=2)
    assert prefetch_threads() == []
    del tiles
    assert get_tiles.calls == []


# --- sizes and malformed geoms ----------------------------------------------------------------

@pytest.mark.parametrize("getter", GETTERS)
def test_a_batch_size_beyond_any_count_takes_everything_in_one_batch(getter):
    get_tiles = RecordingTiles()
    tiles = list(GETTERS[getter](make_geoms(5), 10**30, get_tiles))
    assert_same_tiles(tiles, expected_tiles(make_geoms(5), False))
    assert len(get_tiles.calls) == 1


@pytest.mark.parametrize("getter", GETTERS)
@pytest.mark.parametrize("item", [7, ((0, 0), "geom", "extra"), "ab c", None])
def test_geoms_items_that_are_not_pairs_are_named(getter, item):
    geoms = make_geoms(4) + [item]
    get_tiles = RecordingTiles()
    tiles = GETTERS[getter](geoms, 3, get_tiles)
    with pytest.raises(ValueError, match=r"geoms item 4 is .*; expected an \(index, geom\) pair"):
        list(tiles)
    assert len(get_tiles.calls) == 1, "the batches before the bad item were computed, none after"
