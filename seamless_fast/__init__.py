"""seamless_fast: seamless, exact, memory-bounded blending of tiled model outputs.

A drop-in successor of ``seamless_seg``: ``import seamless_fast as seamless_seg``
keeps old code working.

The public names are imported on first use (PEP 562), so that importing the
package, and the command line's ``--help`` or ``plan``, do not load numba.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "batched_tile_get": "batching", "threaded_batched_tile_get": "batching",
    "Blender": "blend", "OutputCell": "blend", "blend": "blend",
    "shape_to_slices": "geometry",
    "PipelineResult": "pipeline", "run_pipeline": "pipeline",
    "Plan": "plan", "PlanStats": "plan", "analyse_plan": "plan", "get_plan_input_geoms": "plan",
    "get_plan_logit_geoms": "plan", "plan_from_grid": "plan", "plan_regular_grid": "plan",
    "regular_grid": "plan", "row_by_row_traversal": "plan",
    "run_plan": "run",
    "OverlapWeights": "weights", "apply_weights": "weights", "overlap_weights": "weights",
    "WINDOWS": "windows",
}

# submodules reachable as attributes without an import of their own, as the eager imports of earlier versions made them
_SUBMODULES = {"dtypes", "geometry", "io", "store", "distributed", "partition", "windows", "weights"}

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


class _Package(types.ModuleType):
    """The package module: the function ``blend`` keeps its name when the submodule ``blend`` is first imported.

    Importing a submodule binds it as an attribute of the package; for
    ``seamless_fast.blend`` that would hide the public function of the same
    name, which the eager imports of earlier versions bound last.
    """

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name \
                and value.__name__ == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
