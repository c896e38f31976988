"""Tests of seamless_fast.io: windowed TIFF/array reading and streamed tiled TIFF writing."""

import gc
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import seamless_fast
from seamless_fast.io import ImageReader, TiffWriter, metadata_for_output

tifffile = pytest.importorskip("tifffile")

try:
    import imagecodecs
    HAVE_ZSTD = imagecodecs.ZSTD.available
    HAVE_JPEG = imagecodecs.JPEG8.available
except ImportError:
    HAVE_ZSTD = HAVE_JPEG = False

PAD_MODES = ("reflect", "edge", "constant")
FILL = 7


# --------------------------------------------------------------------------- helpers

def expected_window(image, box, pad, fill=FILL):
    """The window of `image` (H, W, C) as numpy.pad then slicing gives it."""
    ylo, xlo, yhi, xhi = box
    height, width = image.shape[:2]
    widths = [(max(0, -ylo), max(0, yhi - height)), (max(0, -xlo), max(0, xhi - width)), (0, 0)]
    if pad == "constant":
        padded = np.pad(image, widths, mode="constant", constant_values=fill)
    else:
        # numpy's reflect fails on a length-1 axis; the reader uses edge there
        modes = ["edge" if pad == "edge" or size == 1 else "reflect" for size in (height, width)]
        padded = np.pad(image, widths[:1] + [(0, 0)] * 2, mode=modes[0])
        padded = np.pad(padded, [(0, 0), widths[1], (0, 0)], mode=modes[1])
    return padded[ylo + widths[0][0]:yhi + widths[0][0], xlo + widths[1][0]:xhi + widths[1][0]]


def random_boxes(shape, rng, n=30):
    """Boxes inside, across each border, larger than the image and wholly outside."""
    height, width = shape
    boxes = [(0, 0, height, width), (-5, -6, height + 7, width + 3), (-2 * height - 3, 0, -height - 1, 4),
             (height + 3, width + 9, 2 * height + 20, 3 * width + 1), (-3, 2, 4, width - 1),
             (height - 4, -3, height + 5, 3), (0, width - 2, 5, width + 6), (-20, -20, -10, -10)]
    boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]  # tiny images leave some out
    for _ in range(n):
        y0 = int(rng.integers(-height, 2 * height))
        x0 = int(rng.integers(-width, 2 * width))
        boxes.append((y0, x0, y0 + int(rng.integers(1, height + 5)), x0 + int(rng.integers(1, width + 5))))
    return boxes


def assert_reads_match(reader, image, rng, pad):
    for box in random_boxes(image.shape[:2], rng):
        window = reader.read(box)
        assert window.flags.c_contiguous and window.dtype == image.dtype
        np.testing.assert_array_equal(window, expected_window(image, box, pad), err_msg=f"box={box}")


def random_image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


# --------------------------------------------------------------------------- reader: TIFF flavours

SIZE = (150, 210)  # not a multiple of any tile or strip size below

# name -> (dtype, channels, imwrite keyword arguments, layout of the written array)
FLAVOURS = {
    "tiled-2d-uint8": (np.uint8, 0, dict(tile=(64, 64)), "YX"),
    "striped-uint16": (np.uint16, 0, dict(rowsperstrip=7), "YX"),
    "striped-zlib-float32": (np.float32, 0, dict(rowsperstrip=16, compression="zlib"), "YX"),
    "bigtiff-float32": (np.float32, 0, dict(tile=(32, 48), bigtiff=True), "YX"),
    "ome-uint16": (np.uint16, 0, dict(tile=(64, 64), ome=True), "YX"),
    "zlib-rgb-contig": (np.uint8, 3, dict(tile=(64, 64), compression="zlib", photometric="rgb"), "YXS"),
    "contig-4-uncompressed": (np.uint16, 4, dict(photometric="minisblack", planarconfig="contig"), "YXS"),
    "separate-planes-tiled": (np.uint8, 3, dict(tile=(64, 32), planarconfig="separate",
                                                photometric="minisblack"), "SYX"),
    "separate-planes-striped-zlib": (np.float32, 2, dict(rowsperstrip=20, planarconfig="separate",
                                                         photometric="minisblack", compression="zlib"), "SYX"),
    "pages-uncompressed": (np.uint8, 3, dict(photometric="minisblack"), "SYX"),  # 3 pages, axes QYX
    "ome-multipage-channels": (np.uint16, 3, dict(tile=(64, 64), ome=True, compression="zlib",
                                                  photometric="minisblack"), "CYX"),
}


