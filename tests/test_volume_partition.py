"""Volume plans cut into slabs of tile layers: every part run apart on its sub-plan, the seams merged, equals the
single-process run bit for bit (values and labels, every dtype, channel first and last, ties and NaN)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.engine._volume import VolumeBlender
from seamless_fast.scale import partition_plan
from seamless_fast.scale._volume_partition import (VolumePartition, allowed_cuts, merge_seam, part_pieces,
                                                   partition_volume, volume_sub_plan)

DTYPES = [np.float16, np.float32, np.float64, np.uint8, np.int16]


def tile_for(box, channels, dtype, channel_first, seed):
    """A tile that is a pure function of its box: random, with exact ties between channels 0 and 1 and NaN."""
    rng = np.random.default_rng([seed, *np.asarray(box).tolist()])
    d, h, w = (np.asarray(box[3:]) - np.asarray(box[:3])).tolist()
    if np.dtype(dtype).kind == "f":
        tile = rng.random((d, h, w, channels)).astype(dtype)
        tile[rng.random(tile.shape) < 0.02] = np.nan
    else:
        tile = rng.integers(0, 5, (d, h, w, channels)).astype(dtype)
    if channels > 1:
        tile[..., 1] = tile[..., 0]
    return np.ascontiguousarray(np.moveaxis(tile, -1, 0)) if channel_first else tile


def single_run(plan, tiles, labels, channel_first):
    out = None
    with VolumeBlender(plan, labels=labels, channel_first=channel_first) as blender:
        for k in plan.load_order:
            for cell in blender.push(tiles(plan.tile_boxes[k])):
                data = np.moveaxis(cell.data, 0, -1) if channel_first and not labels else cell.data
                if out is None:
                    out = np.zeros(plan.image_size + data.shape[3:], data.dtype)
                out[cell.slices] = data
    return out


def parted_run(plan, parts, tiles, labels, channel_first, order=None):
    """Every part on its own VolumeBlender, in `order`; final voxels placed, seams merged from crop + lead."""
    partition = partition_plan(plan, parts)
    out, seams = None, {}
    for q in order or range(partition.parts):
        sub = volume_sub_plan(partition, q)
        with VolumeBlender(sub, channel_first=channel_first) as blender:
            for k in sub.load_order:
                cells = blender.push(tiles(sub.tile_boxes[k]))
                for kind, box, data in part_pieces(partition, q, cells, labels=labels, channel_first=channel_first):
                    where = (slice(box[0], box[3]), slice(box[1], box[4]), slice(box[2], box[5]))
                    if kind == "final":
                        if out is None:
                            out = np.full(plan.image_size + data.shape[3:], 99, data.dtype)
                        out[where] = data
                    else:
                        seam = seams.setdefault((kind, q), np.full(plan.image_size + data.shape[3:], np.nan,
                                                                   data.dtype))
                        seam[where] = data
    for q in range(partition.parts - 1):
        lo, hi = partition.lead[q]
        if hi > lo:
            merged = merge_seam(seams["crop", q + 1][lo:hi], seams["lead", q][lo:hi], labels)
            if out is None:
                out = np.full(plan.image_size + merged.shape[3:], 99, merged.dtype)
            out[lo:hi] = merged
    return out


def check_every_parts_count(plan, channels, dtype, channel_first, labels, seed):
    def tiles(box):
        return tile_for(box, channels, dtype, channel_first, seed)

    expected = single_run(plan, tiles, labels, channel_first)
    for parts in range(1, len(allowed_cuts(plan)) + 2):
        got = parted_run(plan, parts, tiles, labels, channel_first)
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected, equal_nan=True), (parts, plan)


@settings(max_examples=30, deadline=None)
@given(size=st.tuples(st.integers(5, 41), st.integers(3, 19), st.integers(3, 17)),
       tile=st.tuples(st.integers(3, 12), st.integers(3, 12), st.integers(3, 12)),
       overlap_fraction=st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0, 0.9)),
       channels=st.integers(1, 3), dtype=st.sampled_from(DTYPES), channel_first=st.booleans(),
       labels=st.booleans(), seed=st.integers(0, 2**16))
def test_regular_grids_merge_exactly(size, tile, overlap_fraction, channels, dtype, channel_first, labels, seed):
    overlap = tuple(int(f * (t - 1)) for f, t in zip(overlap_fraction, tile))
    plan, _ = sf.plan_regular_grid(size, tile, overlap)
    check_every_parts_count(plan, channels, dtype, channel_first, labels, seed)


@st.composite
def uneven_layers(draw):
    """z extents of 2 to 6 layers, each starting after the last one's start and reaching to at least its end."""
    n = draw(st.integers(2, 6))
    starts, ends = [0], [draw(st.integers(2, 9))]
    for _ in range(n - 1):
        start = draw(st.integers(starts[-1] + 1, ends[-1]))
        ends.append(max(ends[-1], start) + draw(st.integers(1, 8)))
        starts.append(start)
    return starts, ends


@settings(max_examples=30, deadline=None)
@given(layers=uneven_layers(), dtype=st.sampled_from(DTYPES), channel_first=st.booleans(), labels=st.booleans(),
       seed=st.integers(0, 2**16))
