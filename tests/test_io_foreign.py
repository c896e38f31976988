"""ImageReader on TIFFs from other writers: GDAL (through rasterio), Pillow and tifffile's less usual options.

Every window, inside the image or across its border (each pad mode), must equal what the writer's own reader
gives for the same pixels: rasterio's windowed read for GDAL files, Pillow's for Pillow files.
"""

import warnings

import numpy as np
import pytest

from seamless_fast.io import ImageReader, metadata_for_output

from test_io import PAD_MODES, expected_window, random_boxes

tifffile = pytest.importorskip("tifffile")

SIZE = (150, 210)  # no multiple of the blocks below: partial tiles and a short last strip
FILL = 7


def random_bands(rng, bands, dtype):
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal((bands,) + SIZE) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, (bands,) + SIZE, dtype=dtype, endpoint=True)


def smooth_bands(bands):
    """Smooth uint8 bands: lossy codecs change them little, so decoders can be compared closely."""
    yy, xx = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    planes = [128 + 100 * np.sin(xx / 17), 128 + 100 * np.cos(yy / 13), 128 + 60 * np.sin((xx + yy) / 23),
              128 + 90 * np.cos((xx - yy) / 29)]
    return np.stack(planes[:bands]).astype(np.uint8)


def assert_windows_match(path, reference, rng, exact=True):
    """Every pad mode, border-crossing and outside windows: the reader against `reference` (H, W, C)."""
    boxes = random_boxes(SIZE, rng, n=12)
    fill = FILL if reference.dtype.kind in "iuf" else 1
    for pad in PAD_MODES:
        with ImageReader(path, pad=pad, fill=fill) as reader:
            assert reader.shape == SIZE and reader.channels == reference.shape[2]
            assert reader.dtype == reference.dtype
            for box in boxes:
                expected = expected_window(reference, box, pad, fill=fill)
                got = reader.read(box)
                if exact:
                    np.testing.assert_array_equal(got, expected, err_msg=f"box={box} pad={pad}")
                else:
                    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 10, (box, pad)


# --------------------------------------------------------------------------- GDAL through rasterio

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import Affine  # noqa: E402
from rasterio.windows import Window  # noqa: E402

COMPRESSIONS = ["none", "deflate", "lzw", "zstd", "packbits", "lerc"]
DTYPES = ["uint8", "int16", "uint16", "float32"]
BANDS = [1, 3, 4]


def gdal_cases():
    """Every compression x tiled/striped x pixel/band interleave; bands and dtypes cycle through them so that
    each compression meets every band count and every dtype."""
    cases, k = [], 0
    for compress in COMPRESSIONS:
        for tiled in (True, False):
            for interleave in ("pixel", "band"):
                cases.append(dict(compress=compress, tiled=tiled, interleave=interleave,
                                  bands=BANDS[k % 3], dtype=DTYPES[k % 4]))
                k += 1
    return cases


GDAL_CASES = gdal_cases() + [
    dict(compress="deflate", tiled=True, interleave="pixel", bands=2, dtype="float32", predictor=3),
    dict(compress="lzw", tiled=False, interleave="pixel", bands=1, dtype="int16", predictor=2),
    dict(compress="zstd", tiled=True, interleave="band", bands=3, dtype="uint16", predictor=2),
    dict(compress="deflate", tiled=True, interleave="pixel", bands=3, dtype="uint8", BIGTIFF="YES"),
    dict(compress="none", tiled=False, interleave="band", bands=4, dtype="int16", BIGTIFF="YES"),
    dict(compress="jpeg", tiled=True, interleave="pixel", bands=3, dtype="uint8"),
    dict(compress="jpeg", tiled=False, interleave="pixel", bands=1, dtype="uint8"),
    dict(compress="jpeg", tiled=True, interleave="band", bands=2, dtype="uint8"),
]


