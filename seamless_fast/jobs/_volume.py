"""``seamless-fast segment`` on volumes: a zarr, OME-Zarr, NIfTI or TIFF-stack input into a zarr, NIfTI or TIFF."""

import os
import time

import numpy as np

from ._options import (UsageError, _one_line, check_output, checked_output_dtype, load_model,
                       mask_from_values, probe_channels)

VOLUME_INPUTS = (".zarr", ".nii", ".nii.gz")
VOLUME_OUTPUTS = (".zarr", ".nii", ".nii.gz", ".tif", ".tiff")
# options of a 2-D run that a volume run does not take: (attribute, its default, the option's name)
_IMAGE_ONLY = (("area", None, "--area (a 2-D polygon)"), ("mpp", None, "--mpp"), ("output_scale", 1, "--output-scale"),
               ("pyramid", False, "--pyramid"), ("nodata", None, "--nodata"))
MASK_FILES = (".npy",) + VOLUME_INPUTS + (".tif", ".tiff")


def is_volume(path):
    """Whether `path` names a volume: a zarr folder, a NIfTI file, or a TIFF whose first series has a z axis
    (an ImageJ hyperstack or OME-TIFF Z stack) or is a plain stack of equal pages.

    Examples
    --------
    >>> is_volume("ct.nii.gz"), is_volume("scene.zarr"), is_volume("missing.tif")
    (True, True, False)
    """
    name = os.fspath(path).lower().rstrip("/" + os.sep)
    if name.endswith(VOLUME_INPUTS):
        return True
    if not name.endswith((".tif", ".tiff")) or not os.path.isfile(path):
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes
    except Exception:  # noqa: BLE001 -- not a TIFF we can read: the image reader says what is wrong with it
        return False
    return "Z" in axes or axes.startswith("I")


def per_axis(value, name, ndim):
    """`value` (an int, or a tuple from the command line) as `ndim` ints, or a UsageError naming the option."""
    values = (value,) * ndim if isinstance(value, int) else tuple(value)
    if len(values) != ndim:
        raise UsageError(f"{name} {','.join(map(str, values))} gives {len(values)} sizes; expected 1 or {ndim} "
                         f"(one per axis, {'z,y,x' if ndim == 3 else 'y,x'})")
    return values


def one_size(value, name):
    """`value` from the command line for a 2-D image: one int, or a UsageError naming the option."""
    if isinstance(value, int):
        return value
    raise UsageError(f"{name} {','.join(map(str, value))} gives {len(value)} sizes; a 2-D image takes one "
                     "(per-axis sizes are for volumes)")


def prepare_volume_segment(args):
    """Check every option of ``seamless-fast segment`` for a volume input; return the job to run."""
    for option, default, flag in _IMAGE_ONLY:
        if getattr(args, option, default) != default:
            raise UsageError(f"{flag} applies to 2-D images; input {args.input!r} is a volume")
    tile = per_axis(args.tile, "--tile", 3)
    overlap = per_axis(args.overlap, "--overlap", 3)
    for axis, (t, o) in enumerate(zip(tile, overlap)):
        if o >= t:
            raise UsageError(f"--overlap {o} must be smaller than --tile {t} (axis {'zyx'[axis]})")
    if getattr(args, "part", None) is not None or getattr(args, "store", None) is not None:
        return _prepare_volume_part(args, tile, overlap)
    if args.output is None:
        raise UsageError("the output volume is missing (.zarr, .nii, .nii.gz, .tif or .tiff)")
    name = os.fspath(args.output).lower().rstrip("/" + os.sep)
    if not name.endswith(VOLUME_OUTPUTS):
        raise UsageError(f"output {args.output!r} has an unknown extension for a volume; expected "
                         f"{', '.join(VOLUME_OUTPUTS)}")
    check_output(args.output, inputs=[args.input], folder_ok=name.endswith(".zarr"))
    reader = _open_volume(args)
    try:
        mask = load_volume_mask(getattr(args, "mask", None), reader.shape)
        plan = _plan(reader.shape, tile, overlap, args, mask=mask)
        model = load_model(args.model)
        return _VolumeJob(args, reader, plan, model)
    except BaseException:
        reader.close()
        raise


def _prepare_volume_part(args, tile, overlap):
    """``segment VOLUME --part K/N --store DIR``: the options checked as for an image's part, the job to run."""
    from ._runs import _check_part_options, _check_store

    _check_part_options(args)
    if getattr(args, "mask", None) is not None:
        raise UsageError("--mask goes with a whole run; a --part run of a volume goes over the whole volume")
    _check_store(args.store, args.input)
    reader = _open_volume(args)
    try:
        return _VolumePartJob(args, reader, load_model(args.model), tile, overlap)
    except BaseException:
        reader.close()
        raise


