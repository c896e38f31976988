"""The planners: a regular grid, or any grid of boxes, and optionally an area, compiled into a `Plan`."""

import dataclasses

import numpy as np
import shapely

from ._schedule import (STEP_COLUMNS, band_seam_rows, live_from_rows, regular_column_stripes,
                        schedule_general, schedule_rectilinear, seam_rows, segment_cummax, split_columns, step_table,
                        stripe_extents, weight_vectors)
from ._input import check_context_scale, check_grid_scale, to_output_pixels, with_input_geometry
from ._traverse import (check_traverse, choose_traverse, to_image_frame, transpose_area, transpose_boxes,
                        transpose_window)
from .._validate import as_pair, check_area
from ..geometry import (axis_starts, axis_window, boxes_to_geoms, cells_meeting, geoms_to_boxes,
                        grid_boxes, grid_cells, is_rectilinear, regular_axis)
from ..windows import check_window, is_separable, window_2d

from ._plan import _INPUT_GEOMS, INPUT_GEOMS_CACHED, MAX_GRID_TILES, MAX_IMAGE_SIDE, Plan, _frozen, _right_buffer
from ._volume import is_volume_grid, is_volume_size, plan_volume_from_grid, plan_volume_grid


def plan_regular_grid(image_size, tile_size, overlap, area=None, traversal_fnc=None, *, window="pyramid",
                      max_buffer_bytes=None, channels=1, dtype=np.float32, context=0, output_scale=1,
                      traverse="auto"):
    """Plan a regular grid of overlapping tiles over an image.

    Tiles start every ``tile_size - overlap`` pixels along each axis from 0;
    where they stop short of the image border one more row or column of
    tiles is added flush with it (the seed's rule). A tile larger than the
    image is clamped to the image along that axis.

    Parameters
    ----------
    image_size : (int, int)
        ``(height, width)`` in pixels; ``(D, H, W)`` plans a volume (see
        :func:`seamless_fast.plan._volume.plan_volume_grid`).
    tile_size : int or (int, int)
        Tile ``(height, width)`` the model takes.
    overlap : int or (int, int)
        Overlap between neighbouring tiles; any value from 0 to tile size - 1
        (the seed asked for an even overlap; any is fine here).
    area : shapely.Geometry, optional
        Only cells whose interior meets this geometry (given in (y, x) order)
        are written, and only the tiles they need are requested. The tiles
        and cells are those of the whole image's grid (unlike the seed, which
        started the grid at the area), so a run with an area writes exactly
        the values a whole-image run writes in those cells. The plan and the
        grid returned cover the window of the whole-image grid the area
        needs, so grid indices count from that window's top-left tile.
        Like `image_size`, the area is in input pixels: with an
        `output_scale` it is divided by the scale, and a cell is written when
        its interior, scaled back to input pixels, meets the area.
    traversal_fnc : callable, optional
        Accepted for the seed's signature and not called: the order of the
        tiles is chosen by the plan (along rows or columns, see `traverse`,
        each cell written as soon as its own tile arrives), which is what the
        streaming blend needs.
    window : str, callable or 2-D array, keyword-only
        Blending window; see :mod:`seamless_fast.windows`.
    max_buffer_bytes : int, optional, keyword-only
        Most bytes the blend buffer may take. When one band of the output
        (tile height x planned width) is larger, the plan runs in vertical
        stripes, one after the other, handing the partial sums along each
        stripe seam on through a file in the run's cache folder.
    channels : int, keyword-only
        Channels of the model output, to turn `max_buffer_bytes` into pixels.
    dtype : float dtype, keyword-only
        Accumulator dtype (float32, or float64 for float64 tiles), likewise.
    context : int or (int, int), keyword-only
        Input pixels the model reads beyond its tile on every side: it gets
        the tile's box grown by `context` (:meth:`Plan.read_boxes`,
        :func:`get_plan_input_geoms`; past the image border the reader pads)
        and returns the tile's box only, which is what is blended.
    output_scale : int or (int, int), keyword-only
        Input pixels per output pixel: the model returns a tile of
        ``tile_size / output_scale`` pixels. `image_size`, `tile_size`,
        `overlap`, `context` and `area` stay in input pixels; the plan works
        in output pixels, over an output of ``ceil(image_size /
        output_scale)`` (see :mod:`seamless_fast._input` for the last pixel
        and the flush tile when the size is not a multiple). Tile size,
        overlap and context must be multiples of it.
    traverse : {"auto", "rows", "columns"}, keyword-only
        Order of the tiles. ``"rows"``: row by row, the blend buffer spans
        the image width (about tile height x width x C accumulator values).
        ``"columns"``: column by column, the buffer spans the image height
        (the seed's order for wide images). ``"auto"`` (default) walks
        columns when their buffer is less than half the rows' (2 x tile
        width x height < tile height x width; with square tiles, an image
        more than twice as wide as high), judged on the whole image, so an
        area plan walks as the whole image's plan does and equals it bit for
        bit. Walking columns, each tile and each cell is transposed for the
        kernels, two extra copies a tile that can cost more time than the
        smaller buffer saves (``profiling/traverse.py``): ``"rows"`` trades
        memory for that time. With columns, `max_buffer_bytes` cuts the image
        into horizontal stripes instead. A file writer that needs rows in order
        (the tiled TIFF writer) holds the cells of a whole band of tile rows
        until they are complete, so the command line and
        :func:`~seamless_fast.run_pipeline` plan with ``"rows"``.
        Results of the two orders agree to float rounding (the sums at a
        pixel are added in another order), not bit for bit.

    Returns
    -------
    plan : Plan
    grid : ndarray of shapely boxes, shape (rows, cols)
        The tiles' boxes in input pixels (output boxes times `output_scale`,
        without the context), as :func:`plan_from_grid` takes them.

    Raises
    ------
    ValueError
        For a bad argument, or when the grid would have more than
        :data:`MAX_GRID_TILES` tiles.

    Examples
    --------
    >>> plan, grid = plan_regular_grid((1000, 777), 128, 32)
    >>> grid.shape
    (11, 8)
    >>> plan.n_loads, plan.n_writes
    (88, 88)
    >>> plan, _ = plan_regular_grid((1000, 777), 128, 32, context=16, output_scale=2)
    >>> plan.image_size, plan.grid_shape, plan.read_boxes()[0].tolist()
    ((500, 389), (11, 8), [-16, -16, 144, 144])
    >>> wide, _ = plan_regular_grid((1024, 40960), 256, 64)
    >>> wide.traverse, wide.buffer_rows, wide.buffer_cols
    ('columns', 64, (0, 1024))
    >>> plan_regular_grid((1024, 40960), 256, 64, traverse="rows")[0].buffer_cols
    (0, 40960)
    """
    if is_volume_size(image_size):  # (D, H, W): see `seamless_fast.plan._volume`
        return plan_volume_grid(image_size, tile_size, overlap, area=area, traversal_fnc=traversal_fnc, window=window,
                                max_buffer_bytes=max_buffer_bytes, context=context, output_scale=output_scale,
                                traverse=traverse)
    image_size = as_pair(image_size, "image_size", minimum=1)
    if max(image_size) > MAX_IMAGE_SIDE:
        raise ValueError(f"image_size={image_size} is too large: each side must be at most {MAX_IMAGE_SIDE} "
                         "pixels (2**53, where float64 coordinates stop being exact)")
    tile_size = as_pair(tile_size, "tile_size", minimum=1)
    overlap = as_pair(overlap, "overlap", minimum=0)
    if overlap[0] >= tile_size[0] or overlap[1] >= tile_size[1]:
        raise ValueError(f"overlap={overlap} must be smaller than tile_size={tile_size} on both axes")
    _check_traversal(traversal_fnc)
    traverse = choose_traverse(check_traverse(traverse), image_size, tile_size)
    area = check_area(area, image_size)
    context, scale = check_context_scale(context, output_scale, tile_size=tile_size, overlap=overlap)
    input_size = image_size
    image_size, tile_size, overlap, area = to_output_pixels(image_size, tile_size, overlap, area, scale)
    window = check_window(window)
    max_buffer_bytes, bytes_per_pixel = _budget(max_buffer_bytes, channels, dtype)
    boxes, spans = _regular_boxes(image_size, tile_size, overlap, area)
    a = 1 if traverse == "rows" else 0  # the axis the buffer spans
    row_bytes = int(boxes[0, 0, 3 - a] - boxes[0, 0, 1 - a]) * bytes_per_pixel
    try:
        column_stripe = regular_column_stripes(image_size[a], tile_size[a], overlap[a], *spans[a], row_bytes,
                                                max_buffer_bytes) if is_separable(window) else None
    except ValueError as error:
        raise _in_image_terms(error, traverse, area) from None
    plan = _compile_along(traverse, boxes, image_size, area, window, max_buffer_bytes, bytes_per_pixel,
                          column_stripe)
    plan = with_input_geometry(plan, input_size, context, scale)
    grid = boxes_to_geoms(boxes if scale == (1, 1) else boxes * np.array(scale * 2, np.int64))
    if plan.n_loads <= INPUT_GEOMS_CACHED and context == (0, 0):
        _INPUT_GEOMS[plan] = grid.reshape(-1)[plan.load_order]
    return plan, grid


