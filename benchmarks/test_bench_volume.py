"""The volume blend's parallel policies, quiet and beside other work on the machine.

Groups ``volume_<condition>``, the conditions of profiling/contention.py: ``quiet``, ``thread`` (a numpy
matmul loop in a thread of this process) and ``process`` (a second process running numba ``prange``
loops). Cases: ``default`` (``Blender(plan)``: the tile copy, the layer's 2-D blend and the z-combine
each serial or split over numba's threads, call by call, whichever is faster now), ``serial``
(``parallel=False``) and ``numba_parallel`` (the parallel kernels for every large call). One reused
channel-last float32 tile of 64^3 x 8 over a 128 x 256 x 256 volume (overlap 16), cells dropped; in
the default test run each case runs once on a small volume. For ratios from alternating rounds run
``python profiling/volume_memory.py --neighbour ...``.
"""

import os
import sys
import time

import numpy as np
import pytest

import seamless_fast as sf
from scenarios import run

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling"))
import contention  # noqa: E402

CASES = {"default": None, "serial": False, "numba_parallel": "numba"}


def time_volume(plan, tile, case):
    """Seconds per tile of one whole run of the volume plan."""
    start = time.perf_counter()
    with sf.Blender(plan, parallel=None if case is None else case == "numba") as blender:
        if case == "numba":
            blender._policy = "numba"
        for _ in range(plan.n_loads):
            blender.push(tile)
    return (time.perf_counter() - start) / plan.n_loads


@pytest.fixture(scope="module", params=contention.CONDITIONS)
def condition(request):
    """(condition name, plan, tile) with the condition's neighbour running."""
    smoke = request.config.getoption("benchmark_disable") and not request.config.getoption("benchmark_enable")
    size, tile_edge, channels = ((40, 48, 48), 24, 2) if smoke else ((128, 256, 256), 64, 8)
    plan, _ = sf.plan_regular_grid(size, tile_edge, tile_edge // 4)
    tile = np.random.default_rng(0).random((tile_edge,) * 3 + (channels,)).astype(np.float32)
    for case in CASES.values():  # compiled before the neighbour starts
        time_volume(plan, tile, case)
    neighbour = contention.neighbour(request.param).start()
    try:
        yield request.param, plan, tile
    finally:
        neighbour.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_case(benchmark, condition, case):
    name, plan, tile = condition
    benchmark.group = f"volume_{name}"
    benchmark.name = f"test_{case}[volume_{name}]"
    benchmark.extra_info["tiles"] = plan.n_loads
    run(benchmark, time_volume, plan, tile, CASES[case])