def volume_plan_figures(image, *, tile, overlap, channels, context=0, output_scale=1, level=0, mpp=None):
    """The figures ``seamless-fast plan`` prints for a volume (a file, or a ``DxHxW`` size), as a dict.

    Examples
    --------
    The slab is 96 deep here, not 32: the last layer of tiles is flush with the
    bottom (z 128 to 256) and so reaches 96 into the layer above (z 96 to 224).

    >>> figures = volume_plan_figures("256x384x384", tile=128, overlap=32, channels=16)
    >>> figures["grid"], figures["tiles"], figures["slab_depth"]
    ([3, 4, 4], 48, 96)
    """
    from ..plan import analyse_plan
    from ._options import parse_size

    if output_scale != 1 or mpp is not None:
        raise UsageError(f"{'--output-scale' if output_scale != 1 else '--mpp'} applies to 2-D images; "
                         f"{image!r} is a volume")
    if os.path.exists(image):
        with _open_volume(argparse_namespace(input=image, level=level, pad="constant")) as reader:
            size = reader.shape
    elif level:
        raise UsageError(f"--level picks a level of a file; {image!r} is no file")
    else:
        size = parse_size(image)
    tile, overlap = per_axis(tile, "--tile", 3), per_axis(overlap, "--overlap", 3)
    start = time.perf_counter()
    plan = _plan(size, tile, overlap, argparse_namespace(window="pyramid", context=context))
    planned = time.perf_counter() - start
    stats = analyse_plan(plan, channels=channels)
    return dict(image_size=list(size), tile=list(tile), overlap=list(overlap), grid=list(plan.grid_shape),
                tiles=plan.n_loads, cells=plan.n_writes, slab_depth=plan.slab_depth, buffer_bytes=stats.buffer_bytes,
                output_bytes=int(np.prod(size)) * channels * 4, planning_seconds=planned, context=context)


def argparse_namespace(**values):
    import argparse

    return argparse.Namespace(**values)


def _open_volume(args):
    from ..io import VolumeReader

    if not os.path.exists(args.input):
        raise UsageError(f"input {args.input!r} does not exist")
    try:
        return VolumeReader(args.input, level=args.level, pad=args.pad)
    except ImportError as error:
        raise UsageError(f"input {args.input!r}: {_one_line(error)}") from None
    except (ValueError, OSError) as error:
        raise UsageError(f"input {args.input!r}: {_one_line(error)}") from None


def load_volume_mask(path, shape):
    """The ``--mask`` of a volume (.npy, or a volume file; nonzero is inside) as a boolean array at any lower
    resolution, checked against the volume's (D, H, W); a UsageError naming it otherwise."""
    from ..io import VolumeReader

    if path is None:
        return None
    name = os.fspath(path).lower().rstrip("/" + os.sep)
    if not name.endswith(MASK_FILES):
        raise UsageError(f"--mask {path!r} has an unknown extension for a volume; expected {', '.join(MASK_FILES)}")
    if not os.path.exists(path):
        raise UsageError(f"--mask {path!r} does not exist")
    try:
        if name.endswith(".npy"):
            values = np.load(path, allow_pickle=False)
        else:
            with VolumeReader(path) as reader:
                if reader.channels != 1:
                    raise UsageError(f"--mask {path!r} has {reader.channels} channels; expected one")
                values = reader.read((0, 0, 0) + tuple(reader.shape))[..., 0]
    except UsageError:
        raise
    except (ValueError, OSError, ImportError) as error:
        raise UsageError(f"--mask {path!r} cannot be read: {_one_line(error)}") from None
    return mask_from_values(values, path, shape)


def _plan(shape, tile, overlap, args, mask=None):
    from ..plan import plan_regular_grid

    try:
        plan, _ = plan_regular_grid(shape, tile, overlap, window=args.window, context=args.context, mask=mask)
    except (MemoryError, OverflowError):
        raise UsageError(f"volume {shape} with --tile {','.join(map(str, tile))} is too large to plan") from None
    except ValueError as error:
        raise UsageError(_one_line(error)) from None
    return plan


class _VolumeJob:
    def __init__(self, args, reader, plan, model):
        from ..io import volume_writer

        self.args, self.reader, self.plan, self.model = args, reader, plan, model
        self.start = time.perf_counter()
        channels, probe = probe_channels(model, reader, plan, args.channel_first, args.input)
        self.dtype = checked_output_dtype(args, channels, probe)
        del probe
        self.channels = None if args.labels else channels
        try:
            # with a mask, the voxels of cells it does not meet are never written: they hold 0
            fill = {} if plan.selected is None else {"fill": 0}
            self.writer = volume_writer(args.output, plan.image_size, channels=self.channels, dtype=self.dtype,
                                        source=reader, **fill)
        except (ValueError, ImportError) as error:
            raise UsageError(f"output {args.output!r}: {_one_line(error)}") from None

    def run(self):
        from ._runs import run_into_writer

        return run_into_writer(self, _volume_sink(self.writer, self.args.channel_first, self.dtype))


class _VolumePartJob:
    """One part of a volume's partitioned run: its slab of tile layers into the store, with the source's
    spacing, unit and affine for the merge."""

    def __init__(self, args, reader, model, tile, overlap):
        from ..scale._volume_store import source_metadata
        from ..scale.store import Job, PartStore

        self.args, self.reader, self.model = args, reader, model
        self.part, parts = args.part
        self.metadata = source_metadata(reader)
        try:
            job = Job.from_options(reader.shape, tile, overlap, parts=parts, window=args.window, labels=args.labels,
                                   channel_first=args.channel_first, context=args.context)
            self.store = PartStore(args.store, job)
        except (ValueError, ImportError) as error:
            raise UsageError(_one_line(error)) from None

    def run(self):
        from ._runs import run_part_job

        return run_part_job(self, metadata=self.metadata)


def _volume_sink(writer, channel_first, dtype):
    """write_cells for run_pipeline: each cell channel-last, checked into the stored dtype, into the writer."""
    from ..dtypes import to_output_dtype

    def write_cells(cells):
        for cell in cells:
            data = cell.data
            if data.ndim == 4 and channel_first:
                data = np.moveaxis(data, 0, -1)
            writer.write(cell.box, to_output_dtype(data, dtype, name=f"output cell {cell.index}"))
    return write_cells
