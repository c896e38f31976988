"""A zarr folder that collects the parts of a partitioned run, and the merge that finishes it.

Layout of a store ``DIR``::

    DIR/                  zarr group; attribute "job": what every part must agree on, and its checksum
    DIR/part{q}/          one group per part, rewritten from scratch when the part (re)starts;
                          attribute "complete" set last, once everything below is written: a
                          manifest of every array and chunk file below (see _manifest)
    DIR/part{q}/rows      the part's own rows, final, channel-last; row 0 is image row
                          attribute "origin", a multiple of the chunk height, so its chunks
                          line up with the output's
    DIR/part{q}/lead      partial sums of its lead rows, planes (P, rows, elements)
    DIR/part{q}/crops     seam rows of its tiles, one chunk per tile (n, P, rows, elements)

A volume job's parts (slabs of tile layers) write ``voxels``, ``crop`` and
``lead`` arrays instead, under the same records (see :mod:`seamless_fast.scale._volume_store`).

Parts may run in any order, at the same time, on machines that share ``DIR``.
zarr writes each chunk to a temporary file and renames it, so a part that is
killed leaves no torn chunk, and without "complete" a part counts as not run:
the next run of it starts again from its first tile. The merge (and
:meth:`PartStore.verify`) checks every part against its manifest and its
arrays' shapes against the job's partition before any output is opened.
"""

import os
import shutil
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from .._files import check_output_path, flush_tree, make_partial
from .._validate import as_int
from ..dtypes import output_dtype, to_output_dtype
from . import _manifest
from ._job import Job
from ._store_io import _CropReader, _from_planes, _output_writer, _RowsWriter, _SeamWriter
from ._volume_store import check_metadata, merge_volume, run_volume_part
from .partition import PartBlender, merge_lead_rows

__all__ = ["Job", "PartStore", "PartResult", "import_zarr"]

FORMAT = "seamless_fast.parts/2"


def import_zarr():
    """The zarr module, or an ImportError that says how to install it."""
    try:
        import zarr
    except ImportError as error:
        raise ImportError("partitioned runs keep their parts in a zarr store: "
                          "pip install 'seamless_fast[dask]' (or pip install zarr)") from error
    return zarr


@dataclass(frozen=True)
class PartResult:
    """What one part did: tiles blended, seconds, and bytes written as final rows and handed over at seams."""

    part: int
    tiles: int
    seconds: float
    row_bytes: int
    seam_bytes: int
    channels: int
    dtype: str
    group: int

    def to_json(self):
        return asdict(self)


