"""What labels cost on top of values: the kernels for one interior tile, one thread.

    python profiling/labels_cost.py [--tile 256] [--overlap 64] [--channels 3] [--channel-first] [--rounds 200]

For one step whose tile lies inside the image, three things are timed in
turn, round after round: the values kernel writing its cell into a hot
array (what `Blender.push` does for fresh cells), the labels kernel writing
the cell's labels, and the arg-max alone over the cell's finished values, in
the same row blocks the labels kernel uses (one block of values, hot in cache
as the labels kernel's scratch rows are, turned into each block of labels).
The labels kernel is the values kernel with the arg-max in place of the float
writes, so "labels - values" should come out close to "arg-max alone"; the
times are also given per pixel of the cell.
"""

import argparse
import statistics
import time

import numba
import numpy as np

import seamless_fast as sf
from seamless_fast.engine import _band_kernels, _kernels
from seamless_fast.plan import STEP_COLUMNS


@numba.njit
def argmax_cell(block_values, h, w, group, label, out):
    """Labels for the h rows of a cell from one block of values: the labels kernel's arg-max calls, in one call."""
    block = block_values.shape[1]
    for row in range(0, h, block):
        _kernels.argmax_rows(block_values, 0, min(block, h - row), w, group, label, out, row, 0)


def interior_step(plan):
    """A step whose tile touches no image edge (the middle of the load order)."""
    return plan.n_loads // 2


def kernel_calls(blender, tile, k, channel_first):
    """The three timed calls for step k, on arrays made once (the kernels are compiled by the caller)."""
    plan = blender.plan
    ylo, xlo, yhi, xhi = plan.cell_boxes[plan.steps[k][STEP_COLUMNS.index("cell")]].tolist()
    h, w = yhi - ylo, xhi - xlo
    c = blender.channels
    group = blender._group
    values_out = np.empty((c if channel_first else 1, h, w * group), tile.dtype)
    labels_out = np.empty((h, w), blender._labels_dtype)
    args = blender._bufs + (tile, blender._wy, blender._wx, plan.steps, k, group)
    kernels = (_band_kernels.band_values, _band_kernels.band_labels) if blender._band else (_kernels.blend_values,
                                                                                           _kernels.blend_labels)
    scratch, label = blender._scratch, blender._label
    block_values = np.random.default_rng(2).random(scratch.shape).astype(tile.dtype)

    def values():
        kernels[0](*args, values_out, 0, 0)

    def labels():
        kernels[1](blender._way, *args, scratch, label, labels_out, 0, 0)

    def argmax():
        argmax_cell(block_values, h, w, group, label, labels_out)

    return {"values kernel": values, "labels kernel": labels, "arg-max alone": argmax}, h * w, c


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--channel-first", action="store_true")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    plan, _ = sf.plan_regular_grid((4 * args.tile, 4 * args.tile), args.tile, args.overlap)
    shape = (args.channels, args.tile, args.tile) if args.channel_first else (args.tile, args.tile, args.channels)
    tile = np.random.default_rng(0).random(shape).astype(np.float32)
    blender = sf.Blender(plan, labels=True, channel_first=args.channel_first, parallel=False)
    blender.push(tile)  # allocates the buffer and scratch rows
    calls, pixels, channels = kernel_calls(blender, tile, interior_step(plan), args.channel_first)
    times = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)

    layout = "(C, H, W)" if args.channel_first else "(H, W, C)"
    print(f"tile {args.tile}, overlap {args.overlap}, C = {channels} {layout}, one interior step, cell of "
          f"{pixels} pixels, one thread, {args.rounds} rounds")
    print(f"{'':<16} {'fastest':>9} {'median':>9} {'ns/pixel':>9}")
    for name, t in times.items():
        print(f"{name:<16} {min(t) * 1e6:>7.1f}us {statistics.median(t) * 1e6:>7.1f}us "
              f"{min(t) * 1e9 / pixels:>9.2f}")
    extra = statistics.median(a - b for a, b in zip(times["labels kernel"], times["values kernel"]))
    print(f"labels - values, median of the rounds' differences: {extra * 1e6:.1f} us")


if __name__ == "__main__":
    main()
