"""Files ImageReader will not read: one ValueError naming the path and the problem, at open, before any pixel."""

import os
import struct

import numpy as np
import pytest

from seamless_fast.io import ImageReader

from test_io import expected_window

tifffile = pytest.importorskip("tifffile")


def refused(path, match):
    """ImageReader(path) raises one single-line ValueError naming the path and matching `match`."""
    with pytest.raises(ValueError) as info:
        ImageReader(path)
    message = str(info.value)
    assert "\n" not in message and repr(os.fspath(path)) in message, message
    assert __import__("re").search(match, message), message
    return message


def test_missing_file_folder_and_empty_file(tmp_path):
    refused(tmp_path / "missing.tif", "does not exist")
    refused(tmp_path, "is a folder")
    (tmp_path / "empty.tif").write_bytes(b"")
    refused(tmp_path / "empty.tif", "is empty")


def test_files_that_are_not_tiffs(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    cases = {"image.png": png + bytes(40), "notes.txt": b"hello world\n" * 10, "one.tif": b"I",
             "random.tif": np.random.default_rng(0).bytes(5000), "zeros.tif": bytes(1000)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        refused(tmp_path / name, "is not a TIFF file or its header is damaged")


@pytest.mark.parametrize("kwargs", [dict(tile=(64, 64), compression="zlib"), dict(), dict(rowsperstrip=16),
                                    dict(tile=(32, 48), bigtiff=True), dict(rowsperstrip=8, photometric="rgb",
                                                                            compression="zlib")],
                         ids=["tiled-zlib", "contiguous", "striped", "tiled-bigtiff", "striped-rgb"])
def test_truncated_files_are_refused_at_open(tmp_path, kwargs):
    """A TIFF cut anywhere (header, IFD, pixels, last byte) is refused at open, never read short."""
    shape = (300, 400, 3) if kwargs.get("photometric") == "rgb" else (300, 400)
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, image, **kwargs)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    for end in sorted({4, 7, 8, 16, 100, len(data) // 3, len(data) // 2, len(data) - 1000, len(data) - 1}):
        cut.write_bytes(data[:end])
        refused(cut, "is not a TIFF|holds no image|truncated|damaged")
    with ImageReader(whole) as reader:  # the whole file reads
        np.testing.assert_array_equal(reader.read((0, 0, 300, 400)).reshape(image.shape), image)


def test_segment_pointing_beyond_the_end_is_refused_before_any_read(tmp_path, monkeypatch):
    """The check is on the offset arrays: no segment is read for it (a truncated download of a file whose
    header comes first, as GDAL and tifffile write them)."""
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((512, 512), np.uint8), tile=(64, 64), compression="zlib")
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) - 10)
    reads = []
    original = tifffile.FileHandle.read_segments
    monkeypatch.setattr(tifffile.FileHandle, "read_segments",
                        lambda self, *a, **k: reads.append(a) or original(self, *a, **k))
    message = refused(path, r"is truncated or damaged: tile or strip 63 of page 0 ends at byte \d+, beyond the end")
    assert reads == [] and str(os.path.getsize(path)) in message


def test_unsupported_layouts_are_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((4, 3, 30, 40), np.uint8), imagej=True, metadata={"axes": "ZCYX"})
    refused(path, r"axes 'ZCYX' and shape \(4, 3, 30, 40\), not a 2-D image")
    path = tmp_path / "volume.ome.tif"
    tifffile.imwrite(path, np.zeros((5, 30, 40), np.uint16), ome=True, metadata={"axes": "ZYX"})
    refused(path, "axes 'ZYX'")
    path = tmp_path / "time.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 30, 40), np.uint8), ome=True, metadata={"axes": "TCYX"})
    refused(path, "axes 'TCYX'")
    path = tmp_path / "volumetric.tif"
    tifffile.imwrite(path, np.zeros((4, 32, 32), np.uint8), tile=(2, 16, 16), photometric="minisblack")
    refused(path, "axes 'ZYX'.* not a 2-D image")


def test_undecodable_compression_is_refused_at_open(tmp_path):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.zeros((32, 32), np.uint8), tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(34661)  # JBIG, which no installed codec decodes
    refused(path, "cannot decode|cannot be decoded")


def test_corrupt_tile_in_the_middle_names_file_and_tile(tmp_path):
    """A tile whose bytes are garbage (not detectable without decoding it) fails its read with one ValueError
    naming the file and the tile, and the reader goes on reading the other tiles."""
    path = tmp_path / "corrupt.tif"
    image = np.random.default_rng(2).integers(0, 256, (128, 128), dtype=np.uint8)
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[3], tif.pages[0].databytecounts[3]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * count)
    with ImageReader(path) as reader:
        with pytest.raises(ValueError, match=r"source=.*corrupt\.tif' tile or strip 3 of page 0 cannot be decoded"):
            reader.read((70, 70, 80, 80))
        np.testing.assert_array_equal(reader.read((-3, 0, 60, 60)), expected_window(image[..., None],
                                                                                    (-3, 0, 60, 60), "reflect"))


def test_empty_tiles_without_nodata_read_as_zeros(tmp_path):
    """Tiles with no bytes (sparse) read as tifffile reads them: 0 when the file gives no nodata."""
    path = tmp_path / "sparse.tif"
    tifffile.imwrite(path, np.full((64, 64), 5, np.uint8), tile=(16, 16))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        page = tif.pages[0]
        page.tags["TileByteCounts"].overwrite([0] + list(page.databytecounts[1:]))
    expected = tifffile.imread(path)
    assert expected[:16, :16].max() == 0 and expected[16:].min() == 5
    with ImageReader(path, pad="edge") as reader:
        np.testing.assert_array_equal(reader.read((0, 0, 64, 64))[..., 0], expected)


@pytest.mark.parametrize("kwargs", [dict(tile=(16, 16)), dict(), dict(rowsperstrip=4, compression="zlib")])
def test_image_of_width_zero_is_refused(tmp_path, kwargs):
    path = tmp_path / "empty-image.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), **kwargs)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(0)
    refused(path, r"is a damaged TIFF \(integer division or modulo by zero\)")  # inside tifffile


def test_a_codec_that_needs_imagecodecs_says_so_when_it_is_missing(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("imagecodecs")
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), tile=(32, 32), compression="lzw")
    code = ("import sys; sys.modules['imagecodecs'] = None\n"
            "from seamless_fast.io import ImageReader\n"
            "try:\n    ImageReader(sys.argv[1])\nexcept ValueError as error:\n    print(error)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cannot decode" in done.stdout and "pip install imagecodecs" in done.stdout, done.stdout
