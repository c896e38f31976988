"""run_pipeline against its model's own time: is reading, blending and writing hidden behind inference?

The stand-in model sleeps a fixed 20 ms per batch (releasing the GIL, as a
real model's forward pass does) and returns a pre-made output batch, so the
model's own time is known exactly: batches x 20 ms. The target is a wall
time of at most 1.1 x that. ``read_tile`` returns a pre-made tile and
``write_cells`` copies every cell into a full-size output touched once
before timing.

Run with ``pytest benchmarks/test_bench_pipeline.py --benchmark-enable``;
in the default test run each case executes once as a smoke test.
``extra_info`` holds ``model_seconds``, the fastest wall time of the rounds
(``wall_seconds``) and their ratio (``wall_over_model``); as ``time.sleep``
overshoots a little, also the ratio to the model's measured busy time
(``wall_over_model_busy``).
"""

import math
import time

import numpy as np
import pytest

import seamless_fast as sf
from seamless_fast.engine.pipeline import run_pipeline

IMAGE_SIZE, TILE, OVERLAP, CHANNELS, BATCH_SIZE = (4096, 4096), 256, 64, 3, 16
MODEL_SECONDS_PER_BATCH = 0.02


class Job:
    """The canonical job: 4096 x 4096, tile 256, overlap 64, 3 channels, batches of 16."""

    def __init__(self, channel_first):
        self.channel_first = channel_first
        self.plan, _ = sf.plan_regular_grid(IMAGE_SIZE, TILE, OVERLAP)
        rng = np.random.default_rng(0)
        self.tile = rng.random((TILE, TILE, CHANNELS), dtype=np.float32)
        shape = (CHANNELS, TILE, TILE) if channel_first else (TILE, TILE, CHANNELS)
        self.outputs = rng.random((BATCH_SIZE,) + shape, dtype=np.float32)
        self.image = np.empty((CHANNELS,) + IMAGE_SIZE if channel_first else IMAGE_SIZE + (CHANNELS,), np.float32)
        self.image.fill(0)  # touched once, outside the timing
        self.batches = math.ceil(self.plan.n_loads / BATCH_SIZE)
        self.model_seconds = self.batches * MODEL_SECONDS_PER_BATCH
        self.walls = []
        self.result = None

    def read_tile(self, box):
        return self.tile

    def model(self, batch):
        time.sleep(MODEL_SECONDS_PER_BATCH)
        return self.outputs[:len(batch)]

    def write_cells(self, cells):
        for cell in cells:
            where = (slice(None),) + cell.slices if self.channel_first else cell.slices
            self.image[where] = cell.data

    def run(self):
        start = time.perf_counter()
        self.result = run_pipeline(self.plan, self.read_tile, self.model, self.write_cells, batch_size=BATCH_SIZE,
                                   channel_first=self.channel_first)
        self.walls.append(time.perf_counter() - start)


@pytest.mark.parametrize("layout", ["channel_first", "channel_last"])
def test_pipeline(benchmark, layout):
    job = Job(channel_first=layout == "channel_first")
    job.run()  # warm-up: numba kernels are loaded (or compiled) outside the timing
    job.walls.clear()
    benchmark.group = "pipeline"
    benchmark.pedantic(job.run, rounds=3, iterations=1)
    assert job.result.tiles == job.plan.n_loads and job.result.batches == job.batches
    wall = min(job.walls)
    info = benchmark.extra_info
    info["tiles"] = job.plan.n_loads
    info["batches"] = job.batches
    info["model_seconds"] = job.model_seconds
    info["wall_seconds"] = round(wall, 4)
    info["wall_over_model"] = round(wall / job.model_seconds, 3)
    # time.sleep overshoots a little: against the model's measured time as well
    info["wall_over_model_busy"] = round(wall / job.result.model.busy, 3)
    for stage in ("read", "model", "blend", "write"):
        times = getattr(job.result, stage)
        info[f"{stage}_busy_seconds"] = round(times.busy, 4)
        info[f"{stage}_starved_seconds"] = round(times.starved, 4)
    print(f"\n{layout}: {job.plan.n_loads} tiles in {job.batches} batches; model {job.model_seconds:.3f} s, "
          f"wall {wall:.3f} s (fastest of {len(job.walls)}), wall / model = {wall / job.model_seconds:.3f}; "
          + ", ".join(f"{s} busy {getattr(job.result, s).busy:.3f} s" for s in ("read", "model", "blend", "write")))
