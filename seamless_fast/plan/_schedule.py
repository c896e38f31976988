"""The arrays of a plan: arrival order, emission steps, the per-step table, stripes and weights.

Plain numpy on integer boxes; :mod:`seamless_fast.plan` puts them together
into a :class:`~seamless_fast.plan.Plan`.
"""

import numpy as np
import shapely

from ..geometry import boxes_overlap, boxes_to_geoms, regular_axis
from ..windows import is_separable, window_1d

STEP_COLUMNS = ("y0", "x0", "h", "w", "first", "fy", "fx", "cy0", "cy1", "cx0", "cx1", "wy", "wx", "cell", "tile",
                "stripe", "enter_lo", "enter_hi", "leave_lo", "leave_hi", "by", "bx")

MAX_WEIGHTS = 2**27
"""Most 1-D window weights a plan holds (1 GiB of float64): a bound on tile sides times grid rows and columns."""

__all__ = ["STEP_COLUMNS", "MAX_WEIGHTS", "schedule_rectilinear", "schedule_general", "live_from_rows", "step_table",
           "seam_rows", "band_seam_rows", "split_columns", "regular_column_stripes", "stripe_extents", "segment_cummax",
           "weight_vectors"]


def schedule_rectilinear(boxes, cells, selected):
    """Needed tiles, arrival order and emission steps on a grid whose rows/cols share extents.

    A cell needs the tile rows overlapping its y-extent times the tile
    columns overlapping its x-extent; tiles arrive in row-major order, so a
    cell is final after the last of those (bottom-right) tiles.
    """
    rows, cols = boxes.shape[:2]
    sel = selected.reshape(rows, cols)
    si, sj = np.nonzero(sel)
    # Cells share their y-extent along a grid row and their x-extent down a column: search once per row
    # and column, then look the answers up for each cell.
    first_row = np.searchsorted(boxes[:, 0, 2], cells[:, 0, 0], side="right")[si]
    last_row = (np.searchsorted(boxes[:, 0, 0], cells[:, 0, 2], side="left") - 1)[si]
    first_col = np.searchsorted(boxes[0, :, 3], cells[0, :, 1], side="right")[sj]
    last_col = (np.searchsorted(boxes[0, :, 1], cells[0, :, 3], side="left") - 1)[sj]
    last = last_row * cols + last_col
    if sel.all():  # cells then cover every tile: all are needed, in row-major order
        return np.arange(rows * cols, dtype=np.int64), last, si * cols + sj
    # Mark each cell's block of needed tiles with a 2-D difference array.
    size = (rows + 1) * (cols + 1)
    below, right = (last_row + 1) * (cols + 1), last_col + 1
    above, left = first_row * (cols + 1), first_col
    marks = (np.bincount(above + left, minlength=size) - np.bincount(below + left, minlength=size)
             - np.bincount(above + right, minlength=size) + np.bincount(below + right, minlength=size))
    marks = marks.reshape(rows + 1, cols + 1)
    needed = (marks.cumsum(axis=0).cumsum(axis=1)[:rows, :cols] > 0).ravel()
    load_order = np.flatnonzero(needed)
    position = np.cumsum(needed) - 1
    emit_after = position[last]
    return load_order, emit_after, si * cols + sj


def schedule_general(flat_boxes, flat_cells, selected):
    """As above for any grid: overlaps found with an STRtree, tiles ordered by (ylo, xlo)."""
    write_cells = np.flatnonzero(selected)
    tree = shapely.STRtree(boxes_to_geoms(flat_boxes))
    cell_pos, tile = tree.query(boxes_to_geoms(flat_cells[write_cells]), predicate="intersects")
    keep = boxes_overlap(flat_cells[write_cells[cell_pos]], flat_boxes[tile])
    cell_pos, tile = cell_pos[keep], tile[keep]
    needed = np.unique(tile)
    load_order = needed[np.lexsort((needed, flat_boxes[needed, 1], flat_boxes[needed, 0]))]
    position = np.full(len(flat_boxes), -1, dtype=np.int64)
    position[load_order] = np.arange(len(load_order))
    emit_after = np.full(len(write_cells), -1, dtype=np.int64)
    np.maximum.at(emit_after, cell_pos, position[tile])
    return load_order, emit_after, write_cells


