"""Where the time of one run goes, per kernel and for the Python around them.

    python profiling/profile_run.py [--size 4096] [--tile 256] [--overlap 64] [--channels 3] [--labels]

Every kernel entry point is wrapped with a timer for one run of the
canonical scenario (one reused tile, cells dropped); what is left of the
wall time is the Python of `Blender.push` and the loop that calls it.
"""

import argparse
import collections
import functools
import time

import numpy as np

import seamless_fast as sf
from seamless_fast.engine import _band_kernels, _kernels

KERNELS = [(_kernels, name) for name in ("blend_values", "blend_values_parallel", "blend_labels",
                                         "blend_labels_parallel", "blend_weighted", "emit_weighted",
                                         "emit_weighted_labels", "clear_rows", "half_to_float", "half_to_float_f16c")]
KERNELS += [(_band_kernels, name) for name in ("band_values", "band_values_parallel", "band_labels",
                                               "band_labels_parallel")]


def timed(counters, name, kernel):
    @functools.wraps(kernel)
    def wrapper(*args):
        start = time.perf_counter()
        result = kernel(*args)
        counters[name][0] += time.perf_counter() - start
        counters[name][1] += 1
        return result
    return wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--labels", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    plan, _ = sf.plan_regular_grid((args.size, args.size), args.tile, args.overlap)
    planning = time.perf_counter() - start
    tile = np.random.default_rng(0).random((args.tile, args.tile, args.channels)).astype(np.float32)

    def run():
        with sf.Blender(plan, labels=args.labels) as blender:
            for _ in range(plan.n_loads):
                blender.push(tile)

    run()  # compile (or load from numba's cache) outside the measurement
    counters = collections.defaultdict(lambda: [0.0, 0])
    originals = {(module, name): getattr(module, name) for module, name in KERNELS}
    try:
        for (module, name), kernel in originals.items():
            setattr(module, name, timed(counters, name, kernel))
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    finally:
        for (module, name), kernel in originals.items():
            setattr(module, name, kernel)

    print(f"{args.size} x {args.size}, tile {args.tile}, overlap {args.overlap}, C = {args.channels}, "
          f"{'labels' if args.labels else 'values'}: {plan.n_loads} tiles, default parallel policy (serial or split, chosen tile by tile)")
    print(f"planning              {planning * 1e3:9.2f} ms")
    print(f"run                   {total * 1e3:9.2f} ms   {total / plan.n_loads * 1e6:8.1f} us per tile")
    in_kernels = 0.0
    for name, (seconds, calls) in sorted(counters.items(), key=lambda item: -item[1][0]):
        in_kernels += seconds
        print(f"  {name:<22}{seconds * 1e3:9.2f} ms   {seconds / calls * 1e6:8.1f} us per call, {calls} calls")
    rest = total - in_kernels
    print(f"  {'Python (push, loop)':<22}{rest * 1e3:9.2f} ms   {rest / plan.n_loads * 1e6:8.1f} us per tile")


if __name__ == "__main__":
    main()
