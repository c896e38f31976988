"""``python -m seamless_fast``: blend a built-in synthetic scene and report the figures."""

import argparse
import sys
import time

import numpy as np

from . import analyse_plan, get_plan_input_geoms, plan_regular_grid, run_plan


def synthetic_model(image_size, channels, seed=0):
    """A stand-in model whose output depends on the tile it sees: a smooth scene plus a per-tile bias."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(2, 9, size=(channels, 2)) / np.array(image_size)

    def predict(geom):
        ylo, xlo, yhi, xhi = (int(v) for v in geom.bounds)
        y, x = np.mgrid[ylo:yhi, xlo:xhi]
        scene = np.stack([np.sin(2 * np.pi * (fy * y + fx * x)) for fy, fx in freqs], axis=-1)
        bias = rng.normal(0, 0.2, size=channels)  # what tile context does to a real model
        return (0.5 + 0.4 * scene + bias).astype(np.float32)

    return predict


def seam_score(image, cuts_y, cuts_x):
    """Mean absolute jump across tile cuts over the mean jump elsewhere (about 1 means no seam)."""
    dy = np.abs(np.diff(image, axis=0)).mean(axis=(1, 2))
    dx = np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))
    at = np.concatenate([dy[np.asarray(cuts_y) - 1], dx[np.asarray(cuts_x) - 1]])
    return float(at.mean() / np.median(np.concatenate([dy, dx])))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m seamless_fast", description=__doc__)
    parser.add_argument("--size", type=int, default=4096, help="image height and width (default 4096)")
    parser.add_argument("--tile", type=int, default=256, help="tile size (default 256)")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap (default 64)")
    parser.add_argument("--channels", type=int, default=3, help="model output channels (default 3)")
    args = parser.parse_args(argv)

    image_size = (args.size, args.size)
    start = time.perf_counter()
    plan, grid = plan_regular_grid(image_size, args.tile, args.overlap)
    planned = time.perf_counter() - start
    stats = analyse_plan(plan, channels=args.channels)
    predict = synthetic_model(image_size, args.channels)
    tiles = [predict(geom) for _, geom in get_plan_input_geoms(plan)]

    naive = np.zeros((*image_size, args.channels), np.float32)
    seamless = np.zeros_like(naive)
    for tile, (_, geom) in zip(tiles, get_plan_input_geoms(plan)):
        ylo, xlo, yhi, xhi = (int(v) for v in geom.bounds)
        naive[ylo:yhi, xlo:xhi] = tile  # later tiles simply overwrite: the usual naive stitching
    start = time.perf_counter()
    for _, geom, out in run_plan(plan, iter(tiles)):
        ylo, xlo, yhi, xhi = (int(v) for v in geom.bounds)
        seamless[ylo:yhi, xlo:xhi] = out
    blended = time.perf_counter() - start

    starts_y = sorted({int(g.bounds[0]) for g in grid[:, 0]})[1:]
    starts_x = sorted({int(g.bounds[1]) for g in grid[0, :]})[1:]
    print(f"image {image_size[0]} x {image_size[1]} x {args.channels}, tile {args.tile}, overlap {args.overlap}: "
          f"{plan.n_loads} tiles, grid {plan.grid_shape[0]} x {plan.grid_shape[1]}")
    print(f"planning: {planned * 1e3:.1f} ms; blending: {blended:.2f} s ({blended / plan.n_loads * 1e3:.3f} ms per tile)")
    print(f"blend buffer: {stats.buffer_bytes / 2**20:.1f} MiB "
          f"({100 * stats.buffer_bytes / naive.nbytes:.2f} % of the output image)")
    print(f"seam score (1 = no seam): naive {seam_score(naive, starts_y, starts_x):.2f}, "
          f"seamless {seam_score(seamless, starts_y, starts_x):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
