"""The blend's buffers: allocated with the first tile, and the partial sums handed across stripe seams.

A mixin of :class:`~seamless_fast.engine.blender.Blender`: the attributes it sets
(``_acc``, ``_right``, the kernels, scratch rows, the frames of a column walk) are
what the push paths read.
"""

import math
import os
import tempfile

import numba
import numpy as np

from . import _band_kernels, _kernels
from ._arrays import label_dtype, new_array, output_planes, too_large
from ._records import _COL
from ._seams import SeamFiles, reserve
from ._transpose import cell_to_image

# Bytes of scratch rows a labels kernel's thread works through, to stay in the L1 cache.
SCRATCH_BYTES = 1 << 15


class Buffers:
    """Allocation of the blend buffers and output cells, and the stripe seams' partial sums."""

    def _start(self, planes, ndim, channels, k):
        """Allocate the buffers for tiles like `planes`; on any error, free what was made and stop."""
        try:
            self._allocate(planes, ndim, channels)
            planar = planes.shape[0] > 1  # the arg-max the labels kernels compile (see `_kernels.argmax_way`)
            self._way = _kernels.argmax_way(planes.shape[0] if planar else self._group, planar)
        except BaseException as exc:
            self._fail(k, exc)
            raise

    def _allocate(self, planes, ndim, channels):
        plan = self.plan
        self._ndim = ndim
        self._chw = self.channel_first and ndim == 3
        self.channels = c = int(channels)
        self._group = 1 if self.channel_first or ndim == 2 else c  # elements per pixel in a plane row
        if ndim == 2:
            self._tile_shape = lambda h, w: (h, w)
        elif self.channel_first:
            self._tile_shape = lambda h, w: (c, h, w)
        else:
            self._tile_shape = lambda h, w: (h, w, c)
        dtype = self._dtype = planes.dtype
        self._labels_dtype = label_dtype(c)
        if self.out is not None:  # checked before anything is allocated or reserved
            self._out_planes = output_planes(self.out, ndim, self.labels, self.channel_first, c, dtype,
                                              self._labels_dtype)
        width = int((plan.stripes[:, 1] - plan.stripes[:, 0]).max())
        self._acc = self._buffer((planes.shape[0], plan.buffer_rows, width * self._group), dtype, "buffer")
        self._band = plan.layout == "band"
        if self._band:  # the last tile's right overlap, in two halves (see `_band_kernels`)
            rows, cols = plan.right_buffer
            self._right = new_array(np.zeros, (2, planes.shape[0], rows, cols * self._group), dtype,
                                    "the right-overlap buffer of the blend")
            self._bufs = (self._acc, self._right)
        else:
            self._bufs = (self._acc,)
        # the kernels of the fast path: (serial, parallel, batch) x (values, labels)
        module, prefix = (_band_kernels, "band") if self._band else (_kernels, "blend")
        kind = "labels" if self.labels else "values"
        self._serial_kernel, self._parallel_kernel, self._batch_kernel = (
            getattr(module, f"{prefix}_{kind}{suffix}") for suffix in ("", "_parallel", "_batch"))
        if len(plan.stripes) > 1:
            self._seams = SeamFiles(plan, planes.shape[0], self._group, dtype, self.cache_dir)
        if not plan.normalised:
            self._wsum = self._buffer((1, plan.buffer_rows, width), dtype, "weight-sum buffer")
        self._wy = plan.weights.astype(dtype)
        self._wx = np.repeat(self._wy, self._group)  # x weights per element of a plane row
        cells = plan.cell_boxes[plan.write_cells]
        a = 0 if self._columns else 1  # the image axis of the buffer's rows
        cell_width = int((cells[:, a + 2] - cells[:, a]).max(initial=1))
        # Labels go through scratch rows, a block that fits in the L1 cache for each of the parallel
        # kernels' chunks (one a thread).
        self._choosers = {}  # per size class of tile (see `_chooser`)
        self._chunks = numba.get_num_threads() if self._policy != "serial" else 1
        row_bytes = planes.shape[0] * cell_width * self._group * dtype.itemsize
        rows = self._chunks * max(1, SCRATCH_BYTES // row_bytes)
        self._scratch = new_array(np.empty, (planes.shape[0], rows, cell_width * self._group), dtype,
                                   "the scratch rows of the blend")
        self._label = new_array(np.empty, (rows, cell_width), dtype, "the label rows of the blend")
        if self._columns:
            self._allocate_frame(planes, cells, cell_width, dtype)
        # where a step that finishes no cell "writes" (nothing): of the cells' type, so no kernel is compiled for it
        if self._columns:
            self._no_cell = self._cell_frame
        elif self.out is not None:
            self._no_cell = self._out_planes
        elif self.labels:
            self._no_cell = np.empty((1, 1), self._labels_dtype)
        else:
            self._no_cell = np.empty((planes.shape[0], 1, 1), dtype)

    def _allocate_frame(self, planes, cells, cell_width, dtype):
        """Walking columns: where each tile is transposed for the kernels and where they write each cell."""
        boxes = self.plan.tile_boxes[self.plan.load_order]
        largest = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).max())
        self._tile_frame = new_array(np.empty, (largest * planes.shape[0] * self._group,), dtype,
                                     "the transposed tile")
        cell_rows = int((cells[:, 3] - cells[:, 1]).max(initial=1))  # image columns are the kernels' rows
        if self.labels:
            self._cell_frame = new_array(np.empty, (cell_rows, cell_width), self._labels_dtype, "the transposed cell")
        else:
            self._cell_frame = new_array(np.empty, (planes.shape[0], cell_rows, cell_width * self._group), dtype,
                                         "the transposed cell")

    def _cell_from_frame(self, box, source=None, fresh_shape=None):
        """The image-frame array of the cell in `box`, copied from `source`, where the kernels wrote it
        transposed (labels (w, h) or planes (P, w, h * group); by default the start of the transposed cell)."""
        ylo, xlo, yhi, xhi = box
        h, w = yhi - ylo, xhi - xlo
        if source is None:
            source = self._cell_frame[:w, :h] if self.labels else self._cell_frame[:, :w, :h * self._group]
        if self.out is not None:
            data = self._cell_output(box)[0]
        elif self.labels:
            data = np.empty((h, w), self._labels_dtype)
        else:
            data = np.empty(fresh_shape or self._tile_shape(h, w), self._dtype)
        cell_to_image(source, data, self._group, self._chw)
        return data

    def _buffer(self, shape, dtype, what):
        if not self.buffer_on_disk:
            return new_array(np.zeros, shape, dtype, f"the blend {what}")
        fd, path = tempfile.mkstemp(prefix="seamless_fast_", suffix=".buf", dir=self.cache_dir)
        self._files.append(path)
        try:  # blocks reserved now: a disk filling up later would kill the process (SIGBUS) at a page write
            reserve(fd, path, math.prod(shape) * dtype.itemsize)
        finally:
            os.close(fd)
        try:
            return np.memmap(path, dtype=dtype, mode="r+", shape=shape)
        except (MemoryError, OSError, ValueError, OverflowError) as exc:
            raise too_large(f"the blend {what} (memory-mapped from {path})", shape, dtype) from exc

    def _cell_output(self, box):
        """Where the values of the cell in `box` go: (the array the caller gets, the array the kernels
        write, row and element there of the cell's first value). The kernels get the whole output, not a
        view of the cell: numba vectorises writes to a C-contiguous array only."""
        ylo, xlo, yhi, xhi = box
        if self.out is not None:
            if self.labels:
                return self.out[ylo:yhi, xlo:xhi], self.out, ylo, xlo
            data = self.out[:, ylo:yhi, xlo:xhi] if self._chw else self.out[ylo:yhi, xlo:xhi]
            return data, self._out_planes, ylo, xlo * self._group
        h, w = yhi - ylo, xhi - xlo
        if self.labels:
            data = np.empty((h, w), self._labels_dtype)
            return data, data, 0, 0
        data = np.empty(self._tile_shape(h, w), self._dtype)
        return data, data.reshape((-1, h, w * self._group)), 0, 0

    def _load_seam(self, k):
        """Before step k: the partial sums of the rows entering the buffer, from the seam on the stripe's left."""
        stripe, lo, hi = self.plan.steps[k, [_COL["stripe"], _COL["enter_lo"], _COL["enter_hi"]]].tolist()
        if self._band:
            if stripe > 0 and hi > 0:
                self._load_left_overlap(k, stripe, lo, hi)
        elif stripe > 0 and hi > lo:
            self._seams.load(stripe - 1, self._acc, lo, hi)

    def _spill_seam(self, k):
        """After step k: the partial sums of the rows leaving the buffer, to the seam on the stripe's right."""
        stripe, lo, hi = self.plan.steps[k, [_COL["stripe"], _COL["leave_lo"], _COL["leave_hi"]]].tolist()
        if self._band:
            if stripe < len(self.plan.seams) and hi > 0:
                self._spill_right_overlap(k, stripe, lo, hi)
        elif stripe < len(self.plan.seams) and hi > lo:
            self._seams.spill(stripe, self._acc, lo, hi)

    def _load_left_overlap(self, k, stripe, lo, hi):
        """Band layout, before the first tile of a tile row in stripe s > 0: the right-overlap buffer the
        tile reads (its left overlap, the seam's columns), from the band where earlier tile rows of the
        stripe reached, from the seam's file in image rows [lo, hi) below."""
        y0, x0, first, ty, rx = self.plan.steps[k, [_COL[name] for name in ("y0", "x0", "first", "fy", "fx")]].tolist()
        g, cap = self._group, self._acc.shape[1]
        left = self._right[k & 1]
        top = lo - y0  # max(first, ty)
        left[:, first:top, :rx * g] = self._acc[:, np.arange(y0 + first, lo) % cap, x0 * g:(x0 + rx) * g]
        block = np.empty((left.shape[0], hi - lo, rx * g), left.dtype)
        self._seams.read_rows(stripe - 1, block, lo)
        left[:, top:hi - y0, :rx * g] = block

    def _spill_right_overlap(self, k, stripe, lo, hi):
        """Band layout, after the last tile of a tile row with a seam on its right: the rows of its right
        overlap that the next tile row does not reach, [lo, hi), to the seam's file; the rows below it
        reaches into the band, where its tiles in this stripe read them."""
        y0, x0, h, w, bx = self.plan.steps[k, [_COL[name] for name in ("y0", "x0", "h", "w", "bx")]].tolist()
        g, cap = self._group, self._acc.shape[1]
        right = self._right[(k + 1) & 1][:, :, :(w - bx) * g]
        self._seams.write_rows(stripe, right[:, lo - y0:hi - y0], lo)
        below = hi - y0  # max(first, by)
        self._acc[:, np.arange(y0 + below, y0 + h) % cap, (x0 + bx) * g:(x0 + w) * g] = right[:, below:h]
