"""One call that runs a whole job: read, infer, blend and write in four threads.

:func:`run_pipeline` overlaps the four stages of a tiled inference job so that
the blend (and the reading and writing) hide behind the model:

``reader`` -> queue -> ``model`` -> queue -> ``blend`` -> queue -> ``writer``

Every queue holds at most `prefetch` items, so memory stays bounded however
large the image is. An exception in any stage stops all four threads and is
re-raised in the caller, as the same exception object with the traceback of
the failing frame in the worker.
"""

import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import as_positive_int, check_callable
from .batching import put_unless_stopped
from .blender import Blender
from ..plan import Plan
from .._progress import COMPILE_NOTICE, bar_callback, tqdm_class, watch_compiles

__all__ = ["run_pipeline", "PipelineResult", "StageTimes", "THREAD_PREFIX"]

THREAD_PREFIX = "seamless_fast-pipeline-"
STAGES = ("read", "model", "blend", "write")
_POLL_S = 0.05  # how often a blocked thread (or the waiting caller) checks the stop flag
_DONE = object()  # end of the stream, passed down the queues
_STOPPED = object()  # what a blocked get returns once the run is being stopped


class StageTimes(NamedTuple):
    """Seconds one stage of :func:`run_pipeline` spent in each state.

    busy: doing its own work (``read_tile`` and stacking the batch; the model
    call; ``push_batch``; ``write_cells`` and the progress report);
    starved: waiting for input from the stage before it;
    blocked: waiting for room in the queue to the stage after it.
    """

    busy: float
    starved: float
    blocked: float


@dataclass(frozen=True)
class PipelineResult:
    """What :func:`run_pipeline` returns: counts and where the time went.

    Attributes
    ----------
    tiles, batches, cells : int
        Tiles read (and blended), model calls, output cells written.
    seconds : float
        Wall time from starting the threads until all had finished.
    read, model, blend, write : StageTimes
        Busy, starved and blocked seconds of each stage. A stage whose
        ``starved`` time is near zero is the bottleneck; in a job bound by the
        model, ``seconds`` is close to ``model.busy``.
    """

    tiles: int
    batches: int
    cells: int
    seconds: float
    read: StageTimes
    model: StageTimes
    blend: StageTimes
    write: StageTimes

    @property
    def tiles_per_second(self):
        """Tiles through the whole pipeline per second of wall time."""
        return self.tiles / self.seconds if self.seconds > 0 else float("inf")