def write_flavour(path, name, seed=0):
    dtype, channels, kwargs, layout = FLAVOURS[name]
    image = random_image(SIZE + (max(channels, 1),), dtype, seed)
    data = image[..., 0] if layout == "YX" else (image if layout == "YXS" else np.moveaxis(image, -1, 0))
    tifffile.imwrite(path, data, **kwargs)
    return image


@pytest.mark.parametrize("name", sorted(FLAVOURS))
def test_reader_matches_numpy_for_every_tiff_flavour(tmp_path, name):
    path = tmp_path / f"{name}.tif"
    image = write_flavour(path, name)
    rng = np.random.default_rng(len(name))
    for pad in PAD_MODES:
        with ImageReader(path, pad=pad, fill=FILL) as reader:
            assert reader.shape == SIZE and reader.channels == image.shape[2] and reader.dtype == image.dtype
            assert_reads_match(reader, image, rng, pad)


def test_reader_metadata(tmp_path):
    path = tmp_path / "meta.tif"
    tifffile.imwrite(path, np.zeros((40, 50, 3), np.uint8), tile=(16, 16), resolution=(12.5, 4.0),
                     resolutionunit="CENTIMETER")
    with ImageReader(path) as reader:
        assert reader.metadata == {"resolution": (12.5, 4.0), "resolution_unit": "CENTIMETER",
                                   "ome": False, "axes": "YXS"}
    path = tmp_path / "plain.ome.tif"
    tifffile.imwrite(path, np.zeros((40, 50), np.uint8), ome=True)
    with ImageReader(path) as reader:
        assert reader.metadata == {"resolution": None, "resolution_unit": None, "ome": True, "axes": "YX"}
        assert metadata_for_output(reader) == {"resolution": None, "resolution_unit": None, "ome": True}
        assert "plain.ome.tif" in repr(reader) and "shape=(40, 50)" in repr(reader)
    assert "closed" in repr(reader)
    with pytest.raises(ValueError, match="closed"):
        reader.read((0, 0, 1, 1))


@pytest.mark.skipif(not HAVE_JPEG, reason="JPEG needs imagecodecs")
def test_reader_decodes_jpeg_tiles_as_tifffile_does(tmp_path):
    path = tmp_path / "jpeg.tif"
    image = random_image((100, 130, 3), np.uint8, seed=2)
    tifffile.imwrite(path, image, tile=(32, 32), compression="jpeg", photometric="rgb")
    expected = tifffile.imread(path)
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.read((0, 0, 100, 130)), expected)
        np.testing.assert_array_equal(reader.read((40, 50, 70, 90)), expected[40:70, 50:90])


# --------------------------------------------------------------------------- reader: arrays

class SliceOnly:
    """A minimal array-like (as zarr or dask arrays are): shape, dtype and basic slicing."""

    def __init__(self, array):
        self._array, self.shape, self.dtype = array, array.shape, array.dtype

    def __getitem__(self, key):
        assert all(isinstance(k, slice) for k in key), key
        return self._array[key].tolist()  # not an ndarray: the reader must convert


@pytest.mark.parametrize("kind", ["2d", "3d", "memmap", "channels-first", "slice-only", "big-endian"])
def test_reader_matches_numpy_for_array_sources(tmp_path, kind):
    image = random_image((37, 53, 3), np.uint16, seed=3)
    channel_axis = -1
    if kind == "2d":
        image = image[..., :1]
        source = image[..., 0]
    elif kind == "3d":
        source = image
    elif kind == "memmap":
        source = np.memmap(tmp_path / "image.raw", dtype=image.dtype, mode="w+", shape=image.shape)
        source[:] = image
    elif kind == "channels-first":
        source, channel_axis = np.ascontiguousarray(np.moveaxis(image, -1, 0)), 0
    elif kind == "slice-only":
        source = SliceOnly(image)
    else:
        source = image.astype(">u2")
    rng = np.random.default_rng(4)
    for pad in PAD_MODES:
        with ImageReader(source, pad=pad, fill=FILL, channel_axis=channel_axis) as reader:
            assert reader.shape == (37, 53) and reader.channels == image.shape[2]
            assert_reads_match(reader, image, rng, pad)