def live_from_rows(cell_ylo, emit_after, n_loads, height):
    """First row still needed by an unemitted cell at each arrival step (`height` once none is)."""
    pending_min = np.append(np.minimum.accumulate(cell_ylo[::-1])[::-1], height)
    return pending_min[np.searchsorted(emit_after, np.arange(n_loads), side="left")]


def step_table(boxes, cells, load_order, write_cells, emit_after, live_from, x_origin, weight_y, weight_x,
           rectilinear):
    """The per-step table of :data:`STEP_COLUMNS` (see `Plan.steps`)."""
    rows, cols = boxes.shape[:2]
    flat = boxes.reshape(-1, 4)
    tile = flat[load_order]
    table = np.zeros((len(load_order), len(STEP_COLUMNS)), dtype=np.int64)
    col = {name: n for n, name in enumerate(STEP_COLUMNS)}
    table[:, col["y0"]] = tile[:, 0]
    table[:, col["x0"]] = tile[:, 1] - x_origin
    table[:, col["h"]] = tile[:, 2] - tile[:, 0]
    table[:, col["w"]] = tile[:, 3] - tile[:, 1]
    table[:, col["first"]] = np.clip(live_from - tile[:, 0], 0, table[:, col["h"]])
    table[:, col["wy"]] = weight_y[load_order]
    table[:, col["wx"]] = weight_x[load_order]
    table[:, col["tile"]] = load_order
    table[:, col["cell"]] = -1
    if rectilinear:
        # A tile first touches what the previous grid row and the previous tile in its row left free.
        i, j = np.divmod(load_order, cols)
        row_end = np.append(0, boxes[:-1, 0, 2])[i]
        col_end = np.append(0, boxes[0, :-1, 3])[j]
        table[:, col["fy"]] = np.clip(row_end - tile[:, 0], 0, table[:, col["h"]])
        table[:, col["fx"]] = np.clip(col_end - tile[:, 1], 0, table[:, col["w"]])
        # Where the next grid row and column start: the tile's bottom and right overlaps (see `_band_kernels`).
        row_next = np.append(boxes[1:, 0, 0], boxes[-1, 0, 2])[i]
        col_next = np.append(boxes[0, 1:, 1], boxes[0, -1, 3])[j]
        table[:, col["by"]] = np.clip(row_next - tile[:, 0], 0, table[:, col["h"]])
        table[:, col["bx"]] = np.clip(col_next - tile[:, 1], 0, table[:, col["w"]])
        # Each written cell is final the moment its own tile arrives.
        inverse = np.empty(rows * cols, dtype=np.int64)
        inverse[load_order] = np.arange(len(load_order))
        position = inverse[write_cells]
        assert np.array_equal(emit_after, position), "cells finish with their own tile on a rectilinear grid"
        cell = cells.reshape(-1, 4)[write_cells]
        table[position, col["cell"]] = write_cells
        table[position, col["cy0"]] = cell[:, 0] - flat[write_cells, 0]
        table[position, col["cy1"]] = cell[:, 2] - flat[write_cells, 0]
        table[position, col["cx0"]] = cell[:, 1] - flat[write_cells, 1]
        table[position, col["cx1"]] = cell[:, 3] - flat[write_cells, 1]
    return table


def seam_rows(steps, stripe, tiles, top, live_from):
    """Fill the enter/leave columns: rows that come into each stripe's buffer and rows that leave it."""
    col = {name: n for n, name in enumerate(STEP_COLUMNS)}
    steps[:, col["stripe"]] = stripe
    starts = np.r_[True, stripe[1:] != stripe[:-1]]
    ends = np.r_[stripe[1:] != stripe[:-1], True]
    previous_top = np.where(starts, tiles[:, 0], np.r_[0, top[:-1]])
    steps[:, col["enter_lo"]] = np.maximum(previous_top, live_from)
    steps[:, col["enter_hi"]] = np.maximum(top, steps[:, col["enter_lo"]])
    next_live = np.where(ends, top, np.r_[live_from[1:], 0])
    steps[:, col["leave_lo"]] = np.minimum(live_from, top)
    steps[:, col["leave_hi"]] = np.maximum(np.minimum(next_live, top), steps[:, col["leave_lo"]])


