"""A small pool of Python threads that share out the chunks of one job; nobody spins.

The thread that submits a job works on it too, claiming chunks from the same
counter as the pool's threads, and waits (blocked on a lock, not spinning)
only for chunks that a pool thread has claimed and not yet finished. So a
job never waits for a pool thread that the operating system has not
scheduled: on a busy machine the caller simply runs every chunk itself, at
the serial speed, and on a quiet one the idle cores take their share.

The pool's threads are daemons blocked on a queue between jobs (they never
keep the interpreter from exiting), started on first use and started afresh
in a child after ``fork``. Chunk functions must release the GIL (the nogil
numba kernels) for the threads to run at once.
"""

import itertools
import os
import queue
import threading

import numba

__all__ = ["RowsPool", "default_pool", "default_workers"]


class _Job:
    """One submitted job: `n` chunks ``function(chunk, slot)``, claimed through a shared counter."""

    __slots__ = ("function", "n", "claim", "finished", "lock", "done", "error")

    def __init__(self, function, n):
        self.function, self.n = function, n
        self.claim = itertools.count()  # next() is atomic under the GIL
        self.finished = 0
        self.lock = threading.Lock()
        self.done = threading.Lock()
        self.done.acquire()  # released by whoever finishes the last chunk
        self.error = None

    def work(self, slot):
        """Run chunks until none are left to claim; count them as finished."""
        ran = 0
        while True:
            c = next(self.claim)
            if c >= self.n:
                break
            ran += 1
            try:
                self.function(c, slot)
            except BaseException as exc:  # handed to the caller; the other chunks still run
                if self.error is None:
                    self.error = exc
        if ran:
            with self.lock:
                self.finished += ran
                if self.finished == self.n:
                    self.done.release()


class RowsPool:
    """`workers` daemon threads that help whoever calls :meth:`run`.

    Parameters
    ----------
    workers : int
        Pool threads besides the caller (0: every job runs in the caller).
    """

    def __init__(self, workers):
        self.workers = max(0, int(workers))
        self._queues = []
        self._threads = []
        self._start_lock = threading.Lock()

    @property
    def slots(self):
        """How many threads may run chunks of one job at once (the caller is slot 0)."""
        return self.workers + 1

    def run(self, function, n):
        """Call ``function(c, slot)`` for every chunk c in [0, n), in this thread and the pool's, and
        return when all have finished; the first exception a chunk raised is raised here.

        `slot` (0 for the caller, 1 + i for pool thread i) tells a chunk which of the `slots`
        scratch areas is its own: no two chunks running at once share a slot.
        """
        job = _Job(function, n)
        if n > 1 and self.workers:
            self._wake(job, min(self.workers, n - 1))
        job.work(0)
        if job.finished < n:
            job.done.acquire()  # chunks a pool thread claimed and has not finished
        if job.error is not None:
            raise job.error
        return None

    def _wake(self, job, count):
        if not self._threads:
            self._start()
        for q in self._queues[:count]:
            q.put(job)

    def _start(self):
        with self._start_lock:
            if self._threads:
                return
            for i in range(self.workers):
                q = queue.SimpleQueue()
                thread = threading.Thread(target=_serve, args=(q, i + 1), daemon=True,
                                          name=f"seamless_fast-rows-{i + 1}")
                thread.start()
                self._queues.append(q)
                self._threads.append(thread)

    def close(self):
        """Stop the pool's threads (after the jobs already queued) and wait for them."""
        with self._start_lock:
            threads, queues = self._threads, self._queues
            self._threads, self._queues = [], []
        for q in queues:
            q.put(None)
        for thread in threads:
            thread.join()


def _serve(q, slot):
    while True:
        job = q.get()
        if job is None:
            return
        job.work(slot)


def default_workers():
    """Pool threads besides the caller: numba's thread count (``NUMBA_NUM_THREADS``, by default the
    usable cores) minus one. Read from numba's configuration, which starts no threads."""
    return max(0, min(numba.config.NUMBA_NUM_THREADS, len(os.sched_getaffinity(0))
                      if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) - 1)


_DEFAULT = None
_DEFAULT_LOCK = threading.Lock()


def default_pool():
    """The process's shared pool (of `default_workers` threads), made on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = RowsPool(default_workers())
    return _DEFAULT


def _forget_after_fork():
    """A forked child has none of the parent's pool threads: give it a fresh pool (an old job would
    still finish, run wholly by its caller)."""
    global _DEFAULT, _DEFAULT_LOCK
    _DEFAULT, _DEFAULT_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class Chooser:
    """Picks, push by push, the faster of two ways (serial, or rows over the pool) from timings.

    The way in use is timed by an exponential average of its recent pushes
    (per element); the other by its last push. The faster one runs; every
    `interval` pushes the other one runs once, to notice a change in load. The interval doubles (up to
    `MAX_INTERVAL`) each time that probe loses, so a way that is much slower
    under the current load (the pool when other work holds every core) costs
    a few percent at most, and comes back to `MIN_INTERVAL` when the ways swap.
    """

    MIN_INTERVAL = 8
    MAX_INTERVAL = 128
    WEIGHT = 0.25  # of the newest timing in the average

    __slots__ = ("cost", "interval", "count", "best")

    def __init__(self):
        self.cost = [None, None]  # seconds per element: [serial, pool]
        self.interval = self.MIN_INTERVAL
        self.count = 0
        self.best = 1

    def choose(self):
        """1 to run this push over the pool, 0 to run it serially."""
        if self.cost[0] is None or self.cost[1] is None:
            return 0 if self.cost[0] is None else 1
        self.count += 1
        if self.count >= self.interval:
            self.count = 0
            return 1 - self.best
        return self.best

    def record(self, way, seconds_per_element):
        """Take the timing of a push that ran `way`."""
        old = self.cost[way]
        if old is None or way != self.best:  # a probe replaces a stale figure
            self.cost[way] = seconds_per_element
        else:
            self.cost[way] = old + self.WEIGHT * (seconds_per_element - old)
        if self.cost[0] is None or self.cost[1] is None:
            return
        best = 0 if self.cost[0] <= self.cost[1] else 1
        if best != self.best:
            self.best, self.interval, self.count = best, self.MIN_INTERVAL, 0
        elif way != best:  # a probe that lost
            self.interval = min(2 * self.interval, self.MAX_INTERVAL)
