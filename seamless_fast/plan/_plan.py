"""The `Plan`: a tiling compiled into flat integer arrays, and the figures `analyse_plan` reports."""

import weakref
from dataclasses import dataclass

import numpy as np

from ..geometry import MAX_COORDINATE
from ._input import read_windows
from ._schedule import STEP_COLUMNS

__all__ = ["MAX_GRID_TILES", "Plan", "PlanStats"]

MAX_GRID_TILES = 2**22
"""Most tiles a regular grid (or the window of it an area needs) may have: planning takes about 1 KiB
of memory and 3 microseconds per tile, so this bounds a plan at a few GiB and seconds."""

MAX_IMAGE_SIDE = MAX_COORDINATE

# What `get_plan_input_geoms` returns for each plan of at most INPUT_GEOMS_CACHED tiles, kept while the plan
# lives: the tiles' geometries in load order (an object array), as `plan_regular_grid` leaves them, then the
# (grid index, geometry) pairs themselves once asked for. Making 40000 pairs of a shapely geometry (which the
# garbage collector tracks) sets off a full collection, more than half the time of the first call; later
# calls copy the list. Shapely geometries are immutable, so the lists returned, and the grid
# `plan_regular_grid` returns, may share them; each geometry takes a few hundred bytes.
_INPUT_GEOMS = weakref.WeakKeyDictionary()
INPUT_GEOMS_CACHED = 1 << 16


