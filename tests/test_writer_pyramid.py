"""TiffWriter(pyramid=...): reduced levels streamed as the rows complete, against a plain numpy reference."""

import collections
import gc
import os
import threading
import warnings

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from seamless_fast.io import TiffWriter  # noqa: E402
from seamless_fast.io._pyramid import level_sizes, reduce2  # noqa: E402


def reference_reduce(image, resampling, nodata=None):
    """One level down, pixel by pixel: each output pixel from the (up to) 2 x 2 block it covers."""
    height, width = image.shape[:2]
    out = np.empty(((height + 1) // 2, (width + 1) // 2) + image.shape[2:], image.dtype)
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            block = image[2 * y:2 * y + 2, 2 * x:2 * x + 2]
            for index in np.ndindex(image.shape[2:]):
                values = [v for v in block[(...,) + index].ravel().tolist()
                          if nodata is None or not (v == nodata or (np.isnan(nodata) and np.isnan(v)))]
                out[(y, x) + index] = reference_value(block[(0, 0) + index], values, resampling, nodata, image.dtype)
    return out


def reference_value(top_left, values, resampling, nodata, dtype):
    if resampling == "nearest":
        return top_left
    if not values:
        return nodata
    if resampling == "mode":
        counts = collections.Counter(values)
        best = max(counts.values())
        return min(v for v, n in counts.items() if n == best)
    mean = sum(float(v) for v in values) / len(values)
    return round(mean) if np.dtype(dtype).kind != "f" else mean  # Python's round: half to even


def reference_levels(image, sizes, resampling, nodata=None):
    levels = [image]
    for _ in sizes:
        levels.append(reference_reduce(levels[-1], resampling, nodata))
    return levels


def write_image(path, image, *, cell=(40, 56), order="rows", **options):
    height, width = image.shape[:2]
    boxes = [(y, x, min(y + cell[0], height), min(x + cell[1], width))
             for y in range(0, height, cell[0]) for x in range(0, width, cell[1])]
    if order == "shuffled":
        boxes = [boxes[i] for i in np.random.default_rng(1).permutation(len(boxes))]
    held = []
    with TiffWriter(path, (height, width), channels=image.shape[2] if image.ndim == 3 else None,
                    dtype=image.dtype, **options) as writer:
        for box in boxes:
            writer.write(box, image[box[0]:box[2], box[1]:box[3]])
            held.append(writer.pyramid_held_rows)
        sizes = writer.level_sizes
    return sizes, held


def random_image(dtype, shape, rng):
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, 4 if dtype == np.uint32 else np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype, channels, resampling", [
    (np.uint8, None, "mode"), (np.uint32, None, "mode"), (np.uint16, None, "nearest"),
    (np.float32, 3, "mean"), (np.float16, None, "mean"), (np.uint8, 2, "mean"), (np.uint16, None, "mean"),
    (np.float32, 1, "mean")])
@pytest.mark.parametrize("size", [(77, 101), (64, 96)])
def test_levels_equal_the_reference(tmp_path, dtype, channels, resampling, size):
    rng = np.random.default_rng(size[0] + len(str(dtype)))
    shape = size + (() if channels is None else (channels,))
    image = random_image(dtype, shape, rng)
    if resampling == "mode":  # few labels, so that blocks have modes and ties
        image = (image % 3).astype(dtype)
    path = tmp_path / "out.tif"
    sizes, _ = write_image(path, image, tile=(16, 16), pyramid=True, resampling=resampling, compression="zlib")
    assert sizes == level_sizes(size, (16, 16), True) and len(sizes) == 3
    expected = reference_levels(image, sizes, resampling)
    if channels == 1:  # stored as a 2-D image
        expected = [e[..., 0] for e in expected]
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        assert [level.shape for level in levels] == [e.shape for e in expected]
        for level, reference in zip(levels, expected):
            np.testing.assert_array_equal(level.asarray(), reference)


@pytest.mark.parametrize("dtype, nodata, resampling", [(np.uint8, 7, "mode"), (np.float32, np.nan, "mean"),
                                                        (np.uint16, 65535, "mean"), (np.float32, -1.0, "mean")])
def test_nodata_takes_no_part_in_the_levels(tmp_path, dtype, nodata, resampling):
    rng = np.random.default_rng(4)
    image = random_image(dtype, (70, 50), rng)
    if resampling == "mode":
        image %= 3
    image[rng.random(image.shape) < 0.4] = nodata
    image[:8, :8] = nodata  # whole blocks of nodata: nodata in every level
    path = tmp_path / "out.tif"
    sizes, _ = write_image(path, image, tile=(16, 16), pyramid=2, nodata=nodata, resampling=resampling)
    expected = reference_levels(image, sizes, resampling, nodata=nodata)
    with tifffile.TiffFile(path) as tif:
        for level, reference in zip(tif.series[0].levels, expected):
            np.testing.assert_array_equal(level.asarray(), reference)


