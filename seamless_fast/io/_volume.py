"""VolumeReader: windows of a 3-D volume (zarr, OME-Zarr, TIFF stack, NIfTI, array), padded beyond its border."""

import os
import weakref
from typing import NamedTuple

import numpy as np

from .._validate import as_int
from ._common import InputFile, _check_box, _check_fill
from .reader import _pad_index

__all__ = ["VolumeReader", "VolumeLevel", "open_volume"]

VOLUME_PAD_MODES = ("constant", "edge", "reflect")
# Length units by their OME-Zarr (NGFF) names, with the spellings ImageJ, OME-TIFF and NIfTI use.
UNITS = {"micrometer": ("um", "µm", "\u03bcm", "\\u00B5m", "micron", "microns"), "millimeter": ("mm",),
         "nanometer": ("nm",), "centimeter": ("cm",), "meter": ("m",)}


def unit_name(text):
    """The NGFF name of a length unit (``"um"`` -> ``"micrometer"``), or None for an unknown one.

    Examples
    --------
    >>> unit_name("µm"), unit_name("mm"), unit_name("parsec")
    ('micrometer', 'millimeter', None)
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    for name, spellings in UNITS.items():
        if text.lower() == name or text in spellings:
            return name
    return None


class VolumeLevel(NamedTuple):
    """One resolution level of a volume.

    Attributes
    ----------
    shape : (int, int, int)
        ``(depth, height, width)`` in voxels.
    spacing : (float, float, float) or None
        ``(z, y, x)`` physical size of a voxel of this level, or None where
        the source does not say.

    Examples
    --------
    >>> import numpy as np
    >>> VolumeReader(np.zeros((4, 5, 6), np.uint8)).levels
    (VolumeLevel(shape=(4, 5, 6), spacing=None),)
    """

    shape: tuple
    spacing: tuple = None


def check_shape3(shape, name="shape"):
    """`shape` as 3 positive ints ``(D, H, W)``, else a ValueError."""
    try:
        items = tuple(shape)
    except TypeError:
        raise ValueError(f"{name}={shape!r} is not a shape; expected (depth, height, width)") from None
    if len(items) != 3:
        raise ValueError(f"{name}={shape!r} has {len(items)} items; expected 3: (depth, height, width)")
    out = tuple(as_int(v, name) for v in items)
    if min(out) < 1:
        raise ValueError(f"{name}={shape!r}: every entry must be positive")
    return out


class AxesSource:
    """Windows of an array-like whose axes are named by letters: z, y, x (once each), c (channels,
    optional) and t (any other axis, of length 1, dropped)."""

    def __init__(self, array, axes, name, *, spacing=None, affine=None, levels=None, level=0, closer=None,
                 fresh=True, unit=None):
        shape = tuple(int(n) for n in array.shape)
        if sorted(axes.replace("t", "")) not in (sorted("zyx"), sorted("zyxc")) or len(axes) != len(shape):
            raise ValueError(f"source={name!r} has axes {axes!r} for shape {shape}; expected z, y and x "
                             "once each, at most one channel axis and other axes of length 1")
        for letter, n in zip(axes, shape):
            if letter == "t" and n != 1:
                raise ValueError(f"source={name!r} has an axis of length {n} that is neither z, y, x nor channels "
                                 f"(axes {axes!r}, shape {shape}); expected one volume: select it first")
        if 0 in shape:
            raise ValueError(f"source={name!r} has shape {shape}; expected no empty axis")
        self.array, self.axes, self.name = array, axes, name
        self.shape = tuple(shape[axes.index(a)] for a in "zyx")
        self.channels = shape[axes.index("c")] if "c" in axes else 1
        self.dtype = np.dtype(array.dtype).newbyteorder("=")
        self.spacing, self.affine, self.unit = spacing, affine, unit
        self.levels = levels if levels is not None else (VolumeLevel(self.shape, spacing),)
        self.level = level
        self.extra = {}
        self._closer = closer
        self._fresh = fresh  # slicing `array` gives new arrays (files), not views (numpy)
        kept = [a for a in axes if a != "t"]
        self._order = tuple(kept.index(a) for a in "zyxc" if a in kept)

    def region(self, z0, z1, y0, y1, x0, x1):
        spans = {"z": slice(z0, z1), "y": slice(y0, y1), "x": slice(x0, x1), "c": slice(None), "t": 0}
        try:
            window = np.asarray(self.array[tuple(spans[a] for a in self.axes)])
        except Exception as exc:  # a codec's own error for damaged bytes, an I/O error
            detail = " ".join(str(exc).split())[:200]
            raise ValueError(f"source={self.name!r}: reading z {z0}:{z1}, y {y0}:{y1}, x {x0}:{x1} failed "
                             f"({type(exc).__name__}: {detail})") from exc
        window = window.transpose(self._order).reshape(z1 - z0, y1 - y0, x1 - x0, self.channels)
        if self._fresh:
            return np.ascontiguousarray(window, dtype=self.dtype)
        # A view of an in-memory array is copied: a caller writing into a window must not change the source.
        return np.array(window, dtype=self.dtype, order="C", copy=True)

    def close(self):
        self.array = None
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer()


def array_axes(ndim, channel_axis, name, shape):
    """Axes letters of a plain (D, H, W) or 4-D array with its channels at `channel_axis`."""
    if ndim == 3:
        if channel_axis is not None:
            raise ValueError(f"channel_axis={channel_axis!r} given, but source={name!r} has 3 axes (shape {shape}) "
                             "and no channels")
        return "zyx"
    if ndim != 4:
        raise ValueError(f"source={name!r} has shape {shape}; expected (D, H, W), (C, D, H, W) or (D, H, W, C)")
    if channel_axis is None:
        raise ValueError(f"source={name!r} has 4 axes (shape {shape}) and no axes metadata; pass channel_axis=0 "
                         "for (C, D, H, W) or channel_axis=-1 for (D, H, W, C)")
    return "czyx" if channel_axis == 0 else "zyxc"


def _check_channel_axis(channel_axis):
    if channel_axis is None:
        return None
    if isinstance(channel_axis, (bool, np.bool_)) or channel_axis not in (0, -1, 3):
        raise ValueError(f"channel_axis={channel_axis!r} is not supported; expected 0 (C, D, H, W), "
                         "-1 or 3 (D, H, W, C), or None")
    return 0 if channel_axis == 0 else -1


def _open_source(source, level, channel_axis):
    if not isinstance(source, (str, os.PathLike)):
        if not all(hasattr(source, a) for a in ("shape", "dtype", "__getitem__")):
            raise ValueError(f"source={type(source).__name__} is neither a path nor an array-like "
                             "with shape, dtype and slicing")
        if level != 0:
            raise ValueError(f"level={level!r}: an array source has one level; expected 0")
        name = type(source).__name__
        shape = tuple(int(n) for n in source.shape)
        is_zarr = type(source).__module__.startswith("zarr")
        if is_zarr:
            from ._zarr import zarr_array_axes

            axes = zarr_array_axes(source, channel_axis, name)
        else:
            default = -1 if channel_axis is None and len(shape) == 4 else channel_axis  # numpy: (D, H, W, C)
            axes = array_axes(len(shape), default, name, shape)
        return AxesSource(source, axes, name, fresh=is_zarr)
    path = os.fspath(source)
    lower = path.lower().rstrip("/" + os.sep)
    if not os.path.exists(path):
        raise ValueError(f"source={path!r} does not exist")
    if lower.endswith((".nii", ".nii.gz")):
        if channel_axis is not None:
            raise ValueError(f"channel_axis={channel_axis!r}: a NIfTI file's axes come from the file")
        from ._nifti import open_nifti

        return open_nifti(path, level)
    if lower.endswith((".tif", ".tiff")):
        from ._tiffvol import open_tiff_volume

        return open_tiff_volume(path, level, channel_axis)
    if os.path.isdir(path):
        from ._zarr import open_zarr

        return open_zarr(path, level, channel_axis)
    raise ValueError(f"source={path!r} is not a volume this reader knows; expected a .zarr folder, "
                     "a .tif/.tiff stack or a .nii/.nii.gz file")


class VolumeReader(InputFile):
    """Read windows of a 3-D volume without loading it, padding beyond its border.

    Parameters
    ----------
    source : str, os.PathLike or array-like
        A zarr array or OME-Zarr image folder (zarr v2 or v3; NGFF 0.4 or
        0.5 "multiscales"), a multi-page TIFF volume (ImageJ hyperstack,
        OME-TIFF Z stack or a plain stack of pages), a NIfTI-1/2 ``.nii`` or
        ``.nii.gz`` file (needs nibabel: ``pip install 'seamless_fast[nifti]'``),
        or an array-like (numpy, zarr, dask) of shape (D, H, W), (D, H, W, C)
        or, with ``channel_axis=0``, (C, D, H, W).
    level : int, keyword-only
        Which level of an OME-Zarr multiscale image (or OME-TIFF pyramid) to
        read; see :attr:`levels`.
    pad : {"constant", "edge", "reflect"}, keyword-only
        How voxels outside the volume are made up: `fill`, copies of the
        nearest edge voxel, or mirrored without repeating the edge voxel.
    fill : number, keyword-only
        Value of outside voxels with ``pad="constant"``; the dtype must hold it.
    channel_axis : {None, 0, -1}, keyword-only
        Where a 4-D array without axes metadata keeps its channels. None:
        -1 for an in-memory array; a zarr array then needs its
        ``dimension_names`` (one of them "c" or "channel") or this keyword.
        Sources whose axes are in the file (OME-Zarr, TIFF, NIfTI) need none.

    Attributes
    ----------
    shape : (int, int, int)
        ``(D, H, W)`` of the level read.
    channels : int
    dtype : numpy.dtype
    spacing : (float, float, float) or None
        ``(z, y, x)`` physical voxel size (OME-Zarr scale, NIfTI zooms,
        ImageJ or OME-TIFF physical sizes), or None.
    unit : str or None
        The unit of `spacing` ("micrometer", "millimeter", ...) where the
        source names one (an OME-TIFF's sizes are given in micrometres).
    affine : ndarray (4, 4) or None
        Maps ``(z, y, x, 1)`` voxel indices to world coordinates in (z, y, x)
        order. For NIfTI this is its affine with the voxel axes and the
        (x, y, z) world axes both reversed; the original is
        ``nifti_affine``. For OME-Zarr: its scale and translation.
    nifti_affine, nifti_header
        The NIfTI file's own affine (for (i, j, k) = (x, y, z) voxel indices)
        and header, for writing back; None for other sources.

    Notes
    -----
    Only the chunks (zarr), pages or tiles (TIFF) that meet a window are
    read. A NIfTI ``.nii`` window reads only its bytes; a ``.nii.gz`` has no
    random access: gzip is decompressed sequentially from the start of the
    file up to the window's last z-plane on every read (unless nibabel finds
    the ``indexed_gzip`` package), so decompress large volumes first.

    Examples
    --------
    >>> import numpy as np
    >>> volume = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    >>> with VolumeReader(volume) as reader:
    ...     reader.shape, reader.channels
    ...     reader.read((1, 2, 3, 2, 4, 5))[..., 0]
    ((2, 3, 4), 1)
    array([[[23,  0],
            [ 0,  0]]], dtype=uint8)
    """

    def __init__(self, source, *, level=0, pad="constant", fill=0, channel_axis=None):
        level = as_int(level, "level")
        if level < 0:
            raise ValueError(f"level={level!r} is negative; expected a level number 0, 1, ...")
        if pad not in VOLUME_PAD_MODES:
            raise ValueError(f"pad={pad!r} is not a pad mode; expected one of {VOLUME_PAD_MODES}")
        channel_axis = _check_channel_axis(channel_axis)
        self._name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
        self._source = _open_source(source, level, channel_axis)
        self._finalizer = weakref.finalize(self, self._source.close)
        try:
            self._fill = _check_fill(fill, self._source.dtype)
        except ValueError:
            self.close()
            raise
        self._pad = pad

    shape = property(lambda self: tuple(self._open().shape), doc="``(D, H, W)`` of the level read.")
    channels = property(lambda self: int(self._open().channels), doc="Number of channels (1 without).")
    dtype = property(lambda self: self._open().dtype, doc="Data type (native byte order).")
    spacing = property(lambda self: self._open().spacing, doc="``(z, y, x)`` voxel size, or None.")
    unit = property(lambda self: self._open().unit,
                    doc="Length unit of `spacing` by its NGFF name (\"micrometer\", \"millimeter\", ...), or None.")
    levels = property(lambda self: self._open().levels, doc="The levels, a tuple of :class:`VolumeLevel`.")
    level = property(lambda self: self._open().level, doc="The number of the level read.")
    nifti_affine = property(lambda self: self._open().extra.get("nifti_affine"),
                            doc="A NIfTI file's own 4x4 affine, else None.")
    nifti_header = property(lambda self: self._open().extra.get("nifti_header"),
                            doc="A NIfTI file's header (nibabel), else None.")

    @property
    def affine(self):
        """4x4 map of ``(z, y, x, 1)`` voxel indices to (z, y, x) world coordinates, or None."""
        affine = self._open().affine
        return None if affine is None else affine.copy()

    def _open(self):
        if self._source is None:
            raise ValueError(f"VolumeReader for {self._name!r} is closed")
        return self._source

    def read(self, box):
        """Read the window `box`, padding where it leaves the volume.

        Parameters
        ----------
        box : (int, int, int, int, int, int)
            ``(zlo, ylo, xlo, zhi, yhi, xhi)``, exclusive upper bounds; may
            reach beyond the volume on any side or lie wholly outside it.

        Returns
        -------
        ndarray, shape (zhi - zlo, yhi - ylo, xhi - xlo, channels)
            C-contiguous, in the volume's dtype.
        """
        source = self._open()
        box = _check_box(box, axes="zyx")
        lo, hi = box[:3], box[3:]
        if self._pad == "constant":
            out = np.full(tuple(h - l for l, h in zip(lo, hi)) + (source.channels,), self._fill, source.dtype)
            a = [max(l, 0) for l in lo]
            b = [min(h, n) for h, n in zip(hi, source.shape)]
            if a == list(lo) and b == list(hi):  # wholly inside
                return source.region(a[0], b[0], a[1], b[1], a[2], b[2])
            if all(j > i for i, j in zip(a, b)):
                inner = tuple(slice(i - l, j - l) for i, j, l in zip(a, b, lo))
                out[inner] = source.region(a[0], b[0], a[1], b[1], a[2], b[2])
            return out
        index = [_pad_index(l, h, n, self._pad) for l, h, n in zip(lo, hi, source.shape)]
        a = [int(i.min()) for i in index]
        b = [int(i.max()) + 1 for i in index]
        region = source.region(a[0], b[0], a[1], b[1], a[2], b[2])
        if list(lo) == a and list(hi) == b:
            return region
        return np.ascontiguousarray(region[np.ix_(*(i - s for i, s in zip(index, a)))])

    def _describe(self):
        return (f"shape={self.shape}, channels={self.channels}, dtype={self.dtype}, level={self.level}, "
                f"pad={self._pad!r}")


def open_volume(path, **options):
    """Open a volume for reading windows: a :class:`VolumeReader` (zarr, OME-Zarr, TIFF stack, NIfTI).

    Parameters
    ----------
    path : str, os.PathLike or array-like
    **options
        Keyword arguments of :class:`VolumeReader` (level, pad, fill, channel_axis).

    Examples
    --------
    >>> import numpy as np
    >>> with open_volume(np.ones((2, 2, 2, 3), np.float32)) as reader:
    ...     reader.read((0, 0, 0, 1, 1, 3)).shape
    (1, 1, 3, 3)
    """
    return VolumeReader(path, **options)
