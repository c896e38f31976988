"""Tests of seamless_fast.engine.pipeline.run_pipeline: a threaded read -> model -> blend -> write run."""

import math
import signal
import sys
import threading
import time

import numpy as np
import pytest
import shapely

import seamless_fast as sf
from seamless_fast.engine.pipeline import THREAD_PREFIX, PipelineResult, StageTimes, run_pipeline

C_IN = 3


# -- plans -------------------------------------------------------------------------
def regular_plan():
    return sf.plan_regular_grid((300, 260), 64, 16)[0]


def area_plan():
    return sf.plan_regular_grid((300, 300), 64, 16, area=shapely.Point(150, 150).buffer(80))[0]


def clamped_plan():
    """Image lower than the tile: every tile is clamped to the same 40 x 64."""
    return sf.plan_regular_grid((40, 300), 64, 16)[0]


def mixed_shapes_plan():
    """A rectilinear grid whose columns differ in width: tile shapes change along each row."""
    boxes = [[(0, 0, 50, 40), (0, 30, 50, 100), (0, 90, 50, 130)],
             [(40, 0, 90, 40), (40, 30, 90, 100), (40, 90, 90, 130)],
             [(80, 0, 120, 40), (80, 30, 120, 100), (80, 90, 120, 130)]]
    return sf.plan_from_grid(np.array([[shapely.box(*b) for b in row] for row in boxes]))


def irregular_plan():
    """Rows that do not share y-extents: the general (weight-sum) blend path, mixed shapes."""
    boxes = [[(0, 0, 50, 60), (0, 40, 50, 100)], [(40, 0, 100, 50), (30, 30, 100, 100)]]
    return sf.plan_from_grid(np.array([[shapely.box(*b) for b in row] for row in boxes]))


PLANS = {"regular": regular_plan, "area": area_plan, "clamped": clamped_plan, "mixed_shapes": mixed_shapes_plan,
         "irregular": irregular_plan}


# -- stand-ins for the caller's functions -------------------------------------------
def make_reader(plan, seed=0):
    """read_tile over a random input image; records its calls."""
    image = np.random.default_rng(seed).random(plan.image_size + (C_IN,), dtype=np.float32)

    def read_tile(box):
        read_tile.calls.append(box)
        ylo, xlo, yhi, xhi = box
        return image[ylo:yhi, xlo:xhi]

    read_tile.calls = []
    return read_tile


def numpy_model(batch, channel_first=True):
    """Four output channels, computed pixel by pixel (so batching cannot change a value)."""
    axis = 1 if channel_first else -1
    first = batch[:, :1] if channel_first else batch[..., :1]
    return np.concatenate([batch * np.float32(2), np.float32(1) - first], axis=axis)


class Collector:
    """write_cells that assembles the cells into a full-size array, checking each pixel is written once."""

    def __init__(self, plan, channel_first):
        self.image_size, self.channel_first = plan.image_size, channel_first
        self.out = None
        self.calls = []
        self.writes = np.zeros(plan.image_size, np.int64)

    def __call__(self, cells):
        self.calls.append(len(cells))
        for cell in cells:
            data = cell.data
            if self.out is None:
                shape = (self.image_size if data.ndim == 2 else (data.shape[0],) + self.image_size
                         if self.channel_first else self.image_size + (data.shape[2],))
                self.out = np.zeros(shape, data.dtype)
            where = (slice(None),) + cell.slices if data.ndim == 3 and self.channel_first else cell.slices
            self.out[where] = data
            self.writes[cell.slices] += 1


def reference(plan, read_tile, model, channel_first, labels, dtype=None):
    """sf.blend over the same model applied tile by tile."""
    tiles = []
    for box in plan.tile_boxes[plan.load_order].tolist():
        tile = np.asarray(read_tile(tuple(box)))
        batch = tile.transpose(2, 0, 1)[None] if channel_first else tile[None]
        tiles.append(np.asarray(model(np.ascontiguousarray(batch)))[0])
    return sf.blend(plan, tiles, labels=labels, channel_first=channel_first, dtype=dtype)


def expected_batches(plan, batch_size):
    """Batches of up to batch_size tiles, ended early wherever the tile shape changes."""
    boxes = plan.tile_boxes[plan.load_order]
    shapes = list(map(tuple, (boxes[:, 2:] - boxes[:, :2]).tolist()))
    runs, count = [], 1
    for previous, current in zip(shapes, shapes[1:]):
        if current == previous:
            count += 1
        else:
            runs.append(count)
            count = 1
    runs.append(count)
    return sum(math.ceil(run / batch_size) for run in runs)


