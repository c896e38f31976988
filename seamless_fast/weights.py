"""Per-tile blending weights: the low-level API of ``seamless_seg``, kept compatible.

:func:`overlap_weights` works out, for one central tile and the tiles around it,
how much each tile contributes to every pixel of (a trimmed part of) the central
tile, and :func:`apply_weights` blends the tiles' values with those weights.
This is meant for blending a few tiles by hand; it returns the old library's
5-tuple, so code that unpacks it keeps working, but it no longer crashes on
nearby tiles that miss the central tile. To blend a whole image, most users want
:func:`seamless_fast.plan_regular_grid` and :func:`seamless_fast.run_plan`
instead, which are exact, memory-bounded and much faster.
"""

import numbers
from typing import NamedTuple

import numpy as np
import shapely

from .windows import check_window, window_2d

__all__ = ["OverlapWeights", "overlap_weights", "apply_weights"]

_EMPTY_SLICES = (slice(0, 0), slice(0, 0))


class OverlapWeights(NamedTuple):
    """Blending weights of a central tile and its nearby tiles over `out_geom`.

    Attributes
    ----------
    out_geom : shapely.Polygon
        The box, in image coordinates, that the weights describe.
    central_weights : numpy.ndarray
        float64 ``(h', w')``: normalised weight of the central tile over `out_geom`.
    centre_from_tile_slc : tuple of slice
        ``(ys, xs)`` selecting `out_geom` from the central tile.
    nearby_weights : numpy.ndarray
        float64 ``(N, h', w')``: normalised weight of each nearby tile over
        `out_geom`, zero where that tile does not reach.
    slice_pairs : list of tuple
        For each nearby tile, ``(central_slices, nearby_slices)``: its overlap with
        `out_geom` in `out_geom`'s frame and in the nearby tile's frame; both are
        ``(slice(0, 0), slice(0, 0))`` when it does not overlap `out_geom`.
    """

    out_geom: shapely.Polygon
    central_weights: np.ndarray
    centre_from_tile_slc: tuple
    nearby_weights: np.ndarray
    slice_pairs: list


def overlap_weights(central, nearby, trim_bounds=None, *, window="pyramid"):
    """Normalised blending weights of `central` and `nearby` tiles over the (trimmed) central box.

    At every pixel of the result's `out_geom`, each tile that contains the pixel
    is weighted by its window evaluated at the pixel's position inside that
    tile, and the weights are divided by their sum, so `central_weights` plus
    the sum of `nearby_weights` is 1 everywhere.

    Parameters
    ----------
    central : shapely.Polygon
        The central tile, ``shapely.box(ylo, xlo, yhi, xhi)`` with integer bounds.
    nearby : sequence of shapely.Polygon
        The other tiles (may be empty); tiles that miss `out_geom` get zero weight.
    trim_bounds : tuple, optional
        ``(ylo, xlo, yhi, xhi)`` trim of the central box in slice style: `ylo`
        and `xlo` are pixels dropped at the start (>= 0), `yhi` and `xhi` are
        non-positive offsets from the end (0 or None: no trim). The default
        keeps the whole central box.
    window : str, callable or 2-D array, default "pyramid"
        Blending window, as accepted by :func:`seamless_fast.windows.check_window`.

    Returns
    -------
    OverlapWeights
        ``(out_geom, central_weights, centre_from_tile_slc, nearby_weights, slice_pairs)``.

    Raises
    ------
    ValueError
        If a geometry is not an axis-aligned rectangle with integer bounds, or
        `trim_bounds` or `window` is invalid.

    Examples
    --------
    Two 100x100 tiles overlapping by 40 pixels:

    >>> import numpy as np, shapely
    >>> a, b = shapely.box(0, 0, 100, 100), shapely.box(0, 60, 100, 160)
    >>> w = overlap_weights(a, [b])
    >>> w.out_geom.bounds
    (0.0, 0.0, 100.0, 100.0)
    >>> w.nearby_weights.shape
    (1, 100, 100)
    >>> w.slice_pairs[0]
    ((slice(0, 100, None), slice(60, 100, None)), (slice(0, 100, None), slice(0, 40, None)))
    >>> bool(np.allclose(w.central_weights + w.nearby_weights.sum(axis=0), 1))
    True
    """
    window = check_window(window)
    cbox = _as_box(central, "central")
    nboxes = [_as_box(g, f"nearby[{k}]") for k, g in enumerate(nearby)]
    out = _trimmed(cbox, trim_bounds)
    centre_slc = _overlap_slices(out, cbox)
    central_raw = window_2d(window, *_shape(cbox))[centre_slc]
    total = central_raw.copy()

    nearby_raw = np.zeros((len(nboxes),) + _shape(out), dtype=np.float64)
    slice_pairs = []
    for k, nbox in enumerate(nboxes):
        pair = (_overlap_slices(nbox, out), _overlap_slices(out, nbox))
        slice_pairs.append(pair)
        if pair[0] != _EMPTY_SLICES:
            nearby_raw[k][pair[0]] = window_2d(window, *_shape(nbox))[pair[1]]
            total[pair[0]] += nearby_raw[k][pair[0]]

    out_geom = shapely.box(*out)
    return OverlapWeights(out_geom, central_raw / total, centre_slc, nearby_raw / total, slice_pairs)


