"""The blend's parallel policies beside other work on the machine (see profiling/contention.py).

Groups ``contention_<condition>``: ``quiet``, ``thread`` (a numpy matmul loop in a thread of this
process) and ``process`` (a second process running numba ``prange`` loops). The neighbour starts
before a group's cases and stops after them. Cases: ``default`` (``Blender(plan)``: serial or split
over numba's threads, tile by tile, whichever is faster now), ``serial`` (``parallel=False``) and
``numba_parallel`` (numba's parallel kernels for every large tile, the default before). Compare
the cases of one group: ``default`` should stay near ``serial`` or below it. For ratios from
alternating rounds run ``python profiling/contention.py``. In the default test run each case runs
once on a small plan.
"""

import os
import sys

import numpy as np
import pytest

import seamless_fast as sf
from scenarios import run

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling"))
import contention  # noqa: E402

CASES = {"default": "default", "serial": "serial", "numba_parallel": "numba"}


@pytest.fixture(scope="module", params=contention.CONDITIONS)
def condition(request):
    """(condition name, plan, tile) with the condition's neighbour running."""
    smoke = request.config.getoption("benchmark_disable") and not request.config.getoption("benchmark_enable")
    size = 1024 if smoke else 4096
    plan, _ = sf.plan_regular_grid((size, size), 256, 64)
    tile = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
    for policy in CASES.values():  # compiled before the neighbour starts
        contention.time_run(plan, tile, policy, False)
    neighbour = contention.neighbour(request.param).start()
    try:
        yield request.param, plan, tile
    finally:
        neighbour.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_case(benchmark, condition, case):
    name, plan, tile = condition
    benchmark.group = f"contention_{name}"
    benchmark.name = f"test_{case}[contention_{name}]"
    benchmark.extra_info["tiles"] = plan.n_loads
    run(benchmark, contention.time_run, plan, tile, CASES[case], False)
