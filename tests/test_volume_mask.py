"""Masks over volumes: the cells a mask meets (against a brute-force reference), the tiles they need, and masked
runs equal to the whole volume's run bit for bit in every written cell, the rest of the output untouched."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seamless_fast as sf
from seamless_fast.plan._volume_mask import volume_selection


def upsampled(mask, size):
    """The mask at voxel resolution by the footprint rule: voxel v meets mask pixels floor(v m / S) to
    ceil((v + 1) m / S) - 1 on every axis."""
    out = np.asarray(mask, bool)
    for axis, (s, m) in enumerate(zip(size, out.shape)):
        v = np.arange(s)
        lo, hi = (v * m) // s, -((-(v + 1) * m) // s)
        out = np.stack([np.take(out, range(lo[i], hi[i]), axis=axis).any(axis=axis) for i in range(s)], axis=axis)
    return out


def brute_selection(plan, mask):
    voxels = upsampled(mask, plan.image_size)
    cells = plan.cell_boxes
    selected = np.array([voxels[c[0]:c[3], c[1]:c[4], c[2]:c[5]].any() for c in cells])
    region = np.zeros(plan.image_size, bool)
    for c in cells[selected]:
        region[c[0]:c[3], c[1]:c[4], c[2]:c[5]] = True
    needed = np.array([region[t[0]:t[3], t[1]:t[4], t[2]:t[5]].any() for t in plan.tile_boxes])
    return selected, needed


plans = st.tuples(st.tuples(*[st.integers(3, 40)] * 3), st.tuples(*[st.integers(3, 20)] * 3), st.data())


def draw_plan(size, tile, data):
    overlap = tuple(data.draw(st.integers(0, t - 1)) for t in tile)
    mask_shape = tuple(data.draw(st.integers(1, s)) for s in size)
    density = data.draw(st.sampled_from([0.01, 0.1, 0.5]))
    mask = np.random.default_rng(data.draw(st.integers(0, 2**31))).random(mask_shape) < density
    if not mask.any():
        mask.flat[data.draw(st.integers(0, mask.size - 1))] = True
    return overlap, mask


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans)
def test_selection_equals_the_brute_force_reference(case):
    size, tile, data = case
    overlap, mask = draw_plan(size, tile, data)
    plan, _ = sf.plan_regular_grid(size, tile, overlap)
    selected, needed = volume_selection(mask, plan.image_size, plan.tile_boxes, plan.cell_boxes, plan.grid_shape)
    want_selected, want_needed = brute_selection(plan, mask)
    np.testing.assert_array_equal(selected.reshape(-1), want_selected)
    np.testing.assert_array_equal(needed.reshape(-1), want_needed)


def tile_model(box, channels, channel_first):
    """A model whose output depends on where its tile is: the blend of overlaps shows."""
    d, h, w = (box[3:] - box[:3]).tolist()
    z, y, x = np.meshgrid(*(np.arange(lo, lo + n) for lo, n in zip(box[:3].tolist(), (d, h, w))), indexing="ij")
    values = np.stack([np.sin(0.3 * z + 0.2 * y - 0.1 * x + k + box[:3].sum()) for k in range(channels)], axis=-1)
    values = values.astype(np.float32)
    return np.moveaxis(values, -1, 0).copy() if channel_first else values


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans, st.booleans(), st.booleans(), st.integers(1, 5))
def test_masked_runs_equal_the_whole_run_in_written_cells(case, labels, channel_first, channels):
    size, tile, data = case
    overlap, mask = draw_plan(size, tile, data)
    whole, _ = sf.plan_regular_grid(size, tile, overlap, window="hann")
    masked, _ = sf.plan_regular_grid(size, tile, overlap, window="hann", mask=mask)
    options = dict(labels=labels, channel_first=channel_first)
    expected = sf.blend(whole, [tile_model(b, channels, channel_first) for b in whole.tile_boxes[whole.load_order]],
                        **options)
    tiles = [tile_model(b, channels, channel_first) for b in masked.tile_boxes[masked.load_order]]
    assert len(tiles) == masked.n_loads <= whole.n_loads
    out = np.full_like(expected, 7)
    sf.blend(masked, tiles, out=out, **options)
    written = np.zeros(size, bool)
    for c in masked.cell_boxes[masked.write_cells]:
        written[c[0]:c[3], c[1]:c[4], c[2]:c[5]] = True
    np.testing.assert_array_equal(written, brute_written(whole, mask))
    voxels = written if labels or not channel_first else np.broadcast_to(written, expected.shape)
    if not labels and not channel_first:
        voxels = np.broadcast_to(written[..., None], expected.shape)
    np.testing.assert_array_equal(out[voxels], expected[voxels])
    assert (out[~voxels] == 7).all(), "a cell the mask does not meet was written"


def brute_written(plan, mask):
    selected, _ = brute_selection(plan, mask)
    region = np.zeros(plan.image_size, bool)
    for c in plan.cell_boxes[selected]:
        region[c[0]:c[3], c[1]:c[4], c[2]:c[5]] = True
    return region


def test_a_mask_that_skips_whole_layers_and_the_cells_it_emits():
    plan, _ = sf.plan_regular_grid((60, 30, 30), (16, 16, 16), (4, 4, 4))
    mask = np.zeros((6, 3, 3), bool)
    mask[5, 2, 2] = True  # the far corner only: the first layers load nothing
    masked, _ = sf.plan_regular_grid((60, 30, 30), (16, 16, 16), (4, 4, 4), mask=mask)
    assert masked.n_loads < plan.n_loads and masked.tile_boxes[masked.load_order][:, 0].min() > 0
    with sf.Blender(masked) as blender:
        cells = [cell for _ in range(masked.n_loads) for cell in blender.push(np.ones(blender.next_tile_shape + (2,)))]
    assert sorted(tuple(c.box) for c in cells) == sorted(map(tuple, masked.cell_boxes[masked.write_cells].tolist()))
    assert all(np.allclose(c.data, 1.0) for c in cells)


@pytest.mark.parametrize("mask, message", [
    (np.zeros((3, 3), bool), "mask"),
    (np.zeros((80, 3, 3), bool), "mask"),
])
def test_bad_masks_are_refused_in_one_line(mask, message):
    with pytest.raises(ValueError, match=message) as error:
        sf.plan_regular_grid((60, 30, 30), 16, 4, mask=mask)
    assert "\n" not in str(error.value)
