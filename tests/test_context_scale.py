"""Models that read context and models whose output has another resolution: exact against the reference.

The model here crops the context off its input window, averages blocks of
``output_scale`` pixels and adds the mean of the whole window (so a wrong
context or a wrong window changes the values). The reference reads each
tile's window as the issue defines it (output box times the scale, grown
by the context, padded past the border), runs the same model and blends
the outputs over the output boxes with full-size arrays.
"""

import math
import os
import tempfile

import numpy as np
import pytest
import shapely
from hypothesis import event, given, settings
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.io import ImageReader
from seamless_fast.windows import window_2d

from reference import reference_blend, reference_labels_agree

CHANNELS_IN, CLASSES = 2, 3


def expected_window(box, scale, context):
    """The read window of an output box, written out."""
    ylo, xlo, yhi, xhi = box
    (sy, sx), (cy, cx) = scale, context
    return (ylo * sy - cy, xlo * sx - cx, yhi * sy + cy, xhi * sx + cx)


def make_model(scale, context):
    """A channel-first model for windows grown by `context` that returns tiles `scale` times smaller."""
    (sy, sx), (cy, cx) = scale, context

    def one(window):
        c, h, w = window.shape
        inner = window[:, cy:h - cy, cx:w - cx]
        hi, wi = inner.shape[1:]
        assert hi > 0 and wi > 0 and hi % sy == 0 and wi % sx == 0, (window.shape, scale, context)
        down = inner.reshape(c, hi // sy, sy, wi // sx, sx).mean(axis=(2, 4))
        whole = window.mean(axis=(1, 2))
        return np.stack([0.5 * down[k % c] + 0.5 * whole[(k + 1) % c] for k in range(CLASSES)])

    def model(batch):
        return np.stack([one(window) for window in np.asarray(batch, np.float32)]).astype(np.float32)
    return model


def reference(plan, reader, model, scale, context):
    """(values, covered) of the reference blend over every tile of the plan."""
    boxes = plan.tile_boxes.tolist()
    tiles = [model(reader.read(expected_window(b, scale, context)).transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
             for b in boxes]
    windows = [window_2d(plan.window, b[2] - b[0], b[3] - b[1]) for b in boxes]
    return reference_blend(boxes, tiles, windows, plan.image_size)


def run(plan, reader, model, labels=False):
    """run_pipeline's output (channel-last values or labels), how often each pixel was written, and the boxes read."""
    read = []
    shape = plan.image_size if labels else plan.image_size + (CLASSES,)
    out, writes = np.zeros(shape, np.float32), np.zeros(plan.image_size, np.int64)

    def read_tile(box):
        read.append(tuple(box))
        return reader.read(box)

    def write_cells(cells):
        for cell in cells:
            out[cell.slices] = cell.data if labels else np.moveaxis(cell.data, 0, -1)
            writes[cell.slices] += 1

    sf.run_pipeline(plan, read_tile, model, write_cells, batch_size=3, labels=labels)
    return out, writes, read


@st.composite
def cases(draw):
    scale = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    tile = tuple(s * draw(st.integers(2, 16)) for s in scale)
    overlap = tuple(s * draw(st.integers(0, t // s - 1)) for s, t in zip(scale, tile))
    context = tuple(s * draw(st.integers(0, 3)) for s in scale)
    size = (draw(st.integers(3, 120)), draw(st.integers(3, 120)))
    area = None
    if draw(st.booleans()):
        y0, x0 = draw(st.integers(0, size[0] - 2)), draw(st.integers(0, size[1] - 2))
        area = shapely.box(y0, x0, draw(st.integers(y0 + 1, size[0])), draw(st.integers(x0 + 1, size[1])))
    scalar = scale[0] == scale[1] and context[0] == context[1] and draw(st.booleans())
    options = dict(context=context[0] if scalar else context, output_scale=scale[0] if scalar else scale)
    if draw(st.booleans()):  # a budget of about two output tile columns: stripes
        out_tile = [t // s for t, s in zip(tile, scale)]
        options.update(max_buffer_bytes=out_tile[0] * 2 * out_tile[1] * 4 * CLASSES, channels=CLASSES)
    return size, tile, overlap, area, scale, context, options, draw(st.booleans()), draw(st.booleans())


def _plan(size, tile, overlap, area, options, from_grid):
    plan, grid = sf.plan_regular_grid(size, tile, overlap, area, **options)
    if from_grid and area is None:  # the grid comes back in input pixels, and plans the same again
        other = sf.plan_from_grid(grid, area=area, **options)
        for name in ("image_size", "grid_shape", "context", "output_scale"):
            assert getattr(other, name) == getattr(plan, name)
        for name in ("tile_boxes", "cell_boxes", "load_order", "write_cells"):
            np.testing.assert_array_equal(getattr(other, name), getattr(plan, name))
        np.testing.assert_array_equal(other.read_boxes(), plan.read_boxes())
        plan = other
    return plan


@settings(max_examples=40)
@given(cases(), st.integers(0, 99))
def test_random_plans_match_the_reference(case, seed):
    size, tile, overlap, area, scale, context, options, labels, from_grid = case
    try:
        plan = _plan(size, tile, overlap, area, options, from_grid)
    except ValueError as error:  # a stripe budget below one tile column and its seam is refused
        assert "too small" in str(error)
        return
    event(f"stripes: {len(plan.stripes) > 1}, scale: {scale != (1, 1)}, context: {context != (0, 0)}")
    out_size = tuple(math.ceil(n / s) for n, s in zip(size, scale))
    assert plan.image_size == out_size and plan.context == context and plan.output_scale == scale
    boxes = plan.tile_boxes[plan.load_order].tolist()
    windows = [expected_window(b, scale, context) for b in boxes]
    assert [tuple(g.bounds) for _, g in sf.get_plan_input_geoms(plan)] == [tuple(map(float, w)) for w in windows]
    image = np.random.default_rng(seed).random(size + (CHANNELS_IN,), np.float32)
    reader, model = ImageReader(image, pad="reflect"), make_model(scale, context)
    out, writes, read = run(plan, reader, model, labels)
    assert read == windows  # run_pipeline hands read_tile the grown, scaled windows, in load order
    assert writes.max() == 1
    if area is None:
        assert (writes == 1).all()
    values, covered = reference(plan, reader, model, scale, context)
    written = writes == 1
    assert covered[written].all()
    if labels:
        assert reference_labels_agree(out[written], values[written])
    else:
        np.testing.assert_allclose(out[written], values[written], rtol=0, atol=1e-5)


@pytest.mark.parametrize("size, scale", [((101, 77), 2), ((100, 78), (4, 2)), ((30, 31), 3)])
def test_flush_tile_reads_past_the_border_and_the_output_rounds_up(size, scale):
    """The last output pixel covers what is left of the input; its window is padded by the reader."""
    plan, _ = sf.plan_regular_grid(size, 24, 12, output_scale=scale, context=12)
    sy, sx = (scale, scale) if isinstance(scale, int) else scale
    assert plan.image_size == (math.ceil(size[0] / sy), math.ceil(size[1] / sx)) and plan.input_size == size
    last = plan.read_boxes().max(axis=0)
    assert last[2] == plan.image_size[0] * sy + 12 and last[3] == plan.image_size[1] * sx + 12


def test_an_area_run_equals_the_whole_run_inside_it():
    size, area = (150, 130), shapely.Polygon([(10, 20), (140, 40), (60, 120)])
    image = np.random.default_rng(3).random(size + (CHANNELS_IN,), np.float32)
    reader, model = ImageReader(image), make_model((2, 2), (4, 4))
    whole, _, _ = run(sf.plan_regular_grid(size, 32, 8, context=4, output_scale=2)[0], reader, model)
    plan, _ = sf.plan_regular_grid(size, 32, 8, area, context=4, output_scale=2)
    part, writes, _ = run(plan, reader, model)
    inside = writes == 1
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(part[inside], whole[inside])
    # every cell whose interior meets the area (given in input pixels) is written
    for cell in plan.write_cells.tolist():
        ylo, xlo, yhi, xhi = plan.cell_boxes[cell].tolist()
        assert area.intersection(shapely.box(2 * ylo, 2 * xlo, 2 * yhi, 2 * xhi)).area > 0


def test_default_plans_are_unchanged():
    plan, grid = sf.plan_regular_grid((300, 277), 64, 16)
    same, same_grid = sf.plan_regular_grid((300, 277), 64, 16, context=0, output_scale=(1, 1))
    assert plan.input_size == plan.image_size and plan.context == (0, 0) and plan.output_scale == (1, 1)
    assert repr(plan) == repr(same) and "context" not in repr(plan)
    np.testing.assert_array_equal(plan.read_boxes(), plan.tile_boxes[plan.load_order])
    np.testing.assert_array_equal(same.steps, plan.steps)
    assert [g.bounds for g in grid.ravel()] == [g.bounds for g in same_grid.ravel()]


@pytest.mark.parametrize("call, message", [
    (lambda: sf.plan_regular_grid((100, 100), 32, 8, context=-1), "context=-1: every entry must be >= 0"),
    (lambda: sf.plan_regular_grid((100, 100), 32, 8, output_scale=0), "output_scale=0: every entry must be positive"),
    (lambda: sf.plan_regular_grid((100, 100), 30, 8, output_scale=4), "tile_size=(30, 30) is not a multiple of"),
    (lambda: sf.plan_regular_grid((100, 100), 32, 6, output_scale=(1, 4)), "overlap=(6, 6) is not a multiple of"),
    (lambda: sf.plan_regular_grid((100, 100), 32, 8, context=3, output_scale=2), "context=(3, 3) is not a multiple"),
    (lambda: sf.plan_regular_grid((100, 100), 32, 8, context=(1, 2, 3)), "context=(1, 2, 3) has 3 items"),
    (lambda: sf.plan_from_grid(np.array([[shapely.box(0, 0, 30, 32)]]), output_scale=4),
     "grid box (0, 0) has bounds (0, 0, 30, 32)"),
    (lambda: sf.plan_from_grid(np.array([[shapely.box(0, 0, 32, 32)]]), context=-4), "context=-4"),
    (lambda: sf.io.metadata_for_output(ImageReader(np.zeros((4, 4))), output_scale=0), "output_scale=0"),
])
def test_bad_values_are_refused_in_one_line(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_output_resolution_is_divided_by_the_scale(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((8, 8), np.uint8), resolution=(4.0, 2.0), resolutionunit="INCH")
    with ImageReader(tmp_path / "in.tif") as reader:
        assert sf.io.metadata_for_output(reader)["resolution"] == (4.0, 2.0)
        assert sf.io.metadata_for_output(reader, output_scale=(2, 4)) == {
            "resolution": (1.0, 1.0), "resolution_unit": "INCH", "ome": False}


# -- partitioned runs -------------------------------------------------------

@settings(max_examples=12)
@given(cases(), st.integers(1, 4), st.permutations(range(4)))
def test_partitioned_runs_equal_the_single_run(case, parts, order):
    zarr = pytest.importorskip("zarr")
    from seamless_fast.scale.partition import partition_plan
    from seamless_fast.scale.store import Job, PartStore

    size, tile, overlap, area, scale, context, options, labels, _ = case
    # the job's plan: parts are bands of tile rows, and walking columns would add in another order
    plan, _ = sf.plan_regular_grid(size, tile, overlap, area, context=context, output_scale=scale, traverse="rows")
    rows = len(np.unique(plan.load_order // plan.grid_shape[1]))
    parts = min(parts, rows)
    try:
        partition_plan(plan, parts)
    except ValueError:  # more lead rows than the buffer holds
        parts = 1
    event(f"parts: {parts}")
    image = np.random.default_rng(parts).random(size + (CHANNELS_IN,), np.float32)
    reader, model = ImageReader(image), make_model(scale, context)
    expected, writes, _ = run(plan, reader, model, labels)
    job = Job.from_options(size, tile, overlap, parts=parts, area=area, labels=labels, context=options["context"],
                           output_scale=options["output_scale"], chunk=16)
    assert job.partition().plan.image_size == plan.image_size
    with tempfile.TemporaryDirectory() as folder:
        store = PartStore(os.path.join(folder, "parts.zarr"), job)
        for part in [q for q in order if q < parts]:
            store.run_part(part, reader.read, model, batch_size=3)
        store.merge(os.path.join(folder, "out.zarr"))
        got = zarr.open_array(os.path.join(folder, "out.zarr"), mode="r")[:]
    written = writes == 1
    assert got.shape[:2] == plan.image_size
    np.testing.assert_array_equal(got[written], expected[written].astype(got.dtype))


def test_the_store_records_context_and_scale(tmp_path):
    pytest.importorskip("zarr")
    from seamless_fast.scale.store import Job, PartStore

    plain = Job.from_options((100, 90), 32, 8, parts=2)
    assert "context" not in plain.to_json() and "output_scale" not in plain.to_json()  # older stores still open
    assert Job.from_json(plain.to_json()) == plain
    job = Job.from_options((100, 90), 32, 8, parts=2, context=4, output_scale=2)
    assert job.to_json()["context"] == [4, 4] and job.to_json()["output_scale"] == [2, 2]
    assert Job.from_json(job.to_json()) == job
    path = tmp_path / "parts.zarr"
    PartStore(path, job)
    for other, named in [(Job.from_options((100, 90), 32, 8, parts=2, output_scale=2), "context=(4, 4)"),
                         (Job.from_options((100, 90), 32, 8, parts=2, context=4), "output_scale=(2, 2)"),
                         (plain, "context=(4, 4)")]:
        with pytest.raises(ValueError, match="belongs to another job") as info:
            PartStore(path, other)
        assert named in str(info.value)
    with pytest.raises(ValueError, match=r"context=\(3, 3\) is not a multiple"):
        Job.from_options((100, 90), 32, 8, parts=2, context=3, output_scale=2)