def regular_grid(image_size, tile_size, overlap, area=None):
    """The grid of shapely boxes :func:`plan_regular_grid` plans over (the seed's ``regular_grid``).

    ``plan_from_grid(regular_grid(size, tile, overlap, area), area=area)``
    makes the same plan as ``plan_regular_grid(size, tile, overlap, area)``.

    Examples
    --------
    >>> regular_grid((1000, 777), 128, 32).shape
    (11, 8)
    """
    image_size = as_pair(image_size, "image_size", minimum=1)
    if max(image_size) > MAX_IMAGE_SIDE:
        raise ValueError(f"image_size={image_size} is too large: each side must be at most {MAX_IMAGE_SIDE}")
    tile_size = as_pair(tile_size, "tile_size", minimum=1)
    overlap = as_pair(overlap, "overlap", minimum=0)
    if overlap[0] >= tile_size[0] or overlap[1] >= tile_size[1]:
        raise ValueError(f"overlap={overlap} must be smaller than tile_size={tile_size} on both axes")
    area = check_area(area, image_size)
    return boxes_to_geoms(_regular_boxes(image_size, tile_size, overlap, area)[0])


def _regular_boxes(image_size, tile_size, overlap, area):
    """Boxes of the whole-image grid, or of the window of it that `area` needs (refused when too many),
    and the window's rows and columns ``((i0, i1), (k0, k1))`` on the whole grid."""
    spans = []
    for a in (0, 1):
        size, tile, over = image_size[a], tile_size[a], overlap[a]
        if area is None:
            spans.append((0, regular_axis(size, tile, over)[0]))
        else:
            lo, hi = area.bounds[a], area.bounds[a + 2]
            spans.append(axis_window(size, tile, over, min(max(lo, 0.0), size), min(max(hi, 0.0), size)))
    rows, cols = (k1 - k0 for k0, k1 in spans)
    if rows * cols > MAX_GRID_TILES:
        where = "" if area is None else f" around the area with bounds {tuple(area.bounds)}"
        raise ValueError(f"image_size={image_size} with tile_size={tile_size} and overlap={overlap} needs a grid "
                         f"of {rows} x {cols} = {rows * cols} tiles{where}; a plan holds at most {MAX_GRID_TILES} "
                         "(about 1 KiB of memory each while planning): use larger tiles or an area")
    (ys, ylen), (xs, xlen) = (axis_starts(image_size[a], tile_size[a], overlap[a], *spans[a]) for a in (0, 1))
    return grid_boxes(ys, ylen, xs, xlen), spans


