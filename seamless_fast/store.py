"""A zarr folder that collects the parts of a partitioned run, and the merge that finishes it.

Layout of a store ``DIR``::

    DIR/                  zarr group; attribute "job": what every part must agree on
    DIR/part{q}/          one group per part, rewritten from scratch when the part (re)starts;
                          attribute "complete" set last, once everything below is written
    DIR/part{q}/rows      the part's own rows, final, channel-last; row 0 is image row
                          attribute "origin", a multiple of the chunk height, so its chunks
                          line up with the output's
    DIR/part{q}/lead      partial sums of its lead rows, planes (P, rows, elements)
    DIR/part{q}/crops     seam rows of its tiles, one chunk per tile (n, P, rows, elements)

Parts may run in any order, at the same time, on machines that share ``DIR``.
zarr writes each chunk to a temporary file and renames it, so a part that is
killed leaves no torn chunk, and without "complete" a part counts as not run:
the next run of it starts again from its first tile.
"""

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from ._validate import as_int, as_pair, as_positive_int, check_area, check_bool
from .blend import label_dtype
from .partition import PartBlender, merge_lead_rows, partition_plan
from .plan import plan_regular_grid
from .windows import WINDOWS

__all__ = ["Job", "PartStore", "PartResult", "import_zarr"]

FORMAT = "seamless_fast.parts/1"


def import_zarr():
    """The zarr module, or an ImportError that says how to install it."""
    try:
        import zarr
    except ImportError as error:
        raise ImportError("partitioned runs keep their parts in a zarr store: "
                          "pip install 'seamless_fast[dask]' (or pip install zarr)") from error
    return zarr