class PartStore:
    """The store of a partitioned run: create it, run its parts, merge them.

    Parameters
    ----------
    path : str or os.PathLike
        The store's folder (zarr).
    job : Job, optional
        Create the store for this job, or open it if it exists and holds the
        same job (a different job is an error). Without a job, open an
        existing store.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> job = Job.from_options((100, 90), 32, 8, parts=2)
    >>> store = PartStore(os.path.join(folder, "parts.zarr"), job)
    >>> image = np.random.default_rng(0).random((100, 90, 3), np.float32)
    >>> def read_tile(box):
    ...     return image[box[0]:box[2], box[1]:box[3]]
    >>> for part in range(job.parts):  # anywhere, in any order
    ...     _ = store.run_part(part, read_tile, lambda batch: batch)
    >>> store.merge(os.path.join(folder, "out.zarr"))
    >>> import zarr
    >>> bool(np.allclose(zarr.open_array(os.path.join(folder, "out.zarr"))[:], image, atol=1e-6))
    True
    """

    def __init__(self, path, job=None):
        self.zarr = import_zarr()
        self.path = os.fspath(path)
        if job is not None and not isinstance(job, Job):
            raise ValueError(f"job must be a Job (Job.from_options(...)); got {type(job).__name__}")
        if job is not None and not os.path.exists(self.path):
            self._create(job)
        self.job = self._stored_job()
        self.root = self._open_root()
        if job is not None and job != self.job:
            differ = [f"{key}={getattr(self.job, key)!r} (this run: {getattr(job, key)!r})"
                      for key in asdict(job) if getattr(job, key) != getattr(self.job, key)]
            raise ValueError(f"store {self.path!r} belongs to another job: " + "; ".join(differ))
        try:
            self.partition = self.job.partition()
        except ValueError as error:
            raise ValueError(f"store {self.path!r}: its job cannot be partitioned: {error}") from None
        self.plan = self.partition.plan

    def _create(self, job):
        """Make the store in a temporary folder and rename it into place: of parts starting together, one wins."""
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise ValueError(f"store {self.path!r}: folder {parent!r} does not exist")
        temp = make_partial(self.path, directory=True)
        try:
            root = self.zarr.open_group(temp, mode="a")
            data = job.to_json()
            root.attrs.update({"format": FORMAT, "job": data, "job_checksum": _manifest.checksum(data)})
            os.rename(temp, self.path)
        except OSError:
            if not os.path.isdir(self.path):
                raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _stored_job(self):
        """The job in the store's attributes, checked as Job.from_options checks options, and against its checksum."""
        if not os.path.isdir(self.path):
            raise ValueError(f"store {self.path!r} does not exist")
        try:
            meta, _ = _manifest.read_json(os.path.join(self.path, "zarr.json"), "its zarr.json")
        except ValueError as error:
            raise ValueError(f"store {self.path!r} is not a seamless_fast parts store: {error}") from None
        attrs = meta.get("attributes")
        stored_format = attrs.get("format") if isinstance(attrs, dict) else None
        if meta.get("node_type") != "group" or stored_format != FORMAT or "job" not in attrs:
            if isinstance(stored_format, str) and stored_format.startswith("seamless_fast.parts/"):
                raise ValueError(f"store {self.path!r} was made by another version of seamless_fast (format "
                                 f"{stored_format!r}, this one reads {FORMAT!r}); run its parts in a new store")
            raise ValueError(f"store {self.path!r} is not a seamless_fast parts store")
        try:
            job = Job.from_json(attrs["job"])
        except ValueError as error:
            raise ValueError(f"store {self.path!r}: its job attribute is invalid: {error}") from None
        if attrs.get("job_checksum") != _manifest.checksum(job.to_json()):
            raise ValueError(f"store {self.path!r}: its job attributes were changed after the store was made "
                             "(job_checksum does not match)")
        return job

    def _open_root(self):
        try:
            return self.zarr.open_group(self.path, mode="r+")
        except Exception as error:
            raise ValueError(f"store {self.path!r} cannot be opened as a zarr group: {error}") from error

    # -- state ---------------------------------------------------------------
    def _check_part(self, part):
        part = as_int(part, "part")
        if not 0 <= part < self.job.parts:
            raise ValueError(f"part={part} is out of range; this store has parts 0 to {self.job.parts - 1}")
        return part

    def _record(self, part):
        """(record, problem): the part's completion record (None if it has none) and why it is not trusted, or None."""
        path = os.path.join(self.path, f"part{part}", "zarr.json")
        if not os.path.lexists(path):
            return None, None
        try:
            meta, _ = _manifest.read_json(path, f"part {part}: zarr.json")
        except ValueError as error:
            return None, str(error)
        attrs = meta.get("attributes")
        record = attrs.get(_manifest.RECORD) if isinstance(attrs, dict) else None
        if record is None:
            return None, None
        problem = _manifest.record_problem(record)
        return record, None if problem is None else f"part {part}: {problem}"

    def result(self, part):
        """The :class:`PartResult` of a complete part, or None.

        This reads the part's completion record only; :meth:`verify` checks
        its files against it.
        """
        part = self._check_part(part)
        record, problem = self._record(part)
        if record is None or problem is not None:
            return None
        try:
            return PartResult(**{field.name: record[field.name] for field in fields(PartResult)})
        except (KeyError, TypeError):
            return None

    def missing_parts(self):
        """Parts not complete yet."""
        return [q for q in range(self.job.parts) if self.result(q) is None]

    def parts_to_run(self):
        """Parts not complete, or whose files no longer match their record (reads the complete parts' chunks)."""
        todo = []
        for q in range(self.job.parts):
            if self.result(q) is None:
                todo.append(q)
                continue
            try:
                self.verify([q])
            except ValueError:
                todo.append(q)
        return todo

    def check_complete(self):
        """Raise a ValueError naming the parts that are not complete yet, if any."""
        missing = self.missing_parts()
        if missing:
            raise ValueError(self._missing_message(missing))

    def _missing_message(self, missing):
        return (f"store {self.path!r}: parts {missing} of {self.job.parts} are not complete; run them before "
                "merging (seamless-fast segment ... --part K/N --store DIR)")

    def verify(self, parts=None):
        """Check that every part (or those in `parts`) is complete and holds exactly what it wrote.

        Each part's completion record is checked against the job (its arrays'
        shapes against the job's partition, before anything is allocated),
        then every chunk file is read once and compared with its recorded size
        and CRC-32.

        Parameters
        ----------
        parts : iterable of int, optional
            The parts to check; by default all of them.

        Returns
        -------
        list of PartResult
            One per part checked.

        Raises
        ------
        ValueError
            One line naming the store, the part and the array, chunk, file or
            attribute that fails.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> store = PartStore(os.path.join(folder, "parts.zarr"), Job.from_options((60, 50), 32, 8, parts=2))
        >>> image = np.ones((60, 50, 2), np.float32)
        >>> _ = store.run_part(0, lambda box: image[box[0]:box[2], box[1]:box[3]], lambda batch: batch)
        >>> store.verify()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: store '...parts.zarr': parts [1] of 2 are not complete; ...
        """
        parts = range(self.job.parts) if parts is None else [self._check_part(q) for q in parts]
        records, missing = {}, []
        for q in parts:
            record, problem = self._record(q)
            if problem is not None:
                raise ValueError(f"store {self.path!r}: {problem}")
            if record is None:
                missing.append(q)
            else:
                records[q] = record
        if missing:
            raise ValueError(self._missing_message(missing))
        try:
            root_meta, _ = _manifest.read_json(os.path.join(self.path, "zarr.json"), "zarr.json")
            found = {q: _manifest.check_part_metadata(self.path, q, record, self.partition, self.job.to_json(),
                                                      root_meta, self.job.labels, self.job.chunk)
                     for q, record in records.items()}
            results = [self.result(q) for q in records]
            layouts = {(r.channels, r.dtype, r.group) for r in results}
            if len(layouts) > 1:
                raise ValueError(f"parts disagree on (channels, dtype, layout): {sorted(layouts)}")
            for q, arrays in found.items():
                _manifest.check_part_chunks(q, arrays)
        except ValueError as error:
            raise ValueError(f"store {self.path!r}: {error}") from None
        return results

    # -- one part ------------------------------------------------------------
    def run_part(self, part, read_tile, model, *, batch_size=16, dtype=None, parallel=None, prefetch=2,
                 progress=None, metadata=None):
        """Run one part, unless it is already complete: blend its tiles, write its rows and seams.

        A complete part whose files no longer match its record (see
        :meth:`verify`) is run again.

        Parameters
        ----------
        part : int
            Which part, 0 to ``job.parts - 1``.
        read_tile, model, batch_size, dtype, parallel, prefetch, progress
            As for :func:`~seamless_fast.run_pipeline` (layout and labels come from the job).
        metadata : dict, optional
            A volume's ``spacing``, ``unit`` and ``affine`` from its reader
            (:func:`~seamless_fast.scale._volume_store.source_metadata`),
            recorded with the part and carried by :meth:`merge` to the output.

        Returns
        -------
        PartResult
            The part's figures; those of the earlier run when it was already complete.
        """
        part = self._check_part(part)
        metadata = check_metadata(metadata, self.job.volume)
        done = self.result(part)
        if done is not None:
            try:
                self.verify([part])
                return done
            except ValueError:
                pass  # damaged since it completed: run it again
        start = time.perf_counter()
        name = f"part{part}"
        try:  # the record goes first, so that a part killed while it is cleared never counts as complete
            os.remove(os.path.join(self.path, name, "zarr.json"))
        except FileNotFoundError:
            pass
        group = self.root.create_group(name, overwrite=True)
        run = dict(batch_size=batch_size, dtype=dtype, parallel=parallel, prefetch=prefetch, progress=progress)
        blend = run_volume_part if self.job.volume else _run_rows
        channels, acc, written, row_bytes, seam_bytes, layout = blend(self, group, part, read_tile, model, **run)
        result = PartResult(part=part, tiles=len(self.partition.steps_of(part)),
                            seconds=time.perf_counter() - start, row_bytes=row_bytes, seam_bytes=seam_bytes,
                            channels=channels, dtype=acc, group=layout)
        extra = {} if metadata is None else {"metadata": metadata}
        group_path = os.path.join(self.path, name)
        record = _manifest.build_record(self.path, group_path, written, dict(result.to_json(), **extra),
                                        self.job.to_json())
        try:  # what was written must be what the merge will ask for; a mismatch is a bug, not damage
            root_meta, _ = _manifest.read_json(os.path.join(self.path, "zarr.json"), "zarr.json")
            _manifest.check_part_metadata(self.path, part, record, self.partition, self.job.to_json(), root_meta,
                                          self.job.labels, self.job.chunk)
        except ValueError as error:
            raise RuntimeError(f"part {part} wrote other arrays than its job needs: {error}") from None
        flush_tree(group_path)  # on the disk before the record says so
        group.attrs[_manifest.RECORD] = record  # last: only now does the part count as done
        flush_tree(os.path.join(group_path, "zarr.json"))
        return result

    # -- merge ---------------------------------------------------------------
    def merge(self, output, *, dtype=None, compression="zlib"):
        """Check the store, finish the seams and write the whole output, under a temporary name renamed when complete.

        Everything is checked before the output is opened: the output path
        (not the store, nor inside it, nor a folder other than a zarr array),
        every part (:meth:`verify`) and the dtype.

        Parameters
        ----------
        output : str or os.PathLike
            A ``.tif``/``.tiff`` file (tiled TIFF) or a ``.zarr`` folder; for a
            volume job a ``.zarr``, ``.nii``, ``.nii.gz``, ``.tif`` or ``.tiff``
            volume (see :func:`~seamless_fast.io.volume_writer`), written in z
            order with the spacing, unit and affine the parts recorded.
        dtype : optional
            Stored dtype, see :func:`seamless_fast.dtypes.output_dtype`:
            for labels the smallest of uint8, uint16, uint32 that holds the
            classes by default (a narrower one is refused); for values
            float32 (default), float16, or uint8 / uint16 (probabilities
            quantised to the whole range).
        compression : {None, "zlib", "zstd"}
            For a 2-D TIFF output (a volume's writers choose their own).

        Raises
        ------
        ValueError
            For a bad output, dtype or compression, or a store that fails
            :meth:`verify`, before any output is opened; for values that the
            dtype cannot hold, while writing (no output is left then).
        """
        if self.job.volume:
            return merge_volume(self, output, dtype, compression)
        output = os.fspath(output)
        lower = output.lower()
        if not lower.endswith((".tif", ".tiff", ".zarr")):
            raise ValueError(f"output={output!r}: expected a .tif, .tiff or .zarr name")
        check_output_path(output, inputs=[self.path], folder_ok=lower.endswith(".zarr"))
        if compression not in (None, "zlib", "zstd"):
            raise ValueError(f"compression={compression!r} is not supported; expected None, 'zlib' or 'zstd'")
        results = self.verify()
        channels, group = results[0].channels, results[0].group
        dtype = output_dtype(dtype, labels=self.job.labels, classes=channels)
        writer = _output_writer(output, self.plan.image_size, None if self.job.labels else channels, dtype,
                                compression, self.job.chunk)
        with writer:
            for box, data in self._merged_pieces(channels, group):
                writer.write(box, to_output_dtype(data, dtype, name=f"rows {box[0]} to {box[2]}"))

    def _merged_pieces(self, channels, group):
        """(box, data) of every stored or merged stretch of rows, top to bottom, in blocks of chunk rows."""
        partition, chunk = self.partition, self.job.chunk
        x0, x1 = self.plan.buffer_cols
        pieces = [(lo, hi, q, "own") for q, (lo, hi) in enumerate(partition.own.tolist()) if hi > lo]
        pieces += [(lo, hi, q, "lead") for q, (lo, hi) in enumerate(partition.lead.tolist()) if hi > lo]
        width = self.plan.image_size[1]
        for lo, hi, q, kind in sorted(pieces):
            group_q = self.root[f"part{q}"]
            if kind == "own":
                if "rows" not in group_q:  # no cell of the area in these rows
                    continue
                rows, origin = group_q["rows"], group_q["rows"].attrs["origin"]
                for y in range(lo, hi, chunk):
                    y1 = min(y + chunk, hi)
                    yield (y, 0, y1, width), rows[y - origin:y1 - origin]
            else:
                crops = _CropReader(self.root, partition, group)
                values = merge_lead_rows(partition, q, group_q["lead"][:], crops, group)
                yield (lo, x0, hi, x1), _from_planes(values, channels, group, self.job.labels)