def _frozen(array):
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False, repr=False)
class Plan:
    """A compiled tiling plan: everything a run needs, as flat arrays.

    Tiles and cells are addressed by their flat grid index ``t = i * cols + j``.
    Boxes are ``(ylo, xlo, yhi, xhi)`` rows of int64 with exclusive upper bounds.

    Attributes
    ----------
    image_size : tuple of int
        ``(height, width)`` of the image the plan covers.
    grid_shape : tuple of int
        ``(rows, cols)`` of the tile grid.
    tile_boxes : ndarray, shape (rows * cols, 4)
        The box of every grid tile.
    cell_boxes : ndarray, shape (rows * cols, 4)
        The output cell of every grid tile: disjoint boxes, each inside its
        tile; empty where a tile has no cell of its own.
    load_order : ndarray, shape (n_loads,)
        Flat indices of the tiles the run needs, in the order they must arrive.
    write_cells : ndarray, shape (n_writes,)
        Flat indices of the cells the run writes, in the order they are emitted.
    emit_after : ndarray, shape (n_writes,)
        For each written cell, the arrival step (position in `load_order`)
        after which no later tile touches it; non-decreasing.
    live_from : ndarray, shape (n_loads,)
        At arrival step k, the first image row any unemitted cell still needs;
        rows above it are released from the buffer. Non-decreasing.
    buffer_rows : int
        Rows of the blend buffer. With the ``"band"`` layout: the largest
        overlap between consecutive tile rows (`overlap`, more next to a
        flush row; at least 1); with ``"ring"``: the most rows live at once
        (about one tile height).
    buffer_cols : tuple of int
        ``(x0, x1)``: the columns the buffer spans.
    normalised : bool
        True when the weights below are already divided by the weight sum
        (rectilinear grid and separable window): the buffer then holds final
        values and no weight sum is accumulated.
    weights : ndarray of float64
        Flat storage of 1-D weight vectors.
    weight_y, weight_x : ndarray, shape (rows * cols,)
        Offset into `weights` of each tile's y and x vector (-1 with a 2-D window).
    window : str, callable or ndarray
        The window the plan blends with.
    steps : ndarray of int64, shape (n_loads, len(STEP_COLUMNS))
        What the kernels need at each arrival step, one row per tile, columns
        named in :data:`STEP_COLUMNS`: the tile's box relative to the buffer,
        the first row still needed, the first-touch rectangle (tile-relative
        rows >= ``fy`` and columns >= ``fx``, where no earlier tile reached),
        the tile-relative box of the cell it finishes (all zero and
        ``cell = -1`` for none), weight offsets, flat cell and tile indices,
        the stripe, the image rows that enter the buffer before the tile (and
        take the left seam's partial sums) and those that leave it after the
        tile (and give the right seam's partial sums; with the band layout,
        rows of the first and last tiles of a tile row in a stripe, see
        `seamless_fast.plan._schedule.band_seam_rows`). ``x0`` is relative to the
        stripe's first buffer column.
    stripes : ndarray, shape (n_stripes, 2)
        Image columns ``[x0, x1)`` each stripe's buffer spans; one stripe
        unless the plan was made with a `max_buffer_bytes` that one band of the
        output exceeds. Stripes are run one after the other.
    seams : ndarray, shape (n_stripes - 1, 2)
        Image columns ``[lo, hi)`` where stripe s and s + 1 overlap: their
        partial sums are handed from one stripe to the next (empty if equal).
    layout : str
        How the blend keeps partial sums. ``"band"`` (normalised plans: in
        one stripe, or in stripes when every grid tile is loaded and the band
        fits `max_buffer_bytes`): only what later tiles need, an overlap-high
        band across the widest stripe (`buffer_rows` rows) for the tiles'
        bottom overlaps and a small buffer, two tile heights by the widest
        right overlap (`right_buffer`), for the last tile's right overlap (see
        `seamless_fast.engine._band_kernels`); ``by`` and ``bx`` in `steps` are where
        a tile's bottom and right overlaps start. ``"ring"`` (the other plans
        in stripes, and grids that accumulate the weight sum): a ring buffer
        of `buffer_rows` rows, about one tile high, across the widest stripe.
    input_size : tuple of int
        ``(height, width)`` of the input image in input pixels (for
        :func:`plan_from_grid`, the grid's largest bounds); `image_size` when
        `output_scale` is 1.
    context : tuple of int
        ``(y, x)`` input pixels the model reads beyond each tile on every side.
    output_scale : tuple of int
        ``(y, x)`` input pixels per output pixel: everything above is in
        output pixels, and the model reads input windows `output_scale` times
        larger (see :meth:`read_boxes` and :mod:`seamless_fast.plan._input`).
    traverse : str
        ``"rows"``: tiles arrive row by row and the buffer spans the planned
        width. ``"columns"``: they arrive column by column and the buffer
        spans the planned height. Boxes, grid indices, `load_order`,
        `write_cells`, `weight_y` and `weight_x` are always in image
        coordinates; `steps` (but for its ``cell`` and ``tile`` columns),
        `live_from`, `buffer_rows`, `buffer_cols`, `stripes` and `seams` are in
        the traversal frame: with ``"columns"`` that is the transposed image,
        whose rows are image columns (so stripes are bands of image rows).
    """

    image_size: tuple
    grid_shape: tuple
    tile_boxes: np.ndarray
    cell_boxes: np.ndarray
    load_order: np.ndarray
    write_cells: np.ndarray
    emit_after: np.ndarray
    live_from: np.ndarray
    buffer_rows: int
    buffer_cols: tuple
    normalised: bool
    weights: np.ndarray
    weight_y: np.ndarray
    weight_x: np.ndarray
    window: object
    steps: np.ndarray
    stripes: np.ndarray
    seams: np.ndarray
    layout: str
    input_size: tuple = None
    context: tuple = (0, 0)
    output_scale: tuple = (1, 1)
    traverse: str = "rows"

    def __post_init__(self):
        if self.input_size is None:
            object.__setattr__(self, "input_size", tuple(self.image_size))

    def read_boxes(self):
        """The input window each tile's model reads, in load order: int64 ``(n_loads, 4)``, input pixels.

        A tile's box times `output_scale`, grown by `context` on every side;
        it may reach past the image border, where the reader pads. The tile
        boxes themselves without a context or an output scale.

        Examples
        --------
        >>> from seamless_fast import plan_regular_grid
        >>> plan, _ = plan_regular_grid((100, 100), 64, 16, context=8, output_scale=2)
        >>> plan.tile_boxes[plan.load_order[0]].tolist(), plan.read_boxes()[0].tolist()
        ([0, 0, 32, 32], [-8, -8, 72, 72])
        """
        return read_windows(self.tile_boxes[self.load_order], self.output_scale, self.context)

    @property
    def right_buffer(self):
        """``(rows, columns)`` of one half of the right-overlap buffer of the band layout ((0, 0) for ``"ring"``):
        the tallest tile, and the widest right overlap (at least 1)."""
        return _right_buffer(self.steps) if self.layout == "band" else (0, 0)

    @property
    def n_loads(self):
        """Number of tiles the run consumes."""
        return len(self.load_order)

    @property
    def n_writes(self):
        """Number of output cells the run emits."""
        return len(self.write_cells)

    def grid_index(self, flat):
        """The (row, col) grid index of a flat tile or cell index."""
        i, j = divmod(int(flat), self.grid_shape[1])
        return i, j

    def __repr__(self):
        return (f"Plan(image_size={self.image_size}, grid_shape={self.grid_shape}, "
                f"n_loads={self.n_loads}, n_writes={self.n_writes}, buffer_rows={self.buffer_rows}, "
                f"buffer_cols={self.buffer_cols}, normalised={self.normalised}, layout={self.layout!r}, "
                f"traverse={self.traverse!r}"
                + (f", input_size={self.input_size}, context={self.context}, output_scale={self.output_scale}"
                   if self.context != (0, 0) or self.output_scale != (1, 1) else "") + ")")


class PlanStats(tuple):
    """What :func:`analyse_plan` returns: a 3-tuple like the seed's, plus named fields.

    Unpacks as ``(max_tiles_held, tiles_loaded, cells_written)``;
    ``buffer_bytes`` is the size of the blend buffer.
    """

    def __new__(cls, max_tiles_held, tiles_loaded, cells_written, buffer_bytes):
        self = super().__new__(cls, (max_tiles_held, tiles_loaded, cells_written))
        self.buffer_bytes = buffer_bytes
        return self

    max_tiles_held = property(lambda self: self[0], doc="Blend buffer size in tile-equivalents (pixels).")
    tiles_loaded = property(lambda self: self[1], doc="Tiles the run consumes, each once.")
    cells_written = property(lambda self: self[2], doc="Output cells the run emits.")

    def __repr__(self):
        return (f"PlanStats(max_tiles_held={self[0]}, tiles_loaded={self[1]}, cells_written={self[2]}, "
                f"buffer_bytes={self.buffer_bytes})")



def _right_buffer(steps):
    """(rows, columns) of one half of the right-overlap buffer: the tallest tile, the widest right overlap."""
    col = {name: n for n, name in enumerate(STEP_COLUMNS)}
    return int(steps[:, col["h"]].max()), int(max(1, (steps[:, col["w"]] - steps[:, col["bx"]]).max()))

