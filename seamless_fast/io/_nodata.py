"""Nodata: the fill of pixels never written, recorded in the file, and the pixels outside an area."""

import numpy as np

from .._validate import check_area
from ._common import _check_fill

__all__ = ["check_fill_and_nodata", "prepared_area", "mask_outside"]


def check_fill_and_nodata(fill, nodata, dtype):
    """(fill, nodata) as 0-d arrays of `dtype`: nodata, when given, is the fill."""
    if nodata is None:
        return _check_fill(0 if fill is None else fill, dtype), None
    value = _check_fill(nodata, dtype, name="nodata")
    if fill is not None:
        other = _check_fill(fill, dtype)
        if not (other == value or (dtype.kind == "f" and np.isnan(other) and np.isnan(value))):
            raise ValueError(f"fill={fill!r} differs from nodata={nodata!r}; pixels never written are nodata, "
                             "give one of them")
    return value, value


def prepared_area(area, size):
    if area is None:
        return None
    import shapely

    area = check_area(area, size)
    shapely.prepare(area)
    return area


def mask_outside(area, box, data, fill):
    """`data` with the pixels of `box` whose centre lies outside `area` (in (y, x)) set to `fill`."""
    import shapely

    ylo, xlo, yhi, xhi = box
    cell = shapely.box(ylo, xlo, yhi, xhi)
    if area.contains(cell):
        return data
    rows, cols = np.meshgrid(np.arange(ylo, yhi) + 0.5, np.arange(xlo, xhi) + 0.5, indexing="ij")
    inside = shapely.contains_xy(area, rows, cols)
    if inside.all():
        return data
    if data.ndim == 3:
        inside = inside[..., None]
    return np.where(inside, data, fill)