def pipeline_threads():
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture(autouse=True)
def no_threads_left():
    assert pipeline_threads() == []
    yield
    assert pipeline_threads() == [], "run_pipeline returned or raised with a thread still alive"


# -- results ---------------------------------------------------------------------------
@pytest.mark.parametrize("plan_name", sorted(PLANS))
@pytest.mark.parametrize("channel_first", [True, False])
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_matches_blend(plan_name, channel_first, labels, batch_size):
    plan = PLANS[plan_name]()
    read_tile = make_reader(plan)
    batches = []

    def model(batch):
        batches.append(batch.shape)
        assert batch.flags.c_contiguous
        assert batch.shape[1 if channel_first else 3] == C_IN
        return numpy_model(batch, channel_first)

    collect = Collector(plan, channel_first)
    result = run_pipeline(plan, read_tile, model, collect, batch_size=batch_size, channel_first=channel_first,
                          labels=labels)
    expected = reference(plan, make_reader(plan), lambda b: numpy_model(b, channel_first), channel_first, labels)
    assert collect.out.dtype == expected.dtype
    np.testing.assert_array_equal(collect.out, expected)
    assert collect.writes.max() == 1
    assert [tuple(box) for box in plan.tile_boxes[plan.load_order].tolist()] == read_tile.calls
    assert len(batches) == result.batches == expected_batches(plan, batch_size)
    assert all(size <= batch_size for size, *_ in batches)
    assert sum(size for size, *_ in batches) == plan.n_loads
    assert result.tiles == plan.n_loads and result.cells == plan.n_writes == sum(collect.calls)
    assert all(collect.calls), "write_cells is not called with an empty list"


def test_mixed_shapes_split_batches():
    plan = mixed_shapes_plan()
    shapes = []
    run_pipeline(plan, make_reader(plan), lambda b: shapes.append(b.shape) or numpy_model(b), lambda cells: None,
                 batch_size=4)
    # widths 40, 70, 40 along each row of 3 tiles, heights 50, 50, 40: only the last tile of a row
    # and the first of the next can share a batch
    assert [(s[0],) + s[2:] for s in shapes] == [(1, 50, 40), (1, 50, 70), (2, 50, 40), (1, 50, 70),
                                                 (1, 50, 40), (1, 40, 40), (1, 40, 70), (1, 40, 40)]


def test_dtype_and_parallel_are_passed_on():
    plan = regular_plan()
    collect = Collector(plan, True)
    run_pipeline(plan, make_reader(plan), numpy_model, collect, dtype=np.float64, parallel=False, prefetch=1)
    expected = reference(plan, make_reader(plan), numpy_model, True, False, dtype=np.float64)
    assert collect.out.dtype == np.float64
    np.testing.assert_array_equal(collect.out, expected)


def test_result_object():
    plan = regular_plan()
    result = run_pipeline(plan, make_reader(plan), numpy_model, lambda cells: None, batch_size=7)
    assert isinstance(result, PipelineResult)
    assert (result.tiles, result.batches, result.cells) == (plan.n_loads, math.ceil(plan.n_loads / 7),
                                                            plan.n_writes)
    assert result.seconds > 0 and result.tiles_per_second > 0
    for stage in ("read", "model", "blend", "write"):
        times = getattr(result, stage)
        assert isinstance(times, StageTimes)
        assert min(times) >= 0


class NumpyOnly:
    """An output with .numpy() but no __array__."""

    def __init__(self, array):
        self.array = array

    def numpy(self):
        return self.array


def test_output_with_numpy_method():
    plan = clamped_plan()
    collect = Collector(plan, True)
    run_pipeline(plan, make_reader(plan), lambda b: NumpyOnly(numpy_model(b)), collect, batch_size=4)
    np.testing.assert_array_equal(collect.out, reference(plan, make_reader(plan), numpy_model, True, False))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_model(requires_grad):
    torch = pytest.importorskip("torch")

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(2.0), requires_grad=requires_grad)

        def forward(self, x):
            return torch.cat([x * self.scale, 1 - x[:, :1]], dim=1)

    module = Model()

    def model(batch):
        out = module(torch.from_numpy(batch))
        assert out.requires_grad == requires_grad  # with grad, np.asarray fails and .detach() is used
        return out

    plan = regular_plan()
    collect = Collector(plan, True)
    run_pipeline(plan, make_reader(plan), model, collect, batch_size=6)
    np.testing.assert_array_equal(collect.out, reference(plan, make_reader(plan), numpy_model, True, False))


# -- errors ------------------------------------------------------------------------------
class Boom(RuntimeError):
    pass