@dataclass(frozen=True)
class Job:
    """What every part of a partitioned run must agree on: from it each part rebuilds the same plan.

    Parameters
    ----------
    image_size, tile_size, overlap
        As for :func:`~seamless_fast.plan_regular_grid`.
    parts : int
        Bands of tile rows the plan is cut into.
    window : str
        One of the built-in separable windows.
    area : str, optional
        The area as hex WKB (exact, unlike WKT), see :meth:`from_options`.
    labels : bool
        Parts keep arg-max labels instead of values.
    channel_first : bool
        Layout of the model's outputs.
    chunk : int
        Chunk side of the stored rows (and of a zarr output).
    """

    image_size: tuple
    tile_size: tuple
    overlap: tuple
    parts: int
    window: str = "pyramid"
    area: str = None
    labels: bool = False
    channel_first: bool = True
    chunk: int = 512

    @classmethod
    def from_options(cls, image_size, tile_size, overlap, *, parts, area=None, window="pyramid", labels=False,
                     channel_first=True, chunk=512):
        """Validate the options and build a Job (`area` a shapely geometry in (y, x) order, or None)."""
        import shapely

        image_size = as_pair(image_size, "image_size", minimum=1)
        area = check_area(area, image_size)
        if window not in WINDOWS:
            raise ValueError(f"window={window!r}: partitioned runs take a built-in window, one of {sorted(WINDOWS)}")
        job = cls(image_size=image_size, tile_size=as_pair(tile_size, "tile_size", minimum=1),
                  overlap=as_pair(overlap, "overlap", minimum=0), parts=as_positive_int(parts, "parts"),
                  window=window, area=None if area is None else shapely.to_wkb(area, hex=True),
                  labels=check_bool(labels, "labels"), channel_first=check_bool(channel_first, "channel_first"),
                  chunk=as_positive_int(chunk, "chunk"))
        job.partition()  # raises now, naming the bad option, rather than in every part
        return job

    def plan(self):
        """The whole run's plan."""
        import shapely

        area = None if self.area is None else shapely.from_wkb(self.area)
        plan, _ = plan_regular_grid(self.image_size, self.tile_size, self.overlap, area, window=self.window)
        return plan

    def partition(self):
        return partition_plan(self.plan(), self.parts)

    def to_json(self):
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        for key in ("image_size", "tile_size", "overlap"):
            data[key] = tuple(data[key])
        return cls(**data)


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
        self.root = self._open_root()
        stored = self.root.attrs.get("job")
        if self.root.attrs.get("format") != FORMAT or stored is None:
            raise ValueError(f"store {self.path!r} is not a seamless_fast parts store")
        self.job = Job.from_json(stored)
        if job is not None and job != self.job:
            differ = [f"{key}={getattr(self.job, key)!r} (this run: {getattr(job, key)!r})"
                      for key in asdict(job) if getattr(job, key) != getattr(self.job, key)]
            raise ValueError(f"store {self.path!r} belongs to another job: " + "; ".join(differ))
        self.partition = self.job.partition()
        self.plan = self.partition.plan

    def _create(self, job):
        """Make the store in a temporary folder and rename it into place: of parts starting together, one wins."""
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise ValueError(f"store {self.path!r}: folder {parent!r} does not exist")
        temp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.path)}.partial-", dir=parent)
        try:
            root = self.zarr.open_group(temp, mode="w")
            root.attrs.update({"format": FORMAT, "job": job.to_json()})
            os.rename(temp, self.path)
        except OSError:
            if not os.path.isdir(self.path):
                raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _open_root(self):
        if not os.path.isdir(self.path):
            raise ValueError(f"store {self.path!r} does not exist")
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

    def result(self, part):
        """The :class:`PartResult` of a complete part, or None."""
        part = self._check_part(part)
        name = f"part{part}"
        if name not in self.root:
            return None
        done = self.root[name].attrs.get("complete")
        return None if done is None else PartResult(**done)

    def missing_parts(self):
        """Parts not complete yet."""
        return [q for q in range(self.job.parts) if self.result(q) is None]

    def check_complete(self):
        """Raise a ValueError naming the parts that are not complete yet, if any."""
        missing = self.missing_parts()
        if missing:
            raise ValueError(f"store {self.path!r}: parts {missing} of {self.job.parts} are not complete; run "
                             "them before merging (seamless-fast segment ... --part K/N --store DIR)")

    # -- one part ------------------------------------------------------------
    def run_part(self, part, read_tile, model, *, batch_size=16, dtype=None, parallel=None, prefetch=2,
                 progress=None):
        """Run one part, unless it is already complete: blend its tiles, write its rows and seams.

        Parameters
        ----------
        part : int
            Which part, 0 to ``job.parts - 1``.
        read_tile, model, batch_size, dtype, parallel, prefetch, progress
            As for :func:`~seamless_fast.run_pipeline` (layout and labels come from the job).

        Returns
        -------
        PartResult
            The part's figures; those of the earlier run when it was already complete.
        """
        from .pipeline import run_blender

        part = self._check_part(part)
        done = self.result(part)
        if done is not None:
            return done
        start = time.perf_counter()
        group = self.root.create_group(f"part{part}", overwrite=True)
        rows = _RowsWriter(group, self.partition.own[part], self.plan.image_size[1], self.job.chunk)
        seams = _SeamWriter(group, self.partition, part)
        blender = PartBlender(self.partition, part, on_crop=seams.crop, on_lead=seams.lead, labels=self.job.labels,
                              channel_first=self.job.channel_first, dtype=dtype, parallel=parallel)

        def write_cells(cells):
            for cell in cells:
                data = cell.data
                rows.write(cell.box, np.moveaxis(data, 0, -1) if self.job.channel_first and data.ndim == 3 else data)

        run_blender(blender, read_tile, model, write_cells, batch_size=batch_size, prefetch=prefetch,
                    progress=progress)
        rows.close()
        result = PartResult(part=part, tiles=len(self.partition.steps_of(part)),
                            seconds=time.perf_counter() - start, row_bytes=rows.nbytes, seam_bytes=seams.nbytes,
                            channels=int(blender.channels), dtype=str(blender._dtype), group=int(blender._group))
        group.attrs["complete"] = result.to_json()  # last: only now does the part count as done
        return result

    # -- merge ---------------------------------------------------------------
    def merge(self, output, *, dtype=None, compression="zlib"):
        """Finish the seams and write the whole output, under a temporary name renamed when complete.

        Parameters
        ----------
        output : str or os.PathLike
            A ``.tif``/``.tiff`` file (tiled TIFF) or a ``.zarr`` folder.
        dtype : optional
            Stored dtype: uint8 (default) or uint16 for labels; float32
            (default), float16, or uint8 (probabilities quantised to 0..255)
            for values.
        compression : {None, "zlib", "zstd"}
            For a TIFF output.
        """
        output = os.fspath(output)
        self.check_complete()
        results = [self.result(q) for q in range(self.job.parts)]
        layouts = {(r.channels, r.dtype, r.group) for r in results}
        if len(layouts) > 1:
            raise ValueError(f"store {self.path!r}: parts disagree on (channels, dtype, layout): {sorted(layouts)}")
        channels, _, group = results[0].channels, results[0].dtype, results[0].group
        if dtype is None:
            dtype = np.uint8 if self.job.labels else np.float32
        writer = _output_writer(output, self.plan.image_size, None if self.job.labels else channels, dtype,
                                compression, self.job.chunk)
        with writer:
            for box, data in self._merged_pieces(channels, group):
                writer.write(box, data)

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


