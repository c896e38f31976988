"""Shared scenarios for the benchmarks.

Each benchmark times a whole run over the same number of tiles as its
baselines in the same group, so the ratios of the reported times are the
ratios per tile. Kernels are compiled by a warm-up call before timing.
"""

import os
import shutil
import tempfile
import weakref

import numpy as np

import seamless_fast as sf
from seamless_fast.io import TiffWriter
from seamless_fast.windows import window_2d

# Timed rounds per case (the fastest counts); more rounds find a quiet moment on a shared machine.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))


class Scenario:
    """A plan and one pre-made tile reused for every position, so the "model" costs nothing."""

    def __init__(self, image_size, tile, overlap, channels, dtype=np.float32, layout="hwc"):
        self.plan, _ = sf.plan_regular_grid(image_size, tile, overlap)
        self.channels = channels
        shape = (channels, tile, tile) if layout == "chw" else (tile, tile, channels)
        self.tile = np.random.default_rng(0).random(shape).astype(dtype)
        self.layout = layout

    @property
    def n_tiles(self):
        return self.plan.n_loads

    def blend(self, **options):
        """Push every tile; each finished cell comes back as a fresh array and is dropped."""
        blender = sf.Blender(self.plan, channel_first=self.layout == "chw", **options)
        for _ in range(self.n_tiles):
            blender.push(self.tile)
        blender.close()

    def run_plan(self, **options):
        """The seed's loop: ``run_plan`` over every tile, each (index, geometry, cell) dropped."""
        for _ in sf.run_plan(self.plan, (self.tile for _ in range(self.n_tiles)), **options):
            pass

    def blend_into_image(self, **options):
        """Push every tile; cells are written straight into a full-size output image."""
        blender = sf.Blender(self.plan, channel_first=self.layout == "chw", out=self._image, **options)
        for _ in range(self.n_tiles):
            blender.push(self.tile)
        blender.close()

    def blend_batches(self, batch_size=32, **options):
        """Push batches of distinct tiles (as a model's output arrives) into a full-size output image."""
        blender = sf.Blender(self.plan, channel_first=self.layout == "chw", out=self._image, **options)
        for start in range(0, self.n_tiles, batch_size):
            blender.push_batch(self._batch[:min(batch_size, self.n_tiles - start)])
        blender.close()

    def blend_to_tiff(self, labels=False, **options):
        """Push every tile; each finished cell goes into an uncompressed tiled TIFF (float32 values, or
        uint8 labels) in a temporary folder, as a whole-image run writes its output."""
        height, width = self.plan.image_size
        with TiffWriter(self._tiff_path, (height, width), channels=None if labels else self.channels,
                        dtype=np.uint8 if labels else np.float32, tile=(256, 256)) as writer:
            blender = sf.Blender(self.plan, labels=labels, **options)
            for _ in range(self.n_tiles):
                for cell in blender.push(self.tile):
                    writer.write(cell.box, cell.data)
            blender.close()

    def copyto_hot(self):
        """np.copyto of one tile's bytes, n_tiles times, source and target hot in cache."""
        target = np.empty_like(self.tile)
        for _ in range(self.n_tiles):
            np.copyto(target, self.tile)

    def copyto_image(self):
        """np.copyto of each tile into its place in a full-size output image (touched before timing)."""
        image = self._image
        for ylo, xlo, yhi, xhi in self.plan.tile_boxes[self.plan.load_order].tolist():
            np.copyto(image[ylo:yhi, xlo:xhi], self.tile[:yhi - ylo, :xhi - xlo], casting="unsafe")

    def prepare_image(self, labels=False):
        """Allocate (and touch) the full-size output once, outside the timing."""
        height, width = self.plan.image_size
        if labels:
            self._image = np.ones((height, width), np.uint8)
        else:
            dtype = np.float32 if self.tile.dtype == np.float16 else self.tile.dtype
            shape = (self.channels, height, width) if self.layout == "chw" else (height, width, self.channels)
            self._image = np.ones(shape, dtype)
        if not hasattr(self, "_batch"):
            rng = np.random.default_rng(1)
            self._batch = rng.random((32,) + self.tile.shape).astype(self.tile.dtype)

    def prepare_tiff(self, labels=False):
        """A fresh file name for `blend_to_tiff`, the previous run's file removed outside the timing."""
        if not hasattr(self, "_folder"):
            self._folder = tempfile.mkdtemp(prefix="seamless_fast_bench_")
            weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
        self._tiff_path = os.path.join(self._folder, "labels.tif" if labels else "values.tif")
        if os.path.exists(self._tiff_path):
            os.remove(self._tiff_path)

    def setup_for(self, prepare, labels=False):
        """The function that prepares a case's output outside the timing (`prepare` names the method of
        this class, or is None for a case that needs nothing prepared)."""
        if prepare is None:
            return None
        method = getattr(self, prepare)
        return lambda: method(labels=labels)

    def numpy_reference(self):
        """The plain numpy blend: accumulate weight x value and weight over full-size arrays, then divide."""
        height, width = self.plan.image_size
        values = np.zeros((height, width, self.channels), np.float32)
        weights = np.zeros((height, width), np.float32)
        weight = window_2d("pyramid", *self.tile.shape[:2]).astype(np.float32)
        for ylo, xlo, yhi, xhi in self.plan.tile_boxes[self.plan.load_order].tolist():
            values[ylo:yhi, xlo:xhi] += weight[:, :, None] * self.tile
            weights[ylo:yhi, xlo:xhi] += weight
        values /= weights[:, :, None]


def run(benchmark, function, *args, setup=None, **kwargs):
    """Time `function` (warm-up call first, so compilation is not timed)."""
    if setup is not None:
        setup()
    function(*args, **kwargs)
    return benchmark.pedantic(function, args=args, kwargs=kwargs, setup=setup, rounds=ROUNDS, iterations=1)
