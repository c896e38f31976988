"""Taking a plan's tiles from an iterable: exactly as many as the plan needs, never one more.

Shared by :func:`~seamless_fast.run_plan` and :func:`~seamless_fast.engine.blender`.
"""

import collections.abc

__all__ = ["iterate_tiles", "check_tile_count"]

_MISSING = object()


def check_tile_count(tiles, expected):
    """Refuse a sized `tiles` (a list, an array of tiles) whose length is not `expected`, before any is read.

    Iterators and generators have no length and pass: they are checked as
    they run (see :func:`iterate_tiles`).
    """
    if isinstance(tiles, collections.abc.Iterator) or not hasattr(tiles, "__len__"):
        return
    try:
        count = len(tiles)
    except TypeError:  # e.g. a 0-d array: not a sequence of tiles, reported when iterated
        return
    if count != expected:
        raise ValueError(f"tiles holds {count} tiles; the plan expects {expected}")


def iterate_tiles(blender, tiles):
    """Push the plan's tiles from the iterable `tiles`; yield ``(step, cells)`` after each.

    Takes exactly ``plan.n_loads`` tiles and never asks for one more, so an
    endless generator (as the seed's examples pass) is fine; a sized
    `tiles` of another length is refused before any tile is read. Raises a
    ValueError naming the counts when `tiles` runs out early.
    """
    expected = blender.plan.n_loads
    check_tile_count(tiles, expected)
    iterator = iter(tiles)
    for step in range(expected):
        tile = next(iterator, _MISSING)
        if tile is _MISSING:
            raise ValueError(f"tiles ran out after {step} tiles; the plan expects {expected}")
        yield step, blender.push(tile)