def test_defaults_mode_for_integers_mean_for_floats():
    block = np.array([[1, 1], [2, 4]], np.uint8)
    assert reduce2(block, "mode")[0, 0] == 1
    assert TiffWriter.__init__.__kwdefaults__["resampling"] is None
    from seamless_fast.io._pyramid import check_resampling

    assert check_resampling(None, np.uint8) == "mode" and check_resampling(None, np.float16) == "mean"


def test_unwritten_pixels_are_fill_in_every_level(tmp_path):
    path = tmp_path / "out.tif"
    with TiffWriter(path, (64, 64), tile=(16, 16), pyramid=True, fill=9) as writer:
        writer.write((0, 0, 20, 64), np.ones((20, 64), np.uint8))
    with tifffile.TiffFile(path) as tif:
        levels = [level.asarray() for level in tif.series[0].levels]
    assert (levels[1][:10] == 1).all() and (levels[1][10:] == 9).all() and (levels[2][5:] == 9).all()


def test_shuffled_cells_give_the_same_file_levels(tmp_path):
    image = random_image(np.uint8, (90, 70), np.random.default_rng(2)) % 4
    write_image(tmp_path / "a.tif", image, tile=(16, 16), pyramid=True)
    write_image(tmp_path / "b.tif", image, tile=(16, 16), pyramid=True, order="shuffled")
    with tifffile.TiffFile(tmp_path / "a.tif") as a, tifffile.TiffFile(tmp_path / "b.tif") as b:
        assert len(a.series[0].levels) == len(b.series[0].levels) == 4
        for level_a, level_b in zip(a.series[0].levels, b.series[0].levels):
            np.testing.assert_array_equal(level_a.asarray(), level_b.asarray())


