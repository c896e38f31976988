"""Planning time: the seed took 7 to 8 s for a 40000 x 40000 image with tiles of 256 / 64."""

import seamless_fast as sf

from scenarios import run


def test_plan_40000(benchmark):
    benchmark.group = "planning"
    result = run(benchmark, sf.plan_regular_grid, (40000, 40000), 256, 64)
    assert result[0].n_loads == 208 * 208


def test_plan_40000_with_area(benchmark):
    import shapely

    benchmark.group = "planning"
    area = shapely.Point(20000, 20000).buffer(15000)
    result = run(benchmark, sf.plan_regular_grid, (40000, 40000), 256, 64, area=area)
    assert 0 < result[0].n_loads < 208 * 208
