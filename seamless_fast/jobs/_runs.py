"""The prepared jobs of the command line (segment, a part of it, merge, demo) and what runs them."""

import os
import time

from ._options import (DEMO_MAX_SIZE, MERGE_EXTENSIONS, TIFF_EXTENSIONS, UsageError, _area_file, _one_line,
                       check_extension, check_output, check_tiling, checked_output_dtype, compile_notice, load_area,
                       load_mask, load_model, open_image, output_nodata, parse_nodata, peak_mib, plan_grid,
                       probe_channels, require_extras)
from ._volume import is_volume, one_size, prepare_volume_segment

NIFTI_EXTENSIONS = (".nii", ".nii.gz")  # merge outputs of a volume store only


def _compression(name):
    return None if name in (None, "none") else name


def prepare_segment(args):
    """Check every option of ``seamless-fast segment``; return the job to run (`args` from the parser)."""
    require_extras("seamless-fast segment", progress=args.progress)
    if is_volume(args.input):
        return prepare_volume_segment(args)
    args.tile, args.overlap = one_size(args.tile, "--tile"), one_size(args.overlap, "--overlap")
    check_tiling(args.tile, args.overlap, args.context, args.output_scale)
    _check_part_options(args)
    if args.part is None:
        check_extension(args.output, TIFF_EXTENSIONS)
        check_output(args.output, inputs=[args.input, _area_file(args.area), getattr(args, "mask", None)])
    else:
        _check_store(args.store, args.input)
    if args.labels and args.dtype not in (None, "uint8", "uint16", "uint32"):
        raise UsageError(f"--dtype {args.dtype} does not hold labels; use uint8, uint16 or uint32, or --probabilities")
    if not args.labels and args.dtype == "uint32":
        raise UsageError("--dtype uint32 holds labels only; probabilities take float32, float16, uint16 or uint8")
    nodata = parse_nodata(getattr(args, "nodata", None))
    for option, given in (("--pyramid", getattr(args, "pyramid", False)), ("--nodata", nodata is not None)):
        if given and args.part is not None:
            raise UsageError(f"{option} goes with a whole run; a --part run writes no output (merge does)")
    if getattr(args, "mask", None) is not None and args.part is not None:
        raise UsageError("--mask goes with a whole run; a --part run takes --area only")
    if args.compression == "zstd":
        try:
            import imagecodecs  # noqa: F401
        except ImportError:
            raise UsageError("--compression zstd needs imagecodecs: pip install imagecodecs") from None
    reader = open_image(args.input, pad=args.pad, level=args.level, mpp=args.mpp)
    try:
        area = load_area(args.area, reader.shape)
        if args.part is not None:
            return _PartJob(args, reader, load_model(args.model), area)
        mask = load_mask(getattr(args, "mask", None), reader.shape)
        plan = plan_grid(reader.shape, args.tile, args.overlap, area=area, window=args.window, context=args.context,
                         output_scale=args.output_scale, mask=mask)
        model = load_model(args.model)
        return _SegmentJob(args, reader, plan, model, area=area, nodata=nodata, mask=mask)
    except BaseException:
        reader.close()
        raise


def _check_part_options(args):
    if args.part is None:
        if args.store is not None:
            raise UsageError("--store goes with --part K/N")
        if args.output is None:
            raise UsageError("the output TIFF is missing (or run one part with --part K/N --store DIR)")
        return
    if args.store is None:
        raise UsageError("--part needs --store DIR, the folder the parts go to")
    if args.output is not None:
        raise UsageError(f"a --part run writes to --store; give the output {args.output!r} to "
                         "`seamless-fast merge --store DIR OUTPUT` instead")
    if args.dtype is not None:
        raise UsageError("--dtype is chosen at `seamless-fast merge` for a --part run")


def _check_store(store, source):
    """The parts store may exist (other parts made it) but must not be, or lie inside, the input."""
    from .._files import check_not_an_input

    try:
        check_not_an_input(store, [source], name="--store")
    except ValueError as error:
        raise UsageError(str(error)) from None
    if os.path.exists(store) and not os.path.isdir(store):
        raise UsageError(f"--store {store!r} is a file; expected a folder (new, or of earlier parts)")
    parent = os.path.dirname(os.path.abspath(store))
    if not os.path.isdir(parent):
        raise UsageError(f"--store {store!r}: folder {parent!r} does not exist")