def _check_traversal(traversal_fnc):
    if traversal_fnc is not None and not callable(traversal_fnc):
        raise ValueError(f"traversal_fnc={traversal_fnc!r} is not callable; it is accepted for the seed's "
                         "signature and not used (pass nothing)")


def _budget(max_buffer_bytes, channels, dtype):
    """(max_buffer_bytes, bytes per buffer pixel), validated."""
    from .._validate import as_positive_int

    channels = as_positive_int(channels, "channels")
    dtype = _accumulator_dtype(dtype)
    if max_buffer_bytes is not None:
        max_buffer_bytes = as_positive_int(max_buffer_bytes, "max_buffer_bytes")
    return max_buffer_bytes, channels * dtype.itemsize


def _accumulator_dtype(dtype):
    try:
        out = np.dtype(dtype)
    except TypeError:
        out = None
    if out is None or out.kind != "f" or out.itemsize < 4:
        shown = repr(dtype) if out is None else out
        raise ValueError(f"dtype={shown} is not an accumulator dtype; expected float32 or float64")
    return out


def plan_from_grid(grid, margin=(0, 0), area=None, traversal_fnc=None, *, window="pyramid", max_buffer_bytes=None,
                   channels=1, dtype=np.float32, context=0, output_scale=1, traverse="auto"):
    """Plan a run over any grid of boxes, regular or not.

    Parameters
    ----------
    grid : array of shapely boxes, shape (rows, cols)
        Axis-aligned boxes with integer bounds in (y, x) order; y bounds must
        not decrease down a column, x bounds not along a row. Tiles may have
        different sizes and overlaps, and rows need not share y-extents.
        An integer array (nz, ny, nx, 6) of 3-D boxes plans a volume (see
        :func:`seamless_fast.plan._volume.plan_volume_from_grid`).
    margin : int or (int, int), optional
        Accepted for the seed's signature and without effect. The seed cut
        `margin` pixels off each side of a tile's output that had a
        neighbour, only to choose which tile writes which pixels (with
        ``(0, 0)``, its default, overlaps were written more than once). Here
        every pixel gets the full blend of every tile covering it, written
        exactly once, in the cells described in the notes; a margin would
        change nothing but which cell carries a pixel. Must be >= 0.
    area : shapely.Geometry, optional
        As in :func:`plan_regular_grid`: only cells whose interior meets it
        are written, and only the tiles they need are requested.
    traversal_fnc : callable, optional
        Accepted for the seed's signature and not called: the order of the
        tiles is chosen by the plan (see `traverse`).
    window : str, callable or 2-D array, keyword-only
        Blending window.
    max_buffer_bytes, channels, dtype : keyword-only
        As in :func:`plan_regular_grid` (stripes need a rectilinear grid).
    context, output_scale : keyword-only
        As in :func:`plan_regular_grid`. `grid` and `area` are in input
        pixels, every grid bound a multiple of `output_scale`; the plan's
        boxes are the grid's divided by it.
    traverse : {"auto", "rows", "columns"}, keyword-only
        As in :func:`plan_regular_grid`; ``"auto"`` judges on the largest
        tile and the grid's extent from (0, 0). Walking columns, cells are cut
        where the next tile of the column starts (the grid's cells transposed):
        on an irregular grid they may differ from those of ``"rows"``.

    Returns
    -------
    Plan

    Notes
    -----
    Output cells are cut where the next tile starts (see
    :func:`seamless_fast.geometry.grid_cells`). On a rectilinear grid they
    cover every tile pixel exactly once; on an irregular grid each cell still
    lies inside its own tile and no pixel is written twice.

    Examples
    --------
    >>> import numpy as np, shapely
    >>> grid = np.array([[shapely.box(0, 0, 60, 50), shapely.box(0, 30, 60, 90)]])
    >>> plan_from_grid(grid).n_writes
    2
    >>> plan_from_grid(grid, (8, 8)).n_writes  # the seed's positional margin
    2
    >>> plan_from_grid(grid, context=4, output_scale=2).read_boxes().tolist()
    [[-4, -4, 64, 54], [-4, 26, 64, 94]]
    """
    if is_volume_grid(grid):  # (nz, ny, nx, 6) integer boxes: see `seamless_fast.plan._volume`
        return plan_volume_from_grid(grid, area=area, traversal_fnc=traversal_fnc, window=window,
                                     max_buffer_bytes=max_buffer_bytes, context=context, output_scale=output_scale,
                                     traverse=traverse)
    if isinstance(margin, shapely.Geometry):
        raise ValueError(f"margin={margin} is a geometry; the second argument of plan_from_grid is the seed's "
                         "margin: pass the area by keyword, area=...")
    as_pair(margin, "margin", minimum=0)
    _check_traversal(traversal_fnc)
    check_traverse(traverse)
    boxes = geoms_to_boxes(grid)
    input_size = (int(boxes[..., 2].max()), int(boxes[..., 3].max()))
    area = check_area(area, input_size)
    context, scale = check_context_scale(context, output_scale)
    boxes = check_grid_scale(boxes, scale)
    image_size, _, _, area = to_output_pixels(input_size, (0, 0), (0, 0), area, scale)
    window = check_window(window)
    budget = _budget(max_buffer_bytes, channels, dtype)
    largest = (int((boxes[..., 2] - boxes[..., 0]).max()), int((boxes[..., 3] - boxes[..., 1]).max()))
    plan = _compile_along(choose_traverse(traverse, image_size, largest), boxes, image_size, area, window, *budget)
    return with_input_geometry(plan, input_size, context, scale)


