"""Partial sums handed from one vertical stripe of a plan to the next, through files.

A plan made with a `max_buffer_bytes` smaller than one band of its output
runs in stripes (see `Plan.stripes`). Where two stripes overlap (a seam), the
first stripe's tiles leave partial sums that the second stripe's cells need.
They go to one file per seam, a row at a time as rows leave the buffer, and
come back as rows enter the next stripe's buffer. Plain positioned reads and
writes are used, not a memory map, so the OS page cache, not the process,
holds what is on disk and the run's resident memory stays bounded.
"""

import os
import shutil
import tempfile

import numpy as np

__all__ = ["SeamFiles"]


class SeamFiles:
    """One file per non-empty seam, laid out (planes, image rows, seam elements) like the buffer."""

    def __init__(self, plan, planes, group, dtype, folder=None):
        self._own_folder = folder is None
        self.folder = tempfile.mkdtemp(prefix="seamless_fast_seams_") if folder is None else folder
        self.plan, self.planes, self.group, self.dtype = plan, planes, group, np.dtype(dtype)
        self.height = plan.image_size[0]
        self._fds = {}
        self.paths = []
        for b, (lo, hi) in enumerate(plan.seams.tolist()):
            if hi > lo:
                fd, path = tempfile.mkstemp(prefix=f"seam{b}_", suffix=".bin", dir=self.folder)
                self._fds[b] = fd
                self.paths.append(path)

    def _width(self, b):
        lo, hi = self.plan.seams[b].tolist()
        return (hi - lo) * self.group

    def _offset(self, b, plane, row):
        return (plane * self.height + row) * self._width(b) * self.dtype.itemsize

    def spill(self, b, ring, lo, hi):
        """Write image rows [lo, hi) of seam b from the buffer of the stripe left of it."""
        if b not in self._fds:
            return
        x0 = (self.plan.seams[b, 0] - self.plan.stripes[b, 0]) * self.group
        rows = np.arange(lo, hi) % ring.shape[1]
        for p in range(self.planes):
            block = np.ascontiguousarray(ring[p, rows, x0:x0 + self._width(b)])
            os.pwrite(self._fds[b], memoryview(block).cast("B"), self._offset(b, p, lo))

    def load(self, b, ring, lo, hi):
        """Put image rows [lo, hi) of seam b into the buffer of the stripe right of it."""
        if b not in self._fds:
            return
        width = self._width(b)
        rows = np.arange(lo, hi) % ring.shape[1]
        block = np.empty((hi - lo, width), self.dtype)
        raw = memoryview(block).cast("B")
        for p in range(self.planes):
            got = os.preadv(self._fds[b], [raw], self._offset(b, p, lo))
            # Rows the left stripe never reached were never written: nothing was added there.
            raw[got:] = bytes(block.nbytes - got)
            ring[p, rows, :width] = block

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        for path in self.paths:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
