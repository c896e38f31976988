"""Georeferencing kept: GeoTIFFs written by rasterio (GDAL) in, our outputs read back by rasterio."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
rasterio = pytest.importorskip("rasterio")
from rasterio.transform import Affine  # noqa: E402

import seamless_fast as sf  # noqa: E402
from seamless_fast.io import GeoReference, ImageReader, TiffWriter, metadata_for_output  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sf.__file__)))
SIZE = (150, 130)
UTM = dict(crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000))
LONLAT = dict(crs="EPSG:4326", transform=Affine(0.001, 0, 13.4, 0, -0.001, 52.5))
ROTATED = dict(crs="EPSG:32633", transform=Affine(8, 3, 500000, 2, -9, 4000000))  # ModelTransformation


def write_gdal(path, geo, *, dtype="uint8", nodata=None, bands=1, tags=None, size=SIZE):
    data = np.random.default_rng(0).integers(1, 200, (bands,) + size).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", height=size[0], width=size[1], count=bands, dtype=dtype,
                           nodata=nodata, tiled=True, blockxsize=32, blockysize=32, **geo) as dataset:
            dataset.write(data)
            if tags:
                dataset.update_tags(**tags)
    return data


def gdal_view(path):
    with rasterio.open(path) as dataset:
        return dataset.crs, dataset.transform, dataset.nodata, dataset.overviews(1), dataset.tags()


def assert_transform(actual, expected):
    np.testing.assert_allclose(tuple(actual)[:6], tuple(expected)[:6], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("geo", [UTM, LONLAT, ROTATED], ids=["utm", "lonlat", "rotated"])
@pytest.mark.parametrize("point", [False, True], ids=["area", "point"])
def test_output_has_the_inputs_crs_transform_and_nodata(tmp_path, geo, point):
    source = tmp_path / "in.tif"
    write_gdal(source, geo, nodata=0, tags={"AREA_OR_POINT": "Point"} if point else None)
    crs, transform, nodata, _, tags = gdal_view(source)
    assert (tags.get("AREA_OR_POINT") == "Point") == point
    with ImageReader(source) as reader:
        kwargs = metadata_for_output(reader)
        assert kwargs["nodata"] == 0 and reader.georeference.raster_type == (2 if point else 1)
    out = tmp_path / "out.tif"
    with TiffWriter(out, SIZE, tile=(32, 32), **kwargs) as writer:
        writer.write((0, 0) + SIZE, np.ones(SIZE, np.uint8))
    out_crs, out_transform, out_nodata, _, out_tags = gdal_view(out)
    assert out_crs == crs and out_nodata == nodata == 0
    assert_transform(out_transform, transform)
    assert out_tags.get("AREA_OR_POINT") == tags.get("AREA_OR_POINT")


@pytest.mark.parametrize("geo", [UTM, LONLAT, ROTATED], ids=["utm", "lonlat", "rotated"])
@pytest.mark.parametrize("point", [False, True], ids=["area", "point"])
@pytest.mark.parametrize("level_scale, output_scale", [((1, 1), 2), ((1, 1), (2, 3)), ((2.0, 2.0), 1),
                                                       ((150 / 75, 130 / 65), 4), ((1.5, 1.25), (1, 2))])
def test_scaled_transform_is_gdals(tmp_path, monkeypatch, geo, point, level_scale, output_scale):
    """Output pixels `level_scale * output_scale` input pixels wide: GDAL sees the input's transform times that
    scale (pixel (0, 0) keeps its corner), for PixelIsArea and PixelIsPoint files alike."""
    source = tmp_path / "in.tif"
    write_gdal(source, geo, tags={"AREA_OR_POINT": "Point"} if point else None)
    crs, transform, *_ = gdal_view(source)
    fy, fx = np.multiply(level_scale, output_scale if isinstance(output_scale, tuple) else (output_scale,) * 2)
    with ImageReader(source) as reader:
        plain = reader.metadata
        monkeypatch.setattr(ImageReader, "metadata", property(lambda self: dict(plain, level_scale=level_scale)))
        kwargs = metadata_for_output(reader, output_scale=output_scale)
    size = (int(np.ceil(SIZE[0] / fy)), int(np.ceil(SIZE[1] / fx)))
    out = tmp_path / "out.tif"
    with TiffWriter(out, size, tile=(16, 16), **kwargs) as writer:
        writer.write((0, 0) + size, np.ones(size, np.uint8))
    out_crs, out_transform, *_ = gdal_view(out)
    assert out_crs == crs
    assert_transform(out_transform, transform @ Affine.scale(fx, fy))


def test_georeference_api_scales_like_gdal_overviews(tmp_path):
    """GDAL's own overviews of a file are placed as GeoReference.scaled places a level."""
    source = tmp_path / "in.tif"
    write_gdal(source, UTM, size=(151, 129))
    with rasterio.open(source, "r+") as dataset:
        dataset.build_overviews([2])
    with rasterio.open(source, overview_level=0) as overview:
        expected, shape = overview.transform, overview.shape
    with ImageReader(source) as reader:
        geo = reader.georeference
    scaled = geo.scaled((151 / shape[0], 129 / shape[1]))
    assert_transform(scaled.affine(), expected)
    assert geo.scaled((1, 1)) is geo and geo.affine() == tuple(UTM["transform"])[:6]


