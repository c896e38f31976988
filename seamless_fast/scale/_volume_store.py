"""The volume side of a :class:`~seamless_fast.scale.store.PartStore`: a part's voxels and seams, and the merge.

A volume part (a slab of tile layers, see :mod:`seamless_fast.scale._volume_partition`)
writes into ``DIR/part{q}/``, channel-last:

- ``voxels``: its final voxels, z from ``partition.final[q][0]`` (arg-max
  labels for a labels job, else values in the accumulator dtype);
- ``crop`` and ``lead``: its first and last layer's terms at the seams, values
  in the accumulator dtype, z from ``partition.crop[q][0]`` and ``lead[q][0]``.

The merge reads them in z order, adds each seam's crop and lead, and writes
through :func:`~seamless_fast.io.volume_writer`. The completion record,
its checks and the rerun of a part killed midway are the 2-D store's
(:mod:`seamless_fast.scale._manifest`).
"""

import os

import numpy as np

from .._files import check_output_path
from ..dtypes import output_dtype, to_output_dtype
from . import _manifest
from ._volume_partition import merge_seam, part_pieces, volume_sub_plan

VOLUME_OUTPUTS = (".zarr", ".nii", ".nii.gz", ".tif", ".tiff")
_Z_CHUNK, _MAX_SIDE = 16, 64


def chunks_of(shape, chunk):
    """Chunks of a stored (d, H, W[, C]) array: 16 deep, `chunk` (at most 64) on y and x, every channel.

    >>> chunks_of((32, 384, 384, 16), 512), chunks_of((5, 40, 30), 512)
    ((16, 64, 64, 16), (5, 40, 30))
    """
    return (min(_Z_CHUNK, shape[0]), min(chunk, _MAX_SIDE, shape[1]), min(chunk, _MAX_SIDE, shape[2])) + \
        tuple(shape[3:])


def volume_arrays(partition, part, result, labels, chunk):
    """{name: (shape, chunks, dtype or None)} a volume part with `result` must have written (see _manifest)."""
    _, height, width = partition.plan.image_size
    channels, dtype = int(result["channels"]), np.dtype(result["dtype"]).name
    out = {}
    for name, (lo, hi), kind in (("voxels", partition.final[part], None if labels else dtype),
                                 ("crop", partition.crop[part], dtype), ("lead", partition.lead[part], dtype)):
        if hi > lo:
            extra = () if labels and name == "voxels" else (channels,)
            shape = (int(hi - lo), height, width) + extra
            out[name] = (shape, chunks_of(shape, chunk), kind)
    return out


def source_metadata(reader):
    """What the merge carries to a volume output from the source's reader: spacing, unit and (z, y, x) affine.

    >>> import numpy as np
    >>> from seamless_fast.io import VolumeReader
    >>> with VolumeReader(np.zeros((2, 3, 4), np.float32)) as reader:
    ...     source_metadata(reader)
    {'spacing': None, 'unit': None, 'affine': None}
    """
    spacing, affine = getattr(reader, "spacing", None), getattr(reader, "affine", None)
    return {"spacing": None if spacing is None else [float(v) for v in spacing],
            "unit": getattr(reader, "unit", None),
            "affine": None if affine is None else np.asarray(affine, np.float64).tolist()}


