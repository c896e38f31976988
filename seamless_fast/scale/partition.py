"""Partitioned runs: a plan cut into bands of tile rows that run apart and merge exactly.

Rows here are those of the plan's traversal frame: for a plan that walks
tile columns (``traverse="columns"``) they are image columns, parts are bands
of tile columns, and crops, lead rows and what :func:`merge_lead_rows`
returns are transposed (see :mod:`seamless_fast.plan._traverse`).

A part computes every tile of its band once and sorts the image rows it
reaches into three kinds:

- *own* rows, reached by no other part: final, written by the part;
- *lead* rows, reached first by this part and later by others: the part hands
  over its partial sums there (the blend buffer's rows after its last tile);
- *seam* rows of its tiles, rows an earlier part reached first: the part hands
  over the top rows of those tiles ("crops"), as the blend kernel sees them.

The merge starts from a part's lead rows and blends the later parts' crops
into them, in load order, with the same kernel and the same per-step integers
as a single-process run. Every addition then happens in the same order on
the same numbers, so the merged rows equal the single-process rows bit for
bit (not merely to a tolerance), and argmax labels are identical.
Adding two partial sums instead would round differently.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from .._validate import as_positive_int
from ..engine import _kernels
from ..engine._transpose import frame_tile
from ..engine.blender import Blender
from ..plan import STEP_COLUMNS, Plan
from ..plan._volume import VolumePlan
from ._volume_partition import partition_volume

__all__ = ["Partition", "partition_plan", "part_plan", "PartBlender", "merge_lead_rows"]

_COL = {name: n for n, name in enumerate(STEP_COLUMNS)}
_CELL_BOX = [_COL[name] for name in ("cy0", "cy1", "cx0", "cx1")]


@dataclass(frozen=True, eq=False, repr=False)
class Partition:
    """A plan cut into bands of tile rows, with the rows each band owns and shares.

    Rows and tile rows are those of the traversal frame: image columns and
    tile columns for a plan that walks columns.

    Attributes
    ----------
    plan : Plan
    step_bounds : ndarray, shape (parts + 1,)
        Part q blends load steps ``[step_bounds[q], step_bounds[q + 1])``.
    own : ndarray, shape (parts, 2)
        Image rows ``[lo, hi)`` only part q reaches (empty: ``lo >= hi``).
    lead : ndarray, shape (parts, 2)
        Rows part q reaches first and later parts reach too; its partial sums there.
    seam_to : ndarray, shape (parts,)
        Rows above this were reached by an earlier part: part q's tiles hand
        over their rows above it (0 for the first part).
    crop_rows : ndarray, shape (n_loads,)
        For each load step, how many top rows of its tile go to the seam.
    """

    plan: Plan
    step_bounds: np.ndarray
    own: np.ndarray
    lead: np.ndarray
    seam_to: np.ndarray
    crop_rows: np.ndarray

    @property
    def parts(self):
        """Number of parts."""
        return len(self.step_bounds) - 1

    def steps_of(self, part):
        """``range`` of the load steps part `part` blends."""
        return range(int(self.step_bounds[part]), int(self.step_bounds[part + 1]))

    def crop_steps(self, part):
        """Load steps of part `part` whose tiles hand over seam rows, in load order."""
        steps = np.arange(self.step_bounds[part], self.step_bounds[part + 1])
        return steps[self.crop_rows[steps] > 0]

    def seam_bytes(self, channels, itemsize=4):
        """Bytes handed over at seams (lead rows and crops) for `channels` float channels."""
        width = self.plan.buffer_cols[1] - self.plan.buffer_cols[0]
        lead_rows = int(np.maximum(self.lead[:, 1] - self.lead[:, 0], 0).sum())
        tiles = _frame_tiles(self.plan)
        crop_pixels = int((self.crop_rows * (tiles[:, 3] - tiles[:, 1])).sum())
        return (lead_rows * width + crop_pixels) * channels * itemsize

    def __repr__(self):
        return (f"Partition(parts={self.parts}, steps={self.step_bounds.tolist()}, "
                f"own={self.own.tolist()}, lead={self.lead.tolist()})")


def partition_plan(plan, parts):
    """Cut `plan` into `parts` bands of whole tile rows with about equal numbers of tiles.

    Parameters
    ----------
    plan : Plan or VolumePlan
        A plan on a rectilinear grid with a separable window, in one stripe:
        what :func:`~seamless_fast.plan_regular_grid` makes with a built-in
        window and no `max_buffer_bytes`. A plan walking columns is cut
        into bands of tile columns. A volume plan is cut into slabs of tile
        layers (see :func:`~seamless_fast.scale._volume_partition.partition_volume`).
    parts : int
        How many parts; at most the number of tile rows the plan loads.

    Returns
    -------
    Partition, or VolumePartition for a volume plan

    Examples
    --------
    >>> from seamless_fast import plan_regular_grid
    >>> plan, _ = plan_regular_grid((1000, 777), 128, 32)
    >>> partition = partition_plan(plan, 3)
    >>> partition.parts, partition.step_bounds.tolist()
    (3, [0, 32, 56, 88])
    >>> partition.own.tolist()
    [[0, 384], [416, 672], [704, 1000]]
    """
    if isinstance(plan, VolumePlan):
        return partition_volume(plan, parts)
    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be a Plan from plan_regular_grid or plan_from_grid; got {type(plan).__name__}")
    if not plan.normalised:
        raise ValueError("this plan cannot be partitioned: partitioned runs need a rectilinear grid and a "
                         "separable window (plan_regular_grid with 'pyramid', 'hann', 'gaussian' or 'constant')")
    if len(plan.stripes) > 1:
        raise ValueError(f"this plan runs in {len(plan.stripes)} stripes (max_buffer_bytes); "
                         "partition a plan made without max_buffer_bytes")
    parts = as_positive_int(parts, "parts")
    columns = plan.traverse == "columns"
    lines = plan.load_order % plan.grid_shape[1] if columns else plan.load_order // plan.grid_shape[1]
    row_starts = np.flatnonzero(np.r_[True, lines[1:] != lines[:-1]])
    if parts > len(row_starts):
        raise ValueError(f"parts={parts} is more than the {len(row_starts)} tile {'columns' if columns else 'rows'} "
                         "this plan loads")
    step_bounds = np.r_[row_starts[_balanced_cuts(row_starts, plan.n_loads, parts)], plan.n_loads]
    tiles = _frame_tiles(plan)
    reach = np.array([tiles[a:b, 2].max() for a, b in zip(step_bounds[:-1], step_bounds[1:])])
    start = np.array([tiles[a:b, 0].min() for a, b in zip(step_bounds[:-1], step_bounds[1:])])
    seam_to = np.r_[0, np.maximum.accumulate(reach)[:-1]]
    later_start = np.r_[np.minimum.accumulate(start[::-1])[::-1][1:], plan.image_size[1 if columns else 0]]
    own = np.stack([np.maximum(start, seam_to), np.minimum(reach, later_start)], axis=1)
    lead = np.stack([np.maximum(later_start, seam_to), reach], axis=1)
    lead[lead[:, 1] <= lead[:, 0]] = 0
    own[own[:, 1] <= own[:, 0]] = 0
    part_of_step = np.repeat(np.arange(parts), np.diff(step_bounds))
    crop_rows = np.clip(seam_to[part_of_step] - tiles[:, 0], 0, tiles[:, 2] - tiles[:, 0])
    # The lead rows are read from the blend buffer after the part's last tile: they must all still be in it.
    if (lead[:, 1] - lead[:, 0] > plan.buffer_rows).any():
        raise ValueError(f"partitioning into {parts} parts needs more lead rows than the blend buffer's "
                         f"{plan.buffer_rows}; use fewer parts")
    return Partition(plan=plan, step_bounds=step_bounds, own=own, lead=lead, seam_to=seam_to, crop_rows=crop_rows)


def _frame_tiles(plan):
    """Boxes of the tiles in load order, in the plan's traversal frame (y and x swapped when it walks columns)."""
    tiles = plan.tile_boxes[plan.load_order]
    return tiles[:, [1, 0, 3, 2]] if plan.traverse == "columns" else tiles