def test_reader_window_is_a_copy():
    image = np.zeros((8, 8), np.uint8)
    window = ImageReader(image).read((0, 0, 8, 8))
    window[:] = 1
    assert not image.any()


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 1), (2, 2)])
def test_reader_tiny_images(shape):
    image = random_image(shape + (2,), np.uint8, seed=5)
    rng = np.random.default_rng(6)
    for pad in PAD_MODES:
        assert_reads_match(ImageReader(image, pad=pad, fill=FILL), image, rng, pad)


def test_reader_is_thread_safe(tmp_path):
    path = tmp_path / "threads.tif"
    image = write_flavour(path, "zlib-rgb-contig")
    boxes = random_boxes(SIZE, np.random.default_rng(7), n=60)
    with ImageReader(path) as reader, ThreadPoolExecutor(4) as pool:
        windows = list(pool.map(reader.read, boxes))
    for box, window in zip(boxes, windows):
        np.testing.assert_array_equal(window, expected_window(image, box, "reflect"))


# --------------------------------------------------------------------------- reader: decodes only what it needs

@pytest.fixture
def decode_calls(monkeypatch):
    """Indices of the segments decoded, by wrapping tifffile's TiffPage.decode (a call with no data, the
    reader's check of the codec at open, decodes nothing and is not counted)."""
    calls = []
    make_decoder = tifffile.TiffPage.__dict__["decode"].func

    def counting_decoder(page):
        decode = make_decoder(page)

        def wrapped(data, index, **kwargs):
            if data is not None:
                calls.append(index)
            return decode(data, index, **kwargs)

        return wrapped

    monkeypatch.setattr(tifffile.TiffPage, "decode", property(counting_decoder))
    return calls


def test_reader_decodes_only_intersecting_tiles(tmp_path, decode_calls):
    path = tmp_path / "large.tif"
    image = random_image((1000, 1200), np.uint8, seed=8)
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib")
    with ImageReader(path) as reader:
        assert decode_calls == [0]  # the open decodes the first tile, to refuse a file it cannot decode
        decode_calls.clear()
        tiles_across = 1200 // 64 + 1
        window = reader.read((100, 200, 228, 300))  # tile rows 1..3, tile columns 3..4
        assert sorted(decode_calls) == [r * tiles_across + c for r in (1, 2, 3) for c in (3, 4)]
        np.testing.assert_array_equal(window[..., 0], image[100:228, 200:300])
        decode_calls.clear()
        window = reader.read((-10, -10, 20, 20))  # reflected: rows and columns 0..19, one tile
        assert decode_calls == [0]
        np.testing.assert_array_equal(window, expected_window(image[..., None], (-10, -10, 20, 20), "reflect"))


def test_reader_decodes_only_intersecting_strips(tmp_path, decode_calls):
    path = tmp_path / "striped.tif"
    image = random_image((3, 500, 300), np.uint16, seed=9)
    tifffile.imwrite(path, image, rowsperstrip=16, compression="zlib", planarconfig="separate",
                     photometric="minisblack")
    with ImageReader(path) as reader:
        assert decode_calls == [0]
        decode_calls.clear()
        window = reader.read((40, 10, 70, 50))  # strips 2..4 of each of the 3 planes
        strips = 500 // 16 + 1
        assert sorted(decode_calls) == [p * strips + s for p in range(3) for s in (2, 3, 4)]
        np.testing.assert_array_equal(window, np.moveaxis(image, 0, -1)[40:70, 10:50])


# --------------------------------------------------------------------------- writer: round trips

def cell_boxes(image_size, tile_size, overlap):
    plan, _ = seamless_fast.plan_regular_grid(image_size, tile_size, overlap)
    return [tuple(int(v) for v in box) for box in plan.cell_boxes[plan.write_cells]]


def write_cells(writer, image, boxes):
    for ylo, xlo, yhi, xhi in boxes:
        writer.write((ylo, xlo, yhi, xhi), image[ylo:yhi, xlo:xhi])