def band_seam_rows(steps, stripe, seams):
    """The enter/leave columns for the band layout in stripes (see `_band_kernels`), every tile loaded.

    The first tile of a tile row in stripe s > 0 takes, before it, image rows
    [enter_lo, enter_hi) of the left seam into its left-overlap buffer (the
    rows below where earlier tile rows reached); the last tile of a tile row
    in a stripe with a seam on its right gives, after it, rows [leave_lo,
    leave_hi) of its right overlap to that seam (the rows above where the
    next tile row starts).
    """
    col = {name: n for n, name in enumerate(STEP_COLUMNS)}
    steps[:, col["stripe"]] = stripe
    y0, x0, h, w = (steps[:, col[name]] for name in ("y0", "x0", "h", "w"))
    first = steps[:, col["first"]]
    new_row = np.r_[True, (y0[1:] != y0[:-1]) | (stripe[1:] != stripe[:-1])]
    enters = new_row & (stripe > 0)
    leaves = np.r_[new_row[1:], True] & (stripe < stripe.max())
    seam_width = seams[:, 1] - seams[:, 0]
    assert (steps[enters, col["fx"]] == seam_width[stripe[enters] - 1]).all(), "a row starts at its left seam"
    assert (w - steps[:, col["bx"]])[leaves].tolist() == seam_width[stripe[leaves]].tolist(), "a row ends at its seam"
    steps[:, col["enter_lo"]] = np.where(enters, y0 + np.maximum(steps[:, col["fy"]], first), 0)
    steps[:, col["enter_hi"]] = np.where(enters, y0 + h, 0)
    steps[:, col["leave_lo"]] = np.where(leaves, y0 + first, 0)
    steps[:, col["leave_hi"]] = np.where(leaves, y0 + np.maximum(steps[:, col["by"]], first), 0)


def split_columns(boxes, max_buffer_bytes, bytes_per_pixel, normalised):
    """Stripe number of every grid column: as wide as `max_buffer_bytes` allows (all 0 without a budget)."""
    cols = boxes.shape[1]
    column_stripe = np.zeros(cols, dtype=np.int64)
    if max_buffer_bytes is None:
        return column_stripe
    xs, xe = boxes[0, :, 1].tolist(), boxes[0, :, 3].tolist()
    row_bytes = int((boxes[:, :, 2] - boxes[:, :, 0]).max()) * bytes_per_pixel
    band_bytes = int(boxes[:, :, 3].max() - boxes[:, :, 1].min()) * row_bytes  # every row: irregular grids too
    if band_bytes <= max_buffer_bytes:
        return column_stripe
    if not normalised:
        raise ValueError(f"max_buffer_bytes={max_buffer_bytes} is below the {band_bytes} bytes one band of "
                         "this plan needs, and only rectilinear grids with a separable window can be split "
                         "into stripes")
    stripe, lo, hi = 0, xs[0], xe[0]
    for j in range(cols):
        if (max(hi, xe[j]) - lo) * row_bytes > max_buffer_bytes:
            stripe, lo = stripe + 1, xs[j]  # the new stripe starts with the seam the last one leaves
        hi = max(hi, xe[j])
        if (hi - lo) * row_bytes > max_buffer_bytes:
            raise ValueError(f"max_buffer_bytes={max_buffer_bytes} is too small: a stripe starting at column "
                             f"{lo} needs {(hi - lo) * row_bytes} bytes (tile column and seam)")
        column_stripe[j] = stripe
    return column_stripe


def regular_column_stripes(size, tile, overlap, k0, k1, row_bytes, max_buffer_bytes):
    """Stripes of columns ``k0 .. k1 - 1`` of a whole regular axis, as `split_columns` cuts the whole grid.

    An area plan holds a window of the whole-image grid; cutting its columns
    where the whole image's are cut keeps the order in which tiles are added
    at every pixel, so its values equal the whole-image run's bit for bit.
    Computed without listing the axis: regular columns fall into stripes of
    ``per`` columns each; the flush column joins the last one if it fits.
    """
    if max_buffer_bytes is None or size * row_bytes <= max_buffer_bytes:
        return np.zeros(k1 - k0, dtype=np.int64)
    n, stride, length, flush = regular_axis(size, tile, overlap)
    width = max_buffer_bytes // row_bytes
    if length > width:
        raise ValueError(f"max_buffer_bytes={max_buffer_bytes} is too small: a stripe starting at column 0 "
                         f"needs {length * row_bytes} bytes (tile column and seam)")
    per = (width - length) // stride + 1
    stripe = np.arange(k0, k1, dtype=np.int64) // per
    if flush and k0 < k1 == n:
        last = (n - 2) // per  # the stripe of the last regular column
        stripe[-1] = last if size - last * per * stride <= width else last + 1
    return stripe


