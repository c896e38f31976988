"""Fetch model tiles in batches, optionally prefetched by a background thread.

``get_tiles_fnc(batch_indices, batch_geoms)`` computes the tiles of one batch
(e.g. one forward pass of a model); these helpers cut the plan's input geoms
into batches, call it and yield the tiles one by one in plan order.
"""

import itertools
import queue
import sys
import threading

from .._validate import as_positive_int, check_callable

__all__ = ["batched_tile_get", "threaded_batched_tile_get"]

THREAD_NAME = "seamless_fast-tile-prefetch"
_PUT_POLL_S = 0.05  # how often a blocked worker checks whether the consumer has stopped
_JOIN_TIMEOUT_S = 5.0
_DONE = object()


class _Failure:
    """Carries an exception raised in the worker over to the consumer."""

    def __init__(self, error):
        self.error = error


def batched_tile_get(geoms, batch_size, get_tiles_fnc):
    """Yield the tiles of ``geoms``, computed ``batch_size`` at a time.

    Parameters
    ----------
    geoms : iterable of (index, shapely.Geometry)
        As returned by :func:`seamless_fast.get_plan_input_geoms`.
    batch_size : int
        Most tiles per call of `get_tiles_fnc`; positive.
    get_tiles_fnc : callable
        ``get_tiles_fnc(batch_indices, batch_geoms)`` with two non-empty lists
        of equal length; returns as many tiles (a sequence, or an array with
        a leading batch axis).

    Yields
    ------
    tile
        One tile per geom, in the order of `geoms`.

    Raises
    ------
    ValueError
        At call time if an argument is invalid; while iterating if
        `get_tiles_fnc` returns the wrong number of tiles for a batch.

    Examples
    --------
    >>> import numpy as np
    >>> get_tiles_fnc = lambda idx, geoms: [np.zeros((2, 2)) for _ in idx]
    >>> geoms = [((0, col), None) for col in range(5)]
    >>> len(list(batched_tile_get(geoms, 2, get_tiles_fnc)))
    5
    """
    geom_iter, batch_size = _check_args(geoms, batch_size, get_tiles_fnc)
    return _iter_tiles(geom_iter, batch_size, get_tiles_fnc)


def threaded_batched_tile_get(geoms, batch_size, get_tiles_fnc, max_prefetched):
    """Like :func:`batched_tile_get`, but computed ahead in a background thread.

    The worker thread starts with the first tile requested and keeps at most
    `max_prefetched` tiles waiting. An exception raised in it (by
    `get_tiles_fnc` or by iterating `geoms`) is re-raised in the consumer at
    that point of the stream. Stopping early (``break``, ``close()``, dropping
    the generator) stops the worker after at most the batch in progress.

    Parameters
    ----------
    geoms, batch_size, get_tiles_fnc
        As for :func:`batched_tile_get`.
    max_prefetched : int
        Most tiles computed but not yet consumed; positive.

    Yields
    ------
    tile
        One tile per geom, in the order of `geoms`.

    Raises
    ------
    ValueError
        At call time if an argument is invalid; while iterating as
        :func:`batched_tile_get` does.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import get_plan_input_geoms, plan_regular_grid
    >>> plan, _ = plan_regular_grid((100, 100), 64, 16)
    >>> geoms = get_plan_input_geoms(plan)
    >>> get_tiles_fnc = lambda idx, geoms: [np.zeros((2, 2)) for _ in idx]
    >>> tiles = threaded_batched_tile_get(geoms, 3, get_tiles_fnc, max_prefetched=4)
    >>> len(list(tiles)) == len(geoms)
    True
    """
    geom_iter, batch_size = _check_args(geoms, batch_size, get_tiles_fnc)
    max_prefetched = as_positive_int(max_prefetched, "max_prefetched")
    return _prefetched(_iter_tiles(geom_iter, batch_size, get_tiles_fnc), max_prefetched)


def _check_args(geoms, batch_size, get_tiles_fnc):
    batch_size = as_positive_int(batch_size, "batch_size")
    check_callable(get_tiles_fnc, "get_tiles_fnc")
    try:
        geom_iter = iter(geoms)
    except TypeError:
        raise ValueError(f"geoms={geoms!r} is not iterable; expected (index, geom) pairs") from None
    return geom_iter, batch_size


def _iter_tiles(geom_iter, batch_size, get_tiles_fnc):
    taken = min(batch_size, sys.maxsize)  # islice's limit; a batch that large is "all of them" anyway
    for number in itertools.count():
        batch = list(itertools.islice(geom_iter, taken))
        if not batch:
            return
        batch_indices, batch_geoms = _unpack(batch, number * taken)
        tiles = get_tiles_fnc(batch_indices, batch_geoms)
        _check_tile_count(tiles, len(batch), f"batch {number} (0-based, first index {batch_indices[0]!r})")
        yield from tiles


def _unpack(batch, first):
    """The indices and geoms of a batch of (index, geom) pairs; `first` numbers its first item in `geoms`."""
    indices, geoms = [], []
    for k, item in enumerate(batch):
        try:
            index, geom = item
        except (TypeError, ValueError):
            raise ValueError(f"geoms item {first + k} is {item!r}; expected an (index, geom) pair as "
                             "get_plan_input_geoms gives") from None
        indices.append(index)
        geoms.append(geom)
    return indices, geoms


def _check_tile_count(tiles, expected, batch_name):
    try:
        actual = len(tiles)
    except TypeError:
        raise ValueError(f"get_tiles_fnc returned {type(tiles).__name__} for {batch_name}; expected a "
                         f"sequence or array of {expected} tiles") from None
    if actual != expected:
        raise ValueError(f"get_tiles_fnc returned {actual} tiles for {batch_name}; expected {expected}")


def _prefetched(tiles, max_prefetched):
    tile_queue = queue.Queue(max_prefetched)
    stop = threading.Event()
    worker = threading.Thread(target=_prefetch, args=(tiles, tile_queue, stop), name=THREAD_NAME, daemon=True)
    worker.start()
    try:
        while (item := tile_queue.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(_JOIN_TIMEOUT_S)


def _prefetch(tiles, tile_queue, stop):
    try:
        for tile in tiles:
            if not put_unless_stopped(tile_queue, tile, stop):
                return
    except BaseException as error:  # forwarded: nothing may escape the thread
        put_unless_stopped(tile_queue, _Failure(error), stop)
        return
    finally:
        tiles.close()
    put_unless_stopped(tile_queue, _DONE, stop)


def put_unless_stopped(tile_queue, item, stop):
    """Put `item` on a bounded queue, waiting as long as needed; False (not put) once `stop` is set."""
    while not stop.is_set():
        try:
            tile_queue.put(item, timeout=_PUT_POLL_S)
            return True
        except queue.Full:
            pass
    return False
