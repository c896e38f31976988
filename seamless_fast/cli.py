"""The ``seamless-fast`` command line: ``demo``, ``segment``, ``merge`` and ``plan``.

Bad arguments print one line and exit with status 2; a failure while running
(in the model, reading or writing) prints its traceback and exits with 1.
"""

import argparse
import importlib
import json
import os
import resource
import sys
import time
import traceback

import numpy as np

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A bad argument found after parsing (a file that is not there, a model that does not import)."""


def _int_at_least(minimum):
    """An argparse type: a whole number >= `minimum`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {'positive' if minimum == 1 else '0 or more'}")
        return value
    return parse


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def _add_tiling(parser):
    parser.add_argument("--tile", type=_positive, default=256, help="tile size (default 256)")
    parser.add_argument("--overlap", type=_non_negative, default=64, help="tile overlap (default 64)")


def build_parser():
    parser = _Parser(prog="seamless-fast", description="Seamless tiled segmentation of images too large for a model.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the built-in default job on a synthetic scene (no download)",
                               description="Segment a synthetic scene with a built-in context-dependent model, "
                                           "naively and seamlessly; write both as TIFF, a side-by-side PNG, and "
                                           "print seam scores, time and peak memory.")
    demo.add_argument("--size", type=_positive, default=8192, help="scene height and width in pixels (default 8192)")
    _add_tiling(demo)
    demo.add_argument("--out", default="seamless_fast_demo", help="output folder (default ./seamless_fast_demo)")
    demo.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    segment = commands.add_parser("segment", help="segment a TIFF with your model",
                                  description="Read INPUT tile by tile, run MODEL on batches, blend seamlessly and "
                                              "write OUTPUT as a tiled TIFF (labels or probabilities).")
    segment.add_argument("input", help="input image (TIFF, BigTIFF, OME-TIFF; tiled or striped)")
    segment.add_argument("output", nargs="?",
                         help="output TIFF; written under a temporary name, renamed when complete (not with --part)")
    segment.add_argument("--model", required=True, metavar="MODULE:NAME",
                         help="the model: a callable taking a batch (B, C, H, W) (or (B, H, W, C) with "
                              "--channel-last) and returning logits of the same layout; a class is "
                              "instantiated with no arguments")
    _add_tiling(segment)
    segment.add_argument("--batch-size", type=_positive, default=16, help="tiles per model call (default 16)")
    segment.add_argument("--window", default="pyramid", choices=["pyramid", "hann", "gaussian", "constant"],
                         help="blending window (default pyramid)")
    kind = segment.add_mutually_exclusive_group()
    kind.add_argument("--labels", dest="labels", action="store_true", default=True,
                      help="write the arg-max class labels (default)")
    kind.add_argument("--probabilities", dest="labels", action="store_false",
                      help="write the blended model outputs instead of labels")
    segment.add_argument("--dtype", choices=["uint8", "uint16", "float32", "float16"],
                         help="output dtype: uint8/uint16 for labels (default uint8), float32/float16 or uint8 "
                              "(quantised 0..1 to 0..255) for probabilities (default float32)")
    segment.add_argument("--area", help="only segment inside this area: a .geojson file or a WKT string, in "
                                        "pixel coordinates (x = column, y = row)")
    layout = segment.add_mutually_exclusive_group()
    layout.add_argument("--channel-first", dest="channel_first", action="store_true", default=True,
                        help="the model takes and returns (B, C, H, W) batches, as PyTorch models do (default)")
    layout.add_argument("--channel-last", dest="channel_first", action="store_false",
                        help="the model takes and returns (B, H, W, C) batches")
    segment.add_argument("--pad", default="reflect", choices=["reflect", "edge", "constant"],
                         help="how windows crossing the image border are filled (default reflect)")
    segment.add_argument("--compression", choices=["none", "zlib", "zstd"], default="zlib",
                         help="output compression (default zlib; zstd needs imagecodecs)")
    segment.add_argument("--part", type=_part, metavar="K/N",
                         help="run only part K (0 to N-1) of the image cut into N bands of tile rows, e.g. "
                              "$SLURM_ARRAY_TASK_ID/4; needs --store, then `seamless-fast merge`")
    segment.add_argument("--store", metavar="DIR", help="zarr folder the parts of a --part run go to")
    segment.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    merge = commands.add_parser("merge", help="finish the seams of a --part run and write its output",
                                description="Once every part in DIR is complete, merge the seams between them "
                                            "and write OUTPUT (.tif/.tiff: tiled TIFF; .zarr: zarr array).")
    merge.add_argument("--store", metavar="DIR", required=True, help="the zarr folder the parts wrote")
    merge.add_argument("output", help="output .tif, .tiff or .zarr; written under a temporary name, "
                                      "renamed when complete")
    merge.add_argument("--dtype", choices=["uint8", "uint16", "float32", "float16"],
                       help="as for segment (default uint8 for labels, float32 for probabilities)")
    merge.add_argument("--compression", choices=["none", "zlib", "zstd"], default="zlib",
                       help="TIFF compression (default zlib)")

    plan = commands.add_parser("plan", help="show the tiling and memory a run will need, without running",
                               description="Plan IMAGE (a TIFF file or HEIGHTxWIDTH) and print tiles, grid and "
                                           "the memory the blend will need.")
    plan.add_argument("image", help="a TIFF file, or a size as HEIGHTxWIDTH (e.g. 40000x40000)")
    _add_tiling(plan)
    plan.add_argument("--channels", type=_positive, default=3, help="model output channels (default 3)")
    plan.add_argument("--max-memory", type=_positive, metavar="BYTES",
                      help="most bytes the blend buffer may hold; wider images then run in stripes")
    plan.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"demo": run_demo, "segment": run_segment, "merge": run_merge, "plan": run_plan_command}[args.command]
    try:
        return command(args)
    except UsageError as error:
        print(f"seamless-fast: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seamless-fast: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1


# -- plan -----------------------------------------------------------------

def _image_size(text):
    if os.path.exists(text):
        from .io import ImageReader

        with ImageReader(text) as reader:
            return reader.shape
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    raise UsageError(f"image {text!r} is neither a file nor a size like 40000x40000")


def run_plan_command(args):
    from . import analyse_plan, plan_regular_grid

    size = _image_size(args.image)
    try:
        start = time.perf_counter()
        plan, _ = plan_regular_grid(size, args.tile, args.overlap, max_buffer_bytes=args.max_memory,
                                    channels=args.channels)
        planned = time.perf_counter() - start
    except ValueError as error:
        raise UsageError(str(error)) from None
    stats = analyse_plan(plan, channels=args.channels)
    figures = dict(image_size=list(size), tile=args.tile, overlap=args.overlap, grid=list(plan.grid_shape),
                   tiles=plan.n_loads, cells=plan.n_writes, stripes=len(plan.stripes),
                   buffer_rows=plan.buffer_rows, buffer_bytes=stats.buffer_bytes,
                   output_bytes=size[0] * size[1] * args.channels * 4, planning_seconds=planned)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"image {size[0]} x {size[1]}, tile {args.tile}, overlap {args.overlap}")
    print(f"grid {plan.grid_shape[0]} x {plan.grid_shape[1]}: {plan.n_loads} tiles, {plan.n_writes} output cells")
    print(f"blend buffer: {plan.buffer_rows} rows, {stats.buffer_bytes / 2**20:.1f} MiB for {args.channels} "
          f"float32 channels ({100 * stats.buffer_bytes / figures['output_bytes']:.2f} % of the output)"
          + (f", in {len(plan.stripes)} stripes" if len(plan.stripes) > 1 else ""))
    print(f"planned in {planned * 1e3:.1f} ms")
    return 0


