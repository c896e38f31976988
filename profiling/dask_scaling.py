"""Wall time of run_dask with 1 and 2 workers, and the bytes handed over at seams against the output's.

    python profiling/dask_scaling.py [--size 3072] [--tile 256] [--overlap 64]

Writes a synthetic scene as a TIFF in a temporary folder, then for each
cluster size starts a LocalCluster (one thread per worker process), warms the
workers up on a small image (numba compiles or loads its cache there), and
times one run_dask call over the scene with one part per worker. The
stand-in model is CPU-bound numpy work of a few milliseconds per tile, so
the figures show how the parts share the cores, not how fast a GPU model is.
"""

import argparse
import os
import tempfile
import time

import numpy as np


def stand_in_model(batch):
    """CPU-bound: twelve smoothing passes and a context-dependent score per tile, channel-first."""
    out = []
    for tile in np.ascontiguousarray(batch, np.float32):
        smooth = tile[:1]
        for _ in range(12):
            smooth = (smooth + np.roll(smooth, 1, 1) + np.roll(smooth, -1, 1) + np.roll(smooth, 1, 2)
                      + np.roll(smooth, -1, 2)) / 5
        centred = smooth - smooth.mean()
        out.append(np.concatenate([centred, -centred, tile[1:2] - 0.5]))
    return np.stack(out)


def factory():
    return stand_in_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3072)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--dask-malloc", action="store_true",
                        help="keep the MALLOC_TRIM_THRESHOLD_=65536 Dask's nanny gives its workers; it makes "
                             "glibc map and unmap every array of 128 KiB or more, which made the numpy stand-in "
                             "model 7 x slower in a worker than in a plain process here")
    args = parser.parse_args()

    import dask
    import distributed

    if not args.dask_malloc:
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    import tifffile

    from seamless_fast.demo import SyntheticScene
    from seamless_fast.scale.distributed import run_dask

    folder = tempfile.mkdtemp(prefix="seamless_fast_dask_")
    scene = SyntheticScene(args.size).read((0, 0, args.size, args.size))
    image = os.path.join(folder, "scene.tif")
    tifffile.imwrite(image, scene, tile=(256, 256), photometric="rgb")
    small = os.path.join(folder, "small.tif")
    tifffile.imwrite(small, scene[:600, :600], photometric="rgb")
    print(f"scene {args.size} x {args.size} x 3 {scene.dtype}, tile {args.tile}, overlap {args.overlap}; "
          f"{os.cpu_count()} cores")
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            run_dask(small, factory, os.path.join(folder, f"warm{workers}.zarr"), tile_size=args.tile,
                     overlap=args.overlap, client=client)
            for labels in (True, False):
                start = time.perf_counter()
                result = run_dask(image, factory, os.path.join(folder, f"parts{workers}{labels}.zarr"),
                                  tile_size=args.tile, overlap=args.overlap, labels=labels, client=client,
                                  output=os.path.join(folder, f"out{workers}{labels}.zarr"))
                wall = time.perf_counter() - start
                part_seconds = ", ".join(f"{r.seconds:.2f}" for r in result.parts)
                print(f"{workers} worker(s), {len(result.parts)} part(s), {'labels' if labels else 'float32'}: "
                      f"wall {wall:.2f} s (parts {part_seconds} s); seams {result.seam_bytes / 2**20:.2f} MiB = "
                      f"{100 * result.seam_bytes / result.output_bytes:.2f} % of the "
                      f"{result.output_bytes / 2**20:.1f} MiB output")


if __name__ == "__main__":
    main()
