"""Multi-page TIFF volumes (ImageJ hyperstacks, OME-TIFF Z stacks, plain page stacks) through tifffile's zarr store,
which decodes only the pages (or tiles) a window meets."""

import numpy as np

from ._common import _import_tifffile
from ._volume import AxesSource, VolumeLevel

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
    """(z, y, x) voxel size from OME Physical sizes or ImageJ's spacing and resolution, else None."""
    try:
        if tif.is_ome:
            tifffile = _import_tifffile()
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
            values = tuple(pixels.get(f"PhysicalSize{a}") for a in "ZYX")
        elif tif.is_imagej:
            meta = tif.imagej_metadata or {}
            page = series.keyframe
            y, x = (page.tags.get(n) for n in ("YResolution", "XResolution"))
            values = (meta.get("spacing"),) + tuple(None if t is None else t.value[1] / t.value[0] for t in (y, x))
        else:
            return None
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    if any(v is None for v in values):
        return None
    values = tuple(float(v) for v in values)
    return values if all(np.isfinite(values)) and min(values) > 0 else None


def open_tiff_volume(path, level, channel_axis):
    if channel_axis is not None:
        raise ValueError(f"channel_axis={channel_axis!r}: a TIFF's axes come from the file")
    tifffile = _import_tifffile()
    import zarr

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
        axes = _letters(chosen.axes, chosen.shape, path)
        spacing = _spacing(tif, series, path)
        level_list = []
        for lev in levels:
            letters = _letters(lev.axes, lev.shape, path)
            shape = tuple(int(lev.shape[letters.index(a)]) for a in "zyx")
            scaled = None if spacing is None else tuple(
                s * n / m for s, n, m in zip(spacing, level_list[0].shape if level_list else shape, shape))
            level_list.append(VolumeLevel(shape, scaled))
        array = zarr.open(chosen.aszarr(), mode="r")
        affine = None if spacing is None else np.diag(list(level_list[level].spacing) + [1.0])
        return AxesSource(array, axes, path, spacing=level_list[level].spacing, affine=affine,
                          levels=tuple(level_list), level=level, closer=tif.close)
    except BaseException:
        tif.close()
        raise