def test_uneven_layers_merge_exactly(layers, dtype, channel_first, labels, seed):
    starts, ends = layers
    grid = np.array([[[[z0, y0, 0, z1, y0 + 6, 7]] for y0 in (0, 4)] for z0, z1 in zip(starts, ends)])
    plan = sf.plan_from_grid(grid)
    check_every_parts_count(plan, 2, dtype, channel_first, labels, seed)


def test_a_forbidden_cut_is_not_used_and_the_run_stays_exact():
    # layer 2 (z 12..20) reaches past the start of layer 4 (z 18): z 18..20 holds three layers' terms, so no cut
    # before layer 3 (layer 2 ends after layer 4 starts) nor before layer 4 (layer 2 reaches past its start)
    z = [(0, 8), (4, 12), (12, 20), (16, 26), (18, 30), (28, 36)]
    grid = np.array([[[[z0, 0, 0, z1, 9, 5]]] for z0, z1 in z])
    plan = sf.plan_from_grid(grid)
    assert allowed_cuts(plan).tolist() == [1, 2, 5]
    for parts in (1, 2, 3, 4):
        assert set(partition_plan(plan, parts).layer_bounds[1:-1].tolist()) <= {1, 2, 5}
    check_every_parts_count(plan, 3, np.float32, False, False, 7)
    check_every_parts_count(plan, 3, np.float32, True, True, 8)
    with pytest.raises(ValueError, match=r"^parts=5 is more than the 4 slabs of tile layers"):
        partition_plan(plan, 5)


def test_argmax_takes_the_first_largest_or_the_first_nan_as_the_kernels_do():
    plan, _ = sf.plan_regular_grid((6, 5, 5), (4, 5, 5), (2, 0, 0))
    rows = [[0.5, 0.5, 0.2], [0.1, np.nan, np.nan], [np.nan, 1.0, np.nan], [0.3, 0.9, 0.9], [-1.0, -1.0, -2.0]]

    def tiles(box):
        d = int(box[3] - box[0])
        return np.broadcast_to(np.array(rows, np.float32)[None, :, None, :], (d, 5, 5, 3)).copy()

    labels = single_run(plan, tiles, True, False)
    assert labels[0, :, 0].tolist() == [0, 1, 0, 1, 0]
    assert np.array_equal(parted_run(plan, 2, tiles, True, False), labels)
    assert np.array_equal(np.argmax(single_run(plan, tiles, False, False), axis=-1), labels)


def test_parts_in_any_order_give_the_same_volume():
    plan, _ = sf.plan_regular_grid((30, 11, 9), (8, 6, 6), (2, 2, 2))

    def tiles(box):
        return tile_for(box, 2, np.float32, False, 1)

    expected = single_run(plan, tiles, False, False)
    assert np.array_equal(parted_run(plan, 3, tiles, False, False, order=[2, 0, 1]), expected, equal_nan=True)


def test_partition_figures_of_the_monai_scenario():
    plan, _ = sf.plan_regular_grid((256, 384, 384), 128, 32)
    two, three = partition_plan(plan, 2), partition_plan(plan, 3)
    assert isinstance(two, VolumePartition) and two.parts == 2
    assert two.layer_bounds.tolist() == [0, 1, 3] and two.lead.tolist() == [[96, 128], [0, 0]]
    assert two.part_seam_bytes(16).tolist() == [32 * 384 * 384 * 16 * 4] * 2
    assert two.seam_bytes(16) == 2 * 32 * 384 * 384 * 16 * 4
    assert three.final.tolist() == [[0, 96], [0, 0], [224, 256]]
    assert three.part_seam_bytes(16).tolist() == [x * 384 * 384 * 16 * 4 for x in (32, 32 + 96, 96)]
    assert sum(len(three.steps_of(q)) for q in range(3)) == plan.n_loads


@pytest.mark.parametrize("make, message", [
    (lambda: partition_volume(sf.plan_regular_grid((20, 8, 8), 8, 2, mask=np.ones((2, 2, 2), bool))[0], 2),
     "has a mask"),
    (lambda: partition_volume(sf.plan_regular_grid((20, 8, 8), 8, 2)[0], 0), "parts=0"),
    (lambda: partition_volume(sf.plan_regular_grid((20, 8), 8, 2)[0], 2), "must be a VolumePlan"),
    (lambda: partition_plan(sf.plan_from_grid(np.array([[[[0, 0, 0, 4, 4, 4]]], [[[6, 0, 0, 9, 4, 4]]]])), 2),
     "leave voxels uncovered"),
])
def test_bad_partitions_are_refused_with_one_line(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("window", ["pyramid", "hann"])
def test_the_merged_volume_matches_the_numpy_reference(window):
    from reference import reference_blend_nd, separable_window

    from seamless_fast.windows import window_1d

    plan, _ = sf.plan_regular_grid((33, 14, 11), (9, 8, 6), (3, 2, 2), window=window)
    boxes = plan.tile_boxes
    windows = [separable_window(lambda n: window_1d(window, n), (b[3:] - b[:3]).tolist()) for b in boxes]

    def tiles(box):
        return tile_for(box, 2, np.float64, False, 3)

    expected, covered = reference_blend_nd(boxes, [np.nan_to_num(tiles(b)) for b in boxes], windows, plan.image_size)
    assert covered.all()
    for parts in range(2, len(allowed_cuts(plan)) + 2):
        got = parted_run(plan, parts, lambda box: np.nan_to_num(tiles(box)), False, False)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