def apply_weights(central_tile, nearby_tiles, weights, *, channel_first=False):
    """Blend the central tile with its nearby tiles using :func:`overlap_weights`' result.

    Parameters
    ----------
    central_tile : array_like
        Values of the central tile: ``(H, W)``, ``(H, W, C)``, or ``(C, H, W)``
        with `channel_first`.
    nearby_tiles : sequence of array_like
        Values of each nearby tile, in the order given to :func:`overlap_weights`,
        with the same layout and channel count as `central_tile`.
    weights : OverlapWeights
        The result of :func:`overlap_weights` for these tiles.
    channel_first : bool, default False
        Whether tiles are ``(C, H, W)`` rather than ``(H, W, C)``.

    Returns
    -------
    out_geom : shapely.Polygon
        The blended region, ``weights.out_geom``.
    out_tile : numpy.ndarray
        Blended values over `out_geom`, laid out like the tiles; float64 if any
        tile is float64, else float32.

    Raises
    ------
    ValueError
        If the number of tiles does not match `weights`, a tile is not a real
        numeric array, or a tile's shape does not fit its geometry.

    Examples
    --------
    >>> import numpy as np, shapely
    >>> a, b = shapely.box(0, 0, 100, 100), shapely.box(0, 60, 100, 160)
    >>> tile_a, tile_b = np.zeros((100, 100, 3)), np.ones((100, 100, 3))
    >>> geom, out = apply_weights(tile_a, [tile_b], overlap_weights(a, [b]))
    >>> geom.bounds, out.shape, out.dtype
    ((0.0, 0.0, 100.0, 100.0), (100, 100, 3), dtype('float64'))
    >>> float(out[0, 0, 0]), bool(0 < out[0, 80, 0] < 1)
    (0.0, True)
    """
    out_geom, central_w, centre_slc, nearby_w, slice_pairs = weights
    nearby_tiles = list(nearby_tiles)
    if len(nearby_tiles) != len(nearby_w) or len(slice_pairs) != len(nearby_w):
        raise ValueError(f"nearby_tiles has {len(nearby_tiles)} tiles but weights describes "
                         f"{len(nearby_w)} nearby tiles; pass one tile per nearby geometry")
    central_tile = _as_tile(central_tile, "central_tile")
    tiles = [_as_tile(t, f"nearby_tiles[{k}]") for k, t in enumerate(nearby_tiles)]
    chw = channel_first and central_tile.ndim == 3
    _check_layouts(central_tile, tiles, chw)

    region = _region(central_tile, centre_slc, central_w.shape, "central_tile", chw)
    acc = region * _expand(central_w, central_tile.ndim, chw)
    for k, (tile, (out_slc, tile_slc)) in enumerate(zip(tiles, slice_pairs)):
        if out_slc == _EMPTY_SLICES:
            continue
        w = nearby_w[k][out_slc]
        region = _region(tile, tile_slc, w.shape, f"nearby_tiles[{k}]", chw)
        acc[_index(out_slc, chw)] += region * _expand(w, tile.ndim, chw)

    any_f64 = any(t.dtype == np.float64 for t in [central_tile, *tiles])
    return out_geom, acc.astype(np.float64 if any_f64 else np.float32, copy=False)