def test_geo_tags_and_gdal_metadata_round_trip(tmp_path):
    """GeoKeys with their double and ASCII params are kept; GDAL_METADATA keeps its dataset items only."""
    source = tmp_path / "in.tif"
    write_gdal(source, dict(crs="+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80",
                            transform=UTM["transform"]), tags={"SCENE": "S2A_0001"})
    with rasterio.open(source, "r+") as dataset:
        dataset.update_tags(1, STATISTICS_MEAN="99.5")
    with ImageReader(source) as reader:
        geo = reader.georeference
        assert geo.geo_doubles and geo.geo_ascii and "SCENE" in geo.gdal_metadata
        assert "STATISTICS_MEAN" not in geo.gdal_metadata  # describes the input's band, not ours
        kwargs = metadata_for_output(reader)
    out = tmp_path / "out.tif"
    with TiffWriter(out, SIZE, tile=(32, 32), **kwargs) as writer:
        writer.write((0, 0) + SIZE, np.zeros(SIZE, np.uint8))
    with rasterio.open(source) as a, rasterio.open(out) as b:
        assert a.crs == b.crs and b.tags()["SCENE"] == "S2A_0001" and "STATISTICS_MEAN" not in b.tags(1)
    with tifffile.TiffFile(out) as tif, tifffile.TiffFile(source) as original:
        for code in (33550, 33922, 34735, 34736, 34737):
            assert tif.pages[0].tags[code].value == original.pages[0].tags[code].value


# --------------------------------------------------------------------------- nodata


@pytest.mark.parametrize("dtype, nodata", [(np.uint8, 255), (np.uint16, 0), (np.float32, -9999.5),
                                           (np.float32, np.nan), (np.float16, 1.0)])
def test_nodata_is_recorded_and_fills_unwritten_pixels(tmp_path, dtype, nodata):
    path = tmp_path / "out.tif"
    with TiffWriter(path, (48, 40), dtype=dtype, tile=(16, 16), nodata=nodata) as writer:
        writer.write((0, 0, 16, 40), np.full((16, 40), 0.5 if np.dtype(dtype).kind == "f" else 2, dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as dataset:
            values, recorded = dataset.read(1), dataset.nodata
            mask = dataset.read_masks(1)
    np.testing.assert_array_equal(recorded, nodata)
    np.testing.assert_array_equal(values[16:], np.full((32, 40), nodata, dtype))
    assert (mask[16:] == 0).all() and (mask[:16] == 255).all()
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.georeference.nodata_value, nodata)


def test_pixels_outside_the_area_are_nodata(tmp_path):
    shapely = pytest.importorskip("shapely")
    area = shapely.Polygon([(3, 5), (40, 10), (20, 45)])  # (y, x)
    path = tmp_path / "out.tif"
    image = np.random.default_rng(1).random((48, 50, 2)).astype(np.float32)
    with TiffWriter(path, (48, 50), channels=2, dtype=np.float32, tile=(16, 16), nodata=-1, area=area) as writer:
        for top in range(0, 48, 16):
            writer.write((top, 0, top + 16, 50), image[top:top + 16])
    rows, cols = np.meshgrid(np.arange(48) + 0.5, np.arange(50) + 0.5, indexing="ij")
    inside = shapely.contains_xy(area, rows, cols)
    assert 0 < inside.sum() < inside.size
    expected = np.where(inside[..., None], image, np.float32(-1))
    np.testing.assert_array_equal(tifffile.imread(path), expected)


@pytest.mark.parametrize("options, message", [
    (dict(nodata=256), r"nodata=256 cannot be stored as uint8"),
    (dict(nodata=-1), r"nodata=-1 cannot be stored as uint8"),
    (dict(nodata=1.5), r"nodata=1.5 cannot be stored as uint8"),
    (dict(nodata="0"), r"nodata='0' is not a real number"),
    (dict(nodata=3, fill=4), r"fill=4 differs from nodata=3; pixels never written are nodata, give one of them"),
    (dict(georeference={"crs": 4326}), r"georeference=\{'crs': 4326\} is not a GeoReference"),
])
def test_bad_nodata_and_georeference_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message) as info:
        TiffWriter(tmp_path / "out.tif", (32, 32), tile=(16, 16), **options)
    assert "\n" not in str(info.value) and os.listdir(tmp_path) == []


