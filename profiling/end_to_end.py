"""A whole run at real size: time per tile, peak memory over the imports and the blend buffer's bytes.

    python profiling/end_to_end.py [--size 40000] [--tile 256] [--overlap 64] [--channels 3]
        [--sink drop|raw|memmap] [--path FILE] [--labels] [--parallel auto|serial]

A zero-cost model (one reused float32 tile) feeds a `Blender` in plan order,
in a fresh process. The finished cells go to `--sink`:

- ``drop`` (default): dropped, as a writer that streams elsewhere would;
- ``raw``: written with ``os.pwrite`` row by row into `--path`, a raw
  (H, W, C) array on disk (H x W x C x 4 bytes: 19.2 GB at 40000 x 40000 x 3);
- ``memmap``: ``Blender(out=numpy.memmap(--path))``. The pages of a memmap
  written to count in the process's resident memory, so its peak RSS grows
  with the output; the other two show the blend's own memory.

Memory, as shares of the float32 (or label) output: peak RSS over imports,
``ru_maxrss`` after the run less ``ru_maxrss`` after importing numpy,
numba and seamless_fast's blend (it includes loading, or with an empty cache compiling, the
kernels, done by a blend of a small plan before the run); and the RSS the
run itself added, sampled every 64 tiles against the RSS before it.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
import seamless_fast as sf
import seamless_fast.engine.blender  # numba and the kernel modules (the package imports them on first use)
size, tile_size, overlap, channels, sink, path, labels, parallel = json.loads(sys.argv[1])
tile = np.random.default_rng(0).random((tile_size, tile_size, channels)).astype(np.float32)
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


small, _ = sf.plan_regular_grid((tile_size * 3, tile_size * 3), tile_size, overlap)
sf.blend(small, [tile] * small.n_loads, labels=labels, parallel=parallel)  # kernels loaded before the baseline
before = highest = rss()
start = time.perf_counter()
plan, _ = sf.plan_regular_grid((size, size), tile_size, overlap)
planned = time.perf_counter()
out = None
if sink == "memmap":
    out = np.memmap(path, dtype=np.uint8 if labels else np.float32, mode="w+",
                    shape=(size, size) if labels else (size, size, channels))
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644) if sink == "raw" else None
pixel = 1 if labels else channels * 4
with sf.Blender(plan, labels=labels, parallel=parallel, out=out) as blender:
    for k in range(plan.n_loads):
        cells = blender.push(tile)
        if k % 64 == 0:
            highest = max(highest, rss())
        if fd is not None:
            for cell in cells:
                ylo, xlo, yhi, xhi = cell.box
                data = np.ascontiguousarray(cell.data)
                for i in range(yhi - ylo):
                    row = data[i].tobytes()
                    if os.pwrite(fd, row, ((ylo + i) * size + xlo) * pixel) != len(row):
                        raise OSError("short write")
    buffer_bytes = blender._acc.nbytes
if out is not None:
    out.flush()
if fd is not None:
    os.close(fd)
done = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(dict(tiles=plan.n_loads, plan_s=planned - start, run_s=done - planned, buffer_bytes=buffer_bytes,
                      imported=imported, peak=peak, before=before, highest=highest, output_bytes=size * size * pixel)))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=40000, help="image height and width (default 40000)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--sink", choices=("drop", "raw", "memmap"), default="drop")
    parser.add_argument("--path", help="output file for --sink raw or memmap (removed after the run)")
    parser.add_argument("--labels", action="store_true")
    parser.add_argument("--parallel", choices=("auto", "serial"), default="auto")
    args = parser.parse_args(argv)
    if args.sink != "drop" and not args.path:
        parser.error(f"--sink {args.sink} needs --path")
    params = [args.size, args.tile, args.overlap, args.channels, args.sink, args.path, args.labels,
              None if args.parallel == "auto" else False]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    try:
        run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(params)], env=env, check=True,
                             capture_output=True, text=True)
    finally:
        if args.path and os.path.exists(args.path):
            os.remove(args.path)
    r = json.loads(run.stdout)
    over, grown, output = r["peak"] - r["imported"], r["highest"] - r["before"], r["output_bytes"]
    print(f"{args.size} x {args.size} x {args.channels}, tile {args.tile}, overlap {args.overlap}, "
          f"{'labels' if args.labels else 'values'}, sink {args.sink}, parallel {args.parallel}, {os.cpu_count()} cores")
    print(f"tiles {r['tiles']}  planning {r['plan_s']:.2f} s  run {r['run_s']:.1f} s  "
          f"{r['run_s'] / r['tiles'] * 1e6:.1f} us a tile")
    print(f"output {output / 2**30:.2f} GiB; buffer {r['buffer_bytes'] / 2**20:.1f} MiB "
          f"({100 * r['buffer_bytes'] / output:.3f} %)")
    print(f"peak RSS over imports {over / 2**20:.1f} MiB ({100 * over / output:.3f} %; after imports "
          f"{r['imported'] / 2**20:.0f} MiB, loading the kernels included)")
    print(f"RSS grown during the run {grown / 2**20:.1f} MiB ({100 * grown / output:.3f} %; sampled every 64 tiles)")


if __name__ == "__main__":
    main()
