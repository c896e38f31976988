"""Checks and conversions of each arriving tile: shape, dtype, channels, finiteness, into contiguous planes."""

import numpy as np

from . import _kernels
from ._arrays import accumulator_dtype, too_large
from ._simd import HALF_IN_HARDWARE


class TileInput:
    """A mixin of :class:`~seamless_fast.engine.blender.Blender`: every tile passes here before a kernel sees it."""

    def _describe(self):
        return f"tile {self.step} (grid index {self.next_index})"

    def _checked_tile(self, tile, h, w):
        """The tile as contiguous planes (P, h, L) in the accumulator dtype, after every check."""
        arr = tile if type(tile) is np.ndarray else self._as_array(tile)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{self._describe()} has dtype {arr.dtype}; expected a real float, integer or bool dtype")
        if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
            raise ValueError(f"{self._describe()} has dtype {arr.dtype}; expected a real float of at most 64 bits "
                             "(blending would round it to float64)")
        if self._ndim is not None and arr.ndim != self._ndim:
            raise ValueError(f"{self._describe()} has {arr.ndim} dimensions; earlier tiles had {self._ndim}")
        if arr.ndim == 2:
            spatial, channels = arr.shape, 1
        elif arr.ndim == 3:
            spatial, channels = (arr.shape[1:], arr.shape[0]) if self.channel_first else (arr.shape[:2], arr.shape[2])
        else:
            raise ValueError(f"{self._describe()} has shape {arr.shape}; expected "
                             f"{'(C, H, W)' if self.channel_first else '(H, W, C)'} or (H, W)")
        if spatial != (h, w) or (self.channels is not None and channels != self.channels):
            c = self.channels or "C"
            expect = (h, w) if arr.ndim == 2 else (c, h, w) if self.channel_first else (h, w, c)
            raise ValueError(f"{self._describe()} has shape {arr.shape}; expected {expect}"
                             + ("" if arr.ndim == 2 else f" (channel_first={self.channel_first})"))
        if channels == 0:
            raise ValueError(f"{self._describe()} has no channels")
        dtype = self.dtype or (self._acc.dtype if self._acc is not None else accumulator_dtype(arr.dtype))
        plane_shape = (-1, h, w) if arr.ndim == 2 or self.channel_first else (1, h, w * channels)
        try:
            if arr.dtype == np.float16 and dtype == np.float32:
                planes = self._from_half(arr).reshape(plane_shape)
            else:
                planes = np.ascontiguousarray(arr.reshape(plane_shape), dtype=dtype)
        except MemoryError as exc:
            raise too_large(f"the {dtype} copy of {self._describe()}", arr.shape, dtype,
                             "pass C-contiguous tiles of the accumulator dtype, or smaller tiles") from exc
        if self.check_finite and not np.isfinite(planes).all():
            raise ValueError(f"{self._describe()} contains NaN or inf (check_finite=True)")
        return planes, arr.ndim, channels

    def _expected(self, h, w):
        """The shape the next tile, of size (h, w), must have, in words."""
        c = self.channels or "C"
        three = f"({c}, {h}, {w})" if self.channel_first else f"({h}, {w}, {c})"
        if self._ndim == 2:
            return f"({h}, {w})"
        if self._ndim == 3:
            return f"{three} (channel_first={self.channel_first})"
        return f"{three} (channel_first={self.channel_first}) or ({h}, {w})"

    def _from_half(self, arr):
        """float16 to float32 in a reused buffer (numpy's own conversion is several times slower)."""
        if getattr(self, "_half", None) is None or self._half.size < arr.size:
            self._half = np.empty(arr.size, np.float32)
        out = self._half[:arr.size]
        convert = _kernels.half_to_float_f16c if HALF_IN_HARDWARE else _kernels.half_to_float
        convert(np.ascontiguousarray(arr).reshape(-1).view(np.uint16), out)
        return out

    def _as_array(self, tile):
        try:
            return np.asarray(tile)
        except Exception as exc:
            h, w = self.next_tile_shape
            raise ValueError(f"{self._describe()} could not be converted to an array of shape "
                             f"{self._expected(h, w)}: {exc}") from exc