def gdal_id(case):
    return "-".join(f"{v}" if k != "tiled" else ("tiled" if v else "striped") for k, v in case.items())


def write_gdal(path, case, data, tags=None, **extra):
    case = dict(case)
    bands, dtype, tiled = case.pop("bands"), case.pop("dtype"), case.pop("tiled")
    blocks = dict(tiled=True, blockxsize=48, blockysize=32) if tiled else dict(tiled=False, blockysize=16)
    extra = {"crs": "EPSG:32633", "transform": Affine(10, 0, 500000, 0, -10, 4000000), **extra}  # GeoTIFFs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio's NotGeoreferencedWarning and the like
        with rasterio.open(path, "w", driver="GTiff", height=SIZE[0], width=SIZE[1], count=bands, dtype=dtype,
                           **blocks, **case, **extra) as dataset:
            dataset.write(data)
            if tags:
                dataset.update_tags(**tags)


def rasterio_read(path, window=None):
    with rasterio.open(path) as dataset:
        return np.moveaxis(dataset.read(window=window), 0, -1)


@pytest.mark.parametrize("case", GDAL_CASES, ids=gdal_id)
def test_gdal_files_read_as_rasterio_reads_them(tmp_path, case):
    rng = np.random.default_rng(len(gdal_id(case)))
    lossy = case["compress"] == "jpeg"
    data = smooth_bands(case["bands"]) if lossy else random_bands(rng, case["bands"], case["dtype"])
    path = tmp_path / "gdal.tif"
    write_gdal(path, case, data)
    reference = rasterio_read(path)
    if not lossy:
        np.testing.assert_array_equal(reference, np.moveaxis(data, 0, -1))
    with tifffile.TiffFile(path) as tif:  # the file is what the case says
        page = tif.pages[0]
        assert page.is_tiled == case["tiled"]
        assert page.planarconfig == (2 if case["interleave"] == "band" else 1)
        assert tif.is_bigtiff == (case.get("BIGTIFF") == "YES")
    assert_windows_match(path, reference, rng)
    with ImageReader(path) as reader:  # windows inside the image: rasterio's own windowed read
        for ylo, xlo, yhi, xhi in [(0, 0, 1, 1), (31, 47, 65, 97), (100, 5, 150, 210), (17, 200, 149, 210)]:
            window = Window(xlo, ylo, xhi - xlo, yhi - ylo)
            np.testing.assert_array_equal(reader.read((ylo, xlo, yhi, xhi)), rasterio_read(path, window))


@pytest.mark.parametrize("tiled", [True, False])
def test_gdal_jpeg_ycbcr_reads_as_tifffile_and_close_to_gdal(tmp_path, tiled):
    """YCbCr JPEG (4:2:0) decodes through tifffile's decoder; GDAL's libjpeg upsamples chroma differently,
    so its pixels may differ by a few levels (not more on a smooth image)."""
    path = tmp_path / "ycbcr.tif"
    case = dict(compress="jpeg", tiled=tiled, interleave="pixel", bands=3, dtype="uint8", photometric="YCBCR")
    write_gdal(path, case, smooth_bands(3))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].photometric == 6 and tif.pages[0].subsampling == (2, 2)
    assert_windows_match(path, tifffile.imread(path), np.random.default_rng(1))
    assert_windows_match(path, rasterio_read(path), np.random.default_rng(2), exact=False)


def test_gdal_rgb_jpeg_in_separate_planes_is_refused_at_open(tmp_path):
    """tifffile's JPEG decoder fails on RGB planes stored apart; the reader says so at open."""
    path = tmp_path / "planes.tif"
    write_gdal(path, dict(compress="jpeg", tiled=True, interleave="band", bands=3, dtype="uint8"), smooth_bands(3))
    with pytest.raises(ValueError, match=r"source=.*planes\.tif' cannot be decoded \(tile or strip 0"):
        ImageReader(path)


