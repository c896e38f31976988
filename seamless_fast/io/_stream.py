"""One TIFF page written by tifffile in a background thread from a queue of tile rows."""

import os
import queue

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
