"""Partial sums handed from one vertical stripe of a plan to the next, through files.

A plan made with a `max_buffer_bytes` smaller than one band of its output
runs in stripes (see `Plan.stripes`). Where two stripes overlap (a seam), the
first stripe's tiles leave partial sums that the second stripe's cells need.
They go to one file per seam, a row at a time as rows leave the buffer (with
the band layout: as each tile row's last tile of the stripe leaves its right
overlap), and come back as rows enter the next stripe's buffer. Plain
positioned reads and writes are used, not a memory map, so the OS page cache,
not the process, holds what is on disk and the run's resident memory stays
bounded.

Every file gets its full size up front (`reserve`): a disk too small fails
there, before any tile is blended, and a row the left stripe never wrote
reads back as zeros (nothing was added there). Every read and write must then
move all its bytes; a short one is continued, and one that moves nothing or
fails raises an `OSError` naming the file, the offset and the byte counts.
A seam's file is removed as soon as the stripe right of it is done.
"""

import errno
import os
import shutil
import tempfile
import weakref

import numpy as np

__all__ = ["SeamFiles", "reserve", "write_all", "read_all", "remove_files", "owned_cleanup"]

# errno values with which posix_fallocate says the file system cannot reserve (so the file is made sparse)
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def reserve(fd, path, size):
    """Give the open file `fd` (named `path`) `size` zero bytes, with disk blocks reserved where the file
    system can (``posix_fallocate``), so that a full disk is an error now rather than part-way through.

    Elsewhere the file is extended sparse (``ftruncate``), still reading as zeros. Raises an OSError
    naming the file and the size when the disk has no room.
    """
    fallocate = getattr(os, "posix_fallocate", None)
    try:
        if fallocate is not None:
            try:
                fallocate(fd, 0, size)
                return
            except OSError as exc:
                if exc.errno not in _NO_FALLOCATE:
                    raise
        os.ftruncate(fd, size)
    except OSError as exc:
        raise OSError(exc.errno, f"could not reserve {size} bytes for the file ({exc.strerror})", path) from exc


def write_all(fd, path, data, offset):
    """Write all of `data` (a C-contiguous array) at `offset`, continuing after short writes."""
    view = memoryview(data).cast("B")
    total, done = len(view), 0
    while done < total:
        try:
            n = os.pwrite(fd, view[done:], offset + done)
        except OSError as exc:
            raise OSError(exc.errno, f"wrote {done} of {total} bytes at offset {offset}, then: {exc.strerror}",
                          path) from exc
        if n <= 0:
            raise OSError(errno.EIO, f"wrote {done} of {total} bytes at offset {offset}, then the write "
                          f"returned {n}", path)
        done += n


def read_all(fd, path, buffer, offset):
    """Fill all of `buffer` (a writable C-contiguous array) from `offset`, continuing after short reads.

    The file was reserved at its full size, so its end before the buffer is full is an error.
    """
    view = memoryview(buffer).cast("B")
    total, done = len(view), 0
    while done < total:
        try:
            n = os.preadv(fd, [view[done:]], offset + done)
        except OSError as exc:
            raise OSError(exc.errno, f"read {done} of {total} bytes at offset {offset}, then: {exc.strerror}",
                          path) from exc
        if n <= 0:
            raise OSError(errno.EIO, f"read {done} of {total} bytes at offset {offset}, then the file ended "
                          "(it was reserved at its full size: it was truncated or the read failed)", path)
        done += n


def remove_files(paths):
    """Remove the files in the list `paths` (those already gone are skipped) and empty the list."""
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    paths.clear()


def owned_cleanup(cleanup, *args):
    """A finalizer that calls ``cleanup(*args)`` only in the process that made it: a forked child
    exiting through its atexit hooks must not remove its parent's files."""
    pid = os.getpid()

    def run():
        if os.getpid() == pid:
            cleanup(*args)

    return run


