"""Compile kernels that a run can do without for now (numba's parallel kernels) outside its critical path.

A first run on a machine compiles every kernel it calls: 2 to 5 s each for
the parallel variants, which the blend only needs once it has found that
splitting tiles pays. Compiled in a thread of this process, such a compile
would hold numba's compiler lock (a kernel the run does need, compiled
meanwhile, would wait for it) and the GIL for its Python half (every push
would wait for it at each GIL hand-off). So a :class:`Ticket` compiles its
kernel in a separate Python process, one at a time, which writes the result
to numba's on-disk cache (the kernels are ``cache=True``); the run meanwhile
does without, and loads the kernel from the cache once the process is done.
A kernel already in the cache is loaded at once, with no process.

Any module's kernel can be compiled this way: it must be a ``cache=True``
dispatcher reachable as an attribute of an importable module, e.g.::

    ticket = compile_in_background(_kernels.blend_values_parallel, args)
    if ticket.ready():          # never compiles in this process
        _kernels.blend_values_parallel(*args)
    else:
        _kernels.blend_values(...)  # same result, serially

A process that fails is reported by a `BackgroundCompileWarning` with its
error, at the first `ready` after it; the ticket then stays not ready.
Processes still running at interpreter exit are stopped. With
`WAIT_FOR_COMPILES` set (the tests do, to run the kernels they force), or
``ready(wait=True)``, the kernel is compiled in this process if needed and
`ready` returns once it can be called.
"""

import atexit
import collections
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import warnings

__all__ = ["BackgroundCompileWarning", "Ticket", "compile_in_background"]

# Set to make every `Ticket.ready` wait for (or do) its compile, as ``ready(wait=True)``.
WAIT_FOR_COMPILES = False

_CHILD = """
import importlib, pickle, sys
module, name, signature = pickle.load(sys.stdin.buffer)
getattr(importlib.import_module(module), name).compile(signature)
"""
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BackgroundCompileWarning(RuntimeWarning):
    """A kernel compiled in the background failed; the run goes on without it."""


class Ticket:
    """One kernel for one signature, compiled in a background process; see the module notes.

    Parameters
    ----------
    kernel : numba dispatcher
    signature : tuple of numba types
    """

    def __init__(self, kernel, signature):
        self.kernel, self.signature = kernel, tuple(signature)
        self.state = "queued"  # then "compiling", and "ready" or "failed"
        self.error = None  # what the process reported, when it failed
        self._process = self._stderr = None
        self._owner = None  # the process that started the compile (a forked child must leave it alone)

    @property
    def name(self):
        return f"{self.kernel.py_func.__module__}.{self.kernel.py_func.__name__}"

    def ready(self, wait=None):
        """Whether the kernel can be called for this signature without compiling in this process.

        Parameters
        ----------
        wait : bool, optional
            Wait for the background compile, or compile here, until it can be
            (default: `WAIT_FOR_COMPILES`). A ticket that failed stays False.
        """
        if self.state == "ready":
            return True
        wait = WAIT_FOR_COMPILES if wait is None else wait
        with _LOCK:
            _advance(wait and self)
            process = self._process if wait and self.state == "compiling" else None
        if process is not None:
            process.wait()  # outside the lock: the other threads' tickets go on meanwhile
        with _LOCK:
            _advance()
            if wait and self.state == "queued":
                self._compile_here()
            failed = self.state == "failed" and self.error is not None
            error, self.error = self.error, None
        if failed:  # reported once, outside the lock
            warnings.warn(f"compiling {self.name} in the background failed; the run goes on without it:\n{error}",
                          BackgroundCompileWarning, stacklevel=2)
        return self.state == "ready"

    def _load(self):
        """Load the kernel from numba's cache if it is there; whether it was."""
        if self.signature in self.kernel.overloads:
            return True
        cache = getattr(self.kernel, "_cache", None)
        if cache is None or not hasattr(cache, "load_overload"):
            return False
        from numba.core.compiler_lock import global_compiler_lock
        with global_compiler_lock:
            result = cache.load_overload(self.signature, self.kernel.targetctx)
            if result is None:
                return False
            self.kernel.add_overload(result)
        return True

    def _compile_here(self):
        if self in _QUEUE:
            _QUEUE.remove(self)
        try:
            self.kernel.compile(self.signature)
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
        else:
            self.state = "ready"

    def _start(self):
        function = self.kernel.py_func
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                                          os.environ.get("PYTHONPATH")])))
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=self._stderr, env=env)
            self._process.stdin.write(pickle.dumps((function.__module__, function.__name__, self.signature)))
            self._process.stdin.close()
            self._owner = os.getpid()
        except Exception as exc:
            self._failed(f"could not start a Python process: {type(exc).__name__}: {exc}")
            return
        self.state = "compiling"

    def _finished(self):
        code = self._process.returncode
        self._stderr.seek(0)
        tail = self._stderr.read()[-4000:].decode(errors="replace").strip()
        self._stderr.close()
        self._process = self._stderr = None
        if code != 0:
            self._failed(f"exit status {code}: {tail}")
        elif self._load():
            self.state = "ready"
        else:
            self._failed("the compiled kernel is not in numba's on-disk cache")

    def _failed(self, error):
        self.state, self.error = "failed", error


