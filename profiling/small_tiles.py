"""Small tiles: Blender.push, run_plan and the seed's loop against the plain numpy blend, in alternating rounds.

    python profiling/small_tiles.py [--size 4096] [--tile 64] [--overlap 16] [--channels 1] [--rounds 11]

One reused tile, as in the benchmarks. Cases: `blend` (Blender.push, cells
dropped), `run_plan` (the seed's ``for index, out_geom, out_tile in run_plan``,
cells dropped), `run_plan_seed` (the same loop writing each cell into a
full-size image at ``shape_to_slices(out_geom)``, as the seed's README does)
and `numpy_reference` (full-size arrays). Each round runs every case once, in
turn (reversed every other round); printed are the fastest and median time
per tile, and the median over rounds of the ratios named below.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import seamless_fast as sf  # noqa: E402
from scenarios import Scenario  # noqa: E402

RATIOS = [("run_plan", "blend"), ("run_plan_seed", "blend"), ("numpy_reference", "run_plan"),
          ("numpy_reference", "blend")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    s = Scenario((args.size, args.size), args.tile, args.overlap, args.channels)
    image = np.zeros(s.plan.image_size + (args.channels,), np.float32)

    def run_plan_seed():
        for _, out_geom, out_tile in sf.run_plan(s.plan, (s.tile for _ in range(s.n_tiles))):
            image[sf.shape_to_slices(out_geom)] = out_tile

    cases = {"blend": s.blend, "run_plan": s.run_plan, "run_plan_seed": run_plan_seed,
             "numpy_reference": s.numpy_reference}
    for case in cases.values():
        case()  # compile, and touch the image
    times = {name: [] for name in cases}
    for r in range(args.rounds):
        for name, case in list(cases.items())[::1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - start)
    per_tile = 1e6 / s.n_tiles
    print(f"{args.size} x {args.size}, tile {args.tile}, overlap {args.overlap}, C = {args.channels}: "
          f"{s.n_tiles} tiles, {args.rounds} rounds")
    for name, seconds in times.items():
        print(f"{name:<16} fastest {min(seconds) * per_tile:7.2f} us   median "
              f"{statistics.median(seconds) * per_tile:7.2f} us per tile")
    for a, b in RATIOS:
        ratio = statistics.median([x / y for x, y in zip(times[a], times[b])])
        print(f"{a + ' / ' + b:<34} {ratio:6.2f}")


if __name__ == "__main__":
    main()