def test_gdal_overviews_nodata_crs_and_metadata(tmp_path):
    """Internal overviews are not read (level 0 only); a GeoTIFF's nodata, CRS and unit tags do not disturb it."""
    path = tmp_path / "geo.tif"
    data = random_bands(np.random.default_rng(3), 3, "uint16")
    case = dict(compress="deflate", tiled=True, interleave="pixel", bands=3, dtype="uint16")
    write_gdal(path, case, data, nodata=0)
    with rasterio.open(path, "r+") as dataset:
        dataset.build_overviews([2, 4], rasterio.enums.Resampling.average)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) >= 3 and len(tif.series[0].levels) >= 3  # the overviews are there
    with rasterio.open(path) as dataset:
        assert dataset.overviews(1) == [2, 4] and dataset.crs.to_epsg() == 32633 and dataset.nodata == 0
    assert_windows_match(path, np.moveaxis(data, 0, -1), np.random.default_rng(4))
    with ImageReader(path) as reader:
        assert reader.metadata["axes"] == "YXS"
        assert metadata_for_output(reader)["ome"] is False


def test_gdal_sparse_blocks_read_as_nodata(tmp_path):
    """GDAL leaves blocks of nodata unwritten (SPARSE_OK); they read as the nodata value, as in GDAL."""
    path = tmp_path / "sparse.tif"
    data = np.full((1,) + SIZE, 200, np.uint8)
    data[0, 40:60, 50:90] = 9
    case = dict(compress="deflate", tiled=True, interleave="pixel", bands=1, dtype="uint8")
    write_gdal(path, case, data, nodata=200, SPARSE_OK=True)
    with tifffile.TiffFile(path) as tif:
        assert 0 in tif.pages[0].databytecounts  # some blocks are not stored
    reference = rasterio_read(path)
    np.testing.assert_array_equal(reference, np.moveaxis(data, 0, -1))
    assert_windows_match(path, reference, np.random.default_rng(5))


def test_resolution_unit_given_as_a_number(tmp_path):
    """tifffile gives a GDAL file's unit as a bare int (2 when the tag is absent): reading one crashed on
    ``unit.value``. No resolution tags: no resolution and no unit; with them, the unit GDAL wrote. A resolution
    per millimetre, which TiffWriter does not write, is carried over per centimetre."""
    plain = dict(compress="none", tiled=True, interleave="pixel", bands=1, dtype="uint8")
    path = tmp_path / "plain.tif"
    write_gdal(path, plain, np.zeros((1,) + SIZE, np.uint8))
    with ImageReader(path) as reader:
        assert reader.metadata == {"resolution": None, "resolution_unit": None, "ome": False, "axes": "YX"}
    path = tmp_path / "dpi.tif"
    write_gdal(path, plain, np.zeros((1,) + SIZE, np.uint8), tags=dict(TIFFTAG_XRESOLUTION="300", TIFFTAG_YRESOLUTION="150", TIFFTAG_RESOLUTIONUNIT="3"))
    with ImageReader(path) as reader:
        assert reader.metadata["resolution"] == (300.0, 150.0)
        assert reader.metadata["resolution_unit"] == "CENTIMETER"
    path = tmp_path / "mm.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), resolution=(4.0, 2.0), resolutionunit="MILLIMETER")
    with ImageReader(path) as reader:
        assert reader.metadata["resolution_unit"] == "MILLIMETER"
        assert metadata_for_output(reader) == {"resolution": (40.0, 20.0), "resolution_unit": "CENTIMETER",
                                               "ome": False}


# --------------------------------------------------------------------------- Pillow

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