_LOCK = threading.RLock()
_TICKETS = {}
_QUEUE = collections.deque()  # tickets waiting for a process, oldest first
_RUNNING = []  # the ticket whose process runs (one at a time: at most one core taken from the run)


def compile_in_background(kernel, args):
    """The process's :class:`Ticket` for `kernel` called with `args` (their numba types), made on first use.

    A kernel that is already compiled, or in numba's on-disk cache, is ready
    at once; with numba's JIT disabled every kernel is.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast.engine import _kernels
    >>> bits, out = np.zeros(4, np.uint16), np.empty(4, np.float32)
    >>> compile_in_background(_kernels.half_to_float, (bits, out)).ready(wait=True)
    True
    """
    if not hasattr(kernel, "overloads"):  # NUMBA_DISABLE_JIT: a plain Python function
        return _READY
    from numba.core.typing.typeof import Purpose, typeof
    signature = tuple(typeof(arg, Purpose.argument) for arg in args)
    key = (kernel, signature)
    with _LOCK:
        ticket = _TICKETS.get(key)
        if ticket is None:
            ticket = _TICKETS[key] = Ticket(kernel, signature)
            if ticket._load():
                ticket.state = "ready"
            else:
                _QUEUE.append(ticket)
                _advance()
    return ticket


def _advance(first=None):
    """Reap a finished process and start the next queued one (`first`, when given and queued, next)."""
    for ticket in list(_RUNNING):
        if ticket._owner != os.getpid():  # inherited through a fork: the parent reaps it; compile again here
            _RUNNING.remove(ticket)
            ticket.state, ticket._process, ticket._stderr = "queued", None, None
            _QUEUE.appendleft(ticket)
        elif ticket._process.poll() is not None:
            _RUNNING.remove(ticket)
            ticket._finished()
    if first and first in _QUEUE:
        _QUEUE.remove(first)
        _QUEUE.appendleft(first)
    while not _RUNNING and _QUEUE:
        ticket = _QUEUE.popleft()
        ticket._start()
        if ticket.state == "compiling":
            _RUNNING.append(ticket)


class _Ready:
    state = "ready"

    def ready(self, wait=None):
        return True


_READY = _Ready()


@atexit.register
def _stop_processes():
    """Nothing is left running at exit: a compile still going on is stopped (the next run starts it again)."""
    with _LOCK:
        _QUEUE.clear()
        for ticket in _RUNNING:
            if ticket._owner == os.getpid():  # not one inherited through a fork
                ticket._process.kill()
                ticket._process.wait()
                ticket._stderr.close()
        _RUNNING.clear()