def test_fill_and_nodata_are_one_value(tmp_path):
    with TiffWriter(tmp_path / "a.tif", (32, 32), tile=(16, 16), fill=5, nodata=5) as writer:
        assert writer.nodata == 5
    with TiffWriter(tmp_path / "b.tif", (32, 32), tile=(16, 16), fill=5) as writer:
        assert writer.nodata is None  # a fill alone is not recorded as nodata
    assert (tifffile.imread(tmp_path / "a.tif") == 5).all() and (tifffile.imread(tmp_path / "b.tif") == 5).all()
    with tifffile.TiffFile(tmp_path / "b.tif") as tif:
        assert 42113 not in tif.pages[0].tags


@pytest.mark.parametrize("scale, message", [((0, 1), r"scale=\(0, 1\): expected two positive finite numbers"),
                                            ("2", r"scale='2' is not a \(sy, sx\) pair of numbers"),
                                            ((np.inf, 1), r"expected two positive finite numbers")])
def test_bad_scale_is_a_one_line_error(scale, message):
    with pytest.raises(ValueError, match=message):
        GeoReference(pixel_scale=(1, 1, 0), tiepoints=(0, 0, 0, 0, 0, 0)).scaled(scale)


def test_metadata_for_output_bad_scale():
    with ImageReader(np.zeros((4, 4), np.uint8)) as reader:
        with pytest.raises(ValueError, match=r"output_scale=0: every entry must be positive"):
            metadata_for_output(reader, output_scale=0)
        assert metadata_for_output(reader, output_scale=2) == {"resolution": None, "resolution_unit": None,
                                                               "ome": False}


def test_resolution_is_divided_by_the_scale(tmp_path):
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), resolution=(40.0, 20.0), resolutionunit="CENTIMETER")
    with ImageReader(path) as reader:
        assert metadata_for_output(reader, output_scale=(2, 4))["resolution"] == (10.0, 10.0)


# --------------------------------------------------------------------------- the command line


MODEL = textwrap.dedent('''
    import numpy as np

    def classes(batch):
        """Three classes from the first channel's value: labels vary, no context needed."""
        first = np.asarray(batch, dtype=np.float32)[:, :1]
        return np.concatenate([first, 100 - first, 60 + 0 * first], axis=1)

    def scaled(batch):
        return np.asarray(batch, dtype=np.float32)[:, :1] / 255
''')


def segment(folder, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "seamless_fast", "segment", *map(str, args), "--tile", "64",
                           "--overlap", "16", "--no-progress"], capture_output=True, text=True, cwd=folder, env=env,
                          timeout=300)


@pytest.fixture()
def geo_folder(tmp_path):
    (tmp_path / "models.py").write_text(MODEL)
    data = write_gdal(tmp_path / "in.tif", LONLAT, nodata=250, size=(300, 260))
    return tmp_path, data[0]


def test_segment_keeps_crs_transform_nodata_and_writes_overviews(geo_folder):
    folder, data = geo_folder
    run = segment(folder, "in.tif", "out.tif", "--model", "models:classes", "--pyramid", "--nodata", "250")
    assert run.returncode == 0, run.stderr
    crs, transform, nodata, overviews, _ = gdal_view(folder / "in.tif")
    out_crs, out_transform, out_nodata, out_overviews, _ = gdal_view(folder / "out.tif")
    assert out_crs == crs and out_nodata == nodata == 250 and out_overviews == [2]
    assert_transform(out_transform, transform)
    labels = np.argmax(np.stack([data, 100 - data.astype(np.float32), np.full(data.shape, 60)]), axis=0)
    with tifffile.TiffFile(folder / "out.tif") as tif:
        levels = [level.asarray() for level in tif.series[0].levels]
    assert [level.shape for level in levels] == [(300, 260), (150, 130)]
    from test_writer_pyramid import reference_reduce

    np.testing.assert_array_equal(levels[0], labels)
    np.testing.assert_array_equal(levels[1], reference_reduce(labels.astype(np.uint8), "mode", nodata=250))
    with rasterio.open(folder / "out.tif", overview_level=0) as overview:
        np.testing.assert_array_equal(overview.read(1), levels[1])


