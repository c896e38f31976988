"""Runs at scale: a plan cut into parts that run apart (processes, batch jobs, a Dask cluster) and merge exactly.

:func:`partition_plan` cuts a plan into bands of tile rows (a volume plan
into slabs of tile layers); a :class:`PartStore`
(a zarr folder described by a :class:`Job`) collects each part's rows and seam
sums and merges them into the output; :func:`run_dask` does both on a
``dask.distributed`` cluster. The merged output equals a single-process run
bit for bit. zarr (and dask for :func:`run_dask`) are imported when used.
"""

import importlib

# public name -> submodule; imported on first use so that `import seamless_fast.scale` needs neither zarr nor numba
_EXPORTS = {"Job": "store", "PartStore": "store", "run_dask": "distributed", "Partition": "partition",
            "partition_plan": "partition"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
