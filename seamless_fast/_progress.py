"""Progress of a run: a tqdm bar, and a notice while numba compiles kernels (the first run on a machine).

numba reports a compile only when a kernel is not in its on-disk cache, so
the notice appears on a machine's first run and never on a warm one; the
bar's rate and ETA restart after a compile so that they count the blend,
not the compiler.
"""

import threading

__all__ = ["COMPILE_NOTICE", "watch_compiles", "bar_callback", "restart_clock", "tqdm_class"]

COMPILE_NOTICE = "seamless_fast: compiling the blend kernels (first run only: they are cached on disk)..."


def tqdm_class():
    """tqdm's bar class, or an ImportError that says how to install it."""
    try:
        from tqdm.auto import tqdm
    except ImportError as error:
        raise ImportError("progress=True needs tqdm for its progress bar: pip install tqdm") from error
    return tqdm


def bar_callback(bar, watch):
    """A progress callback for `bar`; after a compile (seen by `watch`) the bar's clock restarts."""
    def update(done, total):
        if watch.compiled_since_last_look():
            restart_clock(bar, done)
        else:
            bar.update(done - bar.n)
    return update


def restart_clock(bar, done):
    """Restart a tqdm `bar` at `done`: its rate and ETA count only what happens from now on."""
    bar.reset(total=bar.total)
    bar.n = bar.last_print_n = bar.initial = done
    bar.refresh()


class _CompileWatch:
    """Counts numba compiles while installed; calls `notice()` once, when the first one starts."""

    def __init__(self, notice):
        self._notice = notice
        self._lock = threading.Lock()
        self._active = 0
        self._said = False
        self._compiled = False  # since the last look

    def on_start(self, event):
        with self._lock:
            self._active += 1
            self._compiled = True
            say, self._said = not self._said, True
        if say and self._notice is not None:
            self._notice()

    def on_end(self, event):
        with self._lock:
            self._active -= 1

    def compiled_since_last_look(self):
        """True once after compiles have run and all have ended (a compile still running waits for the next look)."""
        with self._lock:
            if self._compiled and not self._active:
                self._compiled = False
                return True
            return False


class watch_compiles:
    """Context manager: `notice()` is called once when numba starts compiling a kernel inside it.

    numba reports a compile only when a kernel is not in its on-disk cache,
    so nothing is said on a warm machine. The object it yields tells whether
    compiles ran (:meth:`compiled_since_last_look`).

    Examples
    --------
    >>> with watch_compiles(lambda: print("compiling...")) as watch:
    ...     pass
    >>> watch.compiled_since_last_look()
    False
    """

    def __init__(self, notice):
        self._watch = _CompileWatch(notice)
        self._listener = None

    def __enter__(self):
        from numba.core import event

        watch = self._watch

        class Listener(event.Listener):
            def on_start(self, event):
                watch.on_start(event)

            def on_end(self, event):
                watch.on_end(event)

        self._listener = Listener()
        event.register("numba:compile", self._listener)
        return watch

    def __exit__(self, *exc_info):
        from numba.core import event

        event.unregister("numba:compile", self._listener)
        return False