def stripe_extents(tiles, stripe):
    """Buffer columns [x0, x1) of each stripe (over the tiles it loads), and the seams [lo, hi) between them."""
    count = int(stripe.max()) + 1
    if count == 1:
        return np.array([[tiles[:, 1].min(), tiles[:, 3].max()]], dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    stripes = np.zeros((count, 2), dtype=np.int64)
    seams = np.zeros((count - 1, 2), dtype=np.int64)
    reach = 0
    for s in range(count):
        mine = tiles[stripe == s]
        stripes[s] = mine[:, 1].min(), max(reach, mine[:, 3].max())
        if s:
            seams[s - 1] = stripes[s, 0], max(reach, stripes[s, 0])
        reach = int(stripes[s, 1])
    return stripes, seams


def segment_cummax(values, segment):
    """Running maximum of `values`, restarted wherever `segment` changes."""
    if (segment == segment[0]).all():
        return np.maximum.accumulate(values)
    out = values.copy()
    for s in np.unique(segment).tolist():
        part = segment == s
        out[part] = np.maximum.accumulate(values[part])
    return out


def weight_vectors(boxes, window, normalised):
    """Flat 1-D weight vectors and each tile's offsets into them."""
    rows, cols = boxes.shape[:2]
    if not is_separable(window):
        none = np.full(rows * cols, -1, dtype=np.int64)
        return np.zeros(0), none, none.copy()
    _check_weight_size(boxes, normalised)
    if normalised:
        ys = _normalised_axis(boxes[:, 0, 0], boxes[:, 0, 2], window)
        xs = _normalised_axis(boxes[0, :, 1], boxes[0, :, 3], window)
        y_off = np.cumsum([0] + [len(v) for v in ys])[:-1]
        x_off = y_off[-1] + len(ys[-1]) + np.cumsum([0] + [len(v) for v in xs])[:-1]
        weights = np.concatenate(ys + xs)
        weight_y = np.repeat(y_off, cols)
        weight_x = np.tile(x_off, rows)
        return weights, weight_y.astype(np.int64), weight_x.astype(np.int64)
    flat = boxes.reshape(-1, 4)
    lengths = np.unique(np.concatenate([flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]]))
    offsets = np.cumsum(np.append(0, lengths))
    weights = np.concatenate([window_1d(window, n) for n in lengths])
    lookup = dict(zip(lengths.tolist(), offsets[:-1].tolist()))
    weight_y = np.array([lookup[n] for n in (flat[:, 2] - flat[:, 0]).tolist()], dtype=np.int64)
    weight_x = np.array([lookup[n] for n in (flat[:, 3] - flat[:, 1]).tolist()], dtype=np.int64)
    return weights, weight_y, weight_x


def _check_weight_size(boxes, normalised):
    """Refuse tiles whose 1-D weight vectors would not fit in memory, before computing them."""
    heights, widths = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    if normalised:
        count = int(heights[:, 0].sum()) + int(widths[0].sum())
    else:
        count = sum(np.unique(np.concatenate([heights.ravel(), widths.ravel()])).tolist())
    if count > MAX_WEIGHTS:
        raise ValueError(f"tiles of up to {int(heights.max())} x {int(widths.max())} pixels on a grid of "
                         f"{boxes.shape[0]} x {boxes.shape[1]} need {count} window weights; a plan holds at "
                         f"most {MAX_WEIGHTS} (8 bytes each): use smaller tiles")


def _normalised_axis(starts, ends, window):
    """Per grid row (or column): its taper divided by the sum of all tapers covering each pixel."""
    origin = int(starts.min())  # an area's window may sit far from the image origin
    starts, ends = (starts - origin).tolist(), (ends - origin).tolist()
    tapers = [window_1d(window, e - s) for s, e in zip(starts, ends)]
    total = np.zeros(max(ends))
    for s, e, taper in zip(starts, ends, tapers):
        total[s:e] += taper
    return [taper / total[s:e] for s, e, taper in zip(starts, ends, tapers)]
