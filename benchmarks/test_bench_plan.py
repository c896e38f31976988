"""Planning time: the seed took 7 to 8 s for a 40000 x 40000 image with tiles of 256 / 64.

Each case returns what a caller gets, so freeing the previous round's geometries is not timed.
"""

import numpy as np
import shapely

import seamless_fast as sf
from seamless_fast.plan import _plan as plan_module

from scenarios import run


def test_plan_40000(benchmark):
    benchmark.group = "planning"
    result = run(benchmark, sf.plan_regular_grid, (40000, 40000), 256, 64)
    assert result[0].n_loads == 208 * 208 and result[1].shape == (208, 208)


def test_plan_40000_with_area(benchmark):
    benchmark.group = "planning"
    area = shapely.Point(20000, 20000).buffer(15000)
    result = run(benchmark, sf.plan_regular_grid, (40000, 40000), 256, 64, area=area)
    assert 0 < result[0].n_loads < 208 * 208


def test_plan_and_input_geoms_40000(benchmark):
    """The seed's start: plan, then the list of tiles to compute (whose geometries the plan keeps)."""
    benchmark.group = "planning"

    def plan_and_geoms():
        plan, grid = sf.plan_regular_grid((40000, 40000), 256, 64)
        return plan, grid, sf.get_plan_input_geoms(plan)

    result = run(benchmark, plan_and_geoms)
    assert len(result[2]) == 208 * 208


def test_input_geoms_40000_uncached(benchmark):
    """get_plan_input_geoms making every tile's geometry (as for a plan from plan_from_grid)."""
    benchmark.group = "planning"
    plan, _ = sf.plan_regular_grid((40000, 40000), 256, 64)

    def forget():
        plan_module.INPUT_GEOMS.pop(plan, None)

    result = run(benchmark, sf.get_plan_input_geoms, plan, setup=forget)
    assert len(result) == 208 * 208


def test_plan_from_grid_40000(benchmark):
    benchmark.group = "planning"
    grid = sf.regular_grid((40000, 40000), 256, 64)
    result = run(benchmark, sf.plan_from_grid, grid)
    assert result.n_loads == np.size(grid)


def test_input_geoms_40000_again(benchmark):
    """get_plan_input_geoms once more on a plan already asked (the list is copied)."""
    benchmark.group = "planning"
    plan, _ = sf.plan_regular_grid((40000, 40000), 256, 64)
    sf.get_plan_input_geoms(plan)
    result = run(benchmark, sf.get_plan_input_geoms, plan)
    assert len(result) == 208 * 208