def run_pipeline(plan, read_tile, model, write_cells, *, batch_size=16, channel_first=True, labels=False,
                 dtype=None, parallel=None, prefetch=2, progress=None):
    """Run a whole tiled job, with the blend hidden behind inference.

    Four threads work at once, joined by queues of at most `prefetch` items:

    1. a reader calls ``read_tile(box)`` for the tiles of the plan in
       ``plan.load_order`` and stacks them into batches of up to `batch_size`
       tiles (a batch ends early where the tile shape changes, so every batch
       stacks into one array);
    2. a model thread calls ``model(batch)``;
    3. a blend thread pushes the outputs into a :class:`~seamless_fast.Blender`;
    4. a writer calls ``write_cells(cells)`` with the output cells that each
       batch finished.

    Parameters
    ----------
    plan : Plan
        From :func:`~seamless_fast.plan_regular_grid` or :func:`~seamless_fast.plan_from_grid`.
    read_tile : callable
        ``read_tile(box)`` with ``box = (ylo, xlo, yhi, xhi)`` (ints, upper
        bounds exclusive) returns the input window of one tile as an array of
        shape ``(yhi - ylo, xhi - xlo, C_in)``. The box is the tile's read
        window (:meth:`~seamless_fast.Plan.read_boxes`): its box in input
        pixels grown by the plan's `context`, and so possibly reaching past
        the image border (:meth:`seamless_fast.io.ImageReader.read` pads
        there).
    model : callable
        ``model(batch)`` gets a contiguous numpy array ``(B, C_in, h, w)`` with
        ``channel_first=True``, else ``(B, h, w, C_in)``, and returns ``B``
        outputs, ``(B, C_out, h, w)`` or ``(B, h, w, C_out)`` respectively:
        a numpy array, or anything ``np.asarray`` or ``.numpy()`` turns into
        one (a torch tensor, on any device, with or without grad). It runs in
        its own thread; a PyTorch model releases the GIL while it computes.
        It must not change an output it has returned. With a plan's context
        c and output scale s, the outputs cover the tiles' own boxes only:
        ``h`` and ``w`` of the outputs are those of the input less ``2 c``,
        divided by s (per axis).
    write_cells : callable
        ``write_cells(cells)`` gets the list of :class:`~seamless_fast.OutputCell`
        (grid index, box, data) each batch finished, in the order they became
        final; batches that finish no cell (possible with an `area`) make no
        call. Each cell's data is a fresh array it may keep. Cells come in the
        plan's order: column by column for a plan that walks columns (see
        `traverse` in :func:`~seamless_fast.plan_regular_grid`), when a writer
        that completes rows in order, as :class:`seamless_fast.io.TiffWriter`,
        holds every row until the last column: plan with ``traverse="rows"``
        for such a writer.
    batch_size : int, keyword-only
        Most tiles per model call.
    channel_first : bool, keyword-only
        Layout of the model's input and output batches (and of the cells):
        channels before the spatial axes, as PyTorch models have them.
    labels : bool, keyword-only
        Write the arg-max over the output channels as integer labels.
    dtype : float dtype, optional, keyword-only
        Accumulator dtype of the blend (see :class:`~seamless_fast.Blender`).
    parallel : bool, optional, keyword-only
        Split large tiles over numba's threads in the blend (see
        :class:`~seamless_fast.Blender`); ``False`` leaves the cores to a
        CPU-bound model.
    prefetch : int, keyword-only
        Capacity of each of the three queues, in batches. At most about
        ``3 * prefetch + 4`` batches (of tiles, outputs or cells) are alive at
        once: `prefetch` in each queue and one in each thread.
    progress : None, True or callable, keyword-only
        ``True`` shows a tqdm bar over the tiles (tiles/s and ETA; needs
        ``pip install tqdm``); a callable is called as
        ``progress(done_tiles, total_tiles)`` from the writer thread after
        the cells of each batch were written. While numba compiles kernels
        (the first run on a machine), the bar says so on one line, and its
        rate and ETA count only the time after the last compile.

    Returns
    -------
    PipelineResult
        Counts (tiles, batches, cells), wall seconds and each stage's busy,
        starved and blocked seconds.

    Raises
    ------
    ValueError
        Before any thread starts if an argument is invalid; during the run
        if a tile or a model output has the wrong shape or count.
    ImportError
        With ``progress=True`` when tqdm is not installed.
    Exception
        Whatever ``read_tile``, ``model``, ``write_cells`` or ``progress``
        raised: the same exception object, after every thread has stopped.
        A KeyboardInterrupt while waiting stops the threads too (after the
        calls in progress return) and is re-raised.

    Examples
    --------
    >>> import numpy as np
    >>> from seamless_fast import plan_regular_grid
    >>> plan, _ = plan_regular_grid((100, 120), 64, 16)
    >>> image = np.zeros((2, 100, 120), np.float32)  # channel-first output
    >>> def read_tile(box):
    ...     ylo, xlo, yhi, xhi = box
    ...     return np.ones((yhi - ylo, xhi - xlo, 3), np.float32)
    >>> def write_cells(cells):
    ...     for cell in cells:
    ...         image[(slice(None),) + cell.slices] = cell.data
    >>> result = run_pipeline(plan, read_tile, lambda b: b[:, :2], write_cells, batch_size=4)
    >>> result.tiles, result.batches, bool(np.allclose(image, 1.0))
    (6, 2, True)
    """
    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be a Plan from plan_regular_grid or plan_from_grid; got {type(plan).__name__}")
    # checks labels, channel_first, dtype and parallel; allocates nothing before the first tile
    blender = Blender(plan, labels=labels, channel_first=channel_first, dtype=dtype, parallel=parallel)
    return run_blender(blender, read_tile, model, write_cells, batch_size=batch_size, prefetch=prefetch,
                       progress=progress)


