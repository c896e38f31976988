"""Volume I/O costs: what one window of a NIfTI costs (.nii against .nii.gz, by its depth in the file), and what the
volume writers hold while cells arrive in the engine's emission order (z-layer by z-layer, row by row).

    PYTHONPATH=$PWD python profiling/volume_io.py --size 192 256 256 --window 64 --cell 48 96 96 --chunk 32 64 64

Prints, per window position, the median read time of a window of side --window at the start, middle and end of
the volume against reading the whole volume with nibabel; then, per writer, the peak bytes held in incomplete
blocks (``peak_held_bytes``) and the peak traced by tracemalloc during the writes, against one chunk layer (zarr)
or one cell layer of planes (NIfTI, TIFF) and the whole volume.
"""

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc

import numpy as np

from seamless_fast.io import VolumeReader, volume_writer


def median_time(function, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def emission_boxes(shape, cell):
    return [(z, y, x, min(z + cell[0], shape[0]), min(y + cell[1], shape[1]), min(x + cell[2], shape[2]))
            for z in range(0, shape[0], cell[0]) for y in range(0, shape[1], cell[1]) for x in range(0, shape[2],
                                                                                                     cell[2])]


def window_costs(folder, volume, side, rounds):
    import nibabel

    shape = volume.shape
    paths = {}
    for suffix in (".nii", ".nii.gz"):
        paths[suffix] = os.path.join(folder, "volume" + suffix)
        with volume_writer(paths[suffix], shape, dtype="float32") as writer:
            writer.write((0, 0, 0) + shape, volume)
    print(f"NIfTI window {side}^3 of a {shape} float32 volume ({volume.nbytes / 2**20:.0f} MiB), median of {rounds}:")
    print(f"{'':>22} {'.nii':>10} {'.nii.gz':>10}")
    whole = {s: median_time(lambda p=p: np.asarray(nibabel.load(p).dataobj), rounds) for s, p in paths.items()}
    print(f"{'whole volume (nibabel)':>22} {whole['.nii'] * 1e3:9.1f}ms {whole['.nii.gz'] * 1e3:9.1f}ms")
    for name, z in (("window at z = 0", 0), ("window at middle", (shape[0] - side) // 2),
                    ("window at z end", shape[0] - side)):
        box = (z, (shape[1] - side) // 2, (shape[2] - side) // 2, z + side, (shape[1] + side) // 2,
               (shape[2] + side) // 2)
        times = {}
        for suffix, path in paths.items():
            with VolumeReader(path) as reader:
                np.testing.assert_array_equal(reader.read(box)[..., 0], volume[z:z + side, box[1]:box[4],
                                                                               box[2]:box[5]])
                times[suffix] = median_time(lambda r=reader: r.read(box), rounds)
        print(f"{name:>22} {times['.nii'] * 1e3:9.1f}ms {times['.nii.gz'] * 1e3:9.1f}ms"
              f"   (.nii.gz window / whole .nii.gz = {times['.nii.gz'] / whole['.nii.gz']:.2f})")


def writer_memory(folder, volume, cell, chunk):
    shape = volume.shape[:3]
    boxes = emission_boxes(shape, cell)
    channels = volume.shape[3]
    voxel = channels * volume.dtype.itemsize
    print(f"\nwriters, {shape} x C = {channels} float32 ({volume.nbytes / 2**20:.0f} MiB), cells {cell} in emission "
          f"order, zarr chunks {chunk}:")
    print(f"{'':>10} {'held peak':>10} {'traced peak':>12} {'reference':>28} {'time':>8}")
    chunk_layer = chunk[0] * shape[1] * shape[2] * (voxel + 1)
    cell_layer = cell[0] * shape[1] * shape[2] * (voxel + 1)
    for suffix, options, reference in ((".zarr", {"chunks": chunk}, ("one chunk layer", chunk_layer)),
                                      (".nii", {}, ("one cell layer of planes", cell_layer)),
                                      (".nii.gz", {}, ("one cell layer of planes", cell_layer)),
                                      (".tif", {}, ("one cell layer of planes", cell_layer))):
        path = os.path.join(folder, "out" + suffix)
        tracemalloc.start()
        start = time.perf_counter()
        with volume_writer(path, shape, channels=channels, dtype="float32", **options) as writer:
            for box in boxes:
                writer.write(box, volume[box[0]:box[3], box[1]:box[4], box[2]:box[5]])
        seconds = time.perf_counter() - start
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{suffix:>10} {writer.peak_held_bytes / 2**20:8.1f}Mi {traced / 2**20:10.1f}Mi "
              f"{reference[0]:>20} {reference[1] / 2**20:5.1f}Mi {seconds:7.2f}s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(96, 128, 128))
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--cell", type=int, nargs=3, default=(24, 48, 48))
    parser.add_argument("--chunk", type=int, nargs=3, default=(16, 32, 32))
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    shape = tuple(args.size)
    with tempfile.TemporaryDirectory() as folder:
        window_costs(folder, rng.random(shape, dtype=np.float32), args.window, args.rounds)
        writer_memory(folder, rng.random(shape + (args.channels,), dtype=np.float32), tuple(args.cell),
                      tuple(args.chunk))


if __name__ == "__main__":
    main()
