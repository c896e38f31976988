"""The checks and parsers behind the command line: one line naming the argument for every bad input."""

import importlib
import json
import math
import os
import resource
import sys
import time
import warnings

import numpy as np

from .._files import check_output_path

__all__ = ["UsageError", "CLI_EXTRA", "plan_figures", "parse_size", "load_model", "load_area", "plan_grid"]

CLI_EXTRA = "pip install 'seamless_fast[cli]'"
TIFF_EXTENSIONS = (".tif", ".tiff")
MERGE_EXTENSIONS = (".tif", ".tiff", ".zarr")
# The demo keeps two label maps in memory (2 * size**2 bytes) to score and picture them.
DEMO_MAX_SIZE = 32768
# A plan holds about 0.6 kB per tile at its peak (1.4 kB of RSS measured); refused when this would exceed the memory.
PLAN_BYTES_PER_TILE = 1024


class UsageError(ValueError):
    """A bad argument, found before any work: the command line prints it on one line and exits with 2."""


def _one_line(error):
    text = " ".join(str(error).split())
    return text or type(error).__name__


def require_extras(command, *, progress):
    """Refuse a command that needs tifffile (and tqdm for a progress bar) on a core-only install."""
    missing = []
    for name in ("tifffile",) + (("tqdm",) if progress else ()):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UsageError(f"{command} needs {' and '.join(missing)}, which are not installed: {CLI_EXTRA}")


def check_tiling(tile, overlap, context=0, output_scale=1):
    if overlap >= tile:
        raise UsageError(f"--overlap {overlap} must be smaller than --tile {tile}")
    for name, value in (("--tile", tile), ("--overlap", overlap), ("--context", context)):
        if value % output_scale:
            raise UsageError(f"{name} {value} is not a multiple of --output-scale {output_scale}: the model returns "
                             "tiles --output-scale times smaller, so --tile, --overlap and --context must divide "
                             "evenly by it")


def check_extension(path, extensions, name="output"):
    if not os.fspath(path).lower().endswith(extensions):
        raise UsageError(f"{name} {os.fspath(path)!r} has an unknown extension; expected {', '.join(extensions)}")


def check_output(path, *, inputs, name="output", folder_ok=False):
    """:func:`~seamless_fast._files.check_output_path` with its ValueError as a UsageError."""
    try:
        return check_output_path(path, inputs=inputs, name=name, folder_ok=folder_ok)
    except ValueError as error:
        raise UsageError(str(error)) from None