PILLOW_MODES = {  # mode -> array dtype, channels
    "L": (np.uint8, 1), "RGB": (np.uint8, 3), "RGBA": (np.uint8, 4), "I;16": (np.uint16, 1),
    "I": (np.int32, 1), "F": (np.float32, 1), "1": (np.bool_, 1),
}


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"])
@pytest.mark.parametrize("mode", sorted(PILLOW_MODES))
def test_pillow_files_read_as_pillow_reads_them(tmp_path, mode, compression):
    dtype, channels = PILLOW_MODES[mode]
    if compression == "jpeg" and mode not in ("L", "RGB"):
        pytest.skip("Pillow writes JPEG TIFFs of L and RGB only")
    rng = np.random.default_rng(6)
    if dtype == np.bool_:
        data = rng.random(SIZE) < 0.5
    elif compression == "jpeg":
        data = np.moveaxis(smooth_bands(channels), 0, -1).squeeze()
    else:
        data = np.moveaxis(random_bands(rng, channels, dtype), 0, -1).squeeze()
    image = Image.fromarray(data)
    assert image.mode == mode
    path = tmp_path / "pillow.tif"
    image.save(path, compression=compression)
    with Image.open(path) as opened:
        reference = np.asarray(opened).reshape(SIZE + (channels,))
    if compression != "jpeg":
        np.testing.assert_array_equal(reference, data.reshape(reference.shape))
    assert_windows_match(path, reference, rng)


def test_pillow_multi_frame_reads_frames_as_channels(tmp_path):
    frames = [np.full(SIZE, v, np.uint8) for v in (3, 9)]
    path = tmp_path / "frames.tif"
    Image.fromarray(frames[0]).save(path, save_all=True, append_images=[Image.fromarray(frames[1])])
    with ImageReader(path) as reader:
        assert reader.metadata["axes"] == "IYX" and reader.channels == 2
        np.testing.assert_array_equal(reader.read((0, 0) + SIZE), np.stack(frames, axis=-1))


# --------------------------------------------------------------------------- tifffile's other options

TIFFFILE_CASES = {
    "predictor-horizontal-uint16": (np.uint16, 1, dict(tile=(32, 32), compression="zlib", predictor=True)),
    "predictor-float32-striped": (np.float32, 2, dict(rowsperstrip=9, compression="zlib", predictor=True,
                                                      photometric="minisblack")),
    "lzw-int16-separate": (np.int16, 3, dict(rowsperstrip=10, compression="lzw", planarconfig="separate",
                                             photometric="minisblack")),
    "packbits-uint8": (np.uint8, 1, dict(compression="packbits")),
    "big-endian-tiled-float32": (np.float32, 1, dict(tile=(16, 64), byteorder=">", compression="zlib")),
    "big-endian-contiguous-uint16": (np.uint16, 3, dict(byteorder=">", photometric="rgb")),
    "imagej-channels": (np.uint16, 3, dict(imagej=True, metadata={"axes": "CYX"})),
    "ome-tiled-separate": (np.float32, 2, dict(ome=True, tile=(32, 32), planarconfig="separate",
                                               photometric="minisblack", metadata={"axes": "CYX"})),
    "uint32": (np.uint32, 1, dict(tile=(32, 32), compression="zlib")),
    "int64": (np.int64, 1, dict(rowsperstrip=8)),
    "uint64-big-endian": (np.uint64, 1, dict(byteorder=">", tile=(16, 16))),
    "float64": (np.float64, 2, dict(tile=(32, 32), photometric="minisblack")),
    "complex64": (np.complex64, 1, dict(tile=(32, 32), compression="zlib")),
    "bool": (np.bool_, 1, dict(rowsperstrip=5)),
    "int8": (np.int8, 1, dict()),
    "float16": (np.float16, 1, dict(tile=(16, 16), compression="zlib")),
}


