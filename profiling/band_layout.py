"""The band layout against the ring buffer: time per tile over np.copyto of the same tile, and buffer bytes.

    python profiling/band_layout.py [--sizes 4096x4096 1024x40960 40000x40000] [--tile 256] [--overlap 64]
                                    [--channels 3] [--rounds 5] [--labels] [--parallel]

For each image size one plan is made and run two ways, ``band`` (the plan as
made: an overlap-high band and the right-overlap buffer, see
`seamless_fast.engine._band_kernels`) and ``ring`` (the same plan on the ring buffer
one tile high, `seamless_fast.plan.ring_layout`), with one reused tile (the
"model" costs nothing) and cells dropped, serial unless --parallel. Each
round times, in turn (reversed every other round): both layouts, and
``copyto``, np.copyto of the tile's bytes into a tile-sized array, as often
as there are tiles. Printed per size: the buffer bytes of each layout, the
median time per tile of each case, and the medians over rounds of
band / copyto, ring / copyto and band / ring. A 40000 x 40000 run pushes
43264 tiles per case and round (about 10 s per layout per round).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import seamless_fast as sf
from seamless_fast.plan import ring_layout


def size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH") from None
    return height, width


def blend_case(plan, tile, labels, parallel):
    def run():
        with sf.Blender(plan, labels=labels, parallel=parallel) as blender:
            for _ in range(plan.n_loads):
                blender.push(tile)
    return run


def copy_case(tile, n):
    target = np.empty_like(tile)

    def run():
        for _ in range(n):
            np.copyto(target, tile)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=size, nargs="+", default=[(4096, 4096), (1024, 40960)])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--labels", action="store_true")
    parser.add_argument("--parallel", action="store_true", help="the default parallel policy instead of serial")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    print("python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    print(f"tile {args.tile}, overlap {args.overlap}, C = {args.channels}, float32, "
          f"{'labels' if args.labels else 'values'}, {'default policy' if args.parallel else 'serial'}, "
          f"{args.rounds} rounds, {os.cpu_count()} CPUs")
    tile = np.random.default_rng(0).random((args.tile, args.tile, args.channels)).astype(np.float32)
    parallel = None if args.parallel else False
    for image_size in args.sizes:
        band, _ = sf.plan_regular_grid(image_size, args.tile, args.overlap)
        ring = ring_layout(band)
        cases = {"band": blend_case(band, tile, args.labels, parallel),
                 "ring": blend_case(ring, tile, args.labels, parallel),
                 "copyto": copy_case(tile, band.n_loads)}
        for run in cases.values():
            run()  # compile or load the kernels, touch the memory
        times = {name: [] for name in cases}
        for r in range(args.rounds):
            for name in (list(cases) if r % 2 == 0 else list(cases)[::-1]):
                start = time.perf_counter()
                cases[name]()
                times[name].append((time.perf_counter() - start) / band.n_loads)
        ratio = {(a, b): statistics.median(x / y for x, y in zip(times[a], times[b]))
                 for a, b in (("band", "copyto"), ("ring", "copyto"), ("band", "ring"))}
        buffers = {name: sf.analyse_plan(plan, channels=args.channels).buffer_bytes
                   for name, plan in (("band", band), ("ring", ring))}
        print(f"{image_size[0]} x {image_size[1]}: {band.n_loads} tiles; buffer band {buffers['band'] / 2**20:.2f} MiB "
              f"({band.buffer_rows} rows + right {band.right_buffer}), ring {buffers['ring'] / 2**20:.2f} MiB "
              f"({ring.buffer_rows} rows)")
        print("  us per tile (median): " + ", ".join(f"{name} {statistics.median(t) * 1e6:.1f}"
                                                   for name, t in times.items()))
        print("  ratios (median of rounds): " + ", ".join(f"{a} / {b} {v:.2f}" for (a, b), v in ratio.items()))


if __name__ == "__main__":
    main()
