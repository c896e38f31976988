"""Blend throughput against np.copyto of the same bytes and against the plain numpy blend.

Run with ``pytest benchmarks/ --benchmark-enable``; in the default test run
each case executes once as a smoke test.
"""

import numpy as np
import pytest
import tifffile

from scenarios import Scenario, run

SCENARIOS = {
    "canonical": dict(image_size=(4096, 4096), tile=256, overlap=64, channels=3),
    "channels8": dict(image_size=(4096, 4096), tile=256, overlap=64, channels=8),
    "tile512": dict(image_size=(4096, 4096), tile=512, overlap=128, channels=2),
    "float16": dict(image_size=(4096, 4096), tile=256, overlap=64, channels=3, dtype=np.float16),
    "channel_first": dict(image_size=(4096, 4096), tile=256, overlap=64, channels=3, layout="chw"),
    "small_tiles": dict(image_size=(2048, 2048), tile=64, overlap=16, channels=1),
    # many classes, as a segmentation model with 21 outputs gives (a smaller image keeps the output at 350 MB)
    "classes21": dict(image_size=(2048, 2048), tile=256, overlap=64, channels=21),
    # the width of the images this library is for: a row of tiles no longer fits in the cache
    "wide": dict(image_size=(1024, 40960), tile=256, overlap=64, channels=3),
}
LABELS_SCENARIOS = ("canonical", "channels8", "channel_first", "classes21")


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request):
    return request.param, Scenario(**SCENARIOS[request.param])


# case name -> (method of Scenario, keyword arguments, method of Scenario preparing its output or None)
CASES = {
    "blend": ("blend", {}, None),
    "blend_serial": ("blend", {"parallel": False}, None),
    "run_plan": ("run_plan", {}, None),
    "blend_into_image": ("blend_into_image", {}, "prepare_image"),
    "blend_batches": ("blend_batches", {}, "prepare_image"),
    "blend_to_tiff": ("blend_to_tiff", {}, "prepare_tiff"),
    "blend_labels": ("blend", {"labels": True}, None),
    "blend_labels_into_image": ("blend_into_image", {"labels": True}, "prepare_image"),
    "blend_labels_to_tiff": ("blend_to_tiff", {"labels": True}, "prepare_tiff"),
    "copyto_hot": ("copyto_hot", {}, None),
    "copyto_image": ("copyto_image", {}, "prepare_image"),
    "numpy_reference": ("numpy_reference", {}, None),
}
# writing 200 MB of float32 a round, so on one scenario only
TIFF_SCENARIOS = ("canonical",)
# run_plan against Blender.push where Python's share is largest (small tiles), and on the canonical tiles
RUN_PLAN_SCENARIOS = ("canonical", "small_tiles")


def _skip_reason(case, name, s):
    if "labels" in case and name not in LABELS_SCENARIOS:
        return f"labels are measured on the {', '.join(LABELS_SCENARIOS)} scenarios"
    if "tiff" in case and name not in TIFF_SCENARIOS:
        return f"TIFF output is measured on the {', '.join(TIFF_SCENARIOS)} scenario"
    if case == "run_plan" and name not in RUN_PLAN_SCENARIOS:
        return f"run_plan is measured on the {', '.join(RUN_PLAN_SCENARIOS)} scenarios"
    if case in ("copyto_image", "numpy_reference") and s.layout == "chw":
        return "this baseline takes (H, W, C) tiles"
    return None


@pytest.mark.parametrize("case", list(CASES))
def test_case(benchmark, scenario, case):
    name, s = scenario
    reason = _skip_reason(case, name, s)
    if reason:
        pytest.skip(reason)
    method, kwargs, prepare = CASES[case]
    benchmark.group = name
    benchmark.name = f"test_{case}[{name}]"
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, getattr(s, method), setup=s.setup_for(prepare, kwargs.get("labels", False)), **kwargs)
    if prepare == "prepare_tiff":  # the file of the last round is whole
        with tifffile.TiffFile(s._tiff_path) as tif:
            expected = s.plan.image_size if kwargs.get("labels") else s.plan.image_size + (s.channels,)
            assert tif.series[0].shape == expected