def _from_planes(values, channels, group, labels):
    """Planes (P, rows, elements) as channel-last rows (rows, width, C), or their arg-max labels."""
    planes, rows, elements = values.shape
    data = values[0].reshape(rows, elements // group, group) if planes == 1 else np.moveaxis(values, 0, -1)
    if labels:
        return data.argmax(axis=-1).astype(label_dtype(channels))
    return data


class _CropReader:
    """read_crop for :func:`merge_lead_rows`: a tile's crop from the part that handed it over."""

    def __init__(self, root, partition, group):
        self.root, self.partition, self.group = root, partition, group
        self.part_of = np.repeat(np.arange(partition.parts), np.diff(partition.step_bounds))

    def __call__(self, step):
        part = int(self.part_of[step])
        index = int(np.searchsorted(self.partition.crop_steps(part), step))
        rows, length = int(self.partition.crop_rows[step]), int(self.partition.plan.steps[step, 3]) * self.group
        return self.root[f"part{part}/crops"][index, :, :rows, :length]


class _RowsWriter:
    """Cells of one part into its `rows` array, flushed as whole chunk rows once complete.

    Cells arrive with non-decreasing top rows (as a blend emits them), so
    every row above a new cell's top is complete.
    """

    def __init__(self, group, own, width, chunk):
        self.group, self.width, self.chunk = group, width, chunk
        self.lo, self.hi = (int(v) for v in own)
        self.origin = self.lo - self.lo % chunk
        self.top = self.origin  # first row not yet flushed
        self.band = None  # rows [top, top + len(band)) held
        self.array = None
        self.nbytes = 0

    def write(self, box, data):
        ylo, xlo, yhi, xhi = box
        if not (self.lo <= ylo and yhi <= self.hi):
            raise RuntimeError(f"cell {box} lies outside the part's own rows [{self.lo}, {self.hi})")
        if self.array is None:
            self._create(data)
        self._flush(ylo - (ylo - self.origin) % self.chunk)
        if self.band is None or len(self.band) < yhi - self.top:
            grown = np.zeros((yhi - self.top, self.width) + data.shape[2:], data.dtype)
            if self.band is not None:
                grown[:len(self.band)] = self.band
            self.band = grown
        self.band[ylo - self.top:yhi - self.top, xlo:xhi] = data

    def _create(self, data):
        shape = (self.hi - self.origin, self.width) + data.shape[2:]
        chunks = (self.chunk, self.chunk) + data.shape[2:]
        self.array = self.group.create_array("rows", shape=shape, chunks=chunks, dtype=data.dtype, fill_value=0)
        self.array.attrs["origin"] = self.origin
        self.nbytes = int(np.prod(shape[1:])) * (self.hi - self.lo) * data.dtype.itemsize

    def _flush(self, end):
        """Write rows [top, end) and let them go."""
        if self.band is None or end <= self.top:
            return
        count = min(end - self.top, len(self.band))
        self.array[self.top - self.origin:self.top - self.origin + count] = self.band[:count]
        self.band = self.band[count:].copy() if count < len(self.band) else None
        self.top = end

    def close(self):
        if self.array is not None:
            self._flush(self.hi)


class _SeamWriter:
    """What a part hands over at its seams: each crop as it arrives, the lead rows at the end."""

    def __init__(self, group, partition, part):
        self.group, self.partition, self.part = group, partition, part
        self.steps = partition.crop_steps(part)
        self.crops = None
        self.nbytes = 0

    def crop(self, step, planes):
        if self.crops is None:
            widths = self.partition.plan.steps[self.steps, 3]
            group = planes.shape[2] // int(self.partition.plan.steps[step, 3])
            shape = (len(self.steps), planes.shape[0], int(self.partition.crop_rows[self.steps].max()),
                     int(widths.max()) * group)
            self.crops = self.group.create_array("crops", shape=shape, chunks=(1,) + shape[1:],
                                                 dtype=planes.dtype, fill_value=0)
        index = int(np.searchsorted(self.steps, step))
        self.crops[index, :, :planes.shape[1], :planes.shape[2]] = planes
        self.nbytes += planes.nbytes

    def lead(self, acc):
        self.group.create_array("lead", data=np.ascontiguousarray(acc), chunks=acc.shape)
        self.nbytes += acc.nbytes


def _output_writer(path, image_size, channels, dtype, compression, chunk):
    """A TiffWriter for .tif/.tiff, a :class:`_ZarrOutput` for .zarr."""
    lower = path.lower()
    if lower.endswith((".tif", ".tiff")):
        from .io import TiffWriter

        return TiffWriter(path, image_size, channels=channels, dtype=dtype, compression=compression)
    if lower.endswith(".zarr"):
        return _ZarrOutput(path, image_size, channels, dtype, chunk)
    raise ValueError(f"output={path!r}: expected a .tif, .tiff or .zarr name")


class _ZarrOutput:
    """A zarr array written in a temporary folder beside `path` and renamed to it when complete."""

    def __init__(self, path, image_size, channels, dtype, chunk):
        from .io import WRITER_DTYPES

        dtype = np.dtype(dtype)
        if dtype.name not in WRITER_DTYPES:
            raise ValueError(f"dtype={dtype} is not supported; expected one of {WRITER_DTYPES}")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ValueError(f"output={path!r}: folder {parent!r} does not exist")
        self.path, self.dtype = path, dtype
        self.temp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.partial-", dir=parent)
        extra = () if channels is None else (channels,)
        self.array = import_zarr().create_array(self.temp, shape=tuple(image_size) + extra,
                                                chunks=(chunk, chunk) + extra, dtype=dtype, fill_value=0)

    def write(self, box, data):
        from .io import to_output_dtype

        ylo, xlo, yhi, xhi = box
        self.array[ylo:yhi, xlo:xhi] = to_output_dtype(np.asarray(data), self.dtype)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            return False
        old = None
        if os.path.exists(self.path):  # an earlier output stays until the new one is complete
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(self.path)}.old-", dir=os.path.dirname(
                os.path.abspath(self.path)))
            os.replace(self.path, os.path.join(old, "output"))
        os.replace(self.temp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False