def failing_on(call_number, function, message):
    """Wrap `function` to raise Boom(message) on its `call_number`-th call (1-based)."""
    def wrapper(*args):
        wrapper.calls += 1
        if wrapper.calls == call_number:
            wrapper.raised = Boom(message)
            raise wrapper.raised
        return function(*args)

    wrapper.calls, wrapper.raised = 0, None
    return wrapper


def frame_names(excinfo):
    return [entry.name for entry in excinfo.traceback]


def test_read_tile_error():
    plan = regular_plan()
    read_tile = failing_on(3, make_reader(plan), "cannot read tile 3")
    with pytest.raises(Boom, match="cannot read tile 3") as excinfo:
        run_pipeline(plan, read_tile, numpy_model, lambda cells: None, batch_size=2)
    assert excinfo.value is read_tile.raised
    assert "wrapper" in frame_names(excinfo) and "_read" in frame_names(excinfo)
    assert read_tile.calls == 3, "no tile is read after the failing one"


def test_model_error():
    plan = regular_plan()
    model = failing_on(2, numpy_model, "model failed on batch 2")
    with pytest.raises(Boom, match="model failed on batch 2") as excinfo:
        run_pipeline(plan, make_reader(plan), model, lambda cells: None, batch_size=3)
    assert excinfo.value is model.raised
    assert "wrapper" in frame_names(excinfo) and "_infer" in frame_names(excinfo)
    assert model.calls == 2


def test_write_cells_error():
    plan = regular_plan()
    write_cells = failing_on(2, lambda cells: None, "disk full")
    with pytest.raises(Boom, match="disk full") as excinfo:
        run_pipeline(plan, make_reader(plan), numpy_model, write_cells, batch_size=2)
    assert excinfo.value is write_cells.raised
    assert "_write" in frame_names(excinfo)
    assert write_cells.calls == 2


def test_blend_error_wrong_spatial_shape():
    plan = regular_plan()
    with pytest.raises(ValueError, match=r"tile 0 \(grid index \(0, 0\)\) has shape \(4, 64, 63\)") as excinfo:
        run_pipeline(plan, make_reader(plan), lambda b: numpy_model(b)[..., :-1], lambda cells: None)
    assert "_blend" in frame_names(excinfo)


def test_model_returns_wrong_count():
    plan = regular_plan()
    calls = []

    def model(batch):
        calls.append(len(batch))
        return numpy_model(batch)[:3] if len(calls) == 2 else numpy_model(batch)

    with pytest.raises(ValueError, match=r"model returned 3 outputs .* for batch 1 \(tiles 4 to 7 .*expected 4"):
        run_pipeline(plan, make_reader(plan), model, lambda cells: None, batch_size=4)


def test_model_returns_scalar():
    plan = regular_plan()
    with pytest.raises(ValueError, match="model returned a scalar"):
        run_pipeline(plan, make_reader(plan), lambda b: 1.0, lambda cells: None)


@pytest.mark.parametrize("shape", [(64, 64), (64, 63, 3), (64, 64, 3, 1)])
def test_read_tile_wrong_shape(shape):
    plan = regular_plan()
    with pytest.raises(ValueError, match=r"read_tile returned shape .* for tile 0 \(grid index \(0, 0\)"):
        run_pipeline(plan, lambda box: np.zeros(shape, np.float32), numpy_model, lambda cells: None)


def test_progress_error():
    plan = regular_plan()
    progress = failing_on(2, lambda done, total: None, "progress broke")
    with pytest.raises(Boom, match="progress broke"):
        run_pipeline(plan, make_reader(plan), numpy_model, lambda cells: None, progress=progress)


def test_keyboard_interrupt_stops_threads():
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        pytest.skip("needs to run in the main thread, on a platform with pthread_kill")
    plan = regular_plan()
    main = threading.main_thread().ident

    def model(batch):
        model.calls += 1
        if model.calls == 2:
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, while the caller waits for the threads
        time.sleep(0.01)
        return numpy_model(batch)

    model.calls = 0
    # A shell without job control starts background commands with SIGINT ignored, and Python then keeps
    # it ignored: put Python's own handler in place for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(plan, make_reader(plan), model, lambda cells: None, batch_size=1)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert model.calls < plan.n_loads


def test_memory_bounded():
    """While the writer is stuck, the reader gets at most 3 * prefetch + 4 batches ahead."""
    plan = regular_plan()
    read_tile = make_reader(plan)
    seen = []

    def write_cells(cells):
        if not seen:
            time.sleep(0.2)  # long enough for every queue to fill
            seen.append(len(read_tile.calls))

    prefetch, batch_size = 1, 2
    run_pipeline(plan, read_tile, numpy_model, write_cells, batch_size=batch_size, prefetch=prefetch)
    assert seen[0] <= (3 * prefetch + 4) * batch_size < plan.n_loads


