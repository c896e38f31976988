"""run_dask on a LocalCluster of 2 worker processes: equal to one process, also with a worker killed."""

import os
import signal
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")

import seamless_fast as sf  # noqa: E402
from seamless_fast.scale.distributed import run_dask  # noqa: E402
from seamless_fast.io import ImageReader  # noqa: E402

SIZE, TILE, OVERLAP = (300, 260), 64, 16


def segmenter(batch):
    """Stand-in model, tile by tile (so batching does not change its numbers); sleeps when asked to."""
    marker = os.environ.get("SEAMLESS_FAST_TEST_MARKER")
    if marker:
        with open(os.path.join(marker, str(os.getpid())), "w"):
            pass
        time.sleep(0.5)
    tiles = np.ascontiguousarray(batch, np.float32)
    return np.stack([np.concatenate([t[:1] - t[:1].mean(), t[1:2] * 2 - 1, t[2:3] - 0.5]) for t in tiles])


def factory():
    return segmenter


def set_marker(folder):
    """Run on each worker: from now on the model leaves a file named by its process id in `folder`."""
    if folder is None:
        os.environ.pop("SEAMLESS_FAST_TEST_MARKER", None)
    else:
        os.environ["SEAMLESS_FAST_TEST_MARKER"] = folder


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "in.tif"
    tifffile.imwrite(path, np.random.default_rng(5).random(SIZE + (3,), np.float32), tile=(64, 64),
                    photometric="rgb")
    return path


@pytest.fixture(scope="module")
def expected(image_path):
    plan, _ = sf.plan_regular_grid(SIZE, TILE, OVERLAP)
    out = {}
    with ImageReader(str(image_path)) as reader:
        for labels in (False, True):
            image = np.zeros(SIZE if labels else (3,) + SIZE, np.uint8 if labels else np.float32)
            tiles = (segmenter(reader.read(b).transpose(2, 0, 1)[None])[0] for b in plan.tile_boxes[plan.load_order])
            sf.blend(plan, tiles, out=image, labels=labels, channel_first=True)
            out[labels] = image if labels else image.transpose(1, 2, 0)
    return out


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.parametrize("labels", [False, True])
def test_dask_run_equals_the_single_process_run(tmp_path, image_path, expected, client, labels):
    output = tmp_path / ("out.zarr" if labels else "out.tif")
    result = run_dask(str(image_path), factory, tmp_path / "parts.zarr", tile_size=TILE, overlap=OVERLAP, parts=3,
                      labels=labels, output=output, client=client)
    got = zarr.open_array(output, mode="r")[:] if labels else tifffile.imread(output)
    np.testing.assert_array_equal(got, expected[labels])
    assert [r.part for r in result.parts] == [0, 1, 2]
    assert sum(r.tiles for r in result.parts) == sf.plan_regular_grid(SIZE, TILE, OVERLAP)[0].n_loads
    assert 0 < result.seam_bytes


def test_dask_takes_arrays_and_zarr_folders(tmp_path, image_path, expected, client):
    image = tifffile.imread(image_path)
    dask_array = pytest.importorskip("dask.array").from_array(image, chunks=(100, 100, 3))
    zarr.create_array(tmp_path / "in.zarr", data=image, chunks=(128, 128, 3))
    for n, source in enumerate([image, dask_array, str(tmp_path / "in.zarr")]):
        output = tmp_path / f"out{n}.zarr"
        run_dask(source, factory, tmp_path / f"parts{n}.zarr", tile_size=TILE, overlap=OVERLAP, labels=False,
                 output=output, client=client)
        np.testing.assert_array_equal(zarr.open_array(output, mode="r")[:], expected[False])


def test_a_worker_killed_midway_changes_nothing(tmp_path, image_path, expected, client, monkeypatch):
    """Kill the process of the first worker that starts a tile; Dask runs its part again elsewhere."""
    markers = tmp_path / "markers"
    markers.mkdir()
    client.run(set_marker, str(markers))
    killed, finished = [], threading.Event()

    def kill_first_worker():
        while not killed and not finished.is_set():
            for name in os.listdir(markers):
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
                break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    try:
        run_dask(str(image_path), factory, tmp_path / "parts.zarr", tile_size=TILE, overlap=OVERLAP, parts=2,
                 labels=True, output=tmp_path / "out.zarr", client=client)
    finally:
        finished.set()
        killer.join()
        client.run(set_marker, None)
    assert killed, "no worker was killed"
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], expected[True])


def test_run_dask_refuses_bad_input_before_starting(tmp_path):
    with pytest.raises(ValueError, match="model_factory=3 is not callable"):
        run_dask("in.tif", 3, tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="does not exist"):
        run_dask(str(tmp_path / "missing.tif"), factory, tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="client='local' is not a distributed.Client"):
        run_dask(np.zeros((10, 10)), factory, tmp_path / "s.zarr", client="local")


