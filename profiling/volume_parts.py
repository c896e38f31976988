"""A volume's partitioned run against its single-process run, in one process: every part into a PartStore, then
the merge, against run_pipeline into the same kind of output; alternating rounds, medians.

    PYTHONPATH=$PWD python profiling/volume_parts.py --size 96 192 192 --tile 32 64 64 --overlap 8 16 16 \
        --channels 3 --parts 2 --rounds 3

Prints the plan and the seam bytes per part (from the partition), then per round the seconds of the single run,
of each part and of the merge, and the medians with the ratio (parts + merge) / single. The model is a cheap
stand-in (a per-tile centring), so the figures are the blend's and the store's costs, not a network's.
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import seamless_fast as sf
from seamless_fast.io import VolumeReader, volume_writer
from seamless_fast.scale import partition_plan
from seamless_fast.scale.store import Job, PartStore


def make_model(channels):
    def model(batch):
        batch = np.asarray(batch, np.float32)
        first = batch[:, :1] - batch[:, :1].mean(axis=(2, 3, 4), keepdims=True)
        return np.concatenate([first * (c + 1) for c in range(channels)], axis=1)
    return model


def single(reader, plan, model, path, labels, channels):
    with volume_writer(path, plan.image_size, channels=None if labels else channels,
                       dtype="uint8" if labels else "float32") as writer:
        def write_cells(cells):
            for cell in cells:
                data = cell.data if labels else np.moveaxis(cell.data, 0, -1)
                writer.write(cell.box, data.astype(writer.dtype))
        sf.run_pipeline(plan, reader.read, model, write_cells, labels=labels)


def parted(reader, job, model, store_path, output):
    store = PartStore(store_path, job)
    times = []
    for part in range(job.parts):
        start = time.perf_counter()
        store.run_part(part, reader.read, model)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    store.merge(output)
    return times, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[96, 192, 192])
    parser.add_argument("--tile", type=int, nargs=3, default=[32, 64, 64])
    parser.add_argument("--overlap", type=int, nargs=3, default=[8, 16, 16])
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--labels", action="store_true")
    args = parser.parse_args()
    size = tuple(args.size)
    volume = np.random.default_rng(0).random(size, np.float32)
    plan, _ = sf.plan_regular_grid(size, tuple(args.tile), tuple(args.overlap))
    partition = partition_plan(plan, args.parts)
    seams = partition.part_seam_bytes(args.channels)
    print(f"{' x '.join(map(str, size))}, tile {args.tile}, overlap {args.overlap}, C = {args.channels}, "
          f"{plan.n_loads} tiles, {args.parts} parts (layers {partition.layer_bounds.tolist()}), "
          f"{'labels' if args.labels else 'values'}, {args.rounds} rounds")
    print("seam MiB per part (crop + lead): " + " ".join(f"{b / 2**20:.1f}" for b in seams.tolist()))
    model = make_model(args.channels)
    job = Job.from_options(size, tuple(args.tile), tuple(args.overlap), parts=args.parts, labels=args.labels)
    singles, parts, merges = [], [], []
    with VolumeReader(volume, pad="reflect") as reader, tempfile.TemporaryDirectory() as folder:
        for n in range(args.rounds):
            start = time.perf_counter()
            single(reader, plan, model, os.path.join(folder, f"single{n}.zarr"), args.labels, args.channels)
            singles.append(time.perf_counter() - start)
            times, merge = parted(reader, job, model, os.path.join(folder, f"s{n}.zarr"),
                                  os.path.join(folder, f"merged{n}.zarr"))
            parts.append(times)
            merges.append(merge)
            print(f"round {n}: single {singles[-1]:.2f} s, parts " + " ".join(f"{t:.2f}" for t in times)
                  + f" s, merge {merge:.2f} s")
    total = [sum(p) + m for p, m in zip(parts, merges)]
    print(f"median: single {statistics.median(singles):.2f} s, parts + merge {statistics.median(total):.2f} s, "
          f"merge {statistics.median(merges):.2f} s, ratio {statistics.median(total) / statistics.median(singles):.2f}")


if __name__ == "__main__":
    main()
