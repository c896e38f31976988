"""The one place where the numba options of every kernel are set.

Kernels are compiled lazily on first call and cached on disk (``cache=True``),
so a fresh process pays the compile cost once per machine. ``nogil=True``
lets blending run in a thread beside the model and the reader/writer.
``fastmath`` stays off: the blend must equal the plain formula to rounding.
"""

import functools
import threading

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
    """Whether the blend may split tiles over numba's threads by default (see `seamless_fast.engine._adaptive`).

    True when numba has more than one thread and its threading layer is one
    that several Python threads may call at once (tbb or omp); numba's
    fallback "workqueue" layer is not. ``numba.get_num_threads`` starts the
    threads and so picks the layer, with no kernel to load.
    """
    return numba.get_num_threads() >= 2 and _layer_is_thread_safe()


def _layer_is_thread_safe():
    numba.get_num_threads()  # starts numba's threads, which picks the layer
    return numba.threading_layer() in ("tbb", "omp")


# Held around every parallel kernel call: one Python thread at a time runs numba's parallel code.
_PARALLEL_LOCK = threading.Lock()


def parallel_lock():
    """The lock a call of a ``parallel=True`` kernel must hold.

    One process-wide lock: a caller that cannot take it at once runs the
    serial kernel instead (same result, bit for bit). numba's "workqueue"
    layer aborts the process (SIGABRT, no exception) when two threads enter
    parallel regions at once; under tbb and omp each calling thread would get
    its own team of spinning threads, more threads than cores. Only this
    package's kernels take the lock: the caller's own parallel numba
    functions, run in other threads at the same time, can still abort under
    workqueue.
    """
    return _PARALLEL_LOCK