WRITER_CASES = [
    # (data dtype, writer dtype, channels, tile, compression, expected conversion)
    (np.uint8, np.uint8, None, (64, 64), None, None),
    (np.uint16, np.uint16, 3, (48, 80), "zlib", None),
    (np.float32, np.float32, None, (32, 96), "zlib", None),
    (np.float32, np.float16, 3, (64, 32), None, lambda a: a.astype(np.float16)),
    (np.float32, np.uint8, 2, (80, 48), "zlib", lambda a: np.rint(a.astype(np.float64) * 255).astype(np.uint8)),
    (np.float32, np.uint16, None, (32, 32), None, lambda a: np.rint(a.astype(np.float64) * 65535).astype(np.uint16)),
    (np.uint32, np.uint32, None, (48, 48), "zlib", None),
    pytest.param(np.uint16, np.uint16, None, (64, 64), "zstd", None,
                 marks=pytest.mark.skipif(not HAVE_ZSTD, reason="zstd needs imagecodecs")),
]


@pytest.mark.parametrize("data_dtype, dtype, channels, tile, compression, convert", WRITER_CASES)
def test_writer_round_trip(tmp_path, data_dtype, dtype, channels, tile, compression, convert):
    size = (203, 317)
    image = random_image(size + (() if channels is None else (channels,)), data_dtype, seed=10)
    path = tmp_path / "out.tif"
    with TiffWriter(path, size, channels=channels, dtype=dtype, tile=tile, compression=compression) as writer:
        write_cells(writer, image, cell_boxes(size, 100, 30))
    expected = image if convert is None else convert(image)
    np.testing.assert_array_equal(tifffile.imread(path), expected)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == tile
        assert page.compression == {None: 1, "zlib": 8, "zstd": 50000}[compression]
        assert not tif.is_bigtiff and tif.is_shaped
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.read((0, 0) + size).reshape(expected.shape), expected)
    assert os.listdir(tmp_path) == ["out.tif"]


def test_writer_metadata_round_trip(tmp_path):
    first, second = tmp_path / "first.tif", tmp_path / "second.tif"
    image = random_image((50, 60, 3), np.uint8, seed=11)
    with TiffWriter(first, (50, 60), channels=3, tile=(16, 16), resolution=(20.0, 25.5),
                    resolution_unit="CENTIMETER", ome=True, bigtiff=True) as writer:
        writer.write((0, 0, 50, 60), image)
    with tifffile.TiffFile(first) as tif:
        assert tif.is_ome and tif.is_bigtiff and tif.series[0].axes == "YXS"
        assert tif.pages[0].resolution == (20.0, 25.5) and tif.pages[0].resolutionunit.name == "CENTIMETER"
        np.testing.assert_array_equal(tif.asarray(), image)
    with ImageReader(first) as reader:
        kwargs = metadata_for_output(reader)
    assert kwargs == {"resolution": (20.0, 25.5), "resolution_unit": "CENTIMETER", "ome": True}
    with TiffWriter(second, (50, 60), **kwargs) as writer:
        writer.write((0, 0, 50, 60), image[..., 0])
    with ImageReader(second) as reader:
        assert reader.metadata == {"resolution": (20.0, 25.5), "resolution_unit": "CENTIMETER",
                                   "ome": True, "axes": "YX"}


def test_writer_fills_unwritten_pixels(tmp_path):
    size = (130, 170)
    image = random_image(size, np.uint16, seed=12)
    boxes = cell_boxes(size, 64, 16)
    kept = boxes[::3]
    path = tmp_path / "partial.tif"
    with TiffWriter(path, size, dtype=np.uint16, tile=(32, 32), fill=999) as writer:
        write_cells(writer, image, kept)
    expected = np.full(size, 999, np.uint16)
    for ylo, xlo, yhi, xhi in kept:
        expected[ylo:yhi, xlo:xhi] = image[ylo:yhi, xlo:xhi]
    np.testing.assert_array_equal(tifffile.imread(path), expected)
    with TiffWriter(tmp_path / "empty.tif", (20, 20), dtype=np.float32, tile=(16, 16), fill=np.nan):
        pass
    assert np.isnan(tifffile.imread(tmp_path / "empty.tif")).all()


def test_writer_bigtiff_is_automatic(tmp_path):
    huge = TiffWriter(tmp_path / "huge.tif", (70000, 70000))  # nothing is allocated until written
    small = TiffWriter(tmp_path / "small.tif", (70000, 70000), bigtiff=False)
    assert huge.bigtiff and not small.bigtiff
    huge.abort()
    small.abort()
    assert os.listdir(tmp_path) == []


