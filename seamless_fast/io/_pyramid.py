"""Reduced-resolution levels of a TiffWriter, built as the full-resolution tile rows complete.

Each level halves the one above (sizes rounded up). A complete tile row
("band") of level k is reduced by 2 into half a band of level k + 1, which
sends its own band to be encoded once two have arrived: every level holds one
band of its width, so memory is bounded by about two bands of level 0 however
tall the image. TIFF needs a page's tiles together, and level 0 is still being
written while the levels fill, so each level is encoded (compressed) by
tifffile into a temporary file beside the output, named as its partials are
(:mod:`seamless_fast._files`); when level 0 is complete the encoded tiles are
copied, as they are, after it, and the temporary files removed.
"""

import math
import os

import numpy as np

from .._files import make_partial
from .._validate import as_int
from . import _stream

__all__ = ["RESAMPLINGS", "level_sizes", "reduce2", "Pyramid"]

RESAMPLINGS = ("mode", "nearest", "mean")
_CHUNK_ROWS = 32


def level_sizes(size, tile, pyramid):
    """Sizes of the reduced levels: ``True`` halves until a level fits in one tile, an int makes that many.

    Examples
    --------
    >>> level_sizes((1000, 700), (256, 256), True)
    [(500, 350), (250, 175)]
    >>> level_sizes((1000, 700), (256, 256), 1)
    [(500, 350)]
    """
    if isinstance(pyramid, (bool, np.bool_)):
        count = None if pyramid else 0
    else:
        try:
            count = as_int(pyramid, "pyramid")
        except ValueError:
            raise ValueError(f"pyramid={pyramid!r} is not True, False or a number of levels") from None
        if count < 0:
            raise ValueError(f"pyramid={pyramid!r}: expected True, False or a number of levels >= 0")
    sizes, (h, w) = [], size
    while (len(sizes) < count) if count is not None else (h > tile[0] or w > tile[1]):
        if h == w == 1:
            raise ValueError(f"pyramid={pyramid!r}: an image of size {tuple(size)} has only {len(sizes)} "
                             "reduced levels before 1 x 1")
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        sizes.append((h, w))
    return sizes


def check_resampling(resampling, dtype):
    """`resampling` checked; None is "mean" for a float dtype, else "mode"."""
    if resampling is None:
        return "mean" if np.dtype(dtype).kind == "f" else "mode"
    if resampling not in RESAMPLINGS:
        raise ValueError(f"resampling={resampling!r} is not supported; expected one of {RESAMPLINGS}")
    return resampling


def _invalid(values, nodata):
    if nodata is None:
        return np.zeros(values.shape, bool)
    if isinstance(nodata, np.ndarray) and nodata.dtype.kind == "f" and np.isnan(nodata):
        return np.isnan(values)
    return values == nodata