def _compile_along(traverse, boxes, image_size, area, window, max_buffer_bytes=None, bytes_per_pixel=4,
                   column_stripe=None):
    """`_compile` for tiles walked along `traverse`: for columns, the plan of the transposed image seen
    from the image (see `seamless_fast._traverse`)."""
    if traverse == "rows":
        return _compile(boxes, image_size, area, window, max_buffer_bytes, bytes_per_pixel, column_stripe)
    try:
        frame = _compile(transpose_boxes(boxes), image_size[::-1], transpose_area(area), transpose_window(window),
                         max_buffer_bytes, bytes_per_pixel, column_stripe)
    except ValueError as error:
        raise _in_image_terms(error, traverse, area) from None
    return to_image_frame(frame, image_size, window)


def _in_image_terms(error, traverse, area):
    """A planning error raised in the transposed frame of a column walk, reworded in image terms."""
    message = str(error)
    if traverse == "rows":
        return error
    if message.startswith("area with bounds"):  # the bounds the caller gave, not the transposed ones
        message = f"area with bounds {tuple(area.bounds)} meets no output cell of the grid"
    elif message.startswith("max_buffer_bytes="):  # stripes of a column walk are bands of image rows
        message = message.replace("starting at column", "starting at image row").replace("(tile column", "(tile row")
    return ValueError(message)