@pytest.mark.parametrize("output, options, message", [
    ("s.zarr", {}, "is the input"),
    ("in.tif", {}, "is the input"),
    ("s.zarr/out.zarr", {}, "lies inside the input"),
    ("out.png", {}, r"expected a .tif, .tiff or .zarr name"),
    ("plain", {}, r"expected a .tif, .tiff or .zarr name"),
    ("plain.zarr", {}, "is an existing folder"),
    ("out.tif", {"output_dtype": "int8"}, "dtype='int8' is not supported"),
    ("out.tif", {"output_dtype": "float32"}, "does not store labels"),
    ("out.tif", {"compression": "lzw"}, "compression='lzw' is not supported"),
])
def test_run_dask_refuses_a_bad_output_before_any_part_runs(tmp_path, output, options, message):
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((64, 64, 3), np.float32), photometric="rgb")
    (tmp_path / "plain.zarr").mkdir()
    if output.startswith("s.zarr"):  # an existing store of another run
        from seamless_fast.scale.store import Job, PartStore

        PartStore(tmp_path / "s.zarr", Job.from_options((64, 64), 32, 8, parts=1))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=message):
        run_dask(str(tmp_path / "in.tif"), factory, tmp_path / "s.zarr", output=tmp_path / output,
                 **options)
    assert sorted(os.listdir(tmp_path)) == before


def test_run_dask_runs_a_damaged_part_again(tmp_path, image_path, expected, client):
    store = tmp_path / "parts.zarr"
    run_dask(str(image_path), factory, store, tile_size=TILE, overlap=OVERLAP, parts=3, labels=True,
             output=tmp_path / "first.zarr", client=client)
    os.remove(store / "part1" / "zarr.json")  # part 1 no longer complete
    chunk = next((store / "part2" / "rows" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.write_bytes(chunk.read_bytes()[:-1])  # part 2 complete, but one of its chunks truncated
    result = run_dask(str(image_path), factory, store, tile_size=TILE, overlap=OVERLAP, parts=3, labels=True,
                      output=tmp_path / "second.zarr", client=client)
    assert [r.part for r in result.parts] == [0, 1, 2]
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "second.zarr", mode="r")[:], expected[True])


def shrinker(batch):
    """A model that reads 8 pixels of context and returns tiles half the size: crop, then 2 x 2 means."""
    tiles = np.ascontiguousarray(batch, np.float32)[:, :, 8:-8, 8:-8]
    b, c, h, w = tiles.shape
    return tiles.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5)) + batch.mean(axis=(2, 3))[:, :, None, None]


def shrinker_factory():
    return shrinker


def test_dask_run_with_context_and_output_scale(tmp_path, image_path, client):
    plan, _ = sf.plan_regular_grid(SIZE, TILE, OVERLAP, context=8, output_scale=2)
    expected = np.zeros(plan.image_size + (3,), np.float32)

    def write_cells(cells):
        for cell in cells:
            expected[cell.slices] = np.moveaxis(cell.data, 0, -1)

    with ImageReader(str(image_path)) as reader:
        sf.run_pipeline(plan, reader.read, shrinker, write_cells)
    result = run_dask(str(image_path), shrinker_factory, tmp_path / "parts.zarr", tile_size=TILE, overlap=OVERLAP,
                      parts=2, labels=False, output=tmp_path / "out.zarr", client=client, context=8, output_scale=2)
    got = zarr.open_array(tmp_path / "out.zarr", mode="r")[:]
    assert got.shape == (150, 130, 3) and result.output_bytes == 150 * 130 * 3 * 4
    np.testing.assert_array_equal(got, expected)


def test_dask_run_of_a_volume_equals_the_single_process_run(tmp_path, client):
    volume = np.random.default_rng(6).random((30, 21, 17, 3), np.float32)
    tile, overlap = (8, 12, 10), (2, 4, 3)
    plan, _ = sf.plan_regular_grid(volume.shape[:3], tile, overlap)
    with sf.io.VolumeReader(volume, pad="reflect") as reader:
        tiles = [segmenter(np.moveaxis(reader.read(box), -1, 0)[None])[0] for box in plan.read_boxes().tolist()]
    expected = sf.blend(plan, tiles, labels=True, channel_first=True)
    result = run_dask(volume, factory, tmp_path / "parts.zarr", tile_size=tile, overlap=overlap, parts=3,
                      output=tmp_path / "out.zarr", client=client)
    with sf.io.VolumeReader(str(tmp_path / "out.zarr")) as reader:
        got = reader.read((0, 0, 0) + reader.shape)[..., 0]
    np.testing.assert_array_equal(got, expected)
    assert [r.part for r in result.parts] == [0, 1, 2] and result.output_bytes == 30 * 21 * 17
