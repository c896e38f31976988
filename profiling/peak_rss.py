"""Peak resident memory of a whole run against image height and width, each run in a fresh process.

    python profiling/peak_rss.py [--quick]

A run plans the image, then pushes one reused (256, 256, 3) float32 tile per
grid position and drops every finished cell, as a writer that streams to disk
would. With --budget the plan is made with max_buffer_bytes, so wide images
run in stripes.
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np
import seamless_fast as sf
height, width, budget = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
budget = None if budget == "none" else int(budget)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
plan, _ = sf.plan_regular_grid((height, width), 256, 64, max_buffer_bytes=budget, channels=3)
tile = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
with sf.Blender(plan) as blender:
    for _ in range(plan.n_loads):
        blender.push(tile)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(height=height, width=width, budget=budget, tiles=plan.n_loads, stripes=len(plan.stripes),
                      buffer_mib=sf.analyse_plan(plan, channels=3).buffer_bytes / 2**20,
                      import_rss_mib=baseline / 1024, peak_rss_mib=peak / 1024)))
"""


def measure(height, width, budget=None):
    out = subprocess.run([sys.executable, "-c", CHILD, str(height), str(width), str(budget or "none")],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two heights only")
    args = parser.parse_args()
    heights = [4096, 40960] if args.quick else [4096, 10240, 20480, 40960]
    runs = [measure(h, 4096) for h in heights]
    runs += [measure(4096, w) for w in (8192, 16384)]
    runs += [measure(4096, 16384, budget=8 * 2**20), measure(40960, 16384, budget=8 * 2**20)]
    print(f"{'height':>7} {'width':>7} {'budget MiB':>10} {'stripes':>7} {'tiles':>6} {'buffer MiB':>10} "
          f"{'after import':>12} {'peak RSS MiB':>12}")
    for r in runs:
        budget = "-" if r["budget"] is None else f"{r['budget'] / 2**20:.0f}"
        print(f"{r['height']:>7} {r['width']:>7} {budget:>10} {r['stripes']:>7} {r['tiles']:>6} "
              f"{r['buffer_mib']:>10.1f} {r['import_rss_mib']:>12.1f} {r['peak_rss_mib']:>12.1f}")


if __name__ == "__main__":
    main()
