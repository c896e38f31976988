"""First-run cost in a fresh process: numba compiling the kernels, with and without its on-disk cache.

    python profiling/cold_start.py

Each measurement runs in a new interpreter with NUMBA_CACHE_DIR pointing at a
fresh folder (cold: everything is compiled) or at the folder the cold run
filled (warm: compiled code is loaded from disk). It times the import, the
planning and the first blend of a small image, for float values and labels.
"""

import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
import seamless_fast as sf
imported = time.perf_counter()
plan, _ = sf.plan_regular_grid((1024, 1024), 256, 64)
tile = np.zeros((256, 256, 3), np.float32)
first = {}
for labels in (False, True):
    t = time.perf_counter()
    sf.blend(plan, [tile] * plan.n_loads, labels=labels)
    first["labels" if labels else "values"] = time.perf_counter() - t
t = time.perf_counter()
sf.blend(plan, [tile] * plan.n_loads)
again = time.perf_counter() - t
print(json.dumps(dict(import_s=imported - start, first_values_s=first["values"], first_labels_s=first["labels"],
                      second_values_s=again)))
"""


def run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = run(cache_dir)
        warm = run(cache_dir)
    print(f"{'':<6} {'import':>8} {'first blend':>12} {'first labels':>13} {'second blend':>13}")
    for name, r in (("cold", cold), ("warm", warm)):
        print(f"{name:<6} {r['import_s']:>7.2f}s {r['first_values_s']:>11.2f}s {r['first_labels_s']:>12.2f}s "
              f"{r['second_values_s']:>12.3f}s")


if __name__ == "__main__":
    main()