@pytest.mark.parametrize("name", sorted(TIFFFILE_CASES))
def test_tifffile_options_and_dtypes(tmp_path, name):
    dtype, channels, kwargs = TIFFFILE_CASES[name]
    rng = np.random.default_rng(len(name))
    if dtype == np.bool_:
        data = rng.random((channels,) + SIZE) < 0.5
    elif np.dtype(dtype).kind == "c":
        data = (rng.standard_normal((channels,) + SIZE) + 1j * rng.standard_normal((channels,) + SIZE))
        data = data.astype(dtype)
    elif np.dtype(dtype).kind == "f":
        data = rng.standard_normal((channels,) + SIZE).astype(dtype)
    else:
        data = random_bands(rng, channels, dtype)
    contig = kwargs.get("photometric") == "rgb"
    written = np.moveaxis(data, 0, -1) if contig else (data[0] if channels == 1 else data)
    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, written, **kwargs)
    reference = np.moveaxis(data, 0, -1)
    np.testing.assert_array_equal(tifffile.imread(path).reshape(-1), written.reshape(-1))
    if np.dtype(dtype).kind in "cb":
        for pad in ("reflect", "edge"):  # constant pads with a real fill; checked below for these
            with ImageReader(path, pad=pad) as reader:
                assert reader.dtype == dtype
                for box in random_boxes(SIZE, rng, n=8):
                    np.testing.assert_array_equal(reader.read(box), expected_window(reference, box, pad))
        with ImageReader(path, pad="constant", fill=1) as reader:
            window = reader.read((-2, -3, 4, 5))
            np.testing.assert_array_equal(window[2:, 3:], reference[:4, :5])
            assert (window[:2] == 1).all() and (window[:, :3] == 1).all()
    else:
        assert_windows_match(path, reference, rng)


# --------------------------------------------------------------------------- OME-TIFF over several files

def write_two_file_ome(folder, first, second, **kwargs):
    """An OME-TIFF whose channel 1 lies in a second file (as microscopes write them)."""
    import uuid

    height, width = first.shape
    ua, ub = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    ome = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{ome}" UUID="{ua}"><Image ID="Image:0">'
           f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{width}" SizeY="{height}" '
           'SizeC="2" SizeZ="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
           '<Channel ID="Channel:0:1" SamplesPerPixel="1"/>'
           f'<TiffData FirstC="0" IFD="0" PlaneCount="1"><UUID FileName="a.ome.tif">{ua}</UUID></TiffData>'
           f'<TiffData FirstC="1" IFD="0" PlaneCount="1"><UUID FileName="b.ome.tif">{ub}</UUID></TiffData>'
           '</Pixels></Image></OME>')
    binary_only = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{ome}" UUID="{ub}">'
                   f'<BinaryOnly MetadataFile="a.ome.tif" UUID="{ua}"/></OME>')
    tifffile.imwrite(folder / "a.ome.tif", first, description=xml, metadata=None, **kwargs)
    tifffile.imwrite(folder / "b.ome.tif", second, description=binary_only, metadata=None, **kwargs)
    return folder / "a.ome.tif"


@pytest.mark.parametrize("kwargs", [dict(tile=(16, 16)), dict(tile=(32, 16), compression="zlib"), dict()],
                         ids=["tiled", "tiled-zlib", "contiguous"])
def test_ome_channels_in_other_files(tmp_path, kwargs):
    """Channel 1 was read from the first file at the second file's offsets: wrong pixels, no error."""
    rng = np.random.default_rng(9)
    first, second = (rng.integers(0, 256, SIZE, dtype=np.uint8) for _ in range(2))
    path = write_two_file_ome(tmp_path, first, second, **kwargs)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "CYX" and tif.series[0].pages[1].parent is not tif
    assert_windows_match(path, np.stack([first, second], axis=-1), rng)


def test_ome_other_file_truncated_is_refused(tmp_path):
    image = np.zeros(SIZE, np.uint8)
    path = write_two_file_ome(tmp_path, image, image, tile=(16, 16))
    other = tmp_path / "b.ome.tif"
    other.write_bytes(other.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"truncated or damaged: tile or strip \d+ of page 1 \(in '.*b\.ome\.tif'\)"):
        ImageReader(path)