def _release(fds, paths, folder):
    """Close and remove every seam file, and the folder if it is the run's own; a finalizer (no `self`)."""
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
    remove_files(paths)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class SeamFiles:
    """One file per non-empty seam, laid out (planes, image rows, seam elements) like the buffer.

    Closed and removed by :meth:`close`, or by a finalizer when the object is
    collected or the interpreter exits without it.
    """

    def __init__(self, plan, planes, group, dtype, folder=None):
        own_folder = folder is None
        self.folder = tempfile.mkdtemp(prefix="seamless_fast_seams_") if own_folder else folder
        self.plan, self.planes, self.group, self.dtype = plan, planes, group, np.dtype(dtype)
        self.height = plan.image_size[1 if plan.traverse == "columns" else 0]  # rows of the buffer's frame
        self._fds = {}
        self._paths = {}
        self.paths = []
        self._finalizer = weakref.finalize(self, owned_cleanup(_release, self._fds, self.paths,
                                                               self.folder if own_folder else None))
        try:
            for b, (lo, hi) in enumerate(plan.seams.tolist()):
                if hi > lo:
                    fd, path = tempfile.mkstemp(prefix=f"seam{b}_", suffix=".bin", dir=self.folder)
                    self._fds[b], self._paths[b] = fd, path
                    self.paths.append(path)
                    reserve(fd, path, self._offset(b, planes, 0))
        except BaseException:
            self.close()
            raise

    def _width(self, b):
        lo, hi = self.plan.seams[b].tolist()
        return (hi - lo) * self.group

    def _offset(self, b, plane, row):
        return (plane * self.height + row) * self._width(b) * self.dtype.itemsize

    def spill(self, b, ring, lo, hi):
        """Write image rows [lo, hi) of seam b from the buffer of the stripe left of it."""
        if b not in self._fds:
            return
        fd, path = self._fds[b], self._paths[b]
        x0 = (self.plan.seams[b, 0] - self.plan.stripes[b, 0]) * self.group
        rows = np.arange(lo, hi) % ring.shape[1]
        for p in range(self.planes):
            block = np.ascontiguousarray(ring[p, rows, x0:x0 + self._width(b)])
            write_all(fd, path, block, self._offset(b, p, lo))

    def load(self, b, ring, lo, hi):
        """Put image rows [lo, hi) of seam b into the buffer of the stripe right of it."""
        if b - 1 in self._fds:  # stripe b is done: no one reads seam b - 1 again
            self._drop(b - 1)
        if b not in self._fds:
            return
        fd, path = self._fds[b], self._paths[b]
        width = self._width(b)
        rows = np.arange(lo, hi) % ring.shape[1]
        block = np.empty((hi - lo, width), self.dtype)
        for p in range(self.planes):
            read_all(fd, path, block, self._offset(b, p, lo))
            ring[p, rows, :width] = block

    def write_rows(self, b, block, lo):
        """Write planes `block`, (planes, rows, seam elements), as image rows from `lo` of seam b."""
        if b not in self._fds:
            return
        fd, path = self._fds[b], self._paths[b]
        for p in range(self.planes):
            write_all(fd, path, np.ascontiguousarray(block[p]), self._offset(b, p, lo))

    def read_rows(self, b, block, lo):
        """Fill planes `block`, (planes, rows, seam elements), with image rows from `lo` of seam b, for the
        stripe right of it (zeros for a seam of no columns)."""
        if b - 1 in self._fds:  # stripe b is done: no one reads seam b - 1 again
            self._drop(b - 1)
        if b not in self._fds:
            block[...] = 0
            return
        fd, path = self._fds[b], self._paths[b]
        for p in range(self.planes):
            read_all(fd, path, block[p], self._offset(b, p, lo))

    def _drop(self, b):
        """Close and remove the file of seam b, giving its disk space back."""
        os.close(self._fds.pop(b))
        path = self._paths.pop(b)
        self.paths.remove(path)
        remove_files([path])

    def close(self):
        """Close and remove every file (and the folder if this object made it). Safe to call twice."""
        self._finalizer()
