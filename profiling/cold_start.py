"""First-run cost in a fresh process: numba compiling the kernels, with and without its on-disk cache.

    python profiling/cold_start.py [--rounds N] [--size PIXELS]

Every measurement runs in a new interpreter with NUMBA_CACHE_DIR pointing at
a fresh folder (cold: everything is compiled) or at the folder the cold run
filled (warm: compiled code is loaded from disk).

"first run": what a user meets, the default Blender (values, then labels)
on float32 tiles of a small image. The parallel kernels are then compiled
in a background process (`seamless_fast.engine._background`) while the tiles run
serially, so this times the serial kernels, numba's start and the import;
"exit" is the time from the last blend to the end of the process.

Per kernel family, each in its own process (seconds of wall clock and of
this process's CPU, which on a loaded machine is the steadier figure):
values serial, labels serial, values parallel and labels parallel (compiled
in this process, after the serial family, whose time is not counted),
batch (`push_batch` into `out=`, after a single push, not counted) and
half-float (float16 tiles, after a float32 blend, not counted).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
import seamless_fast as sf
from seamless_fast.engine import _background
from seamless_fast.engine.blender import Blender
family, size = sys.argv[1], int(sys.argv[2])
times = {"import": (time.perf_counter() - t0, time.process_time() - c0)}
plan, _ = sf.plan_regular_grid((size, size), 256, 64)
tile = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)


def timed(name, run):
    t, c = time.perf_counter(), time.process_time()
    run()
    times[name] = (time.perf_counter() - t, time.process_time() - c)


def blend(labels=False, tiles=None, **options):
    sf.blend(plan, tiles or [tile] * plan.n_loads, labels=labels, **options)


def numba_parallel(labels):
    blender = Blender(plan, labels=labels)
    blender._policy = "numba"  # numba's parallel kernel for every large tile, compiled here (below)
    for _ in range(plan.n_loads):
        blender.push(tile)


def batch():
    out = np.zeros(plan.image_size + (3,), np.float32)
    with Blender(plan, out=out, parallel=False) as blender:
        blender.push(tile)
        tiles = np.stack([tile] * (plan.n_loads - 1))
        timed("batch", lambda: blender.push_batch(tiles))


if family != "first run":  # a ticket that must wait compiles in this process
    _background.Ticket._start = lambda self: None
if family == "first run":
    timed("values", blend)
    timed("labels", lambda: blend(True))
elif family in ("values serial", "labels serial"):
    timed(family, lambda: blend(family.startswith("labels"), parallel=False))
elif family in ("values parallel", "labels parallel"):
    labels = family.startswith("labels")
    blend(labels, parallel=False)
    timed(family, lambda: numba_parallel(labels))
elif family == "batch":
    batch()
elif family == "half-float":
    blend(parallel=False)
    halves = [tile.astype(np.float16)] * plan.n_loads
    timed(family, lambda: blend(tiles=halves, parallel=False))
times["total"] = (time.perf_counter() - t0, time.process_time() - c0)
print(json.dumps(times), flush=True)
"""

FAMILIES = ("values serial", "labels serial", "values parallel", "labels parallel", "batch", "half-float")


def run(family, cache_dir, size):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, family, str(size)], env=env, check=True,
                         capture_output=True, text=True)
    times = json.loads(out.stdout)
    times["process"] = (time.perf_counter() - start, None)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="cold and warm runs of everything (default 1)")
    parser.add_argument("--size", type=int, default=1024, help="image height and width (default 1024)")
    parser.add_argument("--families", nargs="+", default=("first run",) + FAMILIES,
                        choices=("first run",) + FAMILIES)
    args = parser.parse_args(argv)
    for _ in range(args.rounds):
        for family in args.families:
            with tempfile.TemporaryDirectory() as cache_dir:
                for state in ("cold", "warm"):
                    r = run(family, cache_dir, args.size)
                    if family == "first run":
                        print(f"{family:<16} {state:<5} import {r['import'][0]:5.2f}s  values {r['values'][0]:5.2f}s"
                              f" (cpu {r['values'][1]:5.2f})  labels {r['labels'][0]:5.2f}s (cpu {r['labels'][1]:5.2f})"
                              f"  import + both {r['total'][0]:5.2f}s  process {r['process'][0]:5.2f}s",
                              flush=True)
                    else:
                        print(f"{family:<16} {state:<5} {r[family][0]:6.2f}s (cpu {r[family][1]:5.2f})", flush=True)


if __name__ == "__main__":
    main()