class _SegmentJob:
    def __init__(self, args, reader, plan, model, area=None, nodata=None, mask=None):
        from ..io import TiffWriter, metadata_for_output
        from ..plan._input import area_to_output

        self.args, self.reader, self.plan, self.model = args, reader, plan, model
        self.start = time.perf_counter()
        channels, probe = probe_channels(model, reader, plan, args.channel_first, args.input)
        self.dtype = checked_output_dtype(args, channels, probe)
        del probe
        # labels, and the values of a one-channel model, are a 2-D image
        self.planes = None if args.labels or channels == 1 else channels
        metadata = metadata_for_output(reader, output_scale=plan.output_scale)
        nodata = output_nodata(nodata, metadata, self.dtype, area=area, mask=mask,
                               classes=channels if args.labels else None)
        pyramid = {}
        if getattr(args, "pyramid", False):
            pyramid = {"pyramid": True, "resampling": "mode" if args.labels else "mean"}
        try:
            self.writer = TiffWriter(args.output, plan.image_size, channels=self.planes,
                                     dtype=self.dtype, compression=_compression(args.compression),
                                     nodata=nodata, area=area_to_output(area, plan.output_scale), **pyramid,
                                     **metadata)
        except ValueError as error:
            raise UsageError(f"output {args.output!r}: {_one_line(error)}") from None

    def run(self):
        return run_into_writer(self, _writer_sink(self.writer, self.args.channel_first, self.dtype,
                                                  self.planes is None))


def run_into_writer(job, write_cells):
    """Run a prepared segment job (its args, reader, plan, model, writer, dtype and start time) through
    run_pipeline into `write_cells`; close the writer and the reader; return the report line."""
    from ..engine.pipeline import run_pipeline

    args = job.args
    try:
        with job.writer, (_nothing() if args.progress else compile_notice()):
            run_pipeline(job.plan, job.reader.read, job.model, write_cells, batch_size=args.batch_size,
                         channel_first=args.channel_first, labels=args.labels,
                         progress=True if args.progress else None)
    finally:
        job.reader.close()
    return (f"wrote {args.output} ({job.dtype.name}): {job.plan.n_loads} tiles in "
            f"{time.perf_counter() - job.start:.1f} s, peak memory {peak_mib():.0f} MiB")


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


def _writer_sink(writer, channel_first, dtype, flat):
    """write_cells for run_pipeline: each cell, checked into the stored dtype, into the TIFF (channel-last;
    `flat`: a 2-D TIFF, so a single channel loses its axis)."""
    from ..dtypes import to_output_dtype

    def write_cells(cells):
        for cell in cells:
            data = cell.data
            if data.ndim == 3:
                data = data.transpose(1, 2, 0) if channel_first else data
                data = data[..., 0] if flat else data
            writer.write(cell.box, to_output_dtype(data, dtype, name=f"output cell {cell.index}"))
    return write_cells


class _PartJob:
    def __init__(self, args, reader, model, area):
        from ..scale.store import Job, PartStore

        self.args, self.reader, self.model = args, reader, model
        self.part, parts = args.part
        try:
            job = Job.from_options(reader.shape, args.tile, args.overlap, parts=parts, area=area,
                                   window=args.window, labels=args.labels, channel_first=args.channel_first,
                                   context=args.context, output_scale=args.output_scale)
            self.store = PartStore(args.store, job)
        except (ValueError, ImportError) as error:
            raise UsageError(_one_line(error)) from None

    def run(self):
        return run_part_job(self)


