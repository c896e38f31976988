"""Partitioned runs: parts and merge equal the single-process run bit for bit."""

import os
import tempfile

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.scale.partition import PartBlender, merge_lead_rows, partition_plan

zarr = pytest.importorskip("zarr")

from seamless_fast.scale.store import Job, PartStore  # noqa: E402


def toy_model(channels_out, dtype):
    """A context-dependent stand-in model: channel-first in and out, values depend on the tile mean."""
    def one(tile):
        centred = tile - tile.mean(axis=(1, 2), keepdims=True)
        out = np.concatenate([centred, np.tanh(tile)] * channels_out)[:channels_out]
        return (out * 50 + 50).astype(dtype) if np.dtype(dtype).kind in "iu" else out.astype(dtype)

    def model(batch):  # tile by tile: its numbers must not depend on how tiles are batched
        return np.stack([one(tile) for tile in np.asarray(batch, np.float32)])
    return model


def channel_last(model):
    return lambda batch: np.moveaxis(model(np.moveaxis(batch, -1, 1)), 1, -1)


def single_process(plan, read_tile, model, labels, channel_first):
    """The run_pipeline output, channel-last, to compare with."""
    outputs = {}

    def write_cells(cells):
        for cell in cells:
            data = np.moveaxis(cell.data, 0, -1) if channel_first and cell.data.ndim == 3 else cell.data
            if "image" not in outputs:
                outputs["image"] = np.zeros(plan.image_size + data.shape[2:], data.dtype)
            outputs["image"][cell.slices] = data

    sf.run_pipeline(plan, read_tile, model, write_cells, labels=labels, channel_first=channel_first, batch_size=3)
    return outputs["image"]


def partitioned(folder, job, read_tile, model, order, output="out.zarr", dtype=None):
    store = PartStore(os.path.join(folder, "parts.zarr"), job)
    for part in order:
        store.run_part(part, read_tile, model, batch_size=3)
    path = os.path.join(folder, output)
    store.merge(path, dtype=dtype)
    return store, path


def read_output(path):
    if path.endswith(".zarr"):
        return zarr.open_array(path, mode="r")[:]
    import tifffile

    return tifffile.imread(path)


@st.composite
def jobs(draw):
    height, width = draw(st.integers(20, 260)), draw(st.integers(20, 260))
    tile = draw(st.integers(8, 80))
    overlap = draw(st.integers(0, tile - 1))
    area = None
    if draw(st.booleans()):
        y0, x0 = draw(st.integers(0, height - 2)), draw(st.integers(0, width - 2))
        area = shapely.box(y0, x0, draw(st.integers(y0 + 1, height)), draw(st.integers(x0 + 1, width)))
    plan, _ = sf.plan_regular_grid((height, width), tile, overlap, area, traverse="rows")  # as the job plans
    rows = len(np.unique(plan.load_order // plan.grid_shape[1]))
    parts = draw(st.integers(1, min(rows, 6)))
    try:
        partition_plan(plan, parts)
    except ValueError:  # more lead rows than the buffer holds: fewer parts
        parts = 1
    labels, channel_first = draw(st.booleans()), draw(st.booleans())
    job = Job.from_options((height, width), tile, overlap, parts=parts, area=area, labels=labels,
                           channel_first=channel_first, chunk=draw(st.sampled_from([16, 32, 100])))
    order = draw(st.permutations(range(parts)))
    channels = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float16, np.float64, np.uint8]))
    return job, plan, order, channels, dtype