def check_metadata(metadata, volume):
    """`metadata` for :meth:`PartStore.run_part` checked (None, or a volume's spacing, unit and affine as
    :func:`source_metadata` gives them), as JSON values; a one-line ValueError otherwise.

    >>> check_metadata({"spacing": (2, 1, 1), "unit": "mm", "affine": None}, True)
    {'spacing': [2.0, 1.0, 1.0], 'unit': 'millimeter', 'affine': None}
    """
    from ..io._volume import unit_name
    from ..io._volwrite import check_positive_floats

    if metadata is None:
        return None
    if not volume:
        raise ValueError("metadata= is recorded for a volume job only; this store's job is a 2-D image's")
    if not isinstance(metadata, dict) or not set(metadata) <= {"spacing", "unit", "affine"}:
        raise ValueError(f"metadata={metadata!r}: expected a dict of spacing, unit and affine (source_metadata)")
    spacing, unit, affine = (metadata.get(key) for key in ("spacing", "unit", "affine"))
    if unit is not None and (not isinstance(unit, str) or unit_name(unit) is None):
        raise ValueError(f"metadata unit={unit!r} is not a length unit; expected e.g. 'micrometer' or 'millimeter'")
    if affine is not None:
        try:
            matrix = np.asarray(affine, np.float64)
        except (TypeError, ValueError):
            matrix = np.empty(0)
        if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
            raise ValueError("metadata affine is not a finite 4x4 matrix; expected the reader's (z, y, x) affine")
        affine = matrix.tolist()
    return {"spacing": None if spacing is None else list(check_positive_floats(spacing, "metadata spacing")),
            "unit": None if unit is None else unit_name(unit), "affine": affine}


class _VolumeSink:
    """The pieces a volume part emits into its arrays, each created at its first piece."""

    def __init__(self, group, partition, part, chunk):
        self.group, self.partition, self.part, self.chunk = group, partition, part, chunk
        self.bands = {}
        self.row_bytes = self.seam_bytes = 0

    def write(self, kind, box, data):
        name = "voxels" if kind == "final" else kind
        if name not in self.bands:
            lo, hi = (int(v) for v in getattr(self.partition, kind)[self.part])
            shape = (hi - lo,) + tuple(self.partition.plan.image_size[1:]) + data.shape[3:]
            # uncompressed: the seams' floats hardly compress, and a part writes them once and reads them once
            array = self.group.create_array(
                name, shape=shape, chunks=chunks_of(shape, self.chunk), dtype=data.dtype, fill_value=0,
                compressors=None, chunk_key_encoding=_manifest.KEY_ENCODING, config=_manifest.ARRAY_CONFIG)
            self.bands[name] = _Band(array, lo)
        self.bands[name].write(box, data)
        if name == "voxels":
            self.row_bytes += data.nbytes
        else:
            self.seam_bytes += data.nbytes

    def close(self):
        for band in self.bands.values():
            band.flush()


class _Band:
    """One array's pieces of one z-range (a layer's cells), held and written a whole chunk row at a time.

    A layer's cells arrive row by row (non-decreasing tops, as a blend emits
    them), so every image row above a new cell's chunk row is complete;
    writing whole chunk rows writes each chunk once per z-range instead of
    once per cell that meets it (a chunk read and written again each time).
    """

    def __init__(self, array, origin):
        self.array, self.origin = array, origin  # origin: the image z of the array's first plane
        self.z, self.top, self.rows = None, 0, None  # rows: (depth, held rows, W[, C]) from image row `top`

    def write(self, box, data):
        z0, y0, x0, z1, y1, x1 = box
        if self.z != (z0, z1):
            self.flush()
            self.z, self.top = (z0, z1), y0
        self._flush(y0 - y0 % self.array.chunks[1])
        held = 0 if self.rows is None else self.rows.shape[1]
        if y1 - self.top > held:
            grown = np.zeros((z1 - z0, y1 - self.top) + self.array.shape[2:], data.dtype)
            if held:
                grown[:, :held] = self.rows
            self.rows = grown
        self.rows[:, y0 - self.top:y1 - self.top, x0:x1] = data

    def _flush(self, end):
        """Write the held rows above image row `end` and let them go."""
        if self.rows is None or end <= self.top:
            return
        count = min(end - self.top, self.rows.shape[1])
        z0, z1 = self.z
        self.array[z0 - self.origin:z1 - self.origin, self.top:self.top + count] = self.rows[:, :count]
        self.rows = self.rows[:, count:].copy() if count < self.rows.shape[1] else None
        self.top += count

    def flush(self):
        """Write every held row."""
        if self.rows is not None:
            self._flush(self.top + self.rows.shape[1])


