"""Planning: a grid of tiles compiled into a `Plan` of flat integer arrays.

Shapely is used while planning only (here and in :mod:`seamless_fast.geometry`).
Everything a run needs afterwards (the order of arrival, the output cells,
when each cell is final, which buffer rows are live, the weights) is computed
once as numpy arrays, so running a plan never touches a geometry. The kernels
of :mod:`seamless_fast.engine` walk these arrays.
"""

from ._analyse import analyse_plan, get_plan_input_geoms, get_plan_logit_geoms, row_by_row_traversal
from ._grid import plan_from_grid, plan_regular_grid, regular_grid, ring_layout
from ._plan import MAX_GRID_TILES, Plan, PlanStats
from ._schedule import MAX_WEIGHTS, STEP_COLUMNS
from ._volume import VolumePlan

__all__ = ["MAX_GRID_TILES", "MAX_WEIGHTS", "STEP_COLUMNS", "Plan", "VolumePlan", "PlanStats", "analyse_plan", "get_plan_input_geoms",
           "get_plan_logit_geoms", "plan_from_grid", "plan_regular_grid", "regular_grid", "ring_layout",
           "row_by_row_traversal"]