@pytest.mark.parametrize("ome", [False, True])
def test_subifd_levels_open_in_tifffile_and_gdal(tmp_path, ome):
    rasterio = pytest.importorskip("rasterio")
    image = random_image(np.uint8, (100, 120), np.random.default_rng(3))
    path = tmp_path / "out.tif"
    write_image(path, image, tile=(16, 16), pyramid=2, ome=ome)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome == ome and len(tif.pages) == 1 and len(tif.pages[0].subifds) == 2
        assert [level.shape for level in tif.series[0].levels] == [(100, 120), (50, 60), (25, 30)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning
        with rasterio.open(path) as dataset:
            assert dataset.overviews(1) == [2, 4]


def test_held_rows_stay_bounded_against_height(tmp_path):
    """Each level holds at most one tile row of its own, however tall the image."""
    peaks = []
    for height in (64, 512):
        image = np.zeros((height, 80), np.uint8)
        sizes, held = write_image(tmp_path / f"out{height}.tif", image, cell=(16, 80), tile=(16, 16), pyramid=3)
        assert len(sizes) == 3
        peaks.append(max(max(h) for h in held))
    assert peaks == [16, 16]


def test_pyramid_rows_reach_the_levels_as_rows_complete(tmp_path):
    """Each tile row of level 0 is reduced into level 1 when it completes; level 2 gets a tile row of level 1
    when that completes (every second one), not at close."""
    sent = []
    original = TiffWriter._send

    def spy(self, buffer):
        original(self, buffer)
        sent.append(tuple(level.rows for level in self._pyramid.levels))

    image = np.zeros((128, 32), np.uint8)
    writer = TiffWriter(tmp_path / "out.tif", (128, 32), tile=(16, 16), pyramid=2)
    writer._send = spy.__get__(writer)
    for top in range(0, 128, 16):
        writer.write((top, 0, top + 16, 32), image[top:top + 16])
    writer.close()
    assert sent == [(8 * (i + 1), 8 * ((i + 1) // 2)) for i in range(8)]


def partials(folder):
    return [name for name in os.listdir(folder) if "partial" in name]


def test_abort_removes_the_level_files(tmp_path):
    path = tmp_path / "out.tif"
    with pytest.raises(KeyError):
        with TiffWriter(path, (64, 64), tile=(16, 16), pyramid=True) as writer:
            assert len(partials(tmp_path)) == 3  # the image and its two levels
            writer.write((0, 0, 32, 64), np.ones((32, 64), np.uint8))
            raise KeyError("stop")
    assert os.listdir(tmp_path) == []


def test_forgotten_pyramid_writer_leaves_nothing(tmp_path):
    writer = TiffWriter(tmp_path / "out.tif", (64, 64), tile=(16, 16), pyramid=True)
    writer.write((0, 0, 32, 64), np.ones((32, 64), np.uint8))
    del writer
    gc.collect()
    for thread in threading.enumerate():
        if thread.name.startswith("TiffWriter"):
            thread.join(timeout=5)
    assert os.listdir(tmp_path) == []


def test_failure_while_encoding_a_level_leaves_nothing(tmp_path, monkeypatch):
    original = tifffile.TiffWriter.write

    def failing_write(self, data=None, **kwargs):
        if kwargs.get("shape", (0,))[0] == 32 and not kwargs.get("subfiletype"):  # level 1, in its temporary file
            next(data)
            raise OSError("disk full")
        return original(self, data, **kwargs)

    monkeypatch.setattr(tifffile.TiffWriter, "write", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        with TiffWriter(tmp_path / "out.tif", (64, 64), tile=(16, 16), pyramid=True) as writer:
            for top in range(0, 64, 16):
                writer.write((top, 0, top + 16, 64), np.ones((16, 64), np.uint8))
    assert os.listdir(tmp_path) == []


def test_failure_while_copying_the_levels_leaves_nothing(tmp_path, monkeypatch):
    original = tifffile.TiffWriter.write

    def failing_write(self, data=None, **kwargs):
        if kwargs.get("subfiletype") == 1:
            raise OSError("disk full at the levels")
        return original(self, data, **kwargs)

    monkeypatch.setattr(tifffile.TiffWriter, "write", failing_write)
    path = tmp_path / "out.tif"
    path.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full at the levels"):
        with TiffWriter(path, (64, 64), tile=(16, 16), pyramid=True) as writer:
            writer.write((0, 0, 64, 64), np.ones((64, 64), np.uint8))
    assert os.listdir(tmp_path) == ["out.tif"] and path.read_bytes() == b"old"


def test_level_sizes():
    assert level_sizes((100, 40), (16, 16), True) == [(50, 20), (25, 10), (13, 5)]
    assert level_sizes((16, 16), (16, 16), True) == []
    assert level_sizes((5, 3), (16, 16), 3) == [(3, 2), (2, 1), (1, 1)]
    assert level_sizes((5, 3), (16, 16), False) == level_sizes((5, 3), (16, 16), 0) == []


@pytest.mark.parametrize("options, message", [
    (dict(pyramid=-1), r"pyramid=-1: expected True, False or a number of levels >= 0"),
    (dict(pyramid="yes"), r"pyramid='yes' is not True, False or a number of levels"),
    (dict(pyramid=2.5), r"pyramid=2.5 is not True, False or a number of levels"),
    (dict(pyramid=9), r"pyramid=9: an image of size \(40, 40\) has only 6 reduced levels before 1 x 1"),
    (dict(pyramid=True, resampling="max"), r"resampling='max' is not supported; expected one of"),
])
def test_bad_pyramid_options_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message) as info:
        TiffWriter(tmp_path / "out.tif", (40, 40), tile=(16, 16), **options)
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("geo", [False, True], ids=["subifds", "overviews"])
def test_image_reader_reads_level_0_of_a_pyramid_output(tmp_path, geo):
    from seamless_fast.io import GeoReference, ImageReader

    georeference = GeoReference(pixel_scale=(10, 10, 0), tiepoints=(0, 0, 0, 500000, 4e6, 0),
                                geokeys=(1, 1, 0, 1, 3072, 0, 1, 32633)) if geo else None
    image = random_image(np.uint16, (70, 90, 2), np.random.default_rng(6))
    path = tmp_path / "out.tif"
    write_image(path, image, tile=(16, 16), pyramid=True, georeference=georeference, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == (4 if geo else 1) and len(tif.series[0].levels) == 4
    with ImageReader(path) as reader:
        assert reader.shape == (70, 90) and reader.channels == 2 and reader.georeference == georeference
        np.testing.assert_array_equal(reader.read((0, 0, 70, 90)), image)


def test_profiling_script_runs(tmp_path):
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling",
                          "pyramid_memory.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(script)),
                                                                    os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, script, "--quick", "--width", "512"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "peak RSS MiB" in lines[0] and len(lines) == 5


@pytest.mark.parametrize("pyramid", [False, True])
def test_many_tifffile_threads_encode_rows_as_they_arrive(tmp_path, monkeypatch, pyramid):
    """With several encoding threads (tifffile uses half the cores; this test asks for 8), tifffile took
    every tile of a page before encoding any (up to 512 MiB): memory grew with the image height. Given a
    buffersize of one tile row, it encodes and writes rows as they arrive."""
    import time

    monkeypatch.setenv("TIFFFILE_NUM_THREADS", "8")
    band = np.random.default_rng(0).integers(0, 255, (256, 512), dtype=np.uint8)
    writer = TiffWriter(tmp_path / "out.tif", (256 * 16, 512), tile=(256, 256), compression="zlib",
                        pyramid=pyramid)
    try:
        partial = writer._temp_path  # the image's, not a level's
        empty = os.path.getsize(partial)
        for top in range(0, 256 * 8, 256):
            writer.write((top, 0, top + 256, 512), band)
        deadline = time.monotonic() + 60
        while os.path.getsize(partial) < empty + 4 * band.nbytes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(partial) >= empty + 4 * band.nbytes  # random bytes: zlib keeps their size
    finally:
        writer.abort()
    assert os.listdir(tmp_path) == []
