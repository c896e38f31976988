"""Our side of ``profiling/monai_compare.py``, this tree against another tree, in fresh processes taking turns.

    python profiling/volume_ab.py --base DIR [--side values|labels|values_out|labels_out] [--rounds 3]
        [monai_compare options: --size, --roi, --overlap, --channels, --channel-last, --window]

Each round runs monai_compare's child for `--side` three times, one fresh process each: ``base`` (the
tree at `--base`, e.g. ``git archive COMMIT | tar -x -C DIR``), ``new`` (this tree) and ``new_serial``
(this tree with ``NUMBA_NUM_THREADS=1``: every kernel serial). The table gives the median time a window
and peak over baseline per configuration, and the ratios of the medians. Taking turns keeps what ran
before each run alike (a run right after MONAI's, which frees gigabytes, was up to 1.3 x slower).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_side(root, side, passed, env=None):
    """(ms a window, peak over baseline MiB) of one child run of `root`'s monai_compare."""
    environment = dict(os.environ, PYTHONPATH=root, **(env or {}))
    done = subprocess.run([sys.executable, os.path.join(root, "profiling", "monai_compare.py"), "--child", side,
                           *passed], capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{root}: the {side} side failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures["seconds"] / figures["windows"] * 1e3, (figures["peak"] - figures["baseline"]) / 2 ** 20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the other tree (its profiling/monai_compare.py runs)")
    parser.add_argument("--side", default="values", choices=("values", "labels", "values_out", "labels_out"))
    parser.add_argument("--rounds", type=int, default=3)
    args, passed = parser.parse_known_args(argv)
    if not os.path.isfile(os.path.join(args.base, "profiling", "monai_compare.py")):
        parser.exit(2, f"{parser.prog}: error: --base={args.base!r} is not valid; expected a tree holding "
                       "profiling/monai_compare.py\n")
    if args.rounds < 1:
        parser.exit(2, f"{parser.prog}: error: --rounds={args.rounds} is not valid; expected a positive integer\n")
    configurations = {"base": (os.path.abspath(args.base), None), "new": (ROOT, None),
                      "new_serial": (ROOT, {"NUMBA_NUM_THREADS": "1"})}
    runs = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, (root, env) in configurations.items():
            runs[name].append(run_side(root, args.side, passed, env))
    print(f"{args.side} {' '.join(passed)}: {args.rounds} rounds, configurations taking turns, medians")
    medians = {}
    for name, figures in runs.items():
        medians[name] = statistics.median(ms for ms, _ in figures)
        print(f"{name:<11} {medians[name]:8.1f} ms a window  {statistics.median(p for _, p in figures):8.1f} MiB "
              f"peak over baseline  (rounds: {', '.join(f'{ms:.1f}' for ms, _ in figures)})")
    print(f"new / base {medians['new'] / medians['base']:.3f}, new / new_serial "
          f"{medians['new'] / medians['new_serial']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