def test_writer_properties_and_repr(tmp_path):
    with TiffWriter(tmp_path / "x.tif", (20, 30), channels=2, dtype="float32", tile=(16, 16)) as writer:
        assert writer.path == os.fspath(tmp_path / "x.tif")
        assert writer.image_size == (20, 30) and writer.channels == 2 and writer.dtype == np.float32
        assert writer.nbytes == 20 * 30 * 2 * 4
        assert "x.tif" in repr(writer) and "open" in repr(writer)
        writer.write((0, 0, 20, 30), np.zeros((20, 30, 2), np.float64))
    assert "closed" in repr(writer)
    writer.close()  # twice is fine


# --------------------------------------------------------------------------- writer: memory bound

def test_writer_holds_only_incomplete_tile_rows(tmp_path):
    size, tile = (700, 3000), (64, 64)
    image = random_image(size, np.uint8, seed=13)
    plan, _ = seamless_fast.plan_regular_grid(size, 128, 28, traverse="rows")  # the order this writer needs
    boxes = plan.cell_boxes[plan.write_cells]
    max_cell_height = int((boxes[:, 2] - boxes[:, 0]).max())
    held = []
    with TiffWriter(tmp_path / "wide.tif", size, tile=tile) as writer:
        for box in boxes:
            writer.write(tuple(int(v) for v in box), image[box[0]:box[2], box[1]:box[3]])
            held.append(writer.held_rows)
    assert max(held) <= max_cell_height + 2 * tile[0] < size[0] // 2
    assert writer.held_rows == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "wide.tif"), image)


def test_writer_accepts_any_order(tmp_path):
    """Out of row-major order (e.g. a plan run in vertical stripes) still works, holding more rows."""
    size = (150, 140)
    image = random_image(size + (2,), np.float32, seed=14)
    boxes = cell_boxes(size, 48, 8)[::-1]
    with TiffWriter(tmp_path / "reversed.tif", size, channels=2, dtype=np.float32, tile=(32, 32)) as writer:
        write_cells(writer, image, boxes)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "reversed.tif"), image)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, match", [
    (dict(pad="wrap"), "pad='wrap'"),
    (dict(channel_axis=1), "channel_axis=1"),
    (dict(fill=300), "fill=300"),
])
def test_reader_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageReader(np.zeros((4, 4), np.uint8), **kwargs)


@pytest.mark.parametrize("box, match", [
    ((0, 0, 0, 5), "box=.*empty"),
    ((0, 5, 3, 2), "box=.*empty"),
    ((0, 0, 3), "box=.*3 items"),
    ((0, 0, 3.5, 4), "box=.*non-integer"),
    (None, "box=None"),
])
def test_reader_rejects_bad_boxes(box, match):
    with pytest.raises(ValueError, match=match):
        ImageReader(np.zeros((4, 4), np.uint8)).read(box)


def test_reader_rejects_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="source=list"):
        ImageReader([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="source has shape"):
        ImageReader(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="channel_axis=0"):
        ImageReader(tmp_path / "x.tif", channel_axis=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dtype=np.int32), "dtype="),
    (dict(dtype="not a dtype"), "dtype="),
    (dict(compression="lzw"), "compression='lzw'"),
    (dict(tile=(100, 64)), "tile="),
    (dict(channels=0), "channels=0"),
    (dict(fill=-1), "fill=-1"),
    (dict(resolution=(0, 1)), "resolution="),
    (dict(resolution_unit="MILLIMETER"), "resolution_unit="),
    (dict(ome="yes"), "ome="),
    (dict(bigtiff=1), "bigtiff="),
    (dict(image_size=(0, 10)), "image_size="),
])
def test_writer_rejects_bad_options_before_any_work(tmp_path, kwargs, match):
    kwargs = {"image_size": (32, 32), **kwargs}
    with pytest.raises(ValueError, match=match):
        TiffWriter(tmp_path / "out.tif", **kwargs)
    assert os.listdir(tmp_path) == []


def test_zstd_without_imagecodecs_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import now raises ImportError
    with pytest.raises(ValueError, match="compression='zstd' needs imagecodecs"):
        TiffWriter(tmp_path / "out.tif", (32, 32), compression="zstd")


