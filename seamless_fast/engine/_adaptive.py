"""Serial or parallel, tile by tile, whichever the timings of recent tiles find faster.

numba's parallel kernels split a tile's rows over its threads, which spin
while they wait. On idle cores that makes a canonical tile take about 0.6 x
the serial time; beside a CPU-bound model (a thread of this process, or
another process running its own spinning threads) a thread of the team
often waits for one that the system has not scheduled, and a tile took 2 to
54 x the serial time (``profiling/contention.py``). Which case holds changes
while a run goes on, so the blend measures it: a :class:`Chooser` times every
large tile and runs the way that is faster now (by a mean that leaves out
the slowest of the recent tiles), trying the other now and then, at intervals that keep the cost of a losing
try near `PROBE_BUDGET` of the time. Choosers are shared by every Blender of the process (one per
kind of tile, see :func:`chooser_for`), so a new Blender starts with what
the last one learned.
"""

import math
import threading

__all__ = ["Chooser", "chooser_for"]

# The share of the blend's time that trying the slower way may cost.
PROBE_BUDGET = 0.05
# A losing split try costs about this many times what it measures: numba's threads spin after it.
SPLIT_TRY_FACTOR = 10


class Chooser:
    """Picks, push by push, the faster of two ways: 0 (serial) or 1 (parallel).

    A way's cost is the mean time per element of its last `WINDOW` pushes
    less the `TRIM` slowest: on a busy machine a push now and then loses the
    processor for milliseconds, and one such push must not flip the choice.
    A try of the way not in use counts with the try before it only (so the
    faster of the two counts: one unlucky try does not put the way off for
    long), and a split push `SLOW` times the serial cost starts the split's
    record afresh (on a machine that just got busy a split tile may take 10
    to 50 x the serial time). The faster way runs; every `interval` pushes
    the other one runs once, to notice a change of load. The interval grows
    with how much slower the other way was (``ratio - 1`` over
    `PROBE_BUDGET`, times `SPLIT_TRY_FACTOR` for split tries, within
    [`MIN_INTERVAL`, `MAX_INTERVAL`]): a split 10 x slower is tried every
    1800 pushes, serial 1.5 x slower every ten. Serial, when the split wins,
    is taken to be at most `threads` times slower, so that one unlucky try
    of it cannot put off the next for long. The first push of each way is
    not counted: it includes numba loading the kernel. A split try is two
    pushes, of which the second counts: the first wakes numba's threads,
    asleep since the last split push.

    Parameters
    ----------
    threads : int
        The threads a parallel push runs on.
    """

    MIN_INTERVAL = 8
    SLOW = 3  # a split push this many times the serial cost ends the split at once
    MAX_INTERVAL = 4096
    WINDOW = 8
    TRIM = 2

    __slots__ = ("recent", "cost", "interval", "count", "best", "threads", "warm", "trying", "lock")

    def __init__(self, threads=2):
        self.threads = max(2, threads)  # parallel is at most this many times faster than serial
        self.warm = [False, False]  # a way's first push (numba loading or compiling the kernel) is not counted
        self.recent = ([], [])  # seconds per element of the last pushes: serial, parallel
        self.cost = [None, None]
        self.interval = self.MIN_INTERVAL
        self.count = 0
        self.best = 0
        self.trying = 0  # pushes left of a split try
        self.lock = threading.Lock()  # several threads may record into one chooser (see chooser_for)

    def choose(self):
        """The way to run this push: 1 for parallel, 0 for serial."""
        if self.cost[1] is None:
            return 1 if self.cost[0] is not None else 0
        if self.trying:
            return 1
        self.count += 1
        if self.count >= self.interval:
            self.count = 0
            self.trying = 2 if self.best == 0 else 0
            return 1 - self.best
        return self.best

    def record(self, way, seconds_per_element):
        """Take the timing of a push that ran `way`."""
        with self.lock:
            self._record(way, seconds_per_element)

    def _record(self, way, seconds_per_element):
        if not self.warm[way]:
            self.warm[way] = True
            return
        if self.trying:
            self.trying = self.trying - 1 if way else 0
            if self.trying:
                return  # the first push of a split try wakes numba's threads, asleep since the last split
        recent = self.recent[way]
        serial = self.cost[0]
        if way and serial is not None and seconds_per_element > self.SLOW * serial:
            recent.clear()  # a split push far slower than serial: what was known of the split is stale
        elif way != self.best:
            del recent[:-1]  # a try: it and the one before count (the faster of the two, see TRIM)
        recent.append(seconds_per_element)
        if len(recent) > self.WINDOW:
            del recent[0]
        kept = sorted(recent)[:max(1, len(recent) - self.TRIM)]
        self.cost[way] = sum(kept) / len(kept)
        serial, parallel = self.cost
        if serial is None or parallel is None:
            return
        self.best = 1 if parallel < serial else 0
        ratio = max(serial, parallel) / max(min(serial, parallel), 1e-300)
        if self.best:  # a serial try that took longer is noise (a push that lost the processor)
            interval = (min(ratio, self.threads) - 1) / PROBE_BUDGET
        else:  # a split try leaves numba's threads spinning a while after it, which it does not time
            interval = (ratio - 1) / PROBE_BUDGET * SPLIT_TRY_FACTOR
        self.interval = min(self.MAX_INTERVAL, max(self.MIN_INTERVAL, math.ceil(interval)))


_CHOOSERS = {}
_CHOOSERS_LOCK = threading.Lock()


def chooser_for(key, threads, kind=Chooser):
    """The process's chooser for tiles of one kind (a hashable `key`: labels or values, layout, dtype,
    size class), made on first use for parallel pushes on `threads` threads (a `kind`, Chooser or a
    subclass). Several threads may share one: its records are taken under a lock, and a choice read while
    another thread records is at worst stale."""
    chooser = _CHOOSERS.get(key)
    if chooser is None:
        with _CHOOSERS_LOCK:
            chooser = _CHOOSERS.setdefault(key, kind(threads))
    return chooser