# -- progress --------------------------------------------------------------------------------
def test_progress_callback():
    plan = regular_plan()
    reports = []
    run_pipeline(plan, make_reader(plan), numpy_model, lambda cells: None, batch_size=4,
                 progress=lambda done, total: reports.append((done, total, threading.current_thread().name)))
    done = [d for d, _, _ in reports]
    assert done == sorted(set(done)) and done[-1] == plan.n_loads
    assert len(reports) == math.ceil(plan.n_loads / 4)
    assert {(total, name) for _, total, name in reports} == {(plan.n_loads, THREAD_PREFIX + "write")}


def test_progress_callback_counts_tiles_after_their_cells_are_written():
    plan = area_plan()  # some batches finish no cell
    written = []
    reports = []

    def progress(done, total):
        reports.append((done, sum(written)))

    run_pipeline(plan, make_reader(plan), numpy_model, lambda cells: written.append(len(cells)), batch_size=3,
                 progress=progress)
    assert reports[-1] == (plan.n_loads, plan.n_writes)
    assert len(reports) == math.ceil(plan.n_loads / 3)


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    plan = regular_plan()
    run_pipeline(plan, make_reader(plan), numpy_model, lambda cells: None, progress=True)
    assert f"{plan.n_loads}/{plan.n_loads}" in capsys.readouterr().err


def test_progress_bar_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    plan = regular_plan()
    read_tile = make_reader(plan)
    with pytest.raises(ImportError, match="pip install tqdm"):
        run_pipeline(plan, read_tile, numpy_model, lambda cells: None, progress=True)
    assert read_tile.calls == []


# -- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (dict(plan="plan"), "plan must be a Plan"),
    (dict(read_tile=None), "read_tile=None is not callable"),
    (dict(model=3), "model=3 is not callable"),
    (dict(write_cells="out.tif"), "write_cells='out.tif' is not callable"),
    (dict(batch_size=0), "batch_size=0 must be a positive integer"),
    (dict(batch_size=-2), "batch_size=-2 must be a positive integer"),
    (dict(batch_size=2.5), "batch_size=2.5 is not an integer"),
    (dict(batch_size=True), "batch_size=True is not an integer"),
    (dict(prefetch=0), "prefetch=0 must be a positive integer"),
    (dict(prefetch="2"), "prefetch='2' is not an integer"),
    (dict(progress="yes"), "progress='yes' must be None, True or a callable"),
    (dict(labels="no"), "labels='no' must be True or False"),
    (dict(channel_first=1), "channel_first=1 must be True or False"),
    (dict(dtype=np.int16), "dtype=int16 is not a supported accumulator"),
    (dict(parallel="yes"), "parallel='yes' must be True or False"),
])
def test_bad_arguments(change, message):
    plan = regular_plan()
    read_tile = make_reader(plan)
    arguments = dict(plan=plan, read_tile=read_tile, model=numpy_model, write_cells=lambda cells: None)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        run_pipeline(**arguments)
    assert read_tile.calls == []


def test_compile_watch_says_once_and_only_when_numba_compiles():
    import numba

    from seamless_fast._progress import watch_compiles

    said = []

    @numba.njit(cache=False)
    def twice(x):
        return 2 * x

    with watch_compiles(lambda: said.append(1)) as watch:
        assert not watch.compiled_since_last_look()
        twice(1)
        twice(1.5)  # a second signature: compiled, not said again
        assert watch.compiled_since_last_look() and not watch.compiled_since_last_look()
        twice(2)  # already compiled
        assert not watch.compiled_since_last_look()
    assert said == [1]
    twice(np.float32(1))  # compiles outside the watch: not seen
    assert said == [1] and not watch.compiled_since_last_look()


def test_progress_bar_clock_restarts_after_a_compile():
    import io

    tqdm = pytest.importorskip("tqdm").tqdm
    from seamless_fast._progress import _CompileWatch, bar_callback

    bar = tqdm(total=10, file=io.StringIO(), mininterval=0)
    watch = _CompileWatch(None)
    update = bar_callback(bar, watch)
    update(2, 10)
    assert (bar.n, bar.initial) == (2, 0)
    watch.on_start(None)
    update(4, 10)  # still compiling: the clock runs on
    assert (bar.n, bar.initial) == (4, 0)
    watch.on_end(None)
    before = bar._time()
    update(6, 10)
    assert (bar.n, bar.initial) == (6, 6) and bar.start_t >= before  # rate and ETA from here on
    update(9, 10)
    assert (bar.n, bar.initial) == (9, 6)
    assert bar.format_dict["initial"] == 6
    bar.close()
