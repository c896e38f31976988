"""Levels of a pyramidal image: their sizes and resolutions, and the choice of the level to read."""

import math
import numbers
import re
import xml.etree.ElementTree as ElementTree
from typing import NamedTuple

from .._validate import as_int

__all__ = ["Level", "level_for_mpp"]

# Micrometres per unit of the TIFF resolution units and of the OME length units a pixel size comes in.
_MICROMETRES_PER_UNIT = {"INCH": 25_400.0, "CENTIMETER": 10_000.0, "MILLIMETER": 1_000.0, "MICROMETER": 1.0}
_OME_MICROMETRES = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "nm": 1e-3,
                    "Å": 1e-4, "pm": 1e-6}
_SVS_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")


class Level(NamedTuple):
    """One level of an image pyramid.

    Attributes
    ----------
    shape : (int, int)
        ``(height, width)`` of the level in pixels.
    downsample : (float, float)
        ``(sy, sx)``: level-0 height / this height, level-0 width / this width.
    mpp : (float, float) or None
        ``(y, x)`` micrometres per pixel of this level (level 0's times the
        downsample), or None where the file gives no resolution.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast.io import ImageReader
    >>> ImageReader(np.zeros((30, 20), np.uint8)).levels
    (Level(shape=(30, 20), downsample=(1.0, 1.0), mpp=None),)
    """

    shape: tuple
    downsample: tuple
    mpp: tuple = None


class _LevelChoice(ValueError):
    """A `level` or `mpp` the image does not have (the command line names its own option)."""

    def __init__(self, name, value, detail):
        super().__init__(f"{name}={value!r} {detail}")
        self.name, self.value, self.detail = name, value, detail


def make_levels(shapes, mpp0):
    """The :class:`Level` tuple of levels of `shapes` ((H, W) each, level 0 first) with level-0 resolution `mpp0`."""
    height, width = shapes[0]
    levels = []
    for h, w in shapes:
        downsample = (height / h, width / w)
        mpp = None if mpp0 is None else (mpp0[0] * downsample[0], mpp0[1] * downsample[1])
        levels.append(Level((int(h), int(w)), downsample, mpp))
    return tuple(levels)


def check_choice(level, mpp):
    """`level` as an int >= 0 and `mpp` as a positive float or None, before any file is opened."""
    try:
        level = as_int(level, "level")
    except ValueError:
        raise _LevelChoice("level", level, "is not an integer; expected a level number 0, 1, ...") from None
    if level < 0:
        raise _LevelChoice("level", level, "is negative; expected a level number 0, 1, ...")
    if mpp is None:
        return level, None
    if isinstance(mpp, bool) or not isinstance(mpp, numbers.Real) or not (math.isfinite(mpp) and mpp > 0):
        raise _LevelChoice("mpp", mpp, "is not a resolution; expected a positive number of micrometres per pixel")
    if level != 0:
        raise _LevelChoice("level", level, f"and mpp={mpp!r} are both given; expected one of them")
    return level, mpp


def pick_level(levels, level, mpp, name):
    """The index of the level to read of `levels` (of the image `name`), from a checked `level` or `mpp`."""
    if mpp is not None:
        return level_for_mpp(levels, mpp, name=name)
    if level >= len(levels):
        count = f"{len(levels)} levels (0 to {len(levels) - 1})" if len(levels) > 1 else "1 level (level=0)"
        raise _LevelChoice("level", level, f"is out of range: {name} has {count}")
    return level


def level_for_mpp(levels, mpp, *, name="the image"):
    """The index of the level whose resolution is nearest `mpp` micrometres per pixel.

    Nearest in log scale, with the mean of a level's y and x resolutions
    (its geometric mean); on a tie (up to rounding), the finer level.

    Parameters
    ----------
    levels : sequence of Level
        As :attr:`ImageReader.levels` gives them.
    mpp : float
        Micrometres per pixel wanted (positive).
    name : str, keyword-only
        What the levels are of, for the error message.

    Raises
    ------
    ValueError
        `mpp` is not a positive number, or the levels give no resolution.

    Examples
    --------
    >>> levels = make_levels([(4000, 3000), (2000, 1500), (1000, 750)], (0.25, 0.25))
    >>> level_for_mpp(levels, 0.45), level_for_mpp(levels, 0.8), level_for_mpp(levels, 0.01)
    (1, 2, 0)
    """
    _, mpp = check_choice(0, mpp)
    if mpp is None:
        raise _LevelChoice("mpp", mpp, "is not a resolution; expected a positive number of micrometres per pixel")
    if not levels or any(level.mpp is None for level in levels):
        raise _LevelChoice("mpp", mpp, f"cannot pick a level: {name} gives no resolution in micrometres per pixel "
                           "(no OME physical size, SVS MPP or TIFF resolution unit); give a level number instead")

    def distance(index):
        mpp_y, mpp_x = levels[index].mpp
        return abs(0.5 * (math.log(mpp_y) + math.log(mpp_x)) - math.log(mpp))

    # distances equal to 1e-9 (a tie, up to rounding) go to the finer level
    return min(range(len(levels)), key=lambda index: (round(distance(index), 9), index))


def level0_mpp(tif, page, metadata):
    """``(y, x)`` micrometres per pixel of level 0, from the first that the file gives: the OME physical sizes,
    an SVS ``MPP =``, the resolution tags with a unit (`metadata` as :func:`_tiff_metadata` gives it); or None."""
    for found in (_ome_mpp(tif), _svs_mpp(page)):
        if found is not None:
            return found
    resolution, unit = metadata["resolution"], metadata["resolution_unit"]
    if resolution is None or unit not in _MICROMETRES_PER_UNIT:
        return None
    per_unit = _MICROMETRES_PER_UNIT[unit]
    return per_unit / resolution[1], per_unit / resolution[0]


def _positive(values):
    return values if all(math.isfinite(v) and v > 0 for v in values) else None


def _svs_mpp(page):
    description = page.description or ""
    if not description.startswith("Aperio"):
        return None
    match = _SVS_MPP.search(description)
    try:
        mpp = float(match.group(1)) if match else math.nan
    except ValueError:
        return None
    return _positive((mpp, mpp))


def _ome_mpp(tif):
    """The physical pixel size of the first OME Image, in micrometres (OME's default unit)."""
    if not tif.is_ome:
        return None
    try:
        root = ElementTree.fromstring(tif.ome_metadata)
    except (ElementTree.ParseError, TypeError, ValueError):
        return None
    pixels = next((e for e in root.iter() if e.tag.rpartition("}")[2] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in ("Y", "X"):
        value, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
        try:
            sizes.append(float(value) * _OME_MICROMETRES[unit])
        except (TypeError, ValueError, KeyError):
            return None
    return _positive(tuple(sizes))
