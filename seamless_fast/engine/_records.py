"""The per-step records a push reads: what the plan's step table says, as Python tuples made many at once."""

import itertools

import numpy as np

from ..plan import STEP_COLUMNS

# Steps whose Python records (see `_step_records`) are made at once: few enough for flat memory in any plan.
RECORDS_AT_ONCE = 256

_COL = {name: n for n, name in enumerate(STEP_COLUMNS)}


def _step_records(plan, k, n, layout=None):
    """What a push reads for steps [k, k + n), as Python tuples made with numpy for many steps at once.

    Each is ``(h, w, cell, cell's grid index, cell's image box, tile shape, cell shape, cell planes)``.
    The last three are None unless `layout`, ``(ndim, channels first, channels, group, fresh)``, is
    given: then the tile shape a push expects, and, when `fresh` (cells are new arrays of values), the
    shape of the cell's array and of its planes ``(P, h, w * group)`` for the kernels (None where the
    two are the same).
    """
    steps = plan.steps[k:k + n]
    ylo = steps[:, _COL["y0"]] + steps[:, _COL["cy0"]]
    xlo = steps[:, _COL["x0"]] + plan.stripes[steps[:, _COL["stripe"]], 0] + steps[:, _COL["cx0"]]
    cell_h = steps[:, _COL["cy1"]] - steps[:, _COL["cy0"]]
    cell_w = steps[:, _COL["cx1"]] - steps[:, _COL["cx0"]]
    h, w = steps[:, _COL["h"]], steps[:, _COL["w"]]
    if plan.traverse == "columns":  # the steps are in the transposed frame: back to image coordinates
        ylo, xlo, cell_h, cell_w, h, w = xlo, ylo, cell_w, cell_h, w, h
    cell = steps[:, _COL["cell"]]
    i, j = np.divmod(cell, plan.grid_shape[1])
    h, w = h.tolist(), w.tolist()
    boxes = zip(ylo.tolist(), xlo.tolist(), (ylo + cell_h).tolist(), (xlo + cell_w).tolist())
    tile_shape = cell_shape = plane_shape = itertools.repeat(None)
    if layout is not None:
        ndim, chw, c, group, fresh = layout
        tile_shape = _shapes(h, w, ndim, chw, c)
        if fresh:
            ch, cw = cell_h.tolist(), cell_w.tolist()
            cell_shape = _shapes(ch, cw, ndim, chw, c)
            if not chw and plan.traverse == "rows":
                plane_shape = zip(itertools.repeat(1), ch, (cell_w * group).tolist())
    return list(zip(h, w, cell.tolist(), zip(i.tolist(), j.tolist()), boxes, tile_shape, cell_shape, plane_shape))


def _shapes(h, w, ndim, chw, c):
    """Array shapes of the given heights and widths: (h, w), (c, h, w) or (h, w, c)."""
    if ndim == 2:
        return zip(h, w)
    return zip(itertools.repeat(c), h, w) if chw else zip(h, w, itertools.repeat(c))
