"""Peak memory and time per window against MONAI's ``sliding_window_inference``, each side in a fresh process.

    python profiling/monai_compare.py [--size 256,384,384] [--roi 128] [--overlap 32] [--channels 16]
        [--rounds 3] [--sides monai,values,labels,values_out,labels_out] [--channel-last] [--window gaussian]
        [--monai-python /work/venv-monai/bin/python] [--json OUT] [--quick] [--check]

The scenario of issue 14: a float32 volume (D, H, W) of one input channel, cubic windows of `--roi` voxels
overlapping by `--overlap`, a zero-cost model with C = `--channels` outputs, on the CPU.

- ``monai``: ``sliding_window_inference(inputs, roi_size=(roi,) * 3, sw_batch_size=4, predictor,
  overlap=overlap / roi, mode=window)`` (`--window`, "gaussian" by default) run by `--monai-python` (MONAI
  and torch are not dependencies of the project; they live in their own environment). The predictor
  returns (a view of) one pre-made (4, C, roi, roi, roi) tensor. MONAI weights that tensor in place, so its
  values shrink from call to call; denormals are flushed (``torch.set_flush_denormal``) so that this cannot
  slow it down.
  ``monai_argmax`` adds ``output.argmax(1)`` cast to uint8, the labels a MONAI user computes afterwards.
- ``values`` / ``labels``: ``seamless_fast.plan_regular_grid((D, H, W), roi, overlap, window=window)``
  and ``Blender(plan)`` / ``Blender(plan, labels=True)`` pushing one pre-made tile, channel-first (C, d, h, w)
  as MONAI's models give (channel-last with `--channel-last`), every emitted cell dropped, as a streaming
  writer's consumer would. ``values_out`` / ``labels_out`` write into a full-size output passed as ``out=``,
  allocated inside the measured run, as MONAI's output is.

Both sides copy each window's input voxels out of the volume (MONAI concatenates them into its batch),
and both pre-made model outputs hold random values in [0, 1), made once before the baseline.

Memory: each process takes its baseline RSS (VmRSS of /proc/self/status) after the imports, after allocating
the input volume and the pre-made model output, and after a warm-up run on a one-window volume (torch's first
calls, numba's kernels); it then resets the high-water mark by writing "5" to /proc/self/clear_refs, runs, and
reads VmHWM. "peak over baseline" is VmHWM - baseline: everything the run itself held at its worst moment,
the returned output included. Time: the run's wall time over its number of windows. Sides run alternately,
one fresh process each, for `--rounds` rounds; the figures are medians over the rounds.

``--check`` runs both sides on a small volume with a distinct pre-made tile per window and compares their
outputs with each other and with a numpy reference of each definition. Both windows are the Gaussian of
sigma = roi / 8 centred on the tile, but MONAI clamps its 3-D map from below at 1e-3 (``min_non_zero`` in
``monai.data.utils.compute_importance_map``), while ours is the plain separable product, so the two differ
where a window's corner weights fall under 1e-3 in an overlap.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MONAI_PYTHON = "/work/venv-monai/bin/python"
SIDES = ("monai", "monai_argmax", "values", "labels", "values_out", "labels_out")
BATCH = 4  # MONAI's sw_batch_size in the scenario
MIB = 2 ** 20


# -- pure helpers ------------------------------------------------------------------------------------------

def parse_size(text):
    """Parse ``"D,H,W"`` into a tuple of three positive ints.

    Examples
    --------
    >>> parse_size("256,384,384")
    (256, 384, 384)
    """
    parts = text.split(",")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"--size={text!r} is not valid; expected three positive integers D,H,W")
    return size


def parse_sides(text):
    """Parse a comma-separated list of sides, each one of `SIDES`.

    Examples
    --------
    >>> parse_sides("monai,labels")
    ('monai', 'labels')
    """
    sides = tuple(part for part in text.split(",") if part)
    unknown = [side for side in sides if side not in SIDES]
    if not sides or unknown:
        raise ValueError(f"--sides={text!r} is not valid; expected a comma-separated list of {', '.join(SIDES)}")
    return sides


def check_scenario(size, roi, overlap, channels):
    """Refuse a scenario the two sides would not cut into the same windows.

    MONAI pads a volume smaller than its window and steps by ``int(roi * (1 - overlap / roi))``, which
    floating point can leave one short of ``roi - overlap``; both would give other windows than ours.

    Examples
    --------
    >>> check_scenario((256, 384, 384), 128, 32, 16)
    >>> check_scenario((100, 384, 384), 128, 32, 16)
    Traceback (most recent call last):
    ...
    ValueError: --size=(100, 384, 384) is smaller than --roi=128 on some axis; expected every axis >= roi
    """
    if roi < 1:
        raise ValueError(f"--roi={roi} is not valid; expected a positive integer")
    if not 0 <= overlap < roi:
        raise ValueError(f"--overlap={overlap} is not valid; expected 0 <= overlap < roi ({roi})")
    if channels < 1:
        raise ValueError(f"--channels={channels} is not valid; expected a positive integer")
    if min(size) < roi:
        raise ValueError(f"--size={size} is smaller than --roi={roi} on some axis; expected every axis >= roi")
    if int(roi * (1 - overlap / roi)) != roi - overlap:
        raise ValueError(f"--overlap={overlap} is not valid with --roi={roi}: MONAI's step "
                         f"int(roi * (1 - overlap / roi)) is not roi - overlap")


def window_starts(n, roi, overlap):
    """Window starts along one axis of `n` voxels: MONAI's ``dense_patch_slices`` rule (the last window flush).

    Examples
    --------
    >>> window_starts(384, 128, 32)
    [0, 96, 192, 256]
    >>> window_starts(128, 128, 32)
    [0]
    """
    step = roi - overlap
    starts = [0]
    while starts[-1] + roi < n:
        starts.append(min(starts[-1] + step, n - roi))
    return starts


def window_boxes(size, roi, overlap):
    """Every window's box (zlo, ylo, xlo, zhi, yhi, xhi), z slowest and x fastest, as both sides visit them.

    Examples
    --------
    >>> len(window_boxes((256, 384, 384), 128, 32))
    48
    >>> window_boxes((128, 128, 160), 128, 32)
    [(0, 0, 0, 128, 128, 128), (0, 0, 32, 128, 128, 160)]
    """
    zs, ys, xs = (window_starts(n, roi, overlap) for n in size)
    return [(z, y, x, z + roi, y + roi, x + roi) for z in zs for y in ys for x in xs]


def monai_bytes(size, roi, channels, batch=BATCH):
    """What MONAI's sliding_window_inference allocates for float32 input of one image and one channel.

    Keys: ``output`` (1, C, D, H, W) and ``count_map`` (1, 1, D, H, W), both zero-filled on the first
    batch; ``importance_map`` (1, 1, roi, roi, roi); ``input_batch`` the concatenated windows
    (batch, 1, roi, roi, roi); ``model_batch`` the model's output (batch, C, roi, roi, roi), here pre-made
    and so inside the baseline.

    Examples
    --------
    >>> {k: v // 2**20 for k, v in monai_bytes((256, 384, 384), 128, 16).items()}
    {'output': 2304, 'count_map': 144, 'importance_map': 8, 'input_batch': 32, 'model_batch': 512}
    """
    voxels = size[0] * size[1] * size[2]
    window = roi ** 3
    return dict(output=4 * channels * voxels, count_map=4 * voxels, importance_map=4 * window,
                input_batch=4 * batch * window, model_batch=4 * batch * channels * window)


def median_row(runs):
    """Median over rounds of a side's seconds per window and peak over baseline (bytes).

    Examples
    --------
    >>> median_row([dict(seconds=2.0, windows=4, baseline=10, peak=30),
    ...             dict(seconds=4.0, windows=4, baseline=10, peak=50)])
    {'per_window': 0.75, 'peak_over': 30.0, 'baseline': 10.0}
    """
    return dict(per_window=statistics.median(r["seconds"] / r["windows"] for r in runs),
                peak_over=statistics.median(r["peak"] - r["baseline"] for r in runs),
                baseline=statistics.median(r["baseline"] for r in runs))


# -- the children (stdlib imports at module level only: the MONAI side runs without seamless_fast) -----------

def _memory():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0]) * 1024
    return fields


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _measured(run):
    """Baseline RSS, reset the high-water mark, run, and read it back."""
    baseline = _memory()["VmRSS"]
    _reset_peak()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    return result, dict(seconds=seconds, baseline=baseline, peak=_memory()["VmHWM"])


def child_monai(side, size, roi, overlap, channels, window, check_dir):
    import numpy as np
    import torch
    import monai
    from monai.inferers import sliding_window_inference

    torch.set_flush_denormal(True)
    rng = np.random.default_rng(0)
    volume = torch.from_numpy(rng.random((1, 1, *size), dtype=np.float32))
    if check_dir:
        tiles = torch.from_numpy(np.load(os.path.join(check_dir, "tiles.npy")))
    else:
        batch = torch.from_numpy(rng.random((BATCH, channels, roi, roi, roi), dtype=np.float32))
    calls = [0]

    def predictor(x):
        n = x.shape[0]
        calls[0] += n
        return tiles[calls[0] - n:calls[0]].clone() if check_dir else batch[:n]

    def run(inputs):
        with torch.no_grad():
            out = sliding_window_inference(inputs, roi_size=(roi,) * 3, sw_batch_size=BATCH, predictor=predictor,
                                           overlap=overlap / roi, mode=window)
            return out.argmax(1).to(torch.uint8) if side == "monai_argmax" else out

    run(volume[..., :roi, :roi, :roi])
    calls[0] = 0
    out, figures = _measured(lambda: run(volume))
    if check_dir:
        np.save(os.path.join(check_dir, "monai.npy"), out[0].numpy())
    return dict(figures, windows=calls[0], threads=torch.get_num_threads(),
                versions=f"monai {monai.__version__}, torch {torch.__version__}")


def child_ours(side, size, roi, overlap, channels, window, check_dir, channel_first):
    import numba
    import numpy as np
    import seamless_fast as sf

    labels = side.startswith("labels")
    rng = np.random.default_rng(0)
    volume = rng.random(size, dtype=np.float32)
    if check_dir:
        tiles = np.load(os.path.join(check_dir, "tiles.npy"))
        tiles = [t if channel_first else np.ascontiguousarray(np.moveaxis(t, 0, -1)) for t in tiles]
    else:
        tile = rng.random((channels, roi, roi, roi) if channel_first else (roi, roi, roi, channels), dtype=np.float32)

    def run(shape, with_out):
        plan, _ = sf.plan_regular_grid(shape, roi, overlap, window=window)
        out = None
        if with_out:
            full = shape if labels else ((channels, *shape) if channel_first else (*shape, channels))
            out = np.empty(full, (np.uint8 if channels <= 256 else np.uint16) if labels else np.float32)
        boxes = []
        with sf.Blender(plan, labels=labels, channel_first=channel_first, out=out) as blender:
            for i, k in enumerate(plan.load_order):
                z0, y0, x0, z1, y1, x1 = (int(v) for v in plan.tile_boxes[k])
                boxes.append((z0, y0, x0, z1, y1, x1))
                np.ascontiguousarray(volume[z0:z1, y0:y1, x0:x1])  # the window a model would read
                blender.push(tiles[i] if check_dir else tile)
        return boxes, out

    run((roi, roi, roi), False)
    (boxes, out), figures = _measured(lambda: run(size, side.endswith("_out") or bool(check_dir)))
    if check_dir:
        np.save(os.path.join(check_dir, "ours.npy"), out if channel_first else np.moveaxis(out, -1, 0))
    plan, _ = sf.plan_regular_grid(size, roi, overlap, window=window)
    return dict(figures, windows=len(boxes), boxes=boxes if check_dir else None, threads=numba.get_num_threads(),
                versions=f"seamless_fast, numba {numba.__version__}",
                buffer=sf.analyse_plan(plan, channels=channels).buffer_bytes)


def run_child(args, side, check_dir=None):
    """Run one side in a fresh process; its figures, or dict(error=...) when it failed."""
    python = args.monai_python if side.startswith("monai") else sys.executable
    command = [python, os.path.abspath(__file__), "--child", side, "--size", ",".join(map(str, args.size)),
               "--roi", str(args.roi), "--overlap", str(args.overlap), "--channels", str(args.channels),
               "--window", args.window]
    command += ["--check-dir", check_dir] if check_dir else []
    command += ["--channel-last"] if args.channel_last else []
    env = dict(os.environ)
    if not side.startswith("monai"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    except OSError as error:
        return dict(error=str(error))
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        return dict(error=lines[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the parent --------------------------------------------------------------------------------------------

def check(args):
    """Compare both sides with each other and with a numpy reference of each window definition."""
    import numpy as np

    boxes = window_boxes(args.size, args.roi, args.overlap)
    rng = np.random.default_rng(1)
    x = np.arange(args.roi) - (args.roi - 1) / 2
    g = np.exp(-0.5 * (x / (args.roi / 8)) ** 2) if args.window == "gaussian" else np.ones(args.roi)
    separable = g[:, None, None] * g[None, :, None] * g[None, None, :]
    clamped = np.maximum(separable, max(separable.min(), 1e-3))
    with tempfile.TemporaryDirectory() as folder:
        tiles = rng.random((len(boxes), args.channels, args.roi, args.roi, args.roi), dtype=np.float32)
        np.save(os.path.join(folder, "tiles.npy"), tiles)
        outs = {}
        for side, name in (("monai", "monai"), ("values", "ours")):
            result = run_child(args, side, folder)
            if "error" in result:
                print(f"{name}: failed: {result['error']}")
            elif side == "values" and [tuple(b) for b in result["boxes"]] != boxes:
                print("ours: the plan's windows differ from MONAI's")
            else:
                outs[name] = np.load(os.path.join(folder, f"{name}.npy"))
    print(f"check: {' x '.join(map(str, args.size))}, roi {args.roi}, overlap {args.overlap}, window {args.window}, "
          f"C = {args.channels}, {len(boxes)} windows, a distinct random tile per window")
    refs = {}
    for name, weight in (("separable", separable), ("clamped", clamped)):
        acc = np.zeros((args.channels, *args.size))
        wsum = np.zeros(args.size)
        for tile, (z0, y0, x0, z1, y1, x1) in zip(tiles, boxes):
            acc[:, z0:z1, y0:y1, x0:x1] += weight * tile
            wsum[z0:z1, y0:y1, x0:x1] += weight
        refs[name] = acc / wsum
    gap = np.abs(refs["separable"] - refs["clamped"])
    print(f"max |separable reference - clamped reference| {gap.max():.3g} (over 1e-4 at {int((gap > 1e-4).sum())} "
          f"of {gap.size} values); share of the window's voxels under 1e-3: {(separable < 1e-3).mean():.3f}")
    errors = []
    for name, ref in (("ours", "separable"), ("monai", "clamped")):
        if name in outs:
            errors.append(np.abs(outs[name] - refs[ref]).max())
            print(f"max |{name} - reference, {ref} window| {errors[-1]:.3g}")
    if len(outs) == 2:
        diff = np.abs(outs["ours"] - outs["monai"])
        print(f"max |ours - monai| {diff.max():.3g}; over 1e-4 at {int((diff > 1e-4).sum())} of {diff.size} values")
    return 0 if len(errors) == 2 and max(errors) < 1e-5 else 1


def measure(args):
    results = {side: [] for side in args.sides}
    for _ in range(args.rounds):
        for side in args.sides:
            if results[side] and "error" in results[side][-1]:
                continue
            results[side].append(run_child(args, side))
    windows = len(window_boxes(args.size, args.roi, args.overlap))
    print(f"{' x '.join(map(str, args.size))}, roi {args.roi}, overlap {args.overlap}, C = {args.channels}, "
          f"float32, {windows} windows, {'channel-last' if args.channel_last else 'channel-first'} tiles, "
          f"{args.rounds} rounds, sides alternating, one fresh process each; medians")
    print(f"{'side':<14}{'baseline MiB':>14}{'peak over MiB':>15}{'ms a window':>13}  threads, versions")
    rows = {}
    for side, runs in results.items():
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            print(f"{side:<14}failed: {errors[0]}")
            continue
        if any(r["windows"] != windows for r in runs):
            print(f"{side:<14}visited {runs[0]['windows']} windows, not {windows}")
            continue
        rows[side] = median_row(runs)
        print(f"{side:<14}{rows[side]['baseline'] / MIB:>14.1f}{rows[side]['peak_over'] / MIB:>15.1f}"
              f"{rows[side]['per_window'] * 1e3:>13.1f}  {runs[0]['threads']}, {runs[0]['versions']}")
    ratios = {}
    for ours, theirs in (("values", "monai"), ("values_out", "monai"), ("labels", "monai_argmax"),
                         ("labels", "monai"), ("labels_out", "monai_argmax"), ("labels", "values")):
        if ours in rows and theirs in rows:
            a, b = rows[ours], rows[theirs]
            ratios[f"{ours} / {theirs}"] = dict(peak=a["peak_over"] / max(b["peak_over"], 1),
                                                time=a["per_window"] / b["per_window"])
            print(f"{ours + ' / ' + theirs:<26} peak over baseline {ratios[f'{ours} / {theirs}']['peak']:.4f}, "
                  f"time a window {ratios[f'{ours} / {theirs}']['time']:.2f}")
    buffers = {r["buffer"] for runs in results.values() for r in runs if "buffer" in r}
    if buffers:
        print(f"our blend buffer (analyse_plan): {max(buffers) / MIB:.1f} MiB")
    expected = monai_bytes(args.size, args.roi, args.channels)
    print("MONAI's allocations: " + ", ".join(f"{k.replace('_', ' ')} {v / MIB:.1f} MiB" for k, v in expected.items())
          + " (the model batch is pre-made, in the baseline)")
    return dict(scenario=dict(size=args.size, roi=args.roi, overlap=args.overlap, channels=args.channels,
                              windows=windows, rounds=args.rounds, channel_last=args.channel_last),
                runs=results, medians=rows, ratios=ratios, monai_expected_bytes=expected)


def write_json(path, data):
    """Write `data` as JSON under the project's partial name in the same folder, then rename it to `path`."""
    from seamless_fast._files import make_partial

    text = json.dumps(data, indent=1)
    temp = make_partial(path)
    try:
        with open(temp, "w") as file:
            if file.write(text) != len(text):
                raise OSError(f"short write to {temp}")
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default=None, help="volume D,H,W (default 256,384,384; with --quick 40,56,56)")
    parser.add_argument("--roi", type=int, default=None, help="window edge (default 128; with --quick 32)")
    parser.add_argument("--overlap", type=int, default=None, help="overlap in voxels (default 32; with --quick 8)")
    parser.add_argument("--channels", type=int, default=None, help="C (default 16; with --quick or --check 3)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3; with --quick 1")
    parser.add_argument("--sides", default=",".join(s for s in SIDES if s != "monai_argmax"),
                        help=f"comma-separated, of {', '.join(SIDES)} (default: all but monai_argmax)")
    parser.add_argument("--window", choices=("gaussian", "constant"), default="gaussian",
                        help="MONAI's mode and our window (default gaussian)")
    parser.add_argument("--channel-last", action="store_true", help="our tiles (d, h, w, C) instead of (C, d, h, w)")
    parser.add_argument("--monai-python", default=DEFAULT_MONAI_PYTHON, help="interpreter with monai and torch")
    parser.add_argument("--json", help="write every run and the medians to this file")
    parser.add_argument("--quick", action="store_true", help="a tiny scenario, one round")
    parser.add_argument("--check", action="store_true",
                        help="compare both sides' values on a small volume (default 160,224,224) instead of timing")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--check-dir", help=argparse.SUPPRESS)
    return parser