def _compile(boxes, image_size, area, window, max_buffer_bytes=None, bytes_per_pixel=4, column_stripe=None):
    """The Plan of a grid of integer boxes; `column_stripe` (see `regular_column_stripes`) overrides
    how a rectilinear grid's columns are cut into stripes."""
    rows, cols = boxes.shape[:2]
    if not is_separable(window):
        sizes = np.unique(boxes[..., 2:].reshape(-1, 2) - boxes[..., :2].reshape(-1, 2), axis=0)
        for h, w in sizes.tolist():
            window_2d(window, h, w)  # raises with both shapes named
    cells = grid_cells(boxes)
    flat_boxes = boxes.reshape(-1, 4)
    flat_cells = cells.reshape(-1, 4)
    selected = (flat_cells[:, 2] > flat_cells[:, 0]) & (flat_cells[:, 3] > flat_cells[:, 1])
    if area is not None:
        selected[selected] = cells_meeting(area, flat_cells[selected], np.flatnonzero(selected), cols)
        if not selected.any():
            raise ValueError(f"area with bounds {tuple(area.bounds)} meets no output cell of the grid")
    rectilinear = is_rectilinear(boxes)
    normalised = rectilinear and is_separable(window)
    if rectilinear:
        load_order, emit_after, write_cells = schedule_rectilinear(boxes, cells, selected)
    else:
        load_order, emit_after, write_cells = schedule_general(flat_boxes, flat_cells, selected)
    if column_stripe is None or not normalised:
        column_stripe = split_columns(boxes, max_buffer_bytes, bytes_per_pixel, normalised)
    # Stripes numbered 0, 1, ... over the columns the run loads (an area may leave some out).
    if column_stripe.any():
        stripe = np.unique(column_stripe[load_order % cols], return_inverse=True)[1].reshape(-1)
    else:
        stripe = np.zeros(len(load_order), dtype=np.int64)
    if stripe.max() > 0:
        order = np.lexsort((load_order, stripe))
        load_order, stripe = load_order[order], stripe[order]
        position = np.empty(rows * cols, dtype=np.int64)
        position[load_order] = np.arange(len(load_order))
        emit_after = position[write_cells]
    if not _sorted_by(emit_after, write_cells):
        order = np.lexsort((write_cells, emit_after))
        write_cells, emit_after = write_cells[order], emit_after[order]
    tiles = flat_boxes[load_order]
    if stripe[-1] > 0:  # in stripes, rows stay until no later tile of the stripe reaches them
        live_from = tiles[:, 0].copy()
    else:
        live_from = live_from_rows(flat_cells[write_cells, 0], emit_after, len(load_order), image_size[0])
    stripes, seams = stripe_extents(tiles, stripe)
    top = segment_cummax(tiles[:, 2], stripe)
    weights, weight_y, weight_x = weight_vectors(boxes, window, normalised)
    steps = step_table(boxes, cells, load_order, write_cells, emit_after, live_from, stripes[stripe, 0],
                       weight_y, weight_x, rectilinear)
    # The band: the largest bottom overlap (rows of grid row i that row i + 1 reaches), across the widest
    # stripe, and the right-overlap buffer. In stripes it hands the right overlap of each stripe's last
    # column on, so every tile must be loaded; with a budget it must fit, else the ring buffer (which the
    # stripes were cut for) is used.
    buffer_rows = int(max(1, (boxes[:-1, 0, 2] - boxes[1:, 0, 0]).max(initial=0)))
    right_rows, right_cols = _right_buffer(steps)
    width = int((stripes[:, 1] - stripes[:, 0]).max())
    band_bytes = (buffer_rows * width + 2 * right_rows * right_cols) * bytes_per_pixel
    band = (normalised and (len(stripes) == 1 or len(load_order) == rows * cols)
            and (max_buffer_bytes is None or band_bytes <= max_buffer_bytes))
    layout = "band" if band else "ring"
    if not band:
        buffer_rows = _ring_rows(top, live_from)
    if layout == "band" and len(stripes) > 1:
        band_seam_rows(steps, stripe, seams)
    else:
        seam_rows(steps, stripe, tiles, top, live_from)
    return Plan(
        image_size=tuple(image_size), grid_shape=(rows, cols),
        tile_boxes=_frozen(flat_boxes.copy()), cell_boxes=_frozen(flat_cells.copy()),
        load_order=_frozen(load_order), write_cells=_frozen(write_cells),
        emit_after=_frozen(emit_after), live_from=_frozen(live_from),
        buffer_rows=buffer_rows, buffer_cols=(int(stripes[:, 0].min()), int(stripes[:, 1].max())),
        normalised=normalised, weights=_frozen(weights), weight_y=_frozen(weight_y),
        weight_x=_frozen(weight_x), window=window, steps=_frozen(steps), stripes=_frozen(stripes),
        seams=_frozen(seams), layout=layout,
    )