def run_blender(blender, read_tile, model, write_cells, *, batch_size, prefetch, progress):
    """:func:`run_pipeline` with a :class:`~seamless_fast.Blender` made by the caller (a subclass, say)."""
    check_callable(read_tile, "read_tile")
    check_callable(model, "model")
    check_callable(write_cells, "write_cells")
    batch_size = as_positive_int(batch_size, "batch_size")
    prefetch = as_positive_int(prefetch, "prefetch")
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise ValueError(f"progress={progress!r} must be None, True or a callable progress(done_tiles, total_tiles)")
    tqdm = tqdm_class() if progress is True else None
    plan = blender.plan
    bar = None
    try:
        if tqdm is not None:
            bar = tqdm(total=plan.n_loads, unit="tile", desc="seamless_fast", dynamic_ncols=True)
            with watch_compiles(lambda: bar.write(COMPILE_NOTICE, file=sys.stderr)) as watch:
                return _Pipeline(plan, read_tile, model, write_cells, blender, batch_size, prefetch,
                                 bar_callback(bar, watch)).run()
        if progress is False:
            progress = None
        return _Pipeline(plan, read_tile, model, write_cells, blender, batch_size, prefetch, progress).run()
    finally:
        _close_quietly(blender)  # closed by the blend thread after a complete run
        if bar is not None:
            bar.close()


def _close_quietly(blender):
    try:
        blender.close()
    except ValueError:  # tiles missing: the run was stopped, and its own error is what the caller sees
        pass