def test_segment_probabilities_area_nodata(geo_folder):
    folder, data = geo_folder
    run = segment(folder, "in.tif", "out.tif", "--model", "models:scaled", "--probabilities", "--dtype", "uint16",
                  "--nodata", "65535", "--area", "POLYGON ((10 10, 200 30, 120 250, 10 10))", "--pyramid")
    assert run.returncode == 0, run.stderr
    with rasterio.open(folder / "out.tif") as dataset:
        assert dataset.nodata == 65535 and dataset.overviews(1) == [2]
        values, mask = dataset.read(1), dataset.read_masks(1)
    shapely = pytest.importorskip("shapely")
    rows, cols = np.meshgrid(np.arange(300) + 0.5, np.arange(260) + 0.5, indexing="ij")
    inside = shapely.contains_xy(shapely.from_wkt("POLYGON ((10 10, 200 30, 120 250, 10 10))"), cols, rows)
    np.testing.assert_array_equal(mask == 255, inside)
    np.testing.assert_array_equal(values[inside], np.rint(data[inside] / 255 * 65535).astype(np.uint16))
    with tifffile.TiffFile(folder / "out.tif") as tif:
        level = tif.series[0].levels[1].asarray()
    from test_writer_pyramid import reference_reduce

    np.testing.assert_array_equal(level, reference_reduce(values, "mean", nodata=65535))


@pytest.mark.parametrize("args, message", [
    (["--nodata", "abc"], "--nodata 'abc' is not a number"),
    (["--nodata", "256"], "--nodata 256 cannot be stored in the output dtype uint8"),
    (["--nodata", "-1", "--probabilities", "--dtype", "uint16", "--model", "models:scaled"],
     "--nodata -1 cannot be stored in the output dtype uint16"),
    (["--pyramid", "--part", "0/2", "--store", "parts"], "--pyramid goes with a whole run"),
])
def test_segment_bad_nodata_exits_2_with_one_line(geo_folder, args, message):
    folder, _ = geo_folder
    output = [] if "--part" in args else ["out.tif"]
    run = segment(folder, "in.tif", *output, "--model", "models:classes", *args)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and message in run.stderr
    assert not (folder / "out.tif").exists() and not [p for p in os.listdir(folder) if "partial" in p]


@pytest.mark.parametrize("nodata", [65535, 0])
def test_segment_does_not_carry_the_inputs_nodata(tmp_path, nodata):
    """The input's nodata describes its values: as the labels' it would hide a class (0 here), or not fit
    the output dtype (uint16 65535 -> uint8 labels). Without --nodata or --area none is recorded."""
    (tmp_path / "models.py").write_text(MODEL)
    write_gdal(tmp_path / "in.tif", UTM, dtype="uint16", nodata=nodata)
    run = segment(tmp_path, "in.tif", "out.tif", "--model", "models:classes")
    assert run.returncode == 0, run.stderr
    crs, transform, nodata, overviews, _ = gdal_view(tmp_path / "out.tif")
    assert nodata is None and overviews == [] and crs.to_epsg() == 32633
    assert_transform(transform, UTM["transform"])


def test_segment_area_without_nodata_records_a_value_no_label_takes(geo_folder):
    folder, _ = geo_folder
    run = segment(folder, "in.tif", "out.tif", "--model", "models:classes", "--area",
                  "POLYGON ((10 10, 200 30, 120 250, 10 10))")
    assert run.returncode == 0, run.stderr
    with rasterio.open(folder / "out.tif") as dataset:
        labels, mask = dataset.read(1), dataset.read_masks(1)
        assert dataset.nodata == 255
    assert labels.max(initial=0, where=mask == 255) <= 2 and (labels[mask == 0] == 255).all() and (mask == 0).any()