def run_volume_part(store, group, part, read_tile, model, *, batch_size, dtype, parallel, prefetch, progress):
    """Blend part `part` of a volume store's job into `group`; return (channels, accumulator dtype, names
    written, final bytes, seam bytes, 1)."""
    from ..engine._volume import VolumeBlender
    from ..engine.pipeline import run_blender

    partition, job = store.partition, store.job
    sink = _VolumeSink(group, partition, part, job.chunk)
    blender = VolumeBlender(volume_sub_plan(partition, part), channel_first=job.channel_first, dtype=dtype,
                            parallel=parallel)

    def write_cells(cells):
        for kind, box, data in part_pieces(partition, part, cells, labels=job.labels, channel_first=job.channel_first):
            sink.write(kind, box, data)

    run_blender(blender, read_tile, model, write_cells, batch_size=batch_size, prefetch=prefetch, progress=progress)
    sink.close()
    return int(blender.channels), str(blender._dtype), sorted(sink.bands), sink.row_bytes, sink.seam_bytes, 1


def merge_volume(store, output, dtype, compression):
    """:meth:`PartStore.merge` of a volume job: every check first, then the output written in z order."""
    from ..io import volume_writer

    output = os.fspath(output)
    lower = output.lower().rstrip("/" + os.sep)
    if not lower.endswith(VOLUME_OUTPUTS):
        raise ValueError(f"output={output!r}: expected a {', '.join(VOLUME_OUTPUTS[:-1])} or {VOLUME_OUTPUTS[-1]} "
                         "name for a volume")
    check_output_path(output, inputs=[store.path], folder_ok=lower.endswith(".zarr"))
    if compression not in (None, "zlib", "zstd"):  # accepted as for an image; the volume writers choose their own
        raise ValueError(f"compression={compression!r} is not supported; expected None, 'zlib' or 'zstd'")
    results = store.verify()
    channels, labels = results[0].channels, store.job.labels
    dtype = output_dtype(dtype, labels=labels, classes=channels)
    writer = volume_writer(output, store.plan.image_size, channels=None if labels else channels, dtype=dtype,
                           **_writer_options(lower, _stored_metadata(store)))
    with writer:
        for box, data in _merged_slabs(store):
            writer.write(box, to_output_dtype(data, dtype, name=f"voxels z {box[0]} to {box[3]}"))


def _stored_metadata(store):
    """The source metadata the first part that recorded any holds (every part read the same source)."""
    for q in range(store.job.parts):
        record, _ = store._record(q)
        metadata = record.get("metadata") if isinstance(record, dict) else None
        if isinstance(metadata, dict):
            return metadata
    return {}


def _writer_options(lower, metadata):
    """The keyword arguments of the writer for `lower` that carry `metadata` (those it takes)."""
    spacing, unit, affine = (metadata.get(key) for key in ("spacing", "unit", "affine"))
    if lower.endswith((".nii", ".nii.gz")):
        return {} if affine is None else {"affine": np.asarray(affine, np.float64)}
    options = {} if spacing is None else {"spacing": tuple(spacing), "unit": unit}
    if lower.endswith(".zarr") and affine is not None:
        options["translation"] = tuple(float(v) for v in np.asarray(affine)[:3, 3])
    return options


def _merged_slabs(store):
    """(box, channel-last data) of the whole volume, top to bottom, in slabs of at most 16 z-planes."""
    partition = store.partition
    _, height, width = store.plan.image_size
    for q in range(partition.parts):
        group = store.root[f"part{q}"]
        lo, hi = (int(v) for v in partition.final[q])
        for z in range(lo, hi, _Z_CHUNK):
            z1 = min(z + _Z_CHUNK, hi)
            yield (z, 0, 0, z1, height, width), group["voxels"][z - lo:z1 - lo]
        lo, hi = (int(v) for v in partition.lead[q])
        if hi > lo:
            lead, crop = group["lead"], store.root[f"part{q + 1}"]["crop"]
            for z in range(lo, hi, _Z_CHUNK):
                z1 = min(z + _Z_CHUNK, hi)
                yield (z, 0, 0, z1, height, width), merge_seam(crop[z - lo:z1 - lo], lead[z - lo:z1 - lo],
                                                               store.job.labels)
