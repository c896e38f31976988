"""`Blender.push_batch` of distinct tiles fresh from a model (not in the processor's cache), side by side.

    python profiling/batch_cold.py [--rounds 7] [--size 4096] [--tile 256] [--overlap 64] [--channels 3]
        [--batch 8] [--pool-mib 256]

Tiles come in batch arrays (batch, tile, tile, C) as a model returns them,
from a pool of distinct batches larger than the caches (`--pool-mib`),
used in turn, so every tile is read from memory. Into one full-size `out`,
per round, in an order that rotates:

- ``batch``: ``Blender(plan, out=out).push_batch(batch)``;
- ``batch serial``: the same with ``parallel=False`` (one kernel call a batch, as every batch ran before);
- ``single``: ``Blender(plan, out=out).push(tile)`` for each tile of the batch (default policy);
- ``copy``: each tile copied into `out` at its place (``np.copyto``): the floor.

Prints the median time per tile of each, and the median over rounds of its
ratio to ``copy`` in the same round.
"""

import argparse
import statistics
import time

import numpy as np

import seamless_fast as sf
from seamless_fast.engine.blender import Blender


def pool_of_batches(plan, batch, tile, channels, pool_bytes):
    """Distinct batch arrays adding up to about `pool_bytes`, whole batches of the plan's first tiles."""
    per_batch = batch * tile * tile * channels * 4
    count = max(2, pool_bytes // per_batch)
    rng = np.random.default_rng(0)
    return [rng.random((batch, tile, tile, channels), dtype=np.float32) for _ in range(count)]


def batches_of_plan(plan, pool, batch):
    """The plan's tiles as batches from the pool, in turn; the tail (fewer than `batch` tiles) as a smaller one."""
    n = plan.n_loads
    for b, start in enumerate(range(0, n, batch)):
        tiles = pool[b % len(pool)]
        yield tiles if start + batch <= n else tiles[:n - start]


def run_batch(plan, pool, batch, out, parallel=None):
    with Blender(plan, out=out, parallel=parallel) as blender:
        for tiles in batches_of_plan(plan, pool, batch):
            blender.push_batch(tiles)


def run_single(plan, pool, batch, out):
    with Blender(plan, out=out) as blender:
        for tiles in batches_of_plan(plan, pool, batch):
            for tile in tiles:
                blender.push(tile)


def run_copy(plan, pool, batch, out):
    boxes = plan.tile_boxes[plan.load_order].tolist()
    k = 0
    for tiles in batches_of_plan(plan, pool, batch):
        for tile in tiles:
            ylo, xlo, yhi, xhi = boxes[k]
            np.copyto(out[ylo:yhi, xlo:xhi], tile[:yhi - ylo, :xhi - xlo])
            k += 1


def run_batch_serial(plan, pool, batch, out):
    run_batch(plan, pool, batch, out, parallel=False)


WAYS = {"batch": run_batch, "batch serial": run_batch_serial, "single": run_single, "copy": run_copy}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pool-mib", type=int, default=256)
    args = parser.parse_args(argv)
    plan, _ = sf.plan_regular_grid((args.size, args.size), args.tile, args.overlap)
    pool = pool_of_batches(plan, args.batch, args.tile, args.channels, args.pool_mib << 20)
    out = np.zeros(plan.image_size + (args.channels,), np.float32)
    for way in WAYS.values():  # kernels compiled or loaded, out's pages touched
        way(plan, pool, args.batch, out)
    times = {name: [] for name in WAYS}
    names = list(WAYS)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            WAYS[name](plan, pool, args.batch, out)
            times[name].append((time.perf_counter() - start) / plan.n_loads)
    print(f"{args.size} x {args.size}, tile {args.tile}, overlap {args.overlap}, C = {args.channels}, batches of "
          f"{args.batch}, pool {len(pool)} batches ({args.pool_mib} MiB), {args.rounds} rounds")
    for name, values in times.items():
        ratio = statistics.median(v / c for v, c in zip(values, times["copy"]))
        print(f"{name:13} {statistics.median(values) * 1e6:8.1f} us a tile {ratio:6.2f} x copy")


if __name__ == "__main__":
    main()