def _balanced_cuts(row_starts, n_loads, parts):
    """Indices into `row_starts` of each part's first tile row, so that parts have about equal tiles."""
    targets = np.arange(parts) * n_loads / parts
    cuts = np.abs(row_starts[None, :] - targets[:, None]).argmin(axis=1)
    cuts[0] = 0
    for q in range(1, parts):  # strictly increasing, with a row left for every later part
        cuts[q] = min(max(cuts[q], cuts[q - 1] + 1), len(row_starts) - (parts - q))
    return cuts


def part_plan(partition, part):
    """The plan a :class:`Blender` runs for one part: its steps, and its cells cut to rows it may finish.

    Cell rows above ``partition.seam_to[part]`` are left to the merge, which
    finishes them from the earlier part's partial sums.
    """
    plan = partition.plan
    a, b = int(partition.step_bounds[part]), int(partition.step_bounds[part + 1])
    steps = plan.steps[a:b].copy()
    has_cell = steps[:, _COL["cell"]] >= 0
    top = np.maximum(steps[:, _COL["cy0"]], partition.seam_to[part] - steps[:, _COL["y0"]])
    steps[has_cell, _COL["cy0"]] = top[has_cell]
    gone = has_cell & (steps[:, _COL["cy0"]] >= steps[:, _COL["cy1"]])
    steps[gone, _COL["cell"]] = -1
    steps[np.ix_(gone, _CELL_BOX)] = 0
    kept = np.flatnonzero(steps[:, _COL["cell"]] >= 0)
    write_cells = steps[kept, _COL["cell"]]
    cell_boxes = plan.cell_boxes.copy()
    cell_boxes[write_cells, 1 if plan.traverse == "columns" else 0] = steps[kept, _COL["y0"]] + steps[kept, _COL["cy0"]]
    return dataclasses.replace(plan, load_order=plan.load_order[a:b], steps=_frozen(steps),
                               write_cells=_frozen(write_cells), emit_after=_frozen(kept),
                               live_from=plan.live_from[a:b], cell_boxes=_frozen(cell_boxes))


