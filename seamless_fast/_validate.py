"""Shared validators: each names the parameter, the value and what was expected."""

import numbers

import numpy as np

__all__ = ["as_int", "as_pair", "as_positive_int", "check_area", "check_callable", "check_bool"]


def as_int(value, name):
    """`value` as an int; a bool, a fraction or a non-number is refused naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer() and not isinstance(value, (bool, np.bool_)):
            return int(value)
        raise ValueError(f"{name}={value!r} is not an integer; expected a whole number")
    return int(value)


def as_pair(value, name, *, minimum):
    """Return ``value`` as a (y, x) pair of ints, each >= `minimum`.

    A single integer is used for both axes.
    """
    return _per_axis(value, name, minimum, "(y, x) pair", 2)


def as_triple(value, name, *, minimum):
    """Return ``value`` as a volume's (z, y, x) triple of ints, each >= `minimum`; one integer for all three."""
    return _per_axis(value, name, minimum, "(z, y, x) triple", 3, " for a volume")


def _per_axis(value, name, minimum, what, ndim, context=""):
    if isinstance(value, (numbers.Number, np.generic)):
        items = (value,) * ndim
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(f"{name}={value!r} is not an integer or a {what}") from None
        if len(items) != ndim:
            raise ValueError(f"{name}={value!r} has {len(items)} items; expected a {what}{context}")
    out = tuple(as_int(v, name) for v in items)
    if min(out) < minimum:
        relation = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name}={value!r}: every entry must be {relation}")
    return out


def as_positive_int(value, name):
    out = as_int(value, name)
    if out < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return out


def check_area(area, image_size):
    """Validate an ``area`` geometry against ``image_size``; return it (or None).

    Refused, each with a ValueError naming `area`: anything but a shapely
    geometry, an empty one, one with a NaN or infinite coordinate, an
    invalid one (e.g. a self-intersecting polygon: GEOS predicates on it
    may raise or answer wrongly; ``shapely.make_valid(area)`` repairs it, if
    its result is what was meant), and one whose interior does not reach
    into the image.
    """
    if area is None:
        return None
    import shapely

    if not isinstance(area, shapely.Geometry):
        raise ValueError(f"area={area!r} is not a shapely geometry; expected e.g. shapely.box(ylo, xlo, yhi, xhi)")
    if area.is_empty:
        raise ValueError("area is an empty geometry; expected a geometry inside the image")
    coords = shapely.get_coordinates(area)
    finite = np.isfinite(coords).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"area has a non-finite coordinate: vertex {first} is {tuple(coords[first].tolist())}; "
                         "expected finite (y, x) coordinates")
    if not shapely.is_valid(area):
        raise ValueError(f"area is not a valid geometry ({shapely.is_valid_reason(area)}); repair it first, "
                         "e.g. with shapely.make_valid(area), and check the result is the area you meant")
    image = shapely.box(0, 0, *image_size)
    if not shapely.intersects(area, image) or shapely.touches(area, image):
        raise ValueError(f"area with bounds {tuple(area.bounds)} (ylo, xlo, yhi, xhi) lies outside "
                         f"the image of size {tuple(image_size)}")
    return area


def check_callable(value, name):
    if not callable(value):
        raise ValueError(f"{name}={value!r} is not callable")
    return value


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} must be True or False")
    return bool(value)
