"""Multi-page TIFF volumes in (ImageJ hyperstacks, OME-TIFF Z stacks, plain page stacks, through tifffile's zarr
store, which decodes only the pages or tiles a window meets) and out (TiffVolumeWriter, an ImageJ stack)."""

import os

import numpy as np

from .._files import make_partial, publish
from . import _stream
from ._common import _import_tifffile
from ._levels import _OME_MICROMETRES
from ._volume import UNITS, AxesSource, VolumeLevel, unit_name
from ._volwrite import BlockWriter, check_positive_floats, check_shape3, check_source
from .writer import BIGTIFF_THRESHOLD

__all__ = ["TiffVolumeWriter"]

_IMAGEJ_DTYPES = ("uint8", "uint16", "float32")

# tifffile's axis letters: Z depth; I (image sequence), Q (unknown) and P (plane) the pages of a plain stack;
# C and S channels or samples; everything else must have length 1.
_DEPTH, _CHANNEL = "ZIQP", "CS"


def _letters(axes, shape, path):
    """tifffile axes as this reader's letters (z, y, x, c, t)."""
    depth = [i for i, a in enumerate(axes) if a in _DEPTH and shape[i] > 1] or \
        [i for i, a in enumerate(axes) if a in _DEPTH][:1]
    channel = [i for i, a in enumerate(axes) if a in _CHANNEL and shape[i] > 1] or \
        [i for i, a in enumerate(axes) if a in _CHANNEL][:1]
    if not depth:
        raise ValueError(f"source={path!r} is a 2-D image (axes {axes!r}, shape {shape}); expected a volume "
                         "with a Z axis or several pages (use ImageReader for 2-D images)")
    if len(depth) > 1 or len(channel) > 1:
        raise ValueError(f"source={path!r} has axes {axes!r} with shape {shape}; expected one Z (or page) axis "
                         "and at most one channel axis of length > 1")
    out = []
    for i, axis in enumerate(axes):
        out.append("z" if i in depth else "c" if i in channel else axis.lower() if axis in "YX" else "t")
    return "".join(out)


def _spacing(tif, series, path):
    """((z, y, x) voxel size, unit) from OME physical sizes (in micrometres) or ImageJ's spacing, resolution and
    unit, else (None, None)."""
    unit = None
    try:
        if tif.is_ome:
            tifffile = _import_tifffile()
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
            values = tuple(None if pixels.get(f"PhysicalSize{a}") is None else
                           float(pixels[f"PhysicalSize{a}"]) * _OME_MICROMETRES[pixels.get(f"PhysicalSize{a}Unit", "µm")]
                           for a in "ZYX")
            unit = "micrometer"
        elif tif.is_imagej:
            meta = tif.imagej_metadata or {}
            page = series.keyframe
            y, x = (page.tags.get(n) for n in ("YResolution", "XResolution"))
            values = (meta.get("spacing"),) + tuple(None if t is None else t.value[1] / t.value[0] for t in (y, x))
            unit = unit_name(meta.get("unit"))
        else:
            return None, None
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None, None
    if any(v is None for v in values):
        return None, None
    values = tuple(float(v) for v in values)
    return (values, unit) if all(np.isfinite(values)) and min(values) > 0 else (None, None)


def open_tiff_volume(path, level, channel_axis):
    if channel_axis is not None:
        raise ValueError(f"channel_axis={channel_axis!r}: a TIFF's axes come from the file")
    tifffile = _import_tifffile()
    from ._zarr import import_zarr

    zarr = import_zarr()  # tifffile's zarr store reads only the pages (or tiles) a window meets
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises several kinds for a damaged or foreign file
        detail = " ".join(str(exc).split())[:200]
        raise ValueError(f"source={path!r} is not a TIFF file tifffile reads ({type(exc).__name__}: {detail})") \
            from None
    try:
        series = tif.series[0]
        levels = series.levels
        if not 0 <= level < len(levels):
            raise ValueError(f"level={level!r} is not a level of {path!r}; expected 0 to {len(levels) - 1}")
        chosen = levels[level]
        # unsqueezed: a volume one plane deep keeps its Z axis
        axes = _letters(chosen.get_axes(False), chosen.get_shape(False), path)
        spacing, unit = _spacing(tif, series, path)
        level_list = []
        for lev in levels:
            letters = _letters(lev.get_axes(False), lev.get_shape(False), path)
            shape = tuple(int(lev.get_shape(False)[letters.index(a)]) for a in "zyx")
            scaled = None if spacing is None else tuple(
                s * n / m for s, n, m in zip(spacing, level_list[0].shape if level_list else shape, shape))
            level_list.append(VolumeLevel(shape, scaled))
        full = chosen.get_shape(False)
        if full[axes.index("y")] * full[axes.index("x")] == 1:
            # tifffile's zarr store cannot index planes of one pixel; their volume is a few voxels, read whole
            array = chosen.asarray().reshape(full)
        else:
            array = zarr.open(chosen.aszarr(squeeze=False), mode="r")
        affine = None if spacing is None else np.diag(list(level_list[level].spacing) + [1.0])
        return AxesSource(array, axes, path, spacing=level_list[level].spacing, affine=affine,
                          levels=tuple(level_list), level=level, closer=tif.close, unit=unit,
                          fresh=not isinstance(array, np.ndarray))
    except BaseException:
        tif.close()
        raise