def _run_rows(store, group, part, read_tile, model, *, batch_size, dtype, parallel, prefetch, progress):
    """Blend part `part` of a 2-D store's job into `group`: its own rows, crops and lead rows; return
    (channels, accumulator dtype, names written, row bytes, seam bytes, elements per pixel in a plane row)."""
    from ..engine.pipeline import run_blender

    rows = _RowsWriter(group, store.partition.own[part], store.plan.image_size[1], store.job.chunk)
    seams = _SeamWriter(group, store.partition, part)
    blender = PartBlender(store.partition, part, on_crop=seams.crop, on_lead=seams.lead, labels=store.job.labels,
                          channel_first=store.job.channel_first, dtype=dtype, parallel=parallel)

    def write_cells(cells):
        for cell in cells:
            data = cell.data
            rows.write(cell.box, np.moveaxis(data, 0, -1) if store.job.channel_first and data.ndim == 3 else data)

    run_blender(blender, read_tile, model, write_cells, batch_size=batch_size, prefetch=prefetch,
                progress=progress)
    rows.close()
    written = [key for key, array in (("rows", rows.array), ("lead", seams.lead_array), ("crops", seams.crops))
               if array is not None]
    return int(blender.channels), str(blender._dtype), written, rows.nbytes, seams.nbytes, int(blender._group)
