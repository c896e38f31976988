"""The engine: numba kernels that walk a plan's flat arrays, blend each tile on arrival and emit finished cells.

:class:`Blender` takes tiles one by one (or in batches) in the plan's order and
returns the cells no later tile touches; :func:`blend` and :func:`run_plan`
drive it over a sequence or a callable; :func:`run_pipeline` overlaps reading,
the model, blending and writing in threads. The kernels themselves (private
modules here) take plain arrays and integers only; their JIT options live in
`_jit`.
"""

from .batching import batched_tile_get, threaded_batched_tile_get
from .blender import Blender, OutputCell
from .pipeline import PipelineResult, run_pipeline
from .run import blend, run_plan

__all__ = ["Blender", "OutputCell", "PipelineResult", "batched_tile_get", "blend", "run_pipeline", "run_plan",
           "threaded_batched_tile_get"]