def reduce2(block, resampling, nodata=None):
    """Reduce `block` (rows, columns[, channels]) by 2 on each side (sizes rounded up).

    Each output pixel summarises the up to 2 x 2 pixels it covers (fewer at
    an odd last row or column); for "mode" and "mean" pixels equal to
    `nodata` take no part, and a block of nodata only gives nodata.
    "nearest" takes the top-left pixel, nodata or not;
    "mode" the most frequent value (a tie goes to the smallest); "mean" the
    mean, computed in float64 and stored as the nearest value of the dtype
    (integers: rounded half to even, ``rint``).

    Examples
    --------
    >>> block = np.array([[1, 2, 2], [3, 2, 5], [4, 4, 0]], np.uint8)
    >>> reduce2(block, "mode")
    array([[2, 2],
           [4, 0]], dtype=uint8)
    >>> reduce2(block, "mean")
    array([[2, 4],
           [4, 0]], dtype=uint8)
    >>> reduce2(block, "mean", nodata=np.uint8(0))[1, 1]
    np.uint8(0)
    """
    h, w = block.shape[:2]
    H, W = -(-h // 2), -(-w // 2)
    if resampling == "nearest":
        return np.ascontiguousarray(block[::2, ::2])
    pad = [(0, 2 * H - h), (0, 2 * W - w)] + [(0, 0)] * (block.ndim - 2)
    padded = np.pad(block, pad, mode="edge")
    valid = ~_invalid(padded, nodata)
    valid[h:] = False
    valid[:, w:] = False
    quads = [(padded[i::2, j::2], valid[i::2, j::2]) for i in (0, 1) for j in (0, 1)]
    empty = nodata if nodata is not None else 0
    if resampling == "mean":
        total = sum(np.where(v, q.astype(np.float64), 0.0) for q, v in quads)
        count = sum(v.astype(np.int64) for _, v in quads)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        if block.dtype.kind != "f":
            mean = np.rint(mean)
        return np.where(count > 0, mean, empty).astype(block.dtype)
    return _mode(quads, empty).astype(block.dtype)


def _mode(quads, empty):
    """The most frequent valid value of four (values, valid) quads, a tie to the smallest; `empty` where
    none is valid. Votes come from the 6 pairwise equalities, not a 4 x 4 table."""
    values = [q for q, _ in quads]
    valid = [v for _, v in quads]
    same = {}
    for i in range(4):
        for j in range(i + 1, 4):
            same[i, j] = same[j, i] = (values[i] == values[j]) & valid[i] & valid[j]
    best_votes = np.zeros(values[0].shape, np.int8)
    best = values[0].copy()
    for j in range(4):
        votes = valid[j].astype(np.int8)
        for i in range(4):
            if i != j:
                votes += same[i, j]
        better = (votes > best_votes) | ((votes == best_votes) & (values[j] < best))
        best_votes = np.where(better, votes, best_votes)
        best = np.where(better, values[j], best)
    return np.where(best_votes > 0, best, empty)


class _Level:
    """One reduced level: a band buffer filled by reduced rows, encoded into a temporary TIFF."""

    def __init__(self, tifffile, final_path, size, tile, channels, dtype, fill, page_kwargs):
        self.size, self.tile, self.channels, self.dtype, self.fill = size, tile, channels, dtype, fill
        self.n_cols = math.ceil(size[1] / tile[1])
        self.n_bands = math.ceil(size[0] / tile[0])
        self.rows = 0  # rows of this level filled so far
        self.band = None
        self.temp_path = make_partial(final_path)
        try:
            self.tiff = tifffile.TiffWriter(self.temp_path, bigtiff=True)
        except BaseException:
            os.remove(self.temp_path)
            raise
        # one encoding thread per level (each level has its own): a pool per level would multiply the threads
        kwargs = dict(page_kwargs, shape=size + (() if channels in (None, 1) else (channels,)), metadata=None,
                      maxworkers=1)
        self.queue, self.errors, self.taken, self.thread, self.finalizer = _stream.start(
            self, self.tiff, kwargs, f"TiffWriter level {size}", self.temp_path)

    @property
    def held_rows(self):
        return 0 if self.band is None else self.tile[0]

    def add(self, rows):
        """Paste reduced `rows` (this level's width); return the valid part of each band it completes."""
        done = []
        while len(rows):
            if self.band is None:
                width = self.n_cols * self.tile[1]
                shape = (self.tile[0], width) + (() if self.channels is None else (self.channels,))
                self.band = np.full(shape, self.fill, self.dtype)
            top = self.rows % self.tile[0]
            take = min(len(rows), self.tile[0] - top)
            self.band[top:top + take, :self.size[1]] = rows[:take]
            rows, self.rows = rows[take:], self.rows + take
            if self.rows % self.tile[0] == 0 or self.rows == self.size[0]:
                valid = self.tile[0] if self.rows % self.tile[0] == 0 else self.rows % self.tile[0]
                band, self.band = self.band, None
                self.put([(band[..., 0] if self.channels == 1 else band)[:, i * self.tile[1]:(i + 1) * self.tile[1]]
                          for i in range(self.n_cols)])
                done.append(band[:valid, :self.size[1]])
        return done

    def put(self, item):
        _stream.put(self.queue, item, self.raise_error)

    def raise_error(self):
        if self.errors:
            raise RuntimeError(f"encoding the pyramid level of size {self.size} failed in the background: "
                               f"{self.errors[0]!r}") from self.errors[0]

    def finish(self):
        """End the page; check it took every tile; close the temporary file."""
        if self.rows != self.size[0]:
            raise RuntimeError(f"pyramid level of size {self.size} received {self.rows} rows; the file would be wrong")
        _stream.finish(self.queue, self.thread, self.raise_error, self.taken, self.n_bands * self.n_cols,
                       f"pyramid level of size {self.size}")
        self.tiff.close()

    def encoded_tiles(self, tifffile, count):
        """The encoded tiles of the finished temporary file, in order, as bytes (counted in `count`)."""
        with tifffile.TiffFile(self.temp_path) as tif:
            page = tif.pages[0]
            handle = tif.filehandle
            for offset, size in zip(page.dataoffsets, page.databytecounts):
                handle.seek(offset)
                data = handle.read(size)
                if len(data) != size:
                    raise RuntimeError(f"pyramid level of size {self.size}: a tile of {size} bytes read back "
                                       f"as {len(data)}")
                count[0] += 1
                yield data


class Pyramid:
    """The reduced levels of a TiffWriter (see the module's description).

    Parameters
    ----------
    final_path : str
        The output's final name (temporary files go beside it).
    sizes : list of (int, int)
        Level sizes, from :func:`level_sizes`.
    tile, channels, dtype, fill, nodata, resampling
        As the writer's (nodata: a 0-d array or None).
    page_kwargs : dict
        tifffile ``write`` arguments shared by every page (dtype, tile,
        compression, photometric, planarconfig).
    """

    def __init__(self, final_path, sizes, *, tile, channels, dtype, fill, nodata, resampling, page_kwargs):
        from ._common import _import_tifffile

        self._tifffile = _import_tifffile()
        self.resampling, self.nodata, self.page_kwargs = resampling, nodata, page_kwargs
        self.levels = []
        try:
            for size in sizes:
                self.levels.append(_Level(self._tifffile, final_path, size, tile, channels, dtype, fill, page_kwargs))
        except BaseException:
            self.abort()
            raise

    @property
    def held_rows(self):
        """Rows held in each level's incomplete band (each at most one tile height)."""
        return tuple(level.held_rows for level in self.levels)

    def push(self, rows):
        """Hand over the valid part of a complete band of level 0."""
        pending = [rows]
        for level in self.levels:
            pending = [band for rows in pending for band in level.add(self._reduce(rows))]

    def _reduce(self, rows):
        # in slices of _CHUNK_ROWS (even) rows: the same result, with a bounded working set for "mode"
        return np.concatenate([reduce2(rows[top:top + _CHUNK_ROWS], self.resampling, self.nodata)
                               for top in range(0, len(rows), _CHUNK_ROWS)])

    def raise_error(self):
        for level in self.levels:
            level.raise_error()

    def append_to(self, tiff, metadata):
        """Finish every level and copy its encoded tiles into `tiff` as reduced-resolution pages."""
        for level in self.levels:
            level.finish()
        for level in self.levels:
            count = [0]
            kwargs = dict(self.page_kwargs, subfiletype=1, metadata=metadata,
                          shape=level.size + (() if level.channels in (None, 1) else (level.channels,)))
            tiff.write(data=level.encoded_tiles(self._tifffile, count), **kwargs)
            expected = level.n_bands * level.n_cols
            if count[0] != expected:
                raise RuntimeError(f"pyramid level of size {level.size}: {count[0]} tiles copied of {expected}")
        self.abort()  # the temporary files are no longer needed

    def abort(self):
        """Stop encoding and remove the temporary files. Safe to call twice."""
        for level in self.levels:
            level.finalizer()