def open_image(path, **options):
    """An :class:`~seamless_fast.io.ImageReader` of `path`, or a UsageError naming it (or ``--level``/``--mpp``)."""
    from ..io import ImageReader
    from ..io._levels import _LevelChoice

    if not os.path.exists(path):
        raise UsageError(f"input {path!r} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"input {path!r} is a folder; expected a TIFF file")
    try:
        return ImageReader(path, **options)
    except (ImportError, MemoryError):
        raise
    except _LevelChoice as error:
        value = f"{error.value:g}" if isinstance(error.value, float) else error.value
        raise UsageError(f"--{error.name} {value} {error.detail}") from None
    except Exception as error:  # tifffile's errors for a file that is not a readable TIFF
        raise UsageError(f"input {path!r} is not a readable TIFF: {_one_line(error)}") from None


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this system: let the allocation decide
        return float("inf")


def plan_grid(image_size, tile, overlap, **options):
    """:func:`~seamless_fast.plan_regular_grid`, with sizes too large to plan refused as a UsageError."""
    from ..plan import plan_regular_grid

    check_tiling(tile, overlap, options.get("context", 0), options.get("output_scale", 1))
    step = tile - overlap
    tiles = math.prod(max(1, math.ceil((side - overlap) / step)) for side in image_size)
    if tiles * PLAN_BYTES_PER_TILE > _physical_memory():
        raise UsageError(f"image size {tuple(image_size)} with --tile {tile} is too large to plan: about "
                         f"{tiles:.3g} tiles, whose plan needs more than this machine's memory")
    # The TIFF writer completes a band of TIFF tile rows only once all its cells came: walking columns, it
    # would hold the whole image. File outputs are written in rows.
    options.setdefault("traverse", "rows")
    try:
        plan, _ = plan_regular_grid(image_size, tile, overlap, **options)
        return plan
    except (MemoryError, OverflowError):
        pass
    except ValueError as error:
        if "too big" not in str(error):  # numpy's "array is too big" is a size, not a bad option
            raise UsageError(_one_line(error)) from None
    raise UsageError(f"image size {tuple(image_size)} with --tile {tile} is too large to plan: about {tiles:.3g} "
                     "tiles")


# -- plan -----------------------------------------------------------------

def parse_size(text):
    """(height, width) of a TIFF file or of a ``HEIGHTxWIDTH`` string.

    Examples
    --------
    >>> parse_size("40000x30000")
    (40000, 30000)
    >>> parse_size("12x")
    Traceback (most recent call last):
    ...
    seamless_fast.jobs.UsageError: image '12x' is neither a file nor a size like 40000x40000
    """
    if os.path.exists(text):
        with open_image(text) as reader:
            return reader.shape
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        size = int(parts[0]), int(parts[1])
        if min(size) < 1:
            raise UsageError(f"image size {text!r} must be positive")
        return size
    raise UsageError(f"image {text!r} is neither a file nor a size like 40000x40000")


def plan_figures(image, *, tile, overlap, channels, max_memory=None, context=0, output_scale=1, level=0, mpp=None):
    """The figures ``seamless-fast plan`` prints, as a dict.

    `context` and `output_scale` as for :func:`~seamless_fast.plan_regular_grid`;
    ``read_window`` is the (height, width) of the first tile's input window,
    ``output_tile`` of its output, ``output_size`` the output image's.

    Of a file, the plan is that of the level read (`level`, or the one
    nearest `mpp` micrometres per pixel), and the figures also give
    ``level`` and ``levels``: each level's number, ``size``,
    ``downsample`` and ``mpp`` (None where the file gives no resolution).

    Examples
    --------
    >>> figures = plan_figures("4000x3000", tile=256, overlap=64, channels=3)
    >>> figures["grid"], figures["tiles"], figures["buffer_rows"]
    ([21, 16], 336, 160)
    >>> figures = plan_figures("4000x3000", tile=256, overlap=64, channels=3, context=32, output_scale=4)
    >>> figures["read_window"], figures["output_tile"], figures["output_size"]
    ([320, 320], [64, 64], [1000, 750])
    """
    from ..plan import analyse_plan

    levels = None
    if os.path.exists(image):
        with open_image(image, level=level, mpp=mpp) as reader:
            size, levels, level = reader.shape, reader.levels, reader.level
    elif level or mpp is not None:
        raise UsageError(f"--level and --mpp pick a level of a file; {image!r} is no file")
    else:
        size = parse_size(image)
    start = time.perf_counter()
    plan = plan_grid(size, tile, overlap, max_buffer_bytes=max_memory, channels=channels, context=context,
                     output_scale=output_scale)
    planned = time.perf_counter() - start
    stats = analyse_plan(plan, channels=channels)
    read, out = plan.read_boxes()[0], plan.tile_boxes[plan.load_order[0]]
    return dict(image_size=list(size), tile=tile, overlap=overlap, grid=list(plan.grid_shape),
                tiles=plan.n_loads, cells=plan.n_writes, stripes=len(plan.stripes), buffer_rows=plan.buffer_rows,
                buffer_bytes=stats.buffer_bytes, output_bytes=math.prod(plan.image_size) * channels * 4,
                planning_seconds=planned, context=context, output_scale=output_scale,
                read_window=(read[2:] - read[:2]).tolist(), output_tile=(out[2:] - out[:2]).tolist(),
                output_size=list(plan.image_size), **_level_figures(levels, level))


def _level_figures(levels, level):
    if levels is None:
        return {}
    return dict(level=level, levels=[dict(level=k, size=list(info.shape), downsample=list(info.downsample),
                                          mpp=None if info.mpp is None else list(info.mpp))
                                     for k, info in enumerate(levels)])


# -- the model and the area -------------------------------------------------

def load_model(spec):
    """The callable named by ``MODULE:NAME``; a class is instantiated with no arguments.

    The working directory is searched for MODULE after every installed
    package, so that a stray ``torch.py`` or ``numpy.py`` there cannot
    shadow one.
    """
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"--model {spec!r} is not MODULE:NAME (e.g. mypackage.models:segmenter)")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raised while importing
        raise UsageError(f"--model {spec!r}: cannot import {module_name!r}: {type(error).__name__}: "
                         f"{_one_line(error)}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    model = getattr(module, name, None)
    if model is None:
        raise UsageError(f"--model {spec!r}: module {module_name!r} has no {name!r}")
    if isinstance(model, type):
        try:
            model = model()
        except Exception as error:
            raise UsageError(f"--model {spec!r}: {name}() failed: {type(error).__name__}: {_one_line(error)}") \
                from None
    if not callable(model):
        raise UsageError(f"--model {spec!r} is not callable")
    return model


def load_area(text, image_size):
    """The ``--area`` (a GeoJSON file or WKT, x = column, y = row) as a geometry in (y, x), checked."""
    import shapely
    import shapely.ops

    if text is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # shapely's "invalid value" for NaN: refused below
            geom = _read_area(text)
    except Exception as error:
        raise UsageError(f"--area {text!r} is neither a GeoJSON file nor WKT: {_one_line(error)}") from None
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise UsageError(f"--area {text!r} has coordinates that are not finite numbers")
    if geom.is_empty or geom.area <= 0:
        raise UsageError(f"--area {text!r} encloses no area; expected a polygon")
    if not geom.is_valid:
        raise UsageError(f"--area {text!r} is not a valid polygon: {shapely.is_valid_reason(geom)}")
    height, width = image_size
    image = shapely.box(0, 0, width, height)
    if shapely.intersection(geom, image).area <= 0:
        raise UsageError(f"--area {text!r} (x from {geom.bounds[0]:g} to {geom.bounds[2]:g}, y from "
                         f"{geom.bounds[1]:g} to {geom.bounds[3]:g}) lies outside the image of {height} rows "
                         f"and {width} columns")
    return shapely.ops.transform(lambda x, y: (y, x), geom)  # to the library's (y, x)


def _read_area(text):
    import shapely

    if os.path.exists(text):
        with open(text) as handle:
            data = json.load(handle)
        features = data.get("features", [data]) if data.get("type") == "FeatureCollection" else [data]
        return shapely.union_all([shapely.geometry.shape(f.get("geometry", f)) for f in features])
    return shapely.from_wkt(text)


def _area_file(text):
    return text if text is not None and os.path.isfile(text) else None


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def compile_notice():
    """A context manager that prints the compile notice on stderr (for runs without a progress bar)."""
    from .._progress import COMPILE_NOTICE, watch_compiles

    return watch_compiles(lambda: print(COMPILE_NOTICE, file=sys.stderr, flush=True))


# -- segment --------------------------------------------------------------

def probe_channels(model, reader, plan, channel_first, name="input"):
    """Run the model once on the first tile; return the number of channels it gives (its classes) and its output."""
    box = tuple(plan.read_boxes()[0].tolist())  # the tile's box, scaled and grown by the context
    tile = plan.tile_boxes[plan.load_order[0]].tolist()
    try:
        batch = reader.read(box)[None]
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as error:  # a truncated or corrupt file whose header read well
        raise UsageError(f"input {name!r}: the first tile {box} cannot be read: {type(error).__name__}: "
                         f"{_one_line(error)}") from None
    if channel_first:
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    from ..engine.pipeline import _to_numpy

    out = _to_numpy(model(batch))
    spatial = (out.shape[2:] if channel_first else out.shape[1:3]) if out.ndim == 4 else None
    want = (tile[2] - tile[0], tile[3] - tile[1])
    if out.ndim != 4 or out.shape[0] != 1 or spatial != want:
        layout = "(1, C, H, W)" if channel_first else "(1, H, W, C)"
        scaled = "" if plan.output_scale == (1, 1) and plan.context == (0, 0) else \
            ", its input less twice --context, divided by --output-scale"
        raise UsageError(f"--model returned shape {out.shape} for a batch of shape {batch.shape}; expected {layout} "
                         f"with the tile's H and W {want}{scaled} (see --channel-first / --channel-last)")
    return int(out.shape[1] if channel_first else out.shape[-1]), out


def check_values(values, dtype):
    """Refuse a values dtype that cannot store the model's output on the probe tile (logits as uint8, say)."""
    from ..dtypes import to_output_dtype

    try:
        to_output_dtype(np.asarray(values, np.float32), dtype, name="the model's output on the first tile")
    except ValueError as error:
        raise UsageError(f"--dtype {dtype.name}: {_one_line(error)}") from None


def parse_nodata(text):
    """The ``--nodata`` value as a number (an int when it is one), or None; a UsageError if it is no number.

    Examples
    --------
    >>> parse_nodata("255"), parse_nodata("-1.5"), parse_nodata("nan")
    (255, -1.5, nan)
    """
    from ..io._geo import parse_nodata as as_number

    value = as_number(text)
    if value is None and text is not None:
        raise UsageError(f"--nodata {text!r} is not a number")
    return value


def output_nodata(given, metadata, dtype, *, area, classes):
    """The nodata of the output: `given` (``--nodata``; refused if `dtype` cannot hold it); else, with an
    `area` (outside which nothing is computed), a value no result takes: NaN for floats, the largest value
    of `dtype` for labels when it is no class; else None (unwritten pixels are 0, no nodata is recorded).

    The input's nodata (popped from `metadata`) is not carried over: it describes the input's values, and
    as the output's it would hide a class or a probability that happens to equal it (class 0, say).

    Examples
    --------
    >>> import numpy as np
    >>> output_nodata(None, {"nodata": 0}, np.dtype(np.uint8), area=None, classes=4) is None
    True
    >>> output_nodata(None, {}, np.dtype(np.uint8), area="an area", classes=4)
    255
    >>> output_nodata(None, {}, np.dtype(np.float32), area="an area", classes=4)
    nan
    """
    from ..io._common import _check_fill

    metadata.pop("nodata", None)
    if given is None:
        if area is None:
            return None
        if dtype.kind == "f":
            return float("nan")
        top = int(np.iinfo(dtype).max)
        return top if classes is not None and classes <= top else None
    try:
        _check_fill(given, dtype, name="nodata")
    except ValueError:
        raise UsageError(f"--nodata {given!r} cannot be stored in the output dtype {dtype.name}") from None
    return given
