"""seamless_fast: seamless, exact, memory-bounded blending of tiled model outputs.

A drop-in successor of ``seamless_seg``: ``import seamless_fast as seamless_seg``
keeps old code working.

The public names are imported on first use (PEP 562), so that importing the
package, and the command line's ``--help`` or ``plan``, do not load numba.
"""

import importlib

__version__ = "0.1.0"

# public name -> subpackage or module that defines it
_EXPORTS = {
    "batched_tile_get": "engine", "threaded_batched_tile_get": "engine",
    "Blender": "engine", "OutputCell": "engine", "blend": "engine",
    "PipelineResult": "engine", "run_pipeline": "engine", "run_plan": "engine",
    "shape_to_slices": "geometry",
    "Plan": "plan", "PlanStats": "plan", "VolumePlan": "plan", "analyse_plan": "plan", "get_plan_input_geoms": "plan",
    "get_plan_logit_geoms": "plan", "plan_from_grid": "plan", "plan_regular_grid": "plan",
    "regular_grid": "plan", "row_by_row_traversal": "plan",
    "OverlapWeights": "weights", "apply_weights": "weights", "overlap_weights": "weights",
    "WINDOWS": "windows",
}

# submodules reachable as attributes without an import of their own
_SUBMODULES = {"dtypes", "engine", "geometry", "io", "plan", "scale", "windows", "weights"}

__all__ = sorted(_EXPORTS, key=lambda name: (name.lower() != name, name))


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

