"""Partitioned runs of a volume: a :class:`~seamless_fast.plan.VolumePlan` cut into slabs of whole tile layers.

A volume's value at z is the sum, over the tile layers k that cover z, of
``wz_k(z) * L_k(z)``: layer k's own (y, x)-normalised 2-D blend weighted by
the plan's normalised z taper (see :mod:`seamless_fast.engine._volume`). A
part is a slab of layers ``[a, b)`` and runs an unmodified
:class:`~seamless_fast.engine._volume.VolumeBlender` on :func:`volume_sub_plan`:
the same tiles, the whole plan's z weights, its last layer's cells extended to
the layer's end. It emits three kinds of voxels:

- the *crop*, z below the end of the previous part's last layer: there the
  part holds its first layer's term alone (nothing before it in its slab);
- the *lead*, z from the start of the next part's first layer: its last
  layer's term alone;
- the rest, final: equal to a single-process run's voxels.

A cut before layer b is allowed only where the seam holds exactly these two
terms: no layer before b - 1 reaches past the start of layer b, and layer
b - 1 ends before layer b + 1 starts. The single-process kernel then computes
``w_b * L_b + (w_{b-1} * L_{b-1})`` there, the same two rounded operands the
merge adds (crop + lead, in the accumulator dtype), so the merged volume
equals a single-process run bit for bit, and so do its arg-max labels.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from .._validate import as_positive_int
from ..plan._plan import _frozen
from ..plan._volume import VolumePlan, _compile

__all__ = ["VolumePartition", "partition_volume", "volume_sub_plan", "allowed_cuts", "split_cell", "part_pieces",
           "merge_seam"]


@dataclass(frozen=True, eq=False, repr=False)
class VolumePartition:
    """A volume plan cut into slabs of whole tile layers, with the z-ranges each part finishes and hands over.

    Attributes
    ----------
    plan : VolumePlan
    layer_bounds : ndarray, shape (parts + 1,)
        Part q blends tile layers ``[layer_bounds[q], layer_bounds[q + 1])``.
    step_bounds : ndarray, shape (parts + 1,)
        The same as load steps of the whole plan.
    final, crop, lead : ndarray, shape (parts, 2)
        z-ranges ``[lo, hi)`` part q writes as final voxels, hands over as its
        first layer's term (crop) and as its last layer's term (lead); empty
        as ``[0, 0)``. The lead of part q and the crop of part q + 1 are the
        same seam.
    """

    plan: VolumePlan
    layer_bounds: np.ndarray
    step_bounds: np.ndarray
    final: np.ndarray
    crop: np.ndarray
    lead: np.ndarray

    @property
    def parts(self):
        """Number of parts."""
        return len(self.layer_bounds) - 1

    def steps_of(self, part):
        """``range`` of the load steps part `part` blends."""
        return range(int(self.step_bounds[part]), int(self.step_bounds[part + 1]))

    def part_seam_bytes(self, channels, itemsize=4):
        """Bytes each part hands over (its crop and lead voxels): int64 array of shape (parts,)."""
        _, h, w = self.plan.image_size
        depth = np.diff(self.crop, axis=1)[:, 0] + np.diff(self.lead, axis=1)[:, 0]
        return depth.astype(np.int64) * h * w * channels * itemsize

    def seam_bytes(self, channels, itemsize=4):
        """Bytes handed over at seams (every part's crop and lead) for `channels` float channels."""
        return int(self.part_seam_bytes(channels, itemsize).sum())

    def __repr__(self):
        return (f"VolumePartition(parts={self.parts}, layers={self.layer_bounds.tolist()}, "
                f"final={self.final.tolist()}, seams={self.lead[:-1].tolist()})")


def allowed_cuts(plan):
    """Tile layers b (1 to nz - 1) before which a volume plan may be cut.

    A cut before b is exact when no layer before b - 1 reaches past the start
    of layer b and layer b - 1 ends where layer b + 1 starts or earlier: the
    seam then holds the terms of layers b - 1 and b only. With the seed's grid
    rule and an overlap below half the tile, every layer is allowed.

    Examples
    --------
    >>> from seamless_fast import plan_regular_grid
    >>> allowed_cuts(plan_regular_grid((100, 20, 20), 32, 8)[0]).tolist()
    [1, 2, 3]
    >>> allowed_cuts(plan_regular_grid((100, 20, 20), 32, 20)[0]).tolist()
    []
    """
    zlo, zhi = _layer_bounds(plan)
    nz = len(zlo)
    before = np.maximum.accumulate(zhi)  # before[j]: the furthest end of layers 0..j
    ok = [b for b in range(1, nz)
          if (b < 2 or before[b - 2] <= zlo[b]) and zhi[b - 1] <= (zlo[b + 1] if b + 1 < nz else plan.image_size[0])]
    return np.array(ok, np.int64)


def _layer_bounds(plan):
    per_layer = plan.grid_shape[1] * plan.grid_shape[2]
    boxes = plan.tile_boxes[::per_layer]
    return boxes[:, 0].copy(), boxes[:, 3].copy()


def partition_volume(plan, parts):
    """Cut a volume plan into `parts` slabs of whole tile layers with about equal numbers of tiles.

    :func:`~seamless_fast.scale.partition_plan` calls this for a :class:`~seamless_fast.plan.VolumePlan`.

    Parameters
    ----------
    plan : VolumePlan
        Without a mask, its cells covering the whole volume.
    parts : int
        At most one more than the number of :func:`allowed_cuts`.

    Returns
    -------
    VolumePartition

    Examples
    --------
    >>> from seamless_fast import plan_regular_grid
    >>> plan, _ = plan_regular_grid((256, 384, 384), 128, 32)
    >>> partition = partition_volume(plan, 2)
    >>> partition.layer_bounds.tolist(), partition.final.tolist(), partition.lead.tolist()
    ([0, 1, 3], [[0, 96], [128, 256]], [[96, 128], [0, 0]])
    """
    if not isinstance(plan, VolumePlan):
        raise ValueError(f"plan must be a VolumePlan; got {type(plan).__name__}")
    if plan.selected is not None:
        raise ValueError("this volume plan has a mask; a partitioned run goes over the whole volume "
                         "(plan it without mask=)")
    covered = int((plan.cell_boxes[:, 3:] - plan.cell_boxes[:, :3]).clip(0).prod(axis=1).sum())
    if covered != int(np.prod(plan.image_size)):
        raise ValueError("this volume plan's cells leave voxels uncovered; a partitioned run needs a grid "
                         "that covers the whole volume")
    parts = as_positive_int(parts, "parts")
    cuts = allowed_cuts(plan)
    if parts > len(cuts) + 1:
        raise ValueError(f"parts={parts} is more than the {len(cuts) + 1} slabs of tile layers this volume plan "
                         "can be cut into (a cut goes only where at most two layers overlap: overlap below "
                         "half the tile)")
    from .partition import _balanced_cuts

    per_layer = plan.grid_shape[1] * plan.grid_shape[2]
    starts = np.r_[0, cuts] * per_layer
    step_bounds = np.r_[starts[_balanced_cuts(starts, plan.n_loads, parts)], plan.n_loads].astype(np.int64)
    layer_bounds = step_bounds // per_layer
    zlo, zhi = _layer_bounds(plan)
    seam = np.array([[zlo[b], zhi[b - 1]] for b in layer_bounds[1:-1].tolist()], np.int64).reshape(-1, 2)
    seam[seam[:, 1] <= seam[:, 0]] = 0
    empty = np.zeros((1, 2), np.int64)
    crop, lead = np.r_[empty, seam], np.r_[seam, empty]
    inner = layer_bounds[1:-1]
    final = np.stack([np.maximum(zlo[layer_bounds[:-1]], np.r_[0, zhi[inner - 1]]),
                      np.r_[zlo[inner], plan.image_size[0]]], axis=1)
    final[final[:, 1] <= final[:, 0]] = 0
    return VolumePartition(plan=plan, layer_bounds=_frozen(layer_bounds), step_bounds=_frozen(step_bounds),
                           final=_frozen(final), crop=_frozen(crop), lead=_frozen(lead))


def volume_sub_plan(partition, part):
    """The plan a :class:`~seamless_fast.engine._volume.VolumeBlender` runs for part `part`.

    Its tile layers at their own z, the whole plan's z weights (not
    normalised again), and the last layer's cells reaching to its end. Cells
    of the first layer start at the layer's start, the crop included.

    Examples
    --------
    >>> from seamless_fast import plan_regular_grid
    >>> plan, _ = plan_regular_grid((256, 64, 64), 128, 32)
    >>> sub = volume_sub_plan(partition_volume(plan, 2), 0)
    >>> sub.grid_shape, sub.cell_boxes[-1, [0, 3]].tolist()  # the whole plan's cell stops at 96
    ((1, 1, 1), [0, 128])
    """
    plan = partition.plan
    a, b = (int(v) for v in partition.layer_bounds[part:part + 2])
    _, ny, nx = plan.grid_shape
    boxes = plan.tile_boxes.reshape(-1, ny, nx, 6)[a:b]
    sub = _compile(boxes, plan.image_size, plan.window, plan.plane_plan, plan.context)
    first, end = int(plan.z_offsets[a]), int(plan.z_offsets[b]) if b < len(plan.z_offsets) else len(plan.weight_z)
    return dataclasses.replace(sub, weight_z=_frozen(plan.weight_z[first:end].copy()),
                               z_offsets=_frozen(plan.z_offsets[a:b] - first))


def split_cell(partition, part, box):
    """The pieces of a cell part `part` emits: ``[(kind, zlo, zhi)]`` with kind "final", "crop" or "lead".

    Examples
    --------
    >>> from seamless_fast import plan_regular_grid
    >>> partition = partition_volume(plan_regular_grid((256, 64, 64), 128, 32)[0], 3)
    >>> split_cell(partition, 1, (96, 0, 0, 224, 64, 64))
    [('crop', 96, 128), ('lead', 128, 224)]
    """
    zlo, zhi = int(box[0]), int(box[3])
    pieces = []
    for kind, (lo, hi) in (("crop", partition.crop[part]), ("final", partition.final[part]),
                           ("lead", partition.lead[part])):
        lo, hi = max(int(lo), zlo), min(int(hi), zhi)
        if hi > lo:
            pieces.append((kind, lo, hi))
    return pieces


def part_pieces(partition, part, cells, *, labels, channel_first):
    """Sort the cells a part's blender emitted: yields ``(kind, box, data)``, data channel-last.

    `kind` is "final" (arg-max labels of the values with `labels`, as the
    kernels take them: the first largest or the first NaN), "crop" or "lead"
    (values in the accumulator dtype, for :func:`merge_seam`).

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import plan_regular_grid
    >>> from seamless_fast.engine._volume import VolumeCell
    >>> partition = partition_volume(plan_regular_grid((40, 8, 8), 24, 8)[0], 2)
    >>> cell = VolumeCell((0, 0, 0), (0, 0, 0, 24, 8, 8), np.ones((24, 8, 8, 2), np.float32))
    >>> [(kind, box[0], box[3], data.dtype.name) for kind, box, data in
    ...  part_pieces(partition, 0, [cell], labels=True, channel_first=False)]
    [('final', 0, 16, 'uint8'), ('lead', 16, 24, 'float32')]
    """
    from ..dtypes import label_dtype

    for cell in cells:
        data = np.moveaxis(cell.data, 0, -1) if channel_first else cell.data
        z0, y0, x0, _, y1, x1 = (int(v) for v in cell.box)
        for kind, lo, hi in split_cell(partition, part, cell.box):
            piece = data[lo - z0:hi - z0]
            if kind == "final" and labels:
                piece = piece.argmax(axis=-1).astype(label_dtype(piece.shape[-1]))
            yield kind, (lo, y0, x0, hi, y1, x1), piece


def merge_seam(crop, lead, labels):
    """A seam's final voxels: the next part's crop plus the part's lead (channel-last), or their arg-max labels.

    The two operands the single-process kernel adds there, so the sum is the same bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> crop, lead = np.full((1, 1, 1, 2), 0.25, np.float32), np.array([[[[0.5, 0.0]]]], np.float32)
    >>> merge_seam(crop, lead, False).ravel().tolist(), merge_seam(crop, lead, True).tolist()
    ([0.75, 0.25], [[[0]]])
    """
    from ..dtypes import label_dtype

    values = crop + lead
    return values.argmax(axis=-1).astype(label_dtype(values.shape[-1])) if labels else values
