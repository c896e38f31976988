"""Volumes: peak resident memory against depth (each run in a fresh process), and time per tile.

    python profiling/volume_memory.py [--depths 64 256 1024] [--size 256] [--tile 64] [--overlap 16]
                                      [--channels 4] [--rounds 5] [--neighbour quiet|thread|process]

Memory: each depth D runs in its own process: plan (D, size, size), push one
reused float32 tile (tile^3 x C) per grid position, drop every cell (as a
writer streaming to disk would). Peak RSS is reported over the RSS after the
imports, the kernels (a small volume blended first) and the plan. Time: in this process, alternating rounds of a whole
run (values, labels; channel last, then first: the ``_cf`` rows) and of
``np.copyto`` of the same tile bytes once a tile; medians per tile and their
ratios; ``numpy``: the definition in plain numpy over full-size arrays (as
MONAI's sliding window, gaussian window), the final division included;
``values_serial`` and ``values_cf_serial`` (printed last): the same runs
with ``parallel=False``, against the default (serial or split over numba's
threads, call by call). `--neighbour` runs the timings beside a busy
neighbour of ``profiling/contention.py`` (``thread``: numpy matrix products
in a thread of this process; ``process``: a process running numba prange
loops). The machine may be shared: the ratios are what to compare.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from contention import CONDITIONS, neighbour  # noqa: E402  (the neighbours, from the script beside this one)

CHILD = r"""
import json, resource, sys
import numpy as np
import seamless_fast as sf
depth, size, tile, overlap, channels = map(int, sys.argv[1:6])
small, _ = sf.plan_regular_grid((12, 12, 12), 8, 2)  # the kernels loaded (or compiled) before the baseline
sf.blend(small, (np.zeros((*(b[3:] - b[:3]).tolist(), channels), np.float32) for b in small.tile_boxes))
plan, _ = sf.plan_regular_grid((depth, size, size), tile, overlap)
blender = sf.Blender(plan)
data = np.random.default_rng(0).random((tile, tile, tile, channels)).astype(np.float32)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with blender:
    for _ in range(plan.n_loads):
        blender.push(data[tuple(slice(0, n) for n in blender.next_tile_shape)])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(depth=depth, tiles=plan.n_loads, slab=plan.slab_depth,
                      predicted_mib=sf.analyse_plan(plan, channels=channels).buffer_bytes / 2**20,
                      volume_mib=depth * size * size * channels * 4 / 2**20,
                      base_mib=baseline / 1024, peak_mib=peak / 1024)))
"""


def memory(depth, size, tile, overlap, channels):
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, (depth, size, tile, overlap, channels))],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def timings(size, tile, overlap, channels, rounds, condition="quiet"):
    """Median seconds per tile of a whole run (values, labels) and of np.copyto, alternating rounds."""
    import seamless_fast as sf

    plan, _ = sf.plan_regular_grid((2 * tile, size, size), tile, overlap)
    data = np.random.default_rng(0).random((tile, tile, tile, channels)).astype(np.float32)
    target = np.empty_like(data)
    shapes = [tuple((b[3:] - b[:3]).tolist()) for b in plan.tile_boxes[plan.load_order]]
    tiles = [np.ascontiguousarray(data[tuple(slice(0, n) for n in s)]) for s in shapes]
    firsts = [np.ascontiguousarray(np.moveaxis(t, -1, 0)) for t in tiles]

    def run(labels, channel_first=False, parallel=None):
        start = time.perf_counter()
        with sf.Blender(plan, labels=labels, channel_first=channel_first, parallel=parallel) as blender:
            for t in firsts if channel_first else tiles:
                blender.push(t)
        return (time.perf_counter() - start) / plan.n_loads

    window = sf.windows.window_1d
    weights = [np.multiply.outer(np.multiply.outer(window("gaussian", d), window("gaussian", h)),
                                 window("gaussian", w)).astype(np.float32) for d, h, w in shapes]
    boxes = plan.tile_boxes[plan.load_order]

    def numpy_formula():
        """The definition in plain numpy, as MONAI's sliding window does: full-size sums, then divide."""
        start = time.perf_counter()
        total = np.zeros((*plan.image_size, channels), np.float32)
        weight = np.zeros(plan.image_size, np.float32)
        for box, t, wt in zip(boxes, tiles, weights):
            where = tuple(slice(lo, hi) for lo, hi in zip(box[:3], box[3:]))
            total[where] += wt[..., None] * t
            weight[where] += wt
        total /= weight[..., None]
        return (time.perf_counter() - start) / plan.n_loads

    def copy():
        start = time.perf_counter()
        for _ in range(plan.n_loads):
            np.copyto(target, data)
        return (time.perf_counter() - start) / plan.n_loads

    run(False), run(True), run(False, True), run(True, True), run(False, False, False)  # compile
    times = {"values": [], "labels": [], "copyto": [], "values_cf": [], "labels_cf": [], "numpy": [],
             "values_serial": [], "values_cf_serial": []}
    running = neighbour(condition).start()
    try:
        for _ in range(rounds):
            times["numpy"].append(numpy_formula())
            times["copyto"].append(copy())
            times["values"].append(run(False))
            times["values_serial"].append(run(False, False, False))
            times["labels"].append(run(True))
            times["copyto"].append(copy())
            times["values_cf"].append(run(False, True))
            times["values_cf_serial"].append(run(False, True, False))
            times["labels_cf"].append(run(True, True))
    finally:
        running.stop()
    return {name: statistics.median(values) for name, values in times.items()}, plan.n_loads


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--neighbour", choices=CONDITIONS, default="quiet",
                        help="what runs beside the timings (see profiling/contention.py)")
    args = parser.parse_args()
    print(f"D x {args.size} x {args.size}, tile {args.tile}, overlap {args.overlap}, C = {args.channels}, float32")
    print(f"{'depth':>6} {'tiles':>6} {'slab':>5} {'volume MiB':>10} {'predicted MiB':>13} {'after imports':>13} "
          f"{'peak RSS MiB':>12} {'peak - base':>11}")
    for depth in args.depths:
        r = memory(depth, args.size, args.tile, args.overlap, args.channels)
        print(f"{r['depth']:>6} {r['tiles']:>6} {r['slab']:>5} {r['volume_mib']:>10.1f} {r['predicted_mib']:>13.1f} "
              f"{r['base_mib']:>13.1f} {r['peak_mib']:>12.1f} {r['peak_mib'] - r['base_mib']:>11.1f}")
    medians, n = timings(args.size, args.tile, args.overlap, args.channels, args.rounds, args.neighbour)
    print(f"time per tile, {n} tiles a run, medians of {args.rounds} alternating rounds ({args.neighbour}):")
    for name in ("copyto", "values", "labels", "values_cf", "labels_cf", "numpy"):
        print(f"{name:>9} {medians[name] * 1e6:10.0f} us  {medians[name] / medians['copyto']:6.2f} x copyto")
    print(f"labels / values {medians['labels'] / medians['values']:.2f}  (channel first: "
          f"{medians['labels_cf'] / medians['values_cf']:.2f})")
    for name in ("values", "values_cf"):
        serial = medians[name + "_serial"]
        print(f"{name + '_serial':>16} {serial * 1e6:10.0f} us  default / serial {medians[name] / serial:.2f}")


if __name__ == "__main__":
    main()
