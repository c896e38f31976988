"""Run a partitioned job on a ``dask.distributed`` cluster.

Each part of the plan (a band of tile rows, see :mod:`seamless_fast.scale.partition`)
is one Dask task that reads its tiles, runs the model and writes its rows and
seams into a :class:`~seamless_fast.scale.store.PartStore`; one last task merges
the seams and writes the output. Every tile is computed once across the
cluster, and the output equals a single-process run bit for bit. A task whose
worker dies is run again by Dask from its first tile; parts already complete
in the store are not run again, so calling :func:`run_dask` again after a
failure only does what is missing (or no longer matches what a part wrote).

The store (and the output) must be on a filesystem every worker sees.
"""

import math
import os
import time
import uuid
from dataclasses import dataclass

import numpy as np

from .._validate import as_positive_int, check_callable
from ..dtypes import label_dtype

__all__ = ["run_dask", "DaskResult"]

_MODELS = {}  # per worker process: the model each run's factory made, by run token


def _import_distributed():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as error:
        raise ImportError("run_dask needs dask.distributed and zarr: pip install 'seamless_fast[dask]'") from error
    return distributed


@dataclass(frozen=True)
class DaskResult:
    """What :func:`run_dask` did.

    Attributes
    ----------
    parts : list of PartResult
        One per part, in part order (those complete before the call included).
    seconds : float
        Wall time of the call.
    seam_bytes : int
        Bytes the parts handed over at seams (partial sums and tile crops).
    output_bytes : int
        Bytes of the blended output (rows x width x channels x itemsize, as the parts keep it).
    output : str or None
        The merged output's path, if one was asked for.
    """

    parts: list
    seconds: float
    seam_bytes: int
    output_bytes: int
    output: str = None


def run_dask(source, model_factory, store, *, tile_size=256, overlap=64, parts=None, area=None, window="pyramid",
             labels=True, channel_first=True, batch_size=16, pad="reflect", output=None, output_dtype=None,
             compression="zlib", client=None, n_workers=2, context=0, output_scale=1):
    """Segment `source` on a Dask cluster, part by part, into `store`; optionally merge into `output`.

    Parameters
    ----------
    source : str, os.PathLike or array
        A TIFF file, a zarr array folder (``.zarr``), or an array: numpy,
        zarr or dask, (H, W) or (H, W, C). A dask array is read slice by slice
        in each task (with dask's synchronous scheduler). A volume, when
        `tile_size` or `overlap` gives three sizes ``(z, y, x)`` or the source
        is a NIfTI file: a zarr / OME-Zarr folder, a NIfTI ``.nii`` /
        ``.nii.gz``, a TIFF stack, or an array (D, H, W) or (D, H, W, C), as
        :class:`~seamless_fast.io.VolumeReader` reads it; its parts are slabs
        of tile layers, and the output carries its spacing and affine.
    model_factory : callable
        ``model_factory()`` returns the model, a callable on batches as for
        :func:`~seamless_fast.run_pipeline`. Called once per worker process
        and run (the model is kept for the worker's next parts); it and its
        result must pickle (a module-level function or a class does).
    store : str or os.PathLike
        The zarr folder the parts go to; created, or reopened to finish a
        run of the same job.
    tile_size, overlap, area, window
        As for :func:`~seamless_fast.plan_regular_grid` (built-in window names only).
    parts : int, optional
        Bands to cut the image into; by default one per worker.
    labels, channel_first, batch_size
        As for :func:`~seamless_fast.run_pipeline`.
    pad : {"reflect", "edge", "constant"}
        How tiles crossing the image border are filled (see :class:`~seamless_fast.io.ImageReader`).
    output : str or os.PathLike, optional
        Merge into this ``.tif``/``.tiff``/``.zarr`` once every part is done
        (a volume: also ``.nii``/``.nii.gz``).
    output_dtype, compression
        As for :meth:`~seamless_fast.scale.store.PartStore.merge`.
    client : distributed.Client, optional
        The cluster to use; by default a LocalCluster of `n_workers`
        processes (one thread each) is started and closed again.
    n_workers : int
        Workers of that LocalCluster.
    context, output_scale : int or (int, int)
        As for :func:`~seamless_fast.plan_regular_grid`: the model reads each
        tile grown by `context` and returns it `output_scale` times smaller;
        the output is ``ceil(size / output_scale)``.

    Returns
    -------
    DaskResult

    Examples
    --------
    A volume, two parts on a LocalCluster of two workers (not run here: a cluster takes seconds to start)::

        result = run_dask("ct.nii.gz", make_model, "parts.zarr", tile_size=(96, 128, 128),
                          overlap=(24, 32, 32), parts=2, output="labels.nii.gz")
    """
    distributed = _import_distributed()
    from .store import Job, PartStore

    check_callable(model_factory, "model_factory")
    n_workers = as_positive_int(n_workers, "n_workers")
    if client is not None and not isinstance(client, distributed.Client):
        raise ValueError(f"client={client!r} is not a distributed.Client")
    volume = _is_volume(source, tile_size, overlap)
    if output is not None:
        output = _check_output(output, source, store, labels, output_dtype, compression, volume)
    start = time.perf_counter()
    with _reader(source, pad, volume) as reader:
        image_size = reader.shape
    # every option but the number of parts checked before a cluster starts
    Job.from_options(image_size, tile_size, overlap, parts=1 if parts is None else parts, area=area, window=window,
                     labels=labels, channel_first=channel_first, context=context, output_scale=output_scale)
    own_cluster = None
    if client is None:
        # the dashboard on a free port: None still means 8787, which another cluster may hold
        own_cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                               dashboard_address=":0")
        client = distributed.Client(own_cluster)
    try:
        if parts is None:
            parts = max(1, len(client.scheduler_info()["workers"]))
        job = Job.from_options(image_size, tile_size, overlap, parts=parts, area=area, window=window, labels=labels,
                               channel_first=channel_first, context=context, output_scale=output_scale)
        part_store = PartStore(store, job)
        token = uuid.uuid4().hex
        futures = [client.submit(_run_part_task, part_store.path, part, source, model_factory, token, pad,
                                 batch_size, volume, key=f"seamless_fast-part-{part}-{token}", pure=False)
                   for part in part_store.parts_to_run()]
        client.gather(futures)
        if output is not None:  # the merge verifies every part before it opens the output
            client.submit(_merge_task, part_store.path, output, output_dtype, compression,
                          key=f"seamless_fast-merge-{token}", pure=False).result()
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()
    results = [part_store.result(q) for q in range(job.parts)]
    first = results[0]
    per_pixel = 1 if labels else first.channels
    itemsize = (label_dtype(first.channels) if labels else np.dtype(first.dtype)).itemsize
    return DaskResult(parts=results, seconds=time.perf_counter() - start,
                      seam_bytes=sum(r.seam_bytes for r in results),
                      output_bytes=math.prod(part_store.plan.image_size) * per_pixel * itemsize, output=output)


