"""Peak resident memory of a TiffWriter pyramid write against image height, each write in a fresh process.

    python profiling/pyramid_memory.py [--quick] [--width W] [--threads N]

A write streams an image of random labels (uint8, width W, tile 256, zlib) in
rows of 256-row cells, as a blend emits them, into a TiffWriter with
``pyramid=True`` (and, for comparison, without). The peak RSS of a streaming
write should not grow with the height: the writer holds a few tile rows of
level 0 and one tile row per reduced level. Printed per run: the height, the
levels, the largest ``held_rows`` and ``pyramid_held_rows`` seen, the seconds the
write took, and the peak RSS above the RSS after import (all in the same child
process; seconds are noisy on a shared machine, compare runs of one call).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
from seamless_fast.io import TiffWriter
height, width, pyramid, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
cell = np.random.default_rng(0).integers(0, 4, (256, width), dtype=np.uint8)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
held = levels_held = 0
path = os.path.join(folder, f"out-{height}-{int(pyramid)}.tif")
start = time.perf_counter()
with TiffWriter(path, (height, width), tile=(256, 256), compression="zlib", pyramid=pyramid) as writer:
    for top in range(0, height, 256):
        rows = min(256, height - top)
        writer.write((top, 0, top + rows, width), cell[:rows])
        held = max(held, writer.held_rows)
        levels_held = max([levels_held, *writer.pyramid_held_rows])
    levels = len(writer.level_sizes)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
size = os.path.getsize(path)
os.remove(path)
print(json.dumps(dict(height=height, width=width, pyramid=pyramid, levels=levels, held_rows=held,
                      level_held_rows=levels_held, file_mib=size / 2**20, seconds=seconds,
                      import_rss_mib=baseline / 1024, peak_rss_mib=peak / 1024)))
"""


def measure(height, width, pyramid, folder, threads=None):
    env = dict(os.environ, **({} if threads is None else {"TIFFFILE_NUM_THREADS": str(threads)}))
    out = subprocess.run([sys.executable, "-c", CHILD, str(height), str(width), "1" if pyramid else "0", folder],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two small heights only")
    parser.add_argument("--width", type=int, default=8192, help="image width (default 8192)")
    parser.add_argument("--threads", type=int, help="tifffile's encoding threads (TIFFFILE_NUM_THREADS; its "
                                                     "default is half the cores)")
    args = parser.parse_args()
    heights = [1024, 4096] if args.quick else [4096, 16384, 65536]
    with tempfile.TemporaryDirectory() as folder:
        runs = [measure(h, args.width, pyramid, folder, args.threads) for h in heights for pyramid in (False, True)]
    print(f"{'height':>7} {'width':>6} {'pyramid':>7} {'levels':>6} {'held rows':>9} {'level rows':>10} "
          f"{'file MiB':>8} {'seconds':>7} {'after import':>12} {'peak RSS MiB':>12} {'growth MiB':>10}")
    for r in runs:
        print(f"{r['height']:>7} {r['width']:>6} {str(r['pyramid']):>7} {r['levels']:>6} {r['held_rows']:>9} "
              f"{r['level_held_rows']:>10} {r['file_mib']:>8.1f} {r['seconds']:>7.2f} {r['import_rss_mib']:>12.1f} "
              f"{r['peak_rss_mib']:>12.1f} {r['peak_rss_mib'] - r['import_rss_mib']:>10.1f}")


if __name__ == "__main__":
    main()