def _frozen(array):
    array.flags.writeable = False
    return array


class PartBlender(Blender):
    """A :class:`Blender` for one part: hands over its seam crops as tiles arrive, and its lead rows at the end.

    Parameters
    ----------
    partition : Partition
    part : int
    on_crop : callable
        ``on_crop(step, planes)`` for every tile with seam rows: its load step
        in the whole plan and its top rows as the kernel sees them, planes
        ``(P, rows, elements)`` in the accumulator dtype.
    on_lead : callable
        ``on_lead(acc)`` once every tile was pushed, when the part has lead
        rows: the partial sums of those rows, planes ``(P, rows, elements)``.
    **options
        As for :class:`Blender`.
    """

    def __init__(self, partition, part, *, on_crop, on_lead, **options):
        super().__init__(part_plan(partition, part), **options)
        self.partition, self.part = partition, part
        self._first_step = int(partition.step_bounds[part])
        self._on_crop, self._on_lead = on_crop, on_lead

    def push(self, tile):
        rows = int(self.partition.crop_rows[self._first_step + self.step]) if self.step < self.plan.n_loads else 0
        if rows:
            h, w = self.next_tile_shape
            planes, _, _ = self._checked_tile(tile, h, w)
            if self.plan.traverse == "columns":  # the kernels' frame: the tile's left columns are the seam's
                planes = frame_tile(planes, h, w, planes.shape[2] // w)
            self._on_crop(self._first_step + self.step, np.array(planes[:, :rows], order="C"))
        cells = super().push(tile)
        if self.done:
            self._hand_over_lead()
        return cells

    def _hand_over_lead(self):
        lo, hi = self.partition.lead[self.part].tolist()
        if hi > lo:
            self._on_lead(self._acc[:, np.arange(lo, hi) % self._acc.shape[1]])


def merge_lead_rows(partition, part, lead, read_crop, group):
    """Finish the lead rows of `part`: its partial sums plus every later part's crops there, in load order.

    Parameters
    ----------
    partition : Partition
    part : int
    lead : ndarray
        Planes ``(P, rows, elements)`` the part handed over (see :class:`PartBlender`).
    read_crop : callable
        ``read_crop(step)`` returns the crop planes handed over for that load step.
    group : int
        Elements per pixel in a plane row: C for (H, W, C) tiles, else 1.

    Returns
    -------
    ndarray
        Planes ``(P, rows, elements)`` over the plan's buffer columns: the
        final values of every written cell in those rows, zero elsewhere.
    """
    plan = partition.plan
    lo, hi = partition.lead[part].tolist()
    acc = np.array(lead, copy=True)
    out = np.zeros_like(acc)
    weights_y = plan.weights.astype(acc.dtype)
    weights_x = np.repeat(weights_y, group)
    later = np.concatenate([partition.crop_steps(q) for q in range(part + 1, partition.parts)] + [[]])
    for k in later.astype(np.int64).tolist():
        step, rows = _crop_step(plan.steps[k], int(partition.crop_rows[k]), lo, hi)
        if step is None:
            continue
        crop = np.ascontiguousarray(read_crop(k)[:, rows])
        _kernels.blend_values(acc, crop, weights_y, weights_x, step, 0, group, _cell_view(out, step[0], group))
    return out


def _crop_step(row, crop_rows, lo, hi):
    """The step row that blends tile rows [c0, c1) (its crop, cut to image rows [lo, hi)) into a buffer of those rows.

    Returns (steps array of one row, slice of the crop's rows), or (None, None) when they miss [lo, hi).
    """
    y0 = int(row[_COL["y0"]])
    c0, c1 = max(lo - y0, 0), min(hi - y0, crop_rows)
    if c1 <= c0:
        return None, None
    step = row.copy()
    size = c1 - c0
    step[_COL["y0"]] = y0 + c0 - lo
    step[_COL["h"]] = size
    for name in ("first", "fy", "cy0", "cy1"):
        step[_COL[name]] = np.clip(row[_COL[name]] - c0, 0, size)
    step[_COL["wy"]] = row[_COL["wy"]] + c0
    if row[_COL["cell"]] < 0 or step[_COL["cy1"]] <= step[_COL["cy0"]]:
        step[_COL["cell"]] = -1
        step[_CELL_BOX] = 0
    return step[None], slice(c0, c1)


def _cell_view(out, step, group):
    """Where the kernel writes the cell a step finishes, as planes of `out`; a scrap array when none."""
    if step[_COL["cell"]] < 0:
        return np.empty((out.shape[0], 1, 1), out.dtype)
    y0, x0 = step[_COL["y0"]], step[_COL["x0"]]
    cy0, cy1, cx0, cx1 = step[_CELL_BOX].tolist()
    return out[:, y0 + cy0:y0 + cy1, (x0 + cx0) * group:(x0 + cx1) * group]
