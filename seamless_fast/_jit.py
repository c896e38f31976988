"""The one place where the numba options of every kernel are set.

Kernels are compiled lazily on first call and cached on disk (``cache=True``),
so a fresh process pays the compile cost once per machine. ``nogil=True``
lets blending run in a thread beside the model and the reader/writer.
``fastmath`` stays off: the blend must equal the plain formula to rounding.
"""

import functools

import numba
import numpy as np

JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=False, boundscheck=False)


def njit(function=None, *, parallel=False):
    """``numba.njit`` with the project's options; ``@njit`` or ``@njit(parallel=True)``."""
    decorate = numba.njit(parallel=parallel, **JIT_OPTIONS)
    return decorate if function is None else decorate(function)


@njit(parallel=True)
def _probe(values):
    total = 0.0
    for i in numba.prange(values.shape[0]):
        total += values[i]
    return total


@functools.cache
def parallel_is_safe():
    """Whether parallel kernels may run by default.

    True when numba has more than one thread and its threading layer (picked
    on the first parallel call) is one that several Python threads may call
    at once (tbb or omp); numba's fallback "workqueue" layer is not.
    """
    if numba.get_num_threads() < 2:
        return False
    _probe(np.zeros(2))
    return numba.threading_layer() in ("tbb", "omp")
