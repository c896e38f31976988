"""One TIFF page written by tifffile in a background thread from a queue of tile rows."""

import os
import queue
import threading
import weakref

ABORT = object()
END = object()


class Aborted(Exception):
    """Raised inside the tile generator to stop tifffile when a write is abandoned."""


def tile_stream(tiles, taken):
    """Yield tiles from the queue (lists of tiles per TIFF tile row) until told to stop or that there are
    no more (then tifffile, if it expected more, fails rather than waiting forever); count them in `taken`."""
    while True:
        item = tiles.get()
        if item is ABORT:
            raise Aborted
        if item is END:
            return
        for tile in item:
            taken[0] += 1
            yield tile


def write_in_background(tiff, tiles, errors, taken, kwargs):
    try:
        tiff.write(data=tile_stream(tiles, taken), **kwargs)
    except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
        errors.append(exc)


def stop(tiles, thread, tiff, temp_path):
    """Stop the background write, close and remove the temporary file (abort, or garbage collection)."""
    while thread.is_alive():
        try:
            tiles.put(ABORT, timeout=0.05)
            break
        except queue.Full:
            continue
    thread.join()
    try:
        tiff.close()
    except Exception:  # noqa: BLE001 -- an abandoned file may not close cleanly; it is removed anyway
        pass
    try:
        os.remove(temp_path)
    except FileNotFoundError:
        pass


def start(owner, tiff, kwargs, name, temp_path):
    """Start writing one page of `tiff` in a thread fed by a bounded queue; return (queue, errors, taken,
    thread, finalizer). The finalizer (called on abort, or when `owner` is collected) stops the thread and
    removes `temp_path`: never a thread left running or a temporary file left behind."""
    tiles, errors, taken = queue.Queue(maxsize=2), [], [0]  # taken: tiles tifffile took from the stream
    thread = threading.Thread(target=write_in_background, name=name, args=(tiff, tiles, errors, taken, kwargs),
                              daemon=True)
    thread.start()
    return tiles, errors, taken, thread, weakref.finalize(owner, stop, tiles, thread, tiff, temp_path)


def put(tiles, item, check):
    """Put `item` on the bounded queue, waiting for the encoder but calling `check` (which raises for a dead
    one) while it is full."""
    while True:
        try:
            tiles.put(item, timeout=0.05)
            return
        except queue.Full:
            check()


def finish(tiles, thread, check, taken, expected, what):
    """End the page: tell the encoder there is no more, wait for it, raise its error (`check`), and refuse a
    page that took other than `expected` tiles (`what` names it in the error)."""
    put(tiles, END, check)
    thread.join()
    check()
    if taken[0] != expected:
        raise RuntimeError(f"{what}: tifffile took {taken[0]} tiles of the {expected} expected; the file would be "
                           "wrong")
