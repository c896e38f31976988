"""The ``seamless-fast`` command line: ``demo``, ``segment``, ``merge`` and ``plan``.

This module only parses; the jobs, and every check of their inputs, are in
:mod:`seamless_fast.jobs`. The contract:

- exit 0: the output is complete and right;
- exit 2, one line on stderr: a bad argument or input (a file that is not a
  TIFF, an output that would destroy an input, a dtype too narrow for the
  model's classes, a model that does not import, a missing extra), found
  before the model runs on more than one probe tile, with no output written;
- exit 1, a traceback: a failure while running (in the model, reading or
  writing), with no output written;
- exit 130: interrupted.

Nothing heavy is imported before the arguments parse: ``--help``, ``plan``
and argument errors never load numba.
"""

import argparse
import json
import sys
import traceback

__all__ = ["main", "build_parser"]

DTYPES = ["uint8", "uint16", "uint32", "float32", "float16"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def _sizes(minimum):
    """An argparse type: one whole number >= `minimum`, or one per axis, ``Z,Y,X`` (a volume's)."""
    one = _int_at_least(minimum)

    def parse(text):
        values = tuple(one(part.strip()) for part in text.split(","))
        return values[0] if len(values) == 1 else values
    return parse


def _resolution(text):
    """An argparse type: a positive number of micrometres per pixel."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of micrometres per pixel")
    return value


def _part(text):
    """An argparse type: ``K/N`` with 0 <= K < N."""
    k, slash, n = text.partition("/")
    if not (slash and k.strip().isdigit() and n.strip().isdigit()) or not 0 <= int(k) < int(n):
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N with 0 <= K < N (e.g. 0/4)")
    return int(k), int(n)


def _add_tiling(parser, volumes=False):
    if not volumes:
        parser.add_argument("--tile", type=_positive, default=256, help="tile size (default 256)")
        parser.add_argument("--overlap", type=_non_negative, default=64, help="tile overlap (default 64)")
        return
    parser.add_argument("--tile", type=_sizes(1), default=256,
                        help="tile size (default 256); for a volume one size or Z,Y,X (e.g. 96,128,128)")
    parser.add_argument("--overlap", type=_sizes(0), default=64,
                        help="tile overlap (default 64); for a volume one size or Z,Y,X (e.g. 24,32,32)")


def _add_level(parser):
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--level", type=_non_negative, default=0, metavar="K",
                       help="read level K of a pyramidal TIFF (OME-TIFF, SVS, NDPI, GeoTIFF overviews; default 0, "
                            "full resolution); `seamless-fast plan FILE` lists the levels")
    level.add_argument("--mpp", type=_resolution, metavar="X",
                       help="read the level nearest X micrometres per pixel (the file must give its resolution)")


def _add_model_geometry(parser):
    parser.add_argument("--context", type=_non_negative, default=0, metavar="N",
                        help="input pixels the model reads beyond each tile on every side; it returns the tile "
                             "only (default 0)")
    parser.add_argument("--output-scale", type=_positive, default=1, metavar="S",
                        help="the model returns tiles S times smaller than --tile; the output is the input's size "
                             "divided by S, rounded up (default 1). --tile, --overlap and --context must be "
                             "multiples of S")


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
    segment.add_argument("input", help="input image (TIFF, BigTIFF, OME-TIFF; tiled or striped) or volume (zarr or "
                                       "OME-Zarr folder, NIfTI .nii/.nii.gz, TIFF stack)")
    segment.add_argument("output", nargs="?",
                         help="output .tif/.tiff (for a volume also .zarr, .nii, .nii.gz); written under a temporary "
                              "name, renamed when complete (not with --part); may not be the input")
    segment.add_argument("--model", required=True, metavar="MODULE:NAME",
                         help="the model: a callable taking a batch (B, C, H, W) (or (B, H, W, C) with "
                              "--channel-last; a volume's (B, C, D, H, W) or (B, D, H, W, C)) and returning logits "
                              "of the same layout; a class is instantiated with no arguments")
    _add_tiling(segment, volumes=True)
    _add_model_geometry(segment)
    segment.add_argument("--batch-size", type=_positive, default=16, help="tiles per model call (default 16)")
    segment.add_argument("--window", default="pyramid", choices=["pyramid", "hann", "gaussian", "constant"],
                         help="blending window (default pyramid)")
    kind = segment.add_mutually_exclusive_group()
    kind.add_argument("--labels", dest="labels", action="store_true", default=True,
                      help="write the arg-max class labels (default)")
    kind.add_argument("--probabilities", dest="labels", action="store_false",
                      help="write the blended model outputs instead of labels")
    segment.add_argument("--dtype", choices=DTYPES,
                         help="output dtype. Labels: uint8, uint16 or uint32; by default the smallest that holds "
                              "every class the model gives (uint8 up to 256 classes); one too narrow is refused. "
                              "Probabilities: float32 (default), float16, or uint8/uint16 (0..1 stored as "
                              "0..255 / 0..65535; values outside [0, 1] are refused)")
    segment.add_argument("--area", help="only segment inside this area: a .geojson file or a WKT string, in "
                                        "pixel coordinates of the level read (x = column, y = row)")
    segment.add_argument("--mask", metavar="FILE",
                         help="only segment the cells that meet this mask (a tissue mask, say): a .npy, .png or "
                              ".tif image over the whole input (the level read) at any lower resolution, nonzero "
                              "inside; with --area, the cells that meet both. Not with --part")
    layout = segment.add_mutually_exclusive_group()
    layout.add_argument("--channel-first", dest="channel_first", action="store_true", default=True,
                        help="the model takes and returns (B, C, H, W) batches, as PyTorch models do (default)")
    layout.add_argument("--channel-last", dest="channel_first", action="store_false",
                        help="the model takes and returns (B, H, W, C) batches")
    segment.add_argument("--pad", default="reflect", choices=["reflect", "edge", "constant"],
                         help="how windows crossing the image border are filled (default reflect)")
    segment.add_argument("--compression", choices=["none", "zlib", "zstd"], default="zlib",
                         help="output compression (default zlib; zstd needs imagecodecs)")
    segment.add_argument("--pyramid", action="store_true",
                         help="also write reduced levels (each half the size; mode for labels, mean for "
                              "probabilities): GeoTIFF overviews for a georeferenced input, else SubIFDs")
    segment.add_argument("--nodata", metavar="V",
                         help="value recorded as nodata and written where nothing is segmented (outside --area "
                              "or --mask); default: none without them; with one, NaN for float probabilities, the "
                              "dtype's largest value for labels (none for uint8/uint16 probabilities: 0 is written). "
                              "The input's nodata is not carried over: it could hide a class")
    segment.add_argument("--part", type=_part, metavar="K/N",
                         help="run only part K (0 to N-1) of the image cut into N bands of tile rows (a volume: "
                              "slabs of tile layers), e.g. $SLURM_ARRAY_TASK_ID/4; needs --store, then "
                              "`seamless-fast merge`")
    segment.add_argument("--store", metavar="DIR", help="zarr folder the parts of a --part run go to")
    _add_level(segment)
    segment.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    merge = commands.add_parser("merge", help="finish the seams of a --part run and write its output",
                                description="Once every part in DIR is complete, merge the seams between them "
                                            "and write OUTPUT (.tif/.tiff: tiled TIFF; .zarr: zarr array; a volume's "
                                            "parts: .zarr, .nii, .nii.gz, .tif or .tiff, as segment writes them).")
    merge.add_argument("--store", metavar="DIR", required=True, help="the zarr folder the parts wrote")
    merge.add_argument("output", help="output .tif, .tiff or .zarr (a volume also .nii, .nii.gz); written under "
                                      "a temporary name, renamed when complete")
    merge.add_argument("--dtype", choices=DTYPES,
                       help="as for segment (default: the smallest label dtype that holds every class, or float32)")
    merge.add_argument("--compression", choices=["none", "zlib", "zstd"], default="zlib",
                       help="TIFF compression (default zlib)")

    plan = commands.add_parser("plan", help="show the tiling and memory a run will need, without running",
                               description="Plan IMAGE (a TIFF file or HEIGHTxWIDTH) and print tiles, grid and "
                                           "the memory the blend will need; of a file, also its levels with "
                                           "their sizes, downsamples and resolutions.")
    plan.add_argument("image", help="a TIFF file, or a size as HEIGHTxWIDTH (e.g. 40000x40000); a volume file, or "
                                     "DEPTHxHEIGHTxWIDTH (e.g. 256x384x384)")
    _add_tiling(plan, volumes=True)
    _add_model_geometry(plan)
    plan.add_argument("--channels", type=_positive, default=3, help="model output channels (default 3)")
    plan.add_argument("--max-memory", type=_positive, metavar="BYTES",
                      help="most bytes the blend buffer may hold; wider images then run in stripes")
    _add_level(plan)
    plan.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main(argv=None):
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    from . import jobs

    try:
        if args.command == "plan":
            return _plan(args, jobs)
        prepare = {"demo": jobs.prepare_demo, "segment": jobs.prepare_segment, "merge": jobs.prepare_merge}
        job = prepare[args.command](args)
        report = job.run()
        print(report, file=sys.stdout if args.command == "demo" else sys.stderr)
        return 0
    except jobs.UsageError as error:
        print(f"seamless-fast: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seamless-fast: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1


def _plan(args, jobs):
    figures = jobs.plan_figures(args.image, tile=args.tile, overlap=args.overlap, channels=args.channels,
                                max_memory=args.max_memory, context=args.context, output_scale=args.output_scale,
                                level=args.level, mpp=args.mpp)
    if args.json:
        print(json.dumps(figures))
        return 0
    if len(figures["image_size"]) == 3:
        return _print_volume_plan(figures, args.channels)
    size, channels = figures["image_size"], args.channels
    for line in _level_lines(figures.get("levels"), figures.get("level")):
        print(line)
    print(f"image {size[0]} x {size[1]}, tile {args.tile}, overlap {args.overlap}")
    if args.context or args.output_scale > 1:
        read, out, whole = figures["read_window"], figures["output_tile"], figures["output_size"]
        print(f"model reads {read[0]} x {read[1]} windows (context {args.context}) and returns {out[0]} x {out[1]} "
              f"tiles (output scale {args.output_scale}); output {whole[0]} x {whole[1]}")
    print(f"grid {figures['grid'][0]} x {figures['grid'][1]}: {figures['tiles']} tiles, {figures['cells']} output "
          "cells")
    print(f"blend buffer: {figures['buffer_rows']} rows, {figures['buffer_bytes'] / 2**20:.1f} MiB for {channels} "
          f"float32 channels ({100 * figures['buffer_bytes'] / figures['output_bytes']:.2f} % of the output)"
          + (f", in {figures['stripes']} stripes" if figures["stripes"] > 1 else ""))
    print(f"planned in {figures['planning_seconds'] * 1e3:.1f} ms")
    return 0


def _print_volume_plan(figures, channels):
    size, grid = figures["image_size"], figures["grid"]
    print(f"volume {' x '.join(map(str, size))}, tile {','.join(map(str, figures['tile']))}, overlap "
          f"{','.join(map(str, figures['overlap']))}")
    print(f"grid {' x '.join(map(str, grid))}: {figures['tiles']} tiles, {figures['cells']} output cells")
    print(f"blend buffer: a slab {figures['slab_depth']} deep and one layer's band, "
          f"{figures['buffer_bytes'] / 2**20:.1f} MiB for {channels} float32 channels "
          f"({100 * figures['buffer_bytes'] / figures['output_bytes']:.2f} % of the output)")
    print(f"planned in {figures['planning_seconds'] * 1e3:.1f} ms")
    return 0


def _level_lines(levels, read):
    """The levels of a file, one line each, the one read marked (nothing for a size)."""
    if levels is None:
        return []
    lines = [f"{len(levels)} level{'s' if len(levels) > 1 else ''}:"]
    for level in levels:
        (height, width), (sy, sx), mpp = level["size"], level["downsample"], level["mpp"]
        resolution = "resolution unknown" if mpp is None else f"{mpp[0]:.4g} x {mpp[1]:.4g} um/pixel"
        mark = "  <- read" if level["level"] == read else ""
        lines.append(f"  level {level['level']}: {height} x {width}, downsample {sy:.4g} x {sx:.4g}, "
                     f"{resolution}{mark}")
    return lines


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
