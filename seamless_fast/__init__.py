"""seamless_fast: seamless, exact, memory-bounded blending of tiled model outputs.

A drop-in successor of ``seamless_seg``: ``import seamless_fast as seamless_seg``
keeps old code working.
"""

from .batching import batched_tile_get, threaded_batched_tile_get
from .blend import Blender, OutputCell, blend
from .geometry import shape_to_slices
from .pipeline import PipelineResult, run_pipeline
from .plan import Plan, PlanStats, analyse_plan, get_plan_input_geoms, plan_from_grid, plan_regular_grid
from .run import run_plan
from .weights import OverlapWeights, apply_weights, overlap_weights
from .windows import WINDOWS

__version__ = "0.1.0"

__all__ = [
    "Blender", "OutputCell", "OverlapWeights", "PipelineResult", "Plan", "PlanStats", "WINDOWS",
    "analyse_plan", "apply_weights", "batched_tile_get", "blend", "get_plan_input_geoms",
    "overlap_weights", "plan_from_grid", "plan_regular_grid", "run_pipeline", "run_plan", "shape_to_slices",
    "threaded_batched_tile_get",
]
