"""Paired ratios: two cases timed alternately, round after round, and the median of their ratios.

    python benchmarks/paired.py [--rounds 51] [--pairs canonical:blend_labels:blend ...]

On a shared machine the speed drifts within seconds, so "fastest of N rounds"
of two cases timed minutes apart can differ by 30 % or more. Here case A and
case B run back to back (in the order AB, then BA, and so on) and each round
gives one ratio A / B; the median and the quartiles of those ratios say how
A compares with B under the same conditions. The cases and scenarios are the
benchmark suite's (`test_bench_blend.py`).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scenarios import Scenario  # noqa: E402
from test_bench_blend import CASES, SCENARIOS  # noqa: E402

DEFAULT_PAIRS = [
    f"{scenario}:{a}:{b}"
    for scenario in ("canonical", "channel_first", "channels8", "classes21")
    for a, b in (("blend", "copyto_hot"), ("blend_labels", "blend"), ("blend_labels_into_image", "blend_into_image"))
] + ["canonical:blend_labels_to_tiff:blend_to_tiff", "wide:blend:copyto_hot", "wide:blend:copyto_image"]


def case_runner(scenario, case):
    """A function running `case` once on `scenario` (its full-size output prepared outside the timing)."""
    method, kwargs, prepare = CASES[case]
    run = getattr(scenario, method)
    setup = scenario.setup_for(prepare, kwargs.get("labels", False))

    def timed():
        if setup is not None:
            setup()
        start = time.perf_counter()
        run(**kwargs)
        return time.perf_counter() - start
    return timed


def paired(scenario, a, b, rounds):
    """Times of a and b (seconds per run) in alternating order, `rounds` each, after a warm-up of both."""
    times_a, times_b = [], []
    runs = [(case_runner(scenario, a), times_a), (case_runner(scenario, b), times_b)]
    for run, _ in runs:
        run()
    for r in range(rounds):
        for run, times in runs if r % 2 == 0 else runs[::-1]:
            times.append(run())
    return times_a, times_b


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=51)
    parser.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS, metavar="SCENARIO:A:B")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error(f"--rounds must be at least 2 (quartiles need two ratios), got {args.rounds}")
    scenarios = {}
    print(f"{'scenario':<14} {'A':<24} {'B':<18} {'A / B median':>12} {'quartiles':>13}"
          f" {'A us/tile':>10} {'B us/tile':>10}")
    for pair in args.pairs:
        name, a, b = pair.split(":")
        if name not in scenarios:
            scenarios[name] = Scenario(**SCENARIOS[name])
        scenario = scenarios[name]
        times_a, times_b = paired(scenario, a, b, args.rounds)
        ratios = [ta / tb for ta, tb in zip(times_a, times_b)]
        q1, median, q3 = statistics.quantiles(ratios, n=4)
        per_tile = 1e6 / scenario.n_tiles
        print(f"{name:<14} {a:<24} {b:<18} {median:>12.2f} {q1:>6.2f}-{q3:<6.2f}"
              f" {min(times_a) * per_tile:>10.1f} {min(times_b) * per_tile:>10.1f}")


if __name__ == "__main__":
    main()