class _Pipeline:
    """The state of one run: queues, stop flag, first error and the stage timers."""

    def __init__(self, plan, read_tile, model, write_cells, blender, batch_size, prefetch, progress):
        self.plan = plan
        self.read_tile, self.model, self.write_cells = read_tile, model, write_cells
        self.blender, self.batch_size, self.progress = blender, batch_size, progress
        self.channel_first = blender.channel_first
        self.inputs = queue.Queue(prefetch)  # reader -> model: (number, first step, batch)
        self.outputs = queue.Queue(prefetch)  # model -> blend: (number, first step, outputs)
        self.finished = queue.Queue(prefetch)  # blend -> writer: (cells, tiles)
        self.stop = threading.Event()
        self.error = None
        self._lock = threading.Lock()
        self.times = {stage: [0.0, 0.0, 0.0] for stage in STAGES}
        self.batches = self.cells = 0

    # -- the caller's side ---------------------------------------------------
    def run(self):
        workers = {"read": self._read, "model": self._infer, "blend": self._blend, "write": self._write}
        threads, finished = [], []
        start = time.perf_counter()
        try:
            for stage, work in workers.items():
                done = threading.Event()
                thread = threading.Thread(target=self._guarded, args=(work, done), name=THREAD_PREFIX + stage,
                                          daemon=True)
                thread.start()
                threads.append(thread)
                finished.append(done)
            _wait(threads, finished)
        except BaseException:  # KeyboardInterrupt while waiting, or a thread that would not start
            self.stop.set()
            _wait(threads, finished)  # a second KeyboardInterrupt here gives up waiting (the threads are daemons)
            raise
        seconds = time.perf_counter() - start
        error = self.error
        if error is not None:
            self.error = None  # no reference cycle through this frame
            try:
                raise error
            finally:
                error = None
        return PipelineResult(tiles=self.plan.n_loads, batches=self.batches, cells=self.cells, seconds=seconds,
                              **{stage: StageTimes(*self.times[stage]) for stage in STAGES})

    # -- shared by the threads ----------------------------------------------
    def _guarded(self, work, done):
        try:
            work()
        except BaseException as error:  # forwarded to the caller: nothing may escape a thread
            with self._lock:
                if self.error is None:
                    self.error = error
            self.stop.set()
        finally:
            done.set()

    def _get(self, source, stage):
        """The next item of `source`, or _STOPPED once the run is being stopped."""
        t0 = time.perf_counter()
        try:
            while not self.stop.is_set():
                try:
                    return source.get(timeout=_POLL_S)
                except queue.Empty:
                    pass
            return _STOPPED
        finally:
            self.times[stage][1] += time.perf_counter() - t0

    def _put(self, target, item, stage):
        """Put `item` on `target`; False once the run is being stopped."""
        t0 = time.perf_counter()
        try:
            return put_unless_stopped(target, item, self.stop)
        finally:
            self.times[stage][2] += time.perf_counter() - t0

    def _describe(self, number, first, count):
        index = self.plan.grid_index(self.plan.load_order[first])
        return f"batch {number} (tiles {first} to {first + count - 1} in load order, first grid index {index})"

    # -- the four stages -------------------------------------------------------
    def _read(self):
        plan, busy = self.plan, self.times["read"]
        boxes = plan.read_boxes().tolist()  # the tile boxes, scaled and grown by the plan's context
        pending, first, number = [], 0, 0
        for step, box in enumerate(boxes + [None]):
            if self.stop.is_set():
                return
            t0 = time.perf_counter()
            tile = None if box is None else self._read_one(step, box)
            ready = []
            if pending and (tile is None or tile.shape != pending[0].shape):  # a batch ends at a shape change
                ready.append((first, self._stack(pending)))
                pending = []
            if tile is not None:
                if not pending:
                    first = step
                pending.append(tile)
                if len(pending) == self.batch_size:
                    ready.append((first, self._stack(pending)))
                    pending = []
            del tile
            busy[0] += time.perf_counter() - t0
            while ready:  # popped, so that no batch stays referenced here once it is queued
                if not self._put(self.inputs, (number,) + ready.pop(0), "read"):
                    return
                number += 1
        self._put(self.inputs, _DONE, "read")

    def _read_one(self, step, box):
        tile = np.asarray(self.read_tile(tuple(box)))
        height, width = box[2] - box[0], box[3] - box[1]
        if tile.ndim != 3 or tile.shape[:2] != (height, width):
            index = self.plan.grid_index(self.plan.load_order[step])
            raise ValueError(f"read_tile returned shape {tile.shape} for tile {step} (grid index {index}, "
                             f"box {tuple(box)}); expected ({height}, {width}, C_in)")
        return tile

    def _stack(self, tiles):
        """One C-contiguous batch of same-shaped tiles, (B, C, h, w) with channel_first."""
        h, w, c = tiles[0].shape
        batch = np.empty((len(tiles),) + ((c, h, w) if self.channel_first else (h, w, c)),
                         np.result_type(*tiles))
        for target, tile in zip(batch, tiles):
            target[...] = tile.transpose(2, 0, 1) if self.channel_first else tile
        return batch

    def _infer(self):
        busy = self.times["model"]
        while True:
            item = self._get(self.inputs, "model")
            if item is _STOPPED:
                return
            if item is _DONE:
                self._put(self.outputs, _DONE, "model")
                return
            number, first, batch = item
            t0 = time.perf_counter()
            outputs = _to_numpy(self.model(batch))
            if outputs.ndim < 1 or len(outputs) != len(batch):
                got = f"{len(outputs)} outputs" if outputs.ndim >= 1 else "a scalar"
                raise ValueError(f"model returned {got} (an array of shape {outputs.shape}) for "
                                 f"{self._describe(number, first, len(batch))}; expected {len(batch)}, "
                                 "one per input tile")
            del batch, item  # the input batch is freed as soon as the model is done with it
            busy[0] += time.perf_counter() - t0
            self.batches += 1
            if not self._put(self.outputs, (number, first, outputs), "model"):
                return

    def _blend(self):
        busy, blender = self.times["blend"], self.blender
        while True:
            item = self._get(self.outputs, "blend")
            if item is _STOPPED:
                return
            if item is _DONE:
                break
            number, first, outputs = item
            t0 = time.perf_counter()
            cells = blender.push_batch(outputs)
            del outputs, item
            busy[0] += time.perf_counter() - t0
            if not self._put(self.finished, (cells, blender.step - first), "blend"):
                return
        blender.close()  # raises if tiles are missing
        self._put(self.finished, _DONE, "blend")

    def _write(self):
        busy, total, done = self.times["write"], self.plan.n_loads, 0
        while True:
            item = self._get(self.finished, "write")
            if item is _STOPPED or item is _DONE:
                return
            cells, count = item
            t0 = time.perf_counter()
            if cells:
                self.write_cells(cells)
                self.cells += len(cells)
            del cells, item
            done += count
            if self.progress is not None:
                self.progress(done, total)
            busy[0] += time.perf_counter() - t0


def _wait(threads, finished):
    """Wait until every thread has finished, in short interruptible waits; then join them.

    The waits are on events, not on ``Thread.join(timeout)``: a KeyboardInterrupt
    inside ``join`` can leave a thread that is still running marked as stopped
    (seen with CPython 3.11), and the threads must really be gone when the caller
    gets control back.
    """
    for done in finished:
        while not done.wait(_POLL_S):
            pass
    for thread in threads:
        thread.join()  # returns at once: its work is over


def _to_numpy(outputs):
    """A model's output batch as a numpy array (CPU torch tensors without a copy)."""
    if type(outputs) is np.ndarray:
        return outputs
    try:
        if hasattr(outputs, "__array__") or not hasattr(outputs, "numpy"):
            return np.asarray(outputs)
        return np.asarray(outputs.numpy())
    except Exception:
        if not hasattr(outputs, "detach"):
            raise
        # a torch tensor that needs grad or lives on a GPU
        return np.asarray(outputs.detach().cpu().numpy())