@pytest.mark.parametrize("box, data, match", [
    ((0, 0, 16, 16), np.zeros((16, 15), np.uint8), "data has shape"),
    ((0, 0, 16, 16), np.zeros((16, 16, 1), np.uint8), "data has shape"),
    ((-1, 0, 15, 16), np.zeros((16, 16), np.uint8), r"box=\(-1, 0, 15, 16\) reaches outside"),
    ((30, 30, 50, 40), np.zeros((20, 10), np.uint8), r"box=\(30, 30, 50, 40\) reaches outside"),
    ((0, 0, 0, 16), np.zeros((0, 16), np.uint8), "box=.*empty"),
])
def test_writer_rejects_bad_writes(tmp_path, box, data, match):
    with TiffWriter(tmp_path / "out.tif", (40, 40), tile=(16, 16)) as writer:
        with pytest.raises(ValueError, match=match):
            writer.write(box, data)
        writer.write((0, 0, 40, 40), np.zeros((40, 40), np.uint8))  # still usable


def test_writer_rejects_writing_a_pixel_twice(tmp_path):
    with TiffWriter(tmp_path / "out.tif", (64, 64), tile=(16, 16)) as writer:
        writer.write((0, 0, 20, 30), np.zeros((20, 30), np.uint8))
        with pytest.raises(ValueError, match=r"box=\(10, 20, 30, 40\) writes pixels already written"):
            writer.write((10, 20, 30, 40), np.zeros((20, 20), np.uint8))
        writer.write((0, 30, 16, 64), np.zeros((16, 34), np.uint8))  # completes the first tile row
        with pytest.raises(ValueError, match=r"box=\(15, 40, 17, 41\) writes pixels already written"):
            writer.write((15, 40, 17, 41), np.zeros((2, 1), np.uint8))


def test_written_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with TiffWriter(tmp_path / "out.tif", (32, 32), dtype=np.uint8, tile=(16, 16)) as writer:
            writer.write((0, 0, 32, 32), np.zeros((32, 32), np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "out.tif").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- fill values: kept or refused

@pytest.mark.parametrize("dtype, fill", [
    (np.float32, 1e300),  # overflowed to inf
    (np.float16, 65520),  # rounds to inf
    (np.float64, 10**400),
    (np.uint64, 2**64),  # was an OverflowError
    (np.int64, 2**63),
    (np.uint8, -1),
    (np.uint8, 2.5),
    (np.uint8, np.nan),
    (np.int16, np.inf),
    (np.bool_, 2),
])
def test_reader_fill_is_refused_if_it_does_not_fit(dtype, fill):
    with pytest.raises(ValueError, match=re.escape(f"fill={fill!r} cannot be stored as {np.dtype(dtype)}")):
        ImageReader(np.zeros((4, 4), dtype), pad="constant", fill=fill)


@pytest.mark.parametrize("dtype, fill", [(np.float64, 2**53), (np.uint64, 2**64 - 1), (np.int64, -2**63),
                                         (np.float32, 0.1), (np.float64, 2**53 + 1), (np.float16, 65504),
                                         (np.float16, np.inf), (np.uint8, 255.0), (np.bool_, 1), (np.complex64, 0.5),
                                         (np.float32, np.nan)])
def test_reader_fill_kept_exactly_or_to_the_nearest_float(dtype, fill):
    window = ImageReader(np.zeros((2, 2), dtype), pad="constant", fill=fill).read((-1, -1, 0, 0))
    assert window.dtype == dtype
    expected = np.dtype(dtype).type(fill)
    assert window[0, 0, 0] == expected or (np.isnan(fill) and np.isnan(window[0, 0, 0]))


def test_writer_fill_is_refused_if_it_does_not_fit(tmp_path):
    for dtype, fill in [(np.uint32, 2**32), (np.float16, 1e6), (np.float32, 1e300), (np.uint16, 0.5)]:
        with pytest.raises(ValueError, match="fill=.* cannot be stored as"):
            TiffWriter(tmp_path / "out.tif", (32, 32), dtype=dtype, fill=fill)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["contig-4-uncompressed", "zlib-rgb-contig"])
def test_reader_never_closed_closes_its_file(tmp_path, name):
    """A reader dropped without close() closed its file only when tifffile's handle was collected, with a
    ResourceWarning for a memory-mapped file; now it closes it itself."""
    path = tmp_path / "open.tif"
    write_flavour(path, name)
    reader = ImageReader(path)
    reader.read((0, 0, 4, 4))
    handle = reader._source.tif.filehandle
    del reader
    gc.collect()
    assert handle.closed
