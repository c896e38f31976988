"""ImageReader(level=k) on pyramidal TIFFs: OME-TIFF SubIFDs, tifffile subifds, SVS, NDPI and GDAL overviews.

Every level of every file is read window by window and compared with tifffile's (or rasterio's) own reading of
that level; the windows overlap every tile border and reach past the image, where the padding is compared with
numpy.pad. Other levels are never decoded: with their bytes destroyed, the level asked for still reads right.
"""

import io
import struct
import warnings

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from seamless_fast.io import ImageReader, Level, level_for_mpp, metadata_for_output  # noqa: E402

SIZE = (300, 260)
PAD = 40


def image(channels=3, dtype=np.uint8, seed=0):
    shape = SIZE + ((channels,) if channels > 1 else ())
    return np.random.default_rng(seed).integers(0, 200, shape).astype(dtype)


def pyramid(data, levels=3):
    """Level k: every 2**k-th pixel of level 0 (the Y, X axes first)."""
    return [data[::2**k, ::2**k] for k in range(levels)]


def has_codec(name):
    try:
        import imagecodecs
    except ImportError:
        return False
    return getattr(imagecodecs, name).available


def write_subifds(path, data, *, ome, tile=(64, 64), compression="zlib", metadata=None, **kwargs):
    """A tifffile pyramid: level 0 in the page, the reduced levels in its SubIFDs (each page's, for CYX)."""
    levels = pyramid(np.moveaxis(data, 0, -1)) if metadata and metadata.get("axes") == "CYX" else pyramid(data)
    if metadata and metadata.get("axes") == "CYX":
        levels = [np.moveaxis(level, -1, 0) for level in levels]
    with tifffile.TiffWriter(path, ome=ome) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, tile=tile, compression=compression, metadata=metadata,
                  **kwargs)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=tile, compression=compression, **kwargs)


SVS_DESCRIPTION = "Aperio Image Library v12.0.15\r\n300x260 [0,0 300x260] (64x64) {} Q=70|AppMag = 40|MPP = 0.25"


def write_svs(path, data, compression):
    """An SVS as Aperio lays it out: level 0, a stripped thumbnail, the reduced levels, a label and a macro;
    tiles in JPEG or in Aperio's JPEG 2000 (33005)."""
    levels = pyramid(data)
    description = SVS_DESCRIPTION.format("JPEG/RGB" if compression == "jpeg" else "J2K/RGB")
    tiled = dict(tile=(64, 64), compression=compression, photometric="rgb", metadata=None)
    with tifffile.TiffWriter(path) as tif:
        tif.write(levels[0], description=description, **tiled)
        tif.write(levels[2], description="Aperio Image Library thumbnail", photometric="rgb", metadata=None)
        for level in levels[1:]:
            tif.write(level, description="Aperio Image Library level", **tiled)
        tif.write(data[:40, :50], subfiletype=1, description="label", photometric="rgb", metadata=None)
        tif.write(data[:60, :60], subfiletype=9, description="macro", photometric="rgb", metadata=None)


def ndpi_strip(level, blocks):
    """A level as NDPI stores it: one JPEG (Pillow's) with a restart marker every `blocks` MCUs, and the
    McuStarts, where each restart interval (a tile to tifffile) starts in it."""
    Image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    Image.fromarray(level).save(buffer, "JPEG", quality=90, subsampling=0, restart_marker_blocks=blocks)
    jpeg = buffer.getvalue()
    if b"\xff\xdd" not in jpeg:
        pytest.skip("this Pillow writes no restart markers")
    position = 2
    while True:  # the scan starts after the SOS segment
        marker, length = struct.unpack_from(">HH", jpeg, position)
        position += 2 + length
        if marker == 0xFFDA:
            break
    restarts = [i + 2 for i in range(position, len(jpeg) - 1) if jpeg[i] == 0xFF and 0xD0 <= jpeg[i + 1] <= 0xD7]
    return jpeg, [position] + restarts


