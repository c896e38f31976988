"""Rows against columns on a wide image: time per tile against np.copyto of one tile, and the buffer's bytes.

    python profiling/traverse.py [--height 1024] [--width 40960] [--tile 256] [--overlap 64] [--channels 3]
                                 [--rounds 7] [--labels] [--channel-first] [--parallel]

One reused tile, as in the benchmarks, pushed through a :class:`Blender` of the
plan made with ``traverse="rows"`` and with ``traverse="columns"`` (cells
dropped), and `copyto`: ``np.copyto`` of the tile into a tile-sized array, once
per tile of the plan. Each round runs every case once, in turn (reversed every
other round); printed are the fastest and median wall time per tile, the median
CPU time per tile (``time.thread_time``: what the thread spent on a core,
system time included, so a machine shared with other jobs inflates it much
less than the wall time), the median over rounds of each blend's time over
copyto's and of rows over columns (CPU, then wall), and each plan's buffer
(:func:`analyse_plan`). Serial kernels unless ``--parallel``.
"""

import argparse
import statistics
import time

import numpy as np

import seamless_fast as sf


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=40960)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--labels", action="store_true")
    parser.add_argument("--channel-first", action="store_true")
    parser.add_argument("--parallel", action="store_true")
    args = parser.parse_args()
    size, c = (args.height, args.width), args.channels
    plans = {name: sf.plan_regular_grid(size, args.tile, args.overlap, traverse=name)[0] for name in ("rows", "columns")}
    n = plans["rows"].n_loads
    shape = (c, args.tile, args.tile) if args.channel_first else (args.tile, args.tile, c)
    tile = np.random.default_rng(0).random(shape).astype(np.float32)
    copy = np.empty_like(tile)
    options = dict(labels=args.labels, channel_first=args.channel_first, parallel=args.parallel)

    def blend(plan):
        with sf.Blender(plan, **options) as blender:
            for _ in range(n):
                blender.push(tile)

    def copyto():
        for _ in range(n):
            np.copyto(copy, tile)

    cases = {"copyto": copyto, "rows": lambda: blend(plans["rows"]), "columns": lambda: blend(plans["columns"])}
    for case in cases.values():
        case()  # compile
    times = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for r in range(args.rounds):
        for name, case in list(cases.items())[::1 if r % 2 == 0 else -1]:
            start, start_cpu = time.perf_counter(), time.thread_time()
            case()
            cpu[name].append(time.thread_time() - start_cpu)
            times[name].append(time.perf_counter() - start)
    per_tile = 1e6 / n
    print(f"{size[0]} x {size[1]}, tile {args.tile}, overlap {args.overlap}, C = {c}"
          f"{', labels' if args.labels else ''}{', channel_first' if args.channel_first else ''}: "
          f"{n} tiles, {args.rounds} rounds")
    for name, seconds in times.items():
        print(f"{name:<8} fastest {min(seconds) * per_tile:8.1f} us   median {statistics.median(seconds) * per_tile:8.1f} us"
              f"   cpu {statistics.median(cpu[name]) * per_tile:8.1f} us")
    for a, b in (("rows", "copyto"), ("columns", "copyto"), ("rows", "columns")):
        ratios = [statistics.median(x / y for x, y in zip(d[a], d[b])) for d in (cpu, times)]
        print(f"{a} / {b} cpu {ratios[0]:.2f} wall {ratios[1]:.2f}")
    for name, plan in plans.items():
        stats = sf.analyse_plan(plan, channels=c)
        print(f"buffer {name} {stats.buffer_bytes} bytes ({stats.buffer_bytes / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