def parse_args(argv=None):
    """Parse and validate the command line; a bad value exits with status 2 and one line.

    Examples
    --------
    >>> args = parse_args(["--quick"])
    >>> args.size, args.roi, args.overlap, args.channels, args.rounds
    ((40, 56, 56), 32, 8, 3, 1)
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    quick, small = args.quick, args.quick or args.check
    default_size = "40,56,56" if quick else "160,224,224" if args.check else "256,384,384"
    args.roi = args.roi if args.roi is not None else 32 if quick else 128
    args.overlap = args.overlap if args.overlap is not None else 8 if quick else 32
    args.channels = args.channels if args.channels is not None else 3 if small else 16
    args.rounds = args.rounds if args.rounds is not None else 1 if quick else 3
    try:
        args.size = parse_size(args.size or default_size)
        args.sides = parse_sides(args.sides)
        if args.rounds < 1:
            raise ValueError(f"--rounds={args.rounds} is not valid; expected a positive integer")
        check_scenario(args.size, args.roi, args.overlap, args.channels)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child = child_monai if args.child.startswith("monai") else child_ours
        extra = () if args.child.startswith("monai") else (not args.channel_last,)
        print(json.dumps(child(args.child, args.size, args.roi, args.overlap, args.channels, args.window,
                               args.check_dir, *extra)))
        return 0
    print("python profiling/monai_compare.py " + " ".join(sys.argv[1:] if argv is None else argv))
    if args.check:
        return check(args)
    data = measure(args)
    if args.json:
        write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