# -- segment --------------------------------------------------------------

def _load_model(spec):
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"--model {spec!r} is not MODULE:NAME (e.g. mypackage.models:segmenter)")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--model {spec!r}: cannot import {module_name!r}: {error}") from None
    finally:
        sys.path.pop(0)
    model = getattr(module, name, None)
    if model is None:
        raise UsageError(f"--model {spec!r}: module {module_name!r} has no {name!r}")
    if isinstance(model, type):
        model = model()
    if not callable(model):
        raise UsageError(f"--model {spec!r} is not callable")
    return model


def _load_area(text):
    import shapely
    import shapely.ops

    if text is None:
        return None
    try:
        if os.path.exists(text):
            with open(text) as handle:
                data = json.load(handle)
            features = data.get("features", [data]) if data.get("type") == "FeatureCollection" else [data]
            geoms = [shapely.geometry.shape(f.get("geometry", f)) for f in features]
            geom = shapely.union_all(geoms)
        else:
            geom = shapely.from_wkt(text)
    except Exception as error:
        raise UsageError(f"--area {text!r} is neither a GeoJSON file nor WKT: {error}") from None
    return shapely.ops.transform(lambda x, y: (y, x), geom)  # (x = column, y = row) to the library's (y, x)


def _part(text):
    """An argparse type: ``K/N`` with 0 <= K < N."""
    k, slash, n = text.partition("/")
    if not (slash and k.strip().isdigit() and n.strip().isdigit()) or not 0 <= int(k) < int(n):
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N with 0 <= K < N (e.g. 0/4)")
    return int(k), int(n)


