"""Planning with a mask: a 40000 x 40000 image, tiles of 256 / 64, a tissue-like mask of 1000 x 1000.

    python profiling/mask_planning.py [--size 40000] [--tile 256] [--overlap 64] [--mask 1000] [--rounds 7]

Cases, each run once per round in turn (reversed every other round), wall
time: ``whole`` (:func:`plan_regular_grid` of the whole image), ``masked``
(the same with ``mask=``), ``select`` (:func:`cells_meeting_mask` alone, on
the whole grid's cell boundaries). Printed: the fastest and median time of
each, the median over rounds of masked / whole, and the tiles and cells each
plan has. The mask: two blobs, one with a hole, about a third of the image.
"""

import argparse
import statistics
import time

import numpy as np

import seamless_fast as sf
from seamless_fast.geometry import axis_starts
from seamless_fast.plan import cells_meeting_mask


def tissue(n):
    yy, xx = np.mgrid[:n, :n] + 0.5
    blob = ((yy - 0.35 * n) / (0.3 * n)) ** 2 + ((xx - 0.3 * n) / (0.25 * n)) ** 2 < 1
    hole = ((yy - 0.35 * n) / (0.08 * n)) ** 2 + ((xx - 0.3 * n) / (0.06 * n)) ** 2 < 1
    small = ((yy - 0.75 * n) / (0.15 * n)) ** 2 + ((xx - 0.7 * n) / (0.2 * n)) ** 2 < 1
    return (blob & ~hole) | small


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=40000)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--mask", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    size = (args.size, args.size)
    mask = tissue(args.mask)
    edges = [np.append(axis_starts(args.size, args.tile, args.overlap)[0], args.size)] * 2
    cases = {
        "whole": lambda: sf.plan_regular_grid(size, args.tile, args.overlap),
        "masked": lambda: sf.plan_regular_grid(size, args.tile, args.overlap, mask=mask),
        "select": lambda: cells_meeting_mask(mask, size, edges),
    }
    results = {name: case() for name, case in cases.items()}  # warm up
    times = {name: [] for name in cases}
    for r in range(args.rounds):
        for name in (list(cases) if r % 2 == 0 else list(cases)[::-1]):
            start = time.perf_counter()
            result = cases[name]()
            times[name].append(time.perf_counter() - start)
            del result
    whole, masked = results["whole"][0], results["masked"][0]
    print(f"image {size[0]} x {size[1]}, tile {args.tile}, overlap {args.overlap}, mask {mask.shape[0]} x "
          f"{mask.shape[1]} ({100 * mask.mean():.0f} % True), {args.rounds} rounds")
    print(f"{'case':8s} {'fastest ms':>11s} {'median ms':>10s}")
    for name, values in times.items():
        print(f"{name:8s} {1e3 * min(values):11.1f} {1e3 * statistics.median(values):10.1f}")
    ratio = statistics.median(m / w for m, w in zip(times["masked"], times["whole"]))
    print(f"masked / whole: {ratio:.2f}")
    print(f"tiles: whole {whole.n_loads}, masked {masked.n_loads}; cells written: whole {whole.n_writes}, "
          f"masked {masked.n_writes}; cells selected by cells_meeting_mask: {int(results['select'].sum())}")


if __name__ == "__main__":
    main()