def _ring_rows(top, live_from):
    """Rows of the ring buffer: the most rows live at once (`top`: the lowest row reached so far)."""
    return int(max(1, (top - np.minimum(live_from, top)).max()))


def ring_layout(plan):
    """`plan` run with the ring buffer instead of the band (both give the same values, bit for bit): for
    comparisons in tests and profiling.

    Examples
    --------
    >>> plan, _ = plan_regular_grid((4096, 4096), 256, 64)
    >>> plan.layout, plan.buffer_rows, ring_layout(plan).layout, ring_layout(plan).buffer_rows
    ('band', 64, 'ring', 256)
    """
    if plan.layout == "ring":
        return plan
    tiles = plan.tile_boxes[plan.load_order]
    stripe = plan.steps[:, STEP_COLUMNS.index("stripe")]
    top = segment_cummax(tiles[:, 2], stripe)
    steps = plan.steps.copy()
    seam_rows(steps, stripe, tiles, top, plan.live_from)
    return dataclasses.replace(plan, layout="ring", buffer_rows=_ring_rows(top, plan.live_from), steps=_frozen(steps))


def _sorted_by(major, minor):
    """Whether pairs (major, minor) are in increasing order, as ``np.lexsort((minor, major))`` would put them."""
    step, tie = np.diff(major), np.diff(minor)
    return bool(((step > 0) | ((step == 0) & (tie > 0))).all())