class TiffVolumeWriter(BlockWriter):
    """Stream a volume into an ImageJ-compatible multi-page TIFF stack, z-plane by z-plane.

    Parameters
    ----------
    path : str or os.PathLike
        Final file name (``.tif``). Written under a partial name beside it,
        renamed when :meth:`close` finds every voxel written.
    shape : (int, int, int)
        ``(D, H, W)``.
    channels : int, optional, keyword-only
        None for labels (axes ZYX); else C (an ImageJ hyperstack, axes ZCYX:
        each z-plane's C pages in channel order).
    dtype : {uint8, uint16, float32}, keyword-only
        The sample types ImageJ reads. Values go through
        :func:`seamless_fast.dtypes.to_output_dtype`.
    spacing : (float, float, float), optional, keyword-only
        ``(z, y, x)`` voxel size, written as ImageJ's ``spacing`` and the
        resolution tags.
    source : VolumeReader, optional, keyword-only
        Take `spacing` and `unit` from this reader where not given.
    unit : str, optional, keyword-only
        Length unit of `spacing` ("micrometer", "um", "mm", ...), ImageJ's ``unit``.
    fill : number, optional, keyword-only
        None: :meth:`close` refuses a volume with voxels never written.
        A value: they take it (the dtype must hold it exactly).

    Notes
    -----
    Pages are written in z order by tifffile in a background thread: the
    writer holds the incomplete z-planes and those waiting for an earlier
    plane. A volume beyond 4 GiB becomes a BigTIFF with tifffile's own
    shape metadata (ImageJ reads no BigTIFF), as does one a single voxel
    wide (tifffile reads the width of such an ImageJ stack as samples).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "labels.tif")
    ...     with TiffVolumeWriter(path, (3, 4, 5), dtype="uint8", spacing=(2.0, 0.5, 0.5)) as writer:
    ...         writer.write((0, 0, 0, 3, 4, 5), np.ones((3, 4, 5), np.uint8))
    ...     from seamless_fast.io import VolumeReader
    ...     with VolumeReader(path) as reader:
    ...         reader.shape, reader.spacing
    ((3, 4, 5), (2.0, 0.5, 0.5))
    """

    kind = "TiffVolumeWriter"
    ordered = True

    def __init__(self, path, shape, *, channels=None, dtype, spacing=None, source=None, fill=None, unit=None):
        shape = check_shape3(shape)
        check_source(source, shape)
        if source is not None and spacing is None:
            spacing, unit = source.spacing, source.unit if unit is None else unit
        if unit is not None and unit_name(unit) is None:
            raise ValueError(f"unit={unit!r} is not a length unit; expected e.g. 'micrometer' or 'millimeter'")
        spacing = None if spacing is None else check_positive_floats(spacing, "spacing")
        super().__init__(path, shape, (1,) + shape[1:], channels=channels, dtype=dtype, fill=fill)
        if self._dtype.name not in _IMAGEJ_DTYPES:
            raise ValueError(f"dtype={self._dtype.name} is not an ImageJ sample type; expected one of "
                             f"{_IMAGEJ_DTYPES}")
        tifffile = _import_tifffile()
        pages = shape[0] * (self._channels or 1)
        nbytes = pages * shape[1] * shape[2] * self._dtype.itemsize
        bigtiff = nbytes > BIGTIFF_THRESHOLD
        full = (shape[0],) + (() if self._channels is None else (self._channels,)) + shape[1:]
        axes = "ZYX" if self._channels is None else "ZCYX"
        metadata = {"axes": axes}
        kwargs = {"shape": full, "dtype": self._dtype, "photometric": "minisblack", "metadata": metadata}
        if spacing is not None:
            metadata.update(spacing=spacing[0])
            if unit is not None:
                metadata["unit"] = {"micrometer": "um"}.get(unit_name(unit), UNITS[unit_name(unit)][0])
            kwargs["resolution"] = (1 / spacing[2], 1 / spacing[1])
        self._pages = pages
        self._temp = make_partial(self._path)
        try:
            # tifffile takes an ImageJ stack one pixel wide for samples: such a stack gets shaped metadata too
            imagej = not bigtiff and shape[2] > 1
            self._tiff = tifffile.TiffWriter(self._temp, bigtiff=bigtiff, imagej=imagej)
            self._queue, self._errors, self._taken, self._thread, self._finalizer = _stream.start(
                self, self._tiff, kwargs, f"TiffVolumeWriter({self._path})", self._temp)
        except BaseException:
            os.remove(self._temp)
            raise

    def _check_background(self):
        if self._errors:
            error = self._errors[0]
            raise RuntimeError(f"writing {self._path!r} failed in the background: {error!r}") from error

    def _flush(self, index, block):
        self._check_background()
        planes = [block[0]] if self._channels is None else [block[0, ..., c] for c in range(self._channels)]
        _stream.put(self._queue, [np.ascontiguousarray(p) for p in planes], self._check_background)

    def _finish(self):
        _stream.put(self._queue, _stream.END, self._check_background)
        self._thread.join()
        self._check_background()
        if self._taken[0] != self._pages:
            raise RuntimeError(f"writing {self._path!r}: tifffile took {self._taken[0]} of {self._pages} pages; "
                               "the file would be wrong")
        self._tiff.close()
        publish(self._temp, self._path)
        self._finalizer.detach()

    def _discard(self):
        self._finalizer()