def _as_box(geom, name):
    """Integer (ylo, xlo, yhi, xhi) of an axis-aligned rectangle; ValueError naming `name` otherwise."""
    if not isinstance(geom, shapely.Geometry) or geom.is_empty:
        raise ValueError(f"{name} is {geom!r}; expected a non-empty shapely box")
    bounds = np.asarray(geom.bounds, dtype=np.float64)
    box = np.rint(bounds).astype(np.int64)
    extent = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])
    if (geom.geom_type != "Polygon" or np.abs(bounds - box).max() > 1e-9
            or not np.isclose(geom.area, extent) or box[2] <= box[0] or box[3] <= box[1]):
        raise ValueError(f"{name} ({geom.geom_type} with bounds {tuple(bounds.tolist())}) is not "
                         "an axis-aligned rectangle with integer bounds; expected "
                         "shapely.box(ylo, xlo, yhi, xhi) with whole-pixel bounds")
    return tuple(int(v) for v in box)


def _trimmed(box, trim_bounds):
    """The central box trimmed by slice-style `trim_bounds`, validated."""
    if trim_bounds is None:
        return box
    expected = ("expected (ylo, xlo, yhi, xhi) with ylo, xlo integers >= 0 (or None) "
                "and yhi, xhi integers <= 0 (or None)")
    try:
        items = tuple(trim_bounds)
    except TypeError:
        raise ValueError(f"trim_bounds={trim_bounds!r} is not a sequence; {expected}") from None
    if len(items) != 4 or not all(_is_int_or_none(v) for v in items):
        raise ValueError(f"trim_bounds={trim_bounds!r} is invalid; {expected}")
    top, left, bottom, right = (0 if v is None else int(v) for v in items)
    if top < 0 or left < 0 or bottom > 0 or right > 0:
        raise ValueError(f"trim_bounds={trim_bounds!r} has an offset of the wrong sign; {expected}")
    out = (box[0] + top, box[1] + left, box[2] + bottom, box[3] + right)
    if out[2] <= out[0] or out[3] <= out[1]:
        raise ValueError(f"trim_bounds={trim_bounds!r} leaves nothing of the central tile of "
                         f"shape {_shape(box)}; expected a trim smaller than the tile")
    return out


def _is_int_or_none(value):
    return value is None or (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)))


def _shape(box):
    return box[2] - box[0], box[3] - box[1]


def _overlap_slices(box, frame):
    """Slices of ``box & frame`` relative to `frame`'s origin; empty slices when they do not overlap."""
    ylo, xlo = max(box[0], frame[0]), max(box[1], frame[1])
    yhi, xhi = min(box[2], frame[2]), min(box[3], frame[3])
    if yhi <= ylo or xhi <= xlo:
        return _EMPTY_SLICES
    return slice(ylo - frame[0], yhi - frame[0]), slice(xlo - frame[1], xhi - frame[1])


def _as_tile(tile, name):
    arr = np.asarray(tile)
    if arr.dtype.kind not in "buif" or arr.ndim not in (2, 3):
        raise ValueError(f"{name} has shape {arr.shape} and dtype {arr.dtype}; expected a real "
                         "numeric array of shape (H, W), (H, W, C) or (C, H, W)")
    return arr


def _check_layouts(central, tiles, chw):
    channel_axis = 0 if chw else 2
    for k, tile in enumerate(tiles):
        same_channels = tile.ndim == 2 or tile.shape[channel_axis] == central.shape[channel_axis]
        if tile.ndim != central.ndim or not same_channels:
            raise ValueError(f"nearby_tiles[{k}] has shape {tile.shape} but central_tile has shape "
                             f"{central.shape}; expected the same layout and channel count")


def _index(slc, chw):
    """Index selecting the (ys, xs) slices on a tile's spatial axes."""
    return (slice(None), *slc) if chw else tuple(slc)


def _expand(w, ndim, chw):
    """View of an (h, w) weight that broadcasts against a tile region of `ndim` dimensions."""
    if ndim == 2:
        return w
    return w[None] if chw else w[..., None]


def _region(tile, slc, expected, name, chw):
    # The weights do not record whole tile shapes, so check that the tile holds
    # the slices taken from it rather than let numpy broadcast or fail obscurely.
    region = tile[_index(slc, chw)]
    hw = tile.shape[1:] if chw else tile.shape[:2]
    if (region.shape[1:] if chw else region.shape[:2]) != tuple(expected):
        need = (slc[0].stop, slc[1].stop)
        raise ValueError(f"{name} has spatial shape {hw}, too small for its geometry: expected at "
                         f"least {need} to take rows {slc[0].start}:{slc[0].stop} and "
                         f"columns {slc[1].start}:{slc[1].stop}")
    return region.astype(np.float64, copy=False)
