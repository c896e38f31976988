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
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request):
    return request.param, Scenario(**SCENARIOS[request.param])


def test_blend(benchmark, scenario):
    name, s = scenario
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.blend)


def test_blend_serial(benchmark, scenario):
    name, s = scenario
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.blend, parallel=False)


def test_blend_into_image(benchmark, scenario):
    name, s = scenario
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.blend_into_image, setup=s.prepare_image)


def test_blend_batches(benchmark, scenario):
    name, s = scenario
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.blend_batches, setup=s.prepare_image)


def test_blend_labels(benchmark, scenario):
    name, s = scenario
    if name not in ("canonical", "channels8"):
        pytest.skip("labels are measured on the canonical and 8-channel scenarios")
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.blend, labels=True)


def test_blend_labels_into_image(benchmark, scenario):
    name, s = scenario
    if name not in ("canonical", "channels8"):
        pytest.skip("labels are measured on the canonical and 8-channel scenarios")
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.blend_into_image, labels=True, setup=lambda: s.prepare_image(labels=True))


def test_copyto_hot(benchmark, scenario):
    name, s = scenario
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.copyto_hot)


def test_copyto_image(benchmark, scenario):
    name, s = scenario
    if s.layout == "chw":
        pytest.skip("copy into an (H, W, C) image only")
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.copyto_image, setup=s.prepare_image)


def test_numpy_reference(benchmark, scenario):
    name, s = scenario
    if s.layout == "chw":
        pytest.skip("the numpy reference takes (H, W, C) tiles")
    benchmark.group = name
    benchmark.extra_info["tiles"] = s.n_tiles
    run(benchmark, s.numpy_reference)