def run_part_job(job, **options):
    """Run a prepared --part job (its args, part, store, reader and model) unless the part is complete and
    intact; close the reader; return the report line. `options` go to PartStore.run_part."""
    args, part, store = job.args, job.part, job.store
    parts = store.job.parts
    try:
        if store.result(part) is not None and _verifies(store, part):
            return f"part {part}/{parts} is already complete in {args.store}; nothing to do"
        with _nothing() if args.progress else compile_notice():
            result = store.run_part(part, job.reader.read, job.model, batch_size=args.batch_size,
                                    progress=True if args.progress else None, **options)
    finally:
        job.reader.close()
    what = "voxels" if store.job.volume else "rows"
    return (f"part {part}/{parts}: {result.tiles} tiles in {result.seconds:.1f} s, "
            f"{result.row_bytes / 2**20:.1f} MiB of {what}, {result.seam_bytes / 2**20:.1f} MiB at seams, peak "
            f"memory {peak_mib():.0f} MiB; missing parts: {store.missing_parts() or 'none'}")


def _verifies(store, part):
    """Whether a complete part still holds what its record says (a damaged one is run again)."""
    try:
        store.verify([part])
    except ValueError:
        return False
    return True


# -- merge ----------------------------------------------------------------

def prepare_merge(args):
    """Check every option of ``seamless-fast merge``; return the job to run."""
    from ..dtypes import output_dtype

    check_extension(args.output, MERGE_EXTENSIONS + NIFTI_EXTENSIONS)
    zarr_output = args.output.lower().rstrip("/" + os.sep).endswith(".zarr")
    if args.output.lower().endswith(TIFF_EXTENSIONS):
        require_extras("seamless-fast merge to a TIFF", progress=False)
    check_output(args.output, inputs=[args.store], folder_ok=zarr_output)
    if not os.path.exists(args.store):
        raise UsageError(f"--store {args.store!r} does not exist")
    if not os.path.isdir(args.store):
        raise UsageError(f"--store {args.store!r} is not a folder")
    try:
        from ..scale.store import PartStore

        store = PartStore(args.store)
        if args.output.lower().endswith(NIFTI_EXTENSIONS) and not store.job.volume:
            raise ValueError(f"output {args.output!r} is a volume format; the store holds a 2-D image's parts "
                             f"(expected {', '.join(MERGE_EXTENSIONS)})")
        store.check_complete()
        results = [store.result(q) for q in range(store.job.parts)]
        dtype = output_dtype(args.dtype, labels=store.job.labels, classes=max(r.channels for r in results))
    except (ValueError, ImportError) as error:
        raise UsageError(_one_line(error)) from None
    return _MergeJob(args, store, dtype)


class _MergeJob:
    def __init__(self, args, store, dtype):
        self.args, self.store, self.dtype = args, store, dtype

    def run(self):
        start = time.perf_counter()
        try:
            self.store.merge(self.args.output, dtype=self.dtype, compression=_compression(self.args.compression))
        except ValueError as error:  # the store's own checks (output, dtype, a tampered part)
            raise UsageError(_one_line(error)) from None
        return (f"wrote {self.args.output} ({self.dtype.name}) from {self.store.job.parts} parts in "
                f"{time.perf_counter() - start:.1f} s")


# -- demo -----------------------------------------------------------------

def prepare_demo(args):
    """Check the options of ``seamless-fast demo``; return the job to run."""
    require_extras("seamless-fast demo", progress=args.progress)
    check_tiling(args.tile, args.overlap)
    if not args.tile < args.size <= DEMO_MAX_SIZE:
        raise UsageError(f"--size {args.size} must be larger than --tile {args.tile} (so that there are seams to "
                         f"show) and at most {DEMO_MAX_SIZE}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out!r} is a file; expected a folder (new or existing)")
    parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(parent):
        raise UsageError(f"--out {args.out!r}: folder {parent!r} does not exist")
    if os.path.isdir(args.out):
        for name in ("naive.tif", "seamless.tif", "naive_vs_seamless.png"):
            check_output(os.path.join(args.out, name), inputs=[], name="--out")
    return _DemoJob(args)


class _DemoJob:
    def __init__(self, args):
        self.args = args

    def run(self):
        from ..demo import run_demo

        os.makedirs(self.args.out, exist_ok=True)
        with _nothing() if self.args.progress else compile_notice():
            return run_demo(self.args.size, self.args.tile, self.args.overlap, self.args.out,
                            progress=self.args.progress)
