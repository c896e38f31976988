"""Blend throughput against np.copyto of the same bytes and against the plain numpy blend.

Run with ``pytest benchmarks/ --benchmark-enable``; in the default test run
each case executes once as a smoke test.
"""

import numpy as np
import pytest

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
}
LABELS_SCENARIOS = ("canonical", "channels8", "channel_first", "classes21")


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request):
    return request.param, Scenario(**SCENARIOS[request.param])


# case name -> (method of Scenario, keyword arguments, whether it needs the output image prepared)
CASES = {
    "blend": ("blend", {}, False),
    "blend_serial": ("blend", {"parallel": False}, False),
    "blend_into_image": ("blend_into_image", {}, True),
    "blend_batches": ("blend_batches", {}, True),
    "blend_labels": ("blend", {"labels": True}, False),
    "blend_labels_into_image": ("blend_into_image", {"labels": True}, True),
    "copyto_hot": ("copyto_hot", {}, False),
    "copyto_image": ("copyto_image", {}, True),
    "numpy_reference": ("numpy_reference", {}, False),
}


def _skip_reason(case, name, s):
    if "labels" in case and name not in LABELS_SCENARIOS:
        return f"labels are measured on the {', '.join(LABELS_SCENARIOS)} scenarios"
    if case in ("copyto_image", "numpy_reference") and s.layout == "chw":
        return "this baseline takes (H, W, C) tiles"
    return None


@pytest.mark.parametrize("case", list(CASES))
def test_case(benchmark, scenario, case):
    name, s = scenario
    reason = _skip_reason(case, name, s)
    if reason:
        pytest.skip(reason)
    method, kwargs, needs_image = CASES[case]
    benchmark.group = name
    benchmark.name = f"test_{case}[{name}]"
    benchmark.extra_info["tiles"] = s.n_tiles
    setup = (lambda: s.prepare_image(labels=kwargs.get("labels", False))) if needs_image else None
    run(benchmark, getattr(s, method), setup=setup, **kwargs)