def _output_dtype(dtype, labels):
    if dtype is None:
        return np.uint8 if labels else np.float32
    if labels and dtype not in ("uint8", "uint16"):
        raise UsageError(f"--dtype {dtype} does not hold labels; use uint8 or uint16, or --probabilities")
    return np.dtype(dtype)


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


def run_segment(args):
    from . import plan_regular_grid
    from .io import ImageReader, TiffWriter, metadata_for_output
    from .pipeline import run_pipeline

    if not os.path.exists(args.input):
        raise UsageError(f"input {args.input!r} does not exist")
    _check_part_options(args)
    model = _load_model(args.model)
    area = _load_area(args.area)
    if args.part is not None:
        return _run_segment_part(args, model, area)
    dtype = _output_dtype(args.dtype, args.labels)
    start = time.perf_counter()
    with ImageReader(args.input, pad=args.pad) as reader:
        try:
            plan, _ = plan_regular_grid(reader.shape, args.tile, args.overlap, area=area, window=args.window)
        except ValueError as error:
            raise UsageError(str(error)) from None
        channels = _probe_channels(model, reader, plan, args.channel_first)
        compression = None if args.compression == "none" else args.compression
        writer = TiffWriter(args.output, reader.shape, channels=None if args.labels else channels, dtype=dtype,
                            compression=compression, **metadata_for_output(reader))
        with writer:
            result = run_pipeline(plan, reader.read, model, _writer_sink(writer, args.channel_first),
                                  batch_size=args.batch_size,
                                  channel_first=args.channel_first, labels=args.labels,
                                  progress=True if args.progress else None)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wrote {args.output}: {plan.n_loads} tiles in {seconds:.1f} s, peak memory {peak:.0f} MiB",
          file=sys.stderr)
    return 0 if result is not None else 1


def _run_segment_part(args, model, area):
    from .io import ImageReader
    from .store import Job, PartStore

    part, parts = args.part
    with ImageReader(args.input, pad=args.pad) as reader:
        try:
            job = Job.from_options(reader.shape, args.tile, args.overlap, parts=parts, area=area, window=args.window,
                                   labels=args.labels, channel_first=args.channel_first)
            store = PartStore(args.store, job)
        except (ValueError, ImportError) as error:
            raise UsageError(str(error)) from None
        if store.result(part) is not None:
            print(f"part {part}/{parts} is already complete in {args.store}; nothing to do", file=sys.stderr)
            return 0
        result = store.run_part(part, reader.read, model, batch_size=args.batch_size,
                                progress=True if args.progress else None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"part {part}/{parts}: {result.tiles} tiles in {result.seconds:.1f} s, {result.row_bytes / 2**20:.1f} MiB "
          f"of rows, {result.seam_bytes / 2**20:.1f} MiB at seams, peak memory {peak:.0f} MiB; missing parts: "
          f"{store.missing_parts() or 'none'}", file=sys.stderr)
    return 0