def write_ndpi(path, data):
    """An NDPI as Hamamatsu lays it out: its tags, 64-bit IFD offsets, each level one JPEG strip cut into
    tiles by restart markers (McuStarts), and a macro page.

    tifffile writes no NDPI: a classic TIFF it writes is laid out again, each IFD copied to the end of the file
    with an 8-byte offset to the next one and the block of high offset bits NDPI adds (all zero in a file this
    small)."""
    classic = path.with_suffix(".classic.tif")
    ndpi_tags = [(271, "s", 0, "Hamamatsu", True), (272, "s", 0, "C13210", True), (65420, "I", 1, 1, True)]
    with tifffile.TiffWriter(classic) as tif:
        for k, level in enumerate(pyramid(data)):
            mcus = -(-level.shape[1] // 8)  # MCUs of 8 x 8 pixels (no chroma subsampling) across the level
            jpeg, starts = ndpi_strip(np.ascontiguousarray(level), 11 if mcus % 11 == 0 else mcus)
            tif.write(iter([jpeg]), shape=level.shape, dtype=level.dtype, compression="jpeg", photometric="ycbcr",
                      subsampling=(1, 1), rowsperstrip=level.shape[0], metadata=None,
                      resolution=(40000 / 2**k, 40000 / 2**k), resolutionunit="CENTIMETER",
                      extratags=ndpi_tags + [(65421, "f", 1, 40 / 2**k, True), (65426, "I", len(starts), starts, True)])
        tif.write(data[:60, :60], photometric="rgb", metadata=None, extratags=ndpi_tags + [(65421, "f", 1, -1.0, True)])
    with tifffile.TiffFile(classic) as tif:
        offsets = [page.offset for page in tif.pages]
    out = bytearray(classic.read_bytes())
    out += b"\0" * (len(out) % 2)
    starts = []
    for offset in offsets:
        count, = struct.unpack_from("<H", out, offset)
        starts.append(len(out))
        out += out[offset:offset + 2 + 12 * count] + bytes(8 + 4 * count)
    for start, following in zip(starts, starts[1:] + [0]):
        count, = struct.unpack_from("<H", out, start)
        struct.pack_into("<Q", out, start + 2 + 12 * count, following)
    struct.pack_into("<Q", out, 4, starts[0])
    path.write_bytes(bytes(out))


def write_gdal(path, data, blocks=64, mask=False):
    """A GeoTIFF with internal overviews, as GDAL writes them (rasterio's build_overviews); with `mask`, also
    an internal mask, whose pages (and their overviews) lie between and after the image's."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    bands = np.moveaxis(data, -1, 0) if data.ndim == 3 else data[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", height=SIZE[0], width=SIZE[1], count=len(bands),
                           dtype=data.dtype.name, tiled=True, blockxsize=blocks, blockysize=blocks,
                           compress="deflate", crs="EPSG:32633", transform=Affine(10, 0, 5e5, 0, -10, 4e6)) as ds:
            ds.write(bands)
            if mask:
                ds.write_mask(np.arange(SIZE[0])[:, None] % 50 > np.zeros(SIZE[1], int))
        with rasterio.open(path, "r+") as ds:
            ds.build_overviews([2, 4, 8], rasterio.enums.Resampling.average)


def gdal_level(path, level):
    """Level `level` as GDAL reads it (an overview is opened as a dataset of its own)."""
    import rasterio

    options = {} if level == 0 else {"overview_level": level - 1}
    with rasterio.open(path, **options) as dataset:
        return np.moveaxis(dataset.read(), 0, -1)


def tifffile_level(path, level):
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0].levels[level]
        data = series.asarray()
        axes = series.axes
    if axes.startswith("C"):
        data = np.moveaxis(data, 0, -1)
    return data.reshape(data.shape[:2] + (-1,))


def assert_every_window(reader, reference):
    """Windows overlapping every tile border of the level, and reaching beyond it on every side."""
    assert reader.shape == reference.shape[:2]
    padded = np.pad(reference, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
    height, width = reader.shape
    for ylo in list(range(-9, height - 20, 23)) + [height - 20]:
        for xlo in list(range(-11, width - 25, 29)) + [width - 25]:
            box = (ylo, xlo, ylo + 31, xlo + 37)
            expected = padded[ylo + PAD:ylo + 31 + PAD, xlo + PAD:xlo + 37 + PAD]
            np.testing.assert_array_equal(reader.read(box), expected, err_msg=str(box))
    np.testing.assert_array_equal(reader.read((0, 0, height, width)), reference)


CASES = {  # name: (writer, number of levels, level-0 micrometres per pixel (y, x) or None)
    "ome-subifds": (lambda p: write_subifds(p, image(), ome=True, photometric="rgb",
                                            metadata={"axes": "YXS", "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.4}),
                    3, (0.5, 0.4)),
    "ome-planes-mm": (lambda p: write_subifds(p, np.moveaxis(image(3, np.uint16), -1, 0), ome=True,
                                              photometric="minisblack",
                                              metadata={"axes": "CYX", "PhysicalSizeX": 0.0005,
                                                        "PhysicalSizeXUnit": "mm", "PhysicalSizeY": 0.0005,
                                                        "PhysicalSizeYUnit": "mm"}),
                      3, (0.5, 0.5)),
    "subifds-striped": (lambda p: write_subifds(p, image(1, np.float32), ome=False, tile=None, compression=None,
                                                resolution=(1e4, 5e3), resolutionunit="CENTIMETER"),
                        3, (2.0, 1.0)),
    "svs-jpeg": (lambda p: write_svs(p, image(), "jpeg"), 3, (0.25, 0.25)),
    "svs-jpeg2000": (lambda p: write_svs(p, image(), 33005), 3, (0.25, 0.25)),  # Aperio's JPEG 2000 RGB
    "ndpi": (lambda p: write_ndpi(p, image()), 3, (0.25, 0.25)),
    "gdal-overviews": (lambda p: write_gdal(p, image(3, np.uint16)), 4, None),
    "gdal-mask": (lambda p: write_gdal(p, image(), mask=True), 4, None),
}
NEEDS = {"svs-jpeg": "JPEG8", "svs-jpeg2000": "JPEG2K", "ndpi": "JPEG8"}
SUFFIX = {"svs-jpeg": ".svs", "svs-jpeg2000": ".svs", "ndpi": ".ndpi"}


def make(tmp_path, case):
    if case in NEEDS and not has_codec(NEEDS[case]):
        pytest.skip(f"imagecodecs with {NEEDS[case]} is not installed")
    path = tmp_path / (case + SUFFIX.get(case, ".tif"))
    CASES[case][0](path)
    return path


def own_reading(path, case, level):
    return gdal_level(path, level) if case.startswith("gdal") else tifffile_level(path, level)


@pytest.mark.parametrize("case", CASES)
def test_every_level_reads_as_its_own_library_reads_it(tmp_path, case):
    path = make(tmp_path, case)
    _, count, mpp0 = CASES[case]
    with ImageReader(path) as reader:
        levels = reader.levels
    assert len(levels) == count and all(isinstance(level, Level) for level in levels)
    for k, info in enumerate(levels):
        reference = own_reading(path, case, k)
        assert info.shape == reference.shape[:2]
        assert info.downsample == (SIZE[0] / info.shape[0], SIZE[1] / info.shape[1])
        if mpp0 is None:
            assert info.mpp is None
        else:
            np.testing.assert_allclose(info.mpp, (mpp0[0] * info.downsample[0], mpp0[1] * info.downsample[1]))
        with ImageReader(path, level=k) as reader:
            assert reader.level == k and reader.levels == levels and reader.mpp == info.mpp
            assert reader.metadata["level"] == k and reader.metadata["level_scale"] == info.downsample
            assert_every_window(reader, reference)


def test_svs_thumbnail_label_and_macro_are_no_levels(tmp_path):
    path = make(tmp_path, "svs-jpeg")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_svs and [s.name for s in tif.series] == ["Baseline", "Thumbnail", "Label", "Macro"]
        assert tif.pages[0].compression == 7  # JPEG tiles
    with tifffile.TiffFile(make(tmp_path, "svs-jpeg2000")) as tif:
        assert tif.is_svs and tif.pages[0].compression == 33005
    with ImageReader(path) as reader:
        assert [level.shape for level in reader.levels] == [(300, 260), (150, 130), (75, 65)]


def test_ndpi_is_read_as_ndpi(tmp_path):
    path = make(tmp_path, "ndpi")
    with tifffile.TiffFile(path) as tif:
        assert tif.tiff.is_ndpi and tif.is_ndpi and tif.series[0].kind == "ndpi"
        assert [s.name for s in tif.series] == ["Baseline", "Macro"]
        level = tif.series[0].levels[0].keyframe  # one strip, read as tiles of 8 rows and 11 MCUs
        assert 65426 in level.tags and level.tile == (8, 88) and len(level.dataoffsets) == 38 * 3
    with ImageReader(path) as reader:  # near the image (JPEG of noise at quality 90)
        assert np.abs(reader.read((0, 0) + reader.shape).astype(int) - image()).mean() < 10


def test_gdal_mask_pages_are_no_levels(tmp_path):
    path = make(tmp_path, "gdal-mask")
    with tifffile.TiffFile(path) as tif:
        masks = [page.shape for page in tif.pages if page.subfiletype & 4]
    assert masks == [(300, 260), (150, 130), (75, 65), (38, 33)]
    with ImageReader(path) as reader:
        assert [level.shape for level in reader.levels] == [(300, 260), (150, 130), (75, 65), (38, 33)]
        assert reader.channels == 3


def test_metadata_of_the_level_read(tmp_path):
    """The level-0 resolution divided by the downsample; level and level_scale only of a pyramid."""
    path = make(tmp_path, "subifds-striped")
    with ImageReader(path, level=2) as reader:
        assert reader.metadata == {"resolution": (1e4 / 4, 5e3 / 4), "resolution_unit": "CENTIMETER", "ome": False,
                                   "axes": "YX", "level": 2, "level_scale": (4.0, 4.0)}
        assert reader.mpp == (8.0, 4.0)
        assert metadata_for_output(reader)["resolution"] == (1e4 / 4, 5e3 / 4)
    gdal = make(tmp_path, "gdal-overviews")
    with ImageReader(gdal, level=3) as reader:
        assert reader.metadata["level_scale"] == (300 / 38, 260 / 33) and reader.shape == (38, 33)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, image(), tile=(64, 64))
    with ImageReader(plain) as reader:
        assert "level" not in reader.metadata and reader.level == 0 and reader.mpp is None
        assert reader.levels == (Level((300, 260), (1.0, 1.0), None),)


def segments(path, level):
    """(offset, count) of every stored tile or strip of level `level`, of all its pages."""
    with tifffile.TiffFile(path) as tif:
        pages = tif.series[0].levels[level].pages
        return [(o, c) for page in pages for o, c in zip(page.dataoffsets, page.databytecounts) if c]


@pytest.mark.parametrize("case", ["ome-planes-mm", "gdal-overviews", "svs-jpeg", "ndpi"])
def test_other_levels_are_never_decoded(tmp_path, case):
    """With every other level's bytes destroyed, a level still opens and reads right; those levels do not."""
    path = make(tmp_path, case)
    count = CASES[case][1]
    references = [own_reading(path, case, k) for k in range(count)]
    for k in range(count):
        damaged = tmp_path / f"damaged-{k}{path.suffix}"
        data = bytearray(path.read_bytes())
        for other in set(range(count)) - {k}:
            for offset, size in segments(path, other):
                data[offset:offset + size] = b"\xa5" * size
        damaged.write_bytes(bytes(data))
        with ImageReader(damaged, level=k) as reader:
            assert_every_window(reader, references[k])
        other = (k + 1) % count
        try:  # a damaged level fails to decode, or (NDPI's bare JPEG scans) decodes wrong
            with ImageReader(damaged, level=other) as reader:
                assert not np.array_equal(reader.read((0, 0) + reader.shape), references[other])
        except ValueError as error:
            assert "cannot be decoded" in str(error)


def test_mpp_picks_the_nearest_level(tmp_path):
    path = make(tmp_path, "ome-subifds")  # 0.5 x 0.4, 1.0 x 0.8, 2.0 x 1.6 micrometres per pixel
    for mpp, level in [(0.1, 0), (0.45, 0), (0.7, 1), (0.9, 1), (1.2, 1), (1.3, 2), (100, 2)]:
        with ImageReader(path, mpp=mpp) as reader:
            assert reader.level == level, mpp
    levels = (Level((8, 8), (1.0, 1.0), (1.0, 1.0)), Level((4, 4), (2.0, 2.0), (2.0, 2.0)))
    assert level_for_mpp(levels, 2 ** 0.5) == 0  # a tie in log scale: the finer level
    assert level_for_mpp(levels, 1.5) == 1


@pytest.mark.parametrize("options, match", [
    (dict(level=3), r"^level=3 is out of range: '.*' has 3 levels \(0 to 2\)$"),
    (dict(level=-1), r"^level=-1 is negative"),
    (dict(level=1.5), r"^level=1\.5 is not an integer"),
    (dict(level="1"), r"^level='1' is not an integer"),
    (dict(level=True), r"^level=True is not an integer"),
    (dict(mpp=0), r"^mpp=0 is not a resolution"),
    (dict(mpp=-0.5), r"^mpp=-0\.5 is not a resolution"),
    (dict(mpp=float("nan")), r"^mpp=nan is not a resolution"),
    (dict(mpp=float("inf")), r"^mpp=inf is not a resolution"),
    (dict(mpp="0.5"), r"^mpp='0\.5' is not a resolution"),
    (dict(level=1, mpp=0.5), r"^level=1 and mpp=0\.5 are both given"),
])
def test_bad_level_or_mpp(tmp_path, options, match):
    path = make(tmp_path, "ome-subifds")
    with pytest.raises(ValueError, match=match):
        ImageReader(path, **options)


def test_level_of_an_image_without_levels(tmp_path):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, image(), tile=(64, 64))
    with pytest.raises(ValueError, match=r"^level=1 is out of range: '.*plain\.tif' has 1 level \(level=0\)$"):
        ImageReader(plain, level=1)
    with pytest.raises(ValueError, match=r"^mpp=0\.5 cannot pick a level: .* gives no resolution"):
        ImageReader(plain, mpp=0.5)
    with pytest.raises(ValueError, match=r"^level=1 is out of range: the ndarray source has 1 level"):
        ImageReader(image(), level=1)
    with pytest.raises(ValueError, match=r"^mpp=2\.0 cannot pick a level"):
        ImageReader(image(), mpp=2.0)
    with pytest.raises(ValueError, match=r"^mpp=2 cannot pick a level"):
        level_for_mpp(ImageReader(image()).levels, 2)
    gdal = make(tmp_path, "gdal-overviews")  # a GeoTIFF's pixel size is in metres of its CRS, not a resolution
    with pytest.raises(ValueError, match=r"^mpp=10 cannot pick a level"):
        ImageReader(gdal, mpp=10)
