"""The one place where the numba options of every kernel are set.

Kernels are compiled lazily on first call and cached on disk (``cache=True``),
so a fresh process pays the compile cost once per machine. ``nogil=True``
lets blending run in a thread beside the model and the reader/writer.
``fastmath`` stays off: the blend must equal the plain formula to rounding.
"""

import functools

import numba

JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=False, boundscheck=False)


def njit(function=None, *, parallel=False, inline="never"):
    """``numba.njit`` with the project's options; ``@njit``, ``@njit(parallel=True)`` or ``@njit(inline="always")``.

    Row helpers are inlined by numba itself: LLVM leaves calls between
    kernels alone, and a call costs more than a short row's arithmetic.
    """
    decorate = numba.njit(parallel=parallel, inline=inline, **JIT_OPTIONS)
    return decorate if function is None else decorate(function)


@functools.cache
def parallel_is_safe():
    """Whether parallel kernels may run by default.

    True when numba has more than one thread and its threading layer is one
    that several Python threads may call at once (tbb or omp); numba's
    fallback "workqueue" layer is not. ``numba.get_num_threads`` starts the
    threads and so picks the layer, with no kernel to load.
    """
    return numba.get_num_threads() >= 2 and numba.threading_layer() in ("tbb", "omp")