@settings(max_examples=30)
@given(jobs())
def test_merged_output_equals_the_single_process_output(case):
    job, plan, order, channels, dtype = case
    image = np.random.default_rng(0).random(job.image_size + (2,), np.float32)

    def read_tile(box):
        return image[box[0]:box[2], box[1]:box[3]]

    model = toy_model(channels, dtype)
    if not job.channel_first:
        model = channel_last(model)
    expected = single_process(plan, read_tile, model, job.labels, job.channel_first)
    with tempfile.TemporaryDirectory() as folder:
        _, path = partitioned(folder, job, read_tile, model, order,
                              dtype=None if job.labels else expected.dtype if expected.dtype != np.float64 else None)
        got = read_output(path)
    if job.labels:
        np.testing.assert_array_equal(got, expected)
    elif expected.dtype == np.float64:  # stored as float32, the widest output dtype
        np.testing.assert_array_equal(got, expected.astype(np.float32))
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("size, tile, overlap, parts", [((300, 277), 64, 40, 4), ((120, 90), 32, 28, 8),
                                                        ((1000, 777), 128, 32, 5), ((61, 90), 16, 5, 4)])
def test_rows_are_owned_once_and_seams_cover_the_rest(size, tile, overlap, parts):
    plan, _ = sf.plan_regular_grid(size, tile, overlap)
    partition = partition_plan(plan, parts)
    owners = np.zeros(size[0], np.int64)
    for lo, hi in np.concatenate([partition.own, partition.lead]).tolist():
        owners[lo:hi] += 1
    assert (owners == 1).all()  # every row is final in exactly one part or finished by one merge
    tiles = plan.tile_boxes[plan.load_order]
    for part in range(parts):
        steps = np.asarray(partition.steps_of(part))
        reached = np.zeros(size[0], bool)
        for ylo, _, yhi, _ in tiles[steps].tolist():
            reached[ylo:yhi] = True
        lo, hi = partition.own[part]
        assert reached[lo:hi].all()
        others = np.zeros(size[0], bool)
        for ylo, _, yhi, _ in np.delete(tiles, steps, axis=0).tolist():
            others[ylo:yhi] = True
        assert not others[lo:hi].any()  # own rows: no other part reaches them
    assert sorted(np.concatenate([partition.steps_of(q) for q in range(parts)]).tolist()) == list(range(plan.n_loads))


def test_in_memory_parts_and_merge_match_push_by_push():
    """The partition module alone (no store): PartBlender per part, then merge_lead_rows."""
    plan, _ = sf.plan_regular_grid((200, 170), 48, 20)
    rng = np.random.default_rng(3)
    tiles = [rng.random((b[2] - b[0], b[3] - b[1], 3), np.float32) for b in plan.tile_boxes.tolist()]
    expected = sf.blend(plan, (tiles[t] for t in plan.load_order.tolist()))
    partition = partition_plan(plan, 3)
    got, crops, leads = np.zeros_like(expected), {}, {}
    for part in range(3):
        with PartBlender(partition, part, on_crop=crops.__setitem__,
                         on_lead=lambda acc, part=part: leads.__setitem__(part, acc.copy())) as blender:
            for step in partition.steps_of(part):
                for cell in blender.push(tiles[plan.load_order[step]]):
                    got[cell.slices] = cell.data
    for part, lead in leads.items():
        lo, hi = partition.lead[part]
        got[lo:hi] = merge_lead_rows(partition, part, lead, crops.__getitem__, 3)[0].reshape(hi - lo, 170, 3)
    np.testing.assert_array_equal(got, expected)
    assert sorted(crops) == sorted(np.concatenate([partition.crop_steps(q) for q in range(3)]).tolist())


def test_partition_refuses_plans_it_cannot_cut():
    plan, _ = sf.plan_regular_grid((100, 100), 32, 8)
    with pytest.raises(ValueError, match="parts=5 is more than the 4 tile rows"):
        partition_plan(plan, 5)
    with pytest.raises(ValueError, match="parts=0 must be a positive integer"):
        partition_plan(plan, 0)
    striped, _ = sf.plan_regular_grid((64, 4000), 32, 8, max_buffer_bytes=100_000, traverse="rows")
    with pytest.raises(ValueError, match="stripes"):
        partition_plan(striped, 2)
    general, _ = sf.plan_regular_grid((100, 100), 32, 8, window=np.ones((32, 32)))
    with pytest.raises(ValueError, match="separable window"):
        partition_plan(general, 2)
    with pytest.raises(ValueError, match="plan must be a Plan"):
        partition_plan("plan", 2)
