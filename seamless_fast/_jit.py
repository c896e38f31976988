"""The one place where the numba options of every kernel are set.

Kernels are compiled lazily on first call and cached on disk (``cache=True``),
so a fresh process pays the compile cost once per machine. ``nogil=True``
lets blending run in a thread beside the model and the reader/writer.
``fastmath`` stays off: the blend must equal the plain formula to rounding.
"""

import numba

JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=False, boundscheck=False)

njit = numba.njit(**JIT_OPTIONS)