def _is_volume(source, tile_size, overlap):
    """Whether run_dask blends a volume: three tile or overlap sizes, or a NIfTI source."""
    from ..plan._volume import is_volume_size

    nifti = isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith((".nii", ".nii.gz"))
    return nifti or is_volume_size(tile_size) or is_volume_size(overlap)


def _reader(source, pad, volume):
    """The reader of `source`: a VolumeReader for a volume, else an ImageReader."""
    from ..io import ImageReader, VolumeReader

    if volume:
        if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
            raise ValueError(f"source={os.fspath(source)!r} does not exist")
        return VolumeReader(source, pad=pad)
    return ImageReader(_open_source(source), pad=pad)


def _check_output(output, source, store, labels, dtype, compression, volume=False):
    """Refuse a bad output before any part runs: its name, its place (not the source or store), dtype, compression."""
    from .._files import check_output_path
    from ..dtypes import output_dtype
    from ._volume_store import VOLUME_OUTPUTS

    output = os.fspath(output)
    lower = output.lower().rstrip("/" + os.sep)
    names = VOLUME_OUTPUTS if volume else (".tif", ".tiff", ".zarr")
    if not lower.endswith(names):
        raise ValueError(f"output={output!r}: expected a {', '.join(names[:-1])} or {names[-1]} name")
    inputs = [store] + ([source] if isinstance(source, (str, os.PathLike)) else [])
    check_output_path(output, inputs=inputs, folder_ok=lower.endswith(".zarr"))
    if dtype is not None:  # whether it holds every class is known once the model ran; the merge checks that
        output_dtype(dtype, labels=labels, classes=1)
    if compression not in (None, "zlib", "zstd"):
        raise ValueError(f"compression={compression!r} is not supported; expected None, 'zlib' or 'zstd'")
    return output


def _open_source(source):
    """What ImageReader takes: a TIFF path as is, a zarr folder opened as an array, arrays as they are."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ValueError(f"source={path!r} does not exist")
        if os.path.isdir(path):
            from .store import import_zarr

            return import_zarr().open_array(path, mode="r")
        return path
    return source


def _run_part_task(store_path, part, source, model_factory, token, pad, batch_size, volume=False):
    """One part, on a worker."""
    import dask

    from ._volume_store import source_metadata
    from .store import PartStore

    if token not in _MODELS:
        _MODELS.clear()  # a worker keeps the model of one run only
        _MODELS[token] = model_factory()
    store = PartStore(store_path)
    with dask.config.set(scheduler="synchronous"), _reader(source, pad, volume) as reader:
        metadata = {"metadata": source_metadata(reader)} if volume else {}
        return store.run_part(part, reader.read, _MODELS[token], batch_size=batch_size, parallel=False, **metadata)


def _merge_task(store_path, output, dtype, compression):
    from .store import PartStore

    PartStore(store_path).merge(output, dtype=dtype, compression=compression)
    return output