def run_merge(args):
    from .store import PartStore

    try:
        store = PartStore(args.store)
        dtype = _output_dtype(args.dtype, store.job.labels)
        store.check_complete()
    except (ValueError, ImportError) as error:
        raise UsageError(str(error)) from None
    start = time.perf_counter()
    store.merge(args.output, dtype=dtype, compression=None if args.compression == "none" else args.compression)
    print(f"wrote {args.output} from {store.job.parts} parts in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _probe_channels(model, reader, plan, channel_first):
    """Run the model once on the first tile to learn how many channels it returns."""
    box = tuple(plan.tile_boxes[plan.load_order[0]].tolist())
    batch = reader.read(box)[None]
    if channel_first:
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    out = np.asarray(model(batch))
    return int(out.shape[1] if channel_first else out.shape[-1])


def _writer_sink(writer, channel_first):
    """write_cells for run_pipeline: each cell into the TIFF, channel-last as TIFF samples are."""
    def write_cells(cells):
        for cell in cells:
            data = cell.data
            writer.write(cell.box, data.transpose(1, 2, 0) if channel_first and data.ndim == 3 else data)
    return write_cells


# -- demo -----------------------------------------------------------------

def run_demo(args):
    from . import plan_regular_grid
    from .demo import SyntheticScene, context_model, seam_score, side_by_side, write_png
    from .io import TiffWriter
    from .pipeline import run_pipeline

    if args.overlap >= args.tile:
        raise UsageError(f"--overlap {args.overlap} must be smaller than --tile {args.tile}")
    os.makedirs(args.out, exist_ok=True)
    scene = SyntheticScene(args.size)
    model = context_model(scene)
    size = (args.size, args.size)
    started = time.perf_counter()

    # Naive tiling: no overlap, each tile's own arg-max pasted in place.
    naive_plan, _ = plan_regular_grid(size, args.tile, 0)
    naive = np.zeros(size, np.uint8)
    for ylo, xlo, yhi, xhi in naive_plan.tile_boxes[naive_plan.load_order].tolist():
        tile = scene.read((ylo, xlo, yhi, xhi)).transpose(2, 0, 1)[None]
        naive[ylo:yhi, xlo:xhi] = model(tile)[0].argmax(axis=0)
    naive_seconds = time.perf_counter() - started

    # Seamless: overlapping tiles, blended and arg-maxed by the pipeline, streamed to a TIFF.
    plan, _ = plan_regular_grid(size, args.tile, args.overlap)
    seamless = np.zeros(size, np.uint8)  # kept only to score and picture it; the TIFF is streamed
    start = time.perf_counter()
    with TiffWriter(os.path.join(args.out, "seamless.tif"), size, dtype=np.uint8, compression="zlib") as writer:
        def write_cells(cells):
            for cell in cells:
                writer.write(cell.box, cell.data)
                seamless[cell.slices] = cell.data

        run_pipeline(plan, scene.read, model, write_cells, batch_size=16, channel_first=True, labels=True,
                     progress=True if args.progress else None)
    seamless_seconds = time.perf_counter() - start
    with TiffWriter(os.path.join(args.out, "naive.tif"), size, dtype=np.uint8, compression="zlib") as writer:
        writer.write((0, 0) + size, naive)

    naive_cuts = sorted(set(naive_plan.tile_boxes[:, 0].tolist()) - {0}), \
        sorted(set(naive_plan.tile_boxes[:, 1].tolist()) - {0})
    seamless_cuts = sorted(set(plan.tile_boxes[:, 0].tolist()) - {0}), sorted(set(plan.tile_boxes[:, 1].tolist()) - {0})
    corner = (naive_cuts[0][len(naive_cuts[0]) // 2], naive_cuts[1][len(naive_cuts[1]) // 2])
    png = os.path.join(args.out, "naive_vs_seamless.png")
    write_png(png, side_by_side(naive, seamless, corner))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scene {args.size} x {args.size}, tile {args.tile}, overlap {args.overlap}: {plan.n_loads} tiles")
    print(f"seam score (about 1 = no seam): naive {seam_score(naive, *naive_cuts):.2f}, "
          f"seamless {seam_score(seamless, *seamless_cuts):.2f}")
    print(f"time: naive {naive_seconds:.1f} s, seamless {seamless_seconds:.1f} s; peak memory {peak:.0f} MiB")
    print(f"wrote {os.path.join(args.out, 'naive.tif')}, {os.path.join(args.out, 'seamless.tif')}, {png}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
