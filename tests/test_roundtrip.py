"""Real files through `seamless-fast segment` with every option of issue 15 at once: a level of a pyramid,
a model that reads context and returns a smaller tile, and a pyramid out; each output read back by rasterio
(GDAL) and tifffile, and its values equal to the library's run of the same plan."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
rasterio = pytest.importorskip("rasterio")
from rasterio.enums import Resampling  # noqa: E402
from rasterio.transform import Affine  # noqa: E402

import seamless_fast as sf  # noqa: E402
from seamless_fast.io import ImageReader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sf.__file__)))
CONTEXT, SCALE, TILE, OVERLAP = 8, 2, 64, 16

MODEL = textwrap.dedent(f'''
    import numpy as np

    def half(batch):
        """Reads {CONTEXT} pixels of context, returns four classes at half resolution."""
        batch = np.asarray(batch, dtype=np.float32)
        core = batch[:, :, {CONTEXT}:-{CONTEXT}, {CONTEXT}:-{CONTEXT}]
        core = core.reshape(core.shape[0], core.shape[1], core.shape[2] // 2, 2, core.shape[3] // 2, 2).mean((3, 5))
        first = core[:, :1] / 255
        return np.concatenate([first, 1 - first, 0.4 + 0 * first, np.abs(first - 0.5)], axis=1)
''')


def segment(folder, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, str(folder), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "seamless_fast", "segment", *map(str, args), "--model", "models:half",
                           "--tile", str(TILE), "--overlap", str(OVERLAP), "--context", str(CONTEXT),
                           "--output-scale", str(SCALE), "--no-progress"], capture_output=True, text=True,
                          cwd=folder, env=env, timeout=300)


def library_labels(folder, path, level):
    """The same job through the library: the plan of that level, the model, the blend."""
    sys.path.insert(0, str(folder))
    try:
        import models
    finally:
        sys.path.remove(str(folder))
    with ImageReader(path, level=level) as reader:
        plan, _ = sf.plan_regular_grid(reader.shape, TILE, OVERLAP, context=CONTEXT, output_scale=SCALE,
                                       traverse="rows")
        tiles = [models.half(reader.read(box)[None].transpose(0, 3, 1, 2))[0] for box in plan.read_boxes().tolist()]
    del sys.modules["models"]
    return sf.blend(plan, tiles, labels=True, channel_first=True)


def test_geotiff_overview_level_context_scale_pyramid(tmp_path):
    (tmp_path / "models.py").write_text(MODEL)
    source = tmp_path / "scene.tif"
    transform = Affine(10, 0, 500_000, 0, -10, 4_600_000)
    image = np.random.default_rng(3).integers(0, 256, (3, 1100, 900), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(source, "w", driver="GTiff", height=1100, width=900, count=3, dtype="uint8",
                           crs="EPSG:32633", transform=transform, tiled=True, blockxsize=64, blockysize=64,
                           compress="deflate") as dataset:
            dataset.write(image)
        with rasterio.open(source, "r+") as dataset:  # internal overviews, as gdaladdo makes them
            dataset.build_overviews([2, 4], Resampling.average)
    run = segment(tmp_path, source, "labels.tif", "--level", "1", "--pyramid")
    assert run.returncode == 0, run.stderr
    with rasterio.open(tmp_path / "labels.tif") as result:
        assert result.crs.to_epsg() == 32633
        assert result.shape == (275, 225)  # level 1: 550 x 450; output scale 2
        np.testing.assert_allclose(tuple(result.transform)[:6], tuple(transform @ Affine.scale(4))[:6])
        assert result.overviews(1) == [2]  # 138 x 113 fits one 256-pixel TIFF tile
        labels = result.read(1)
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        assert [level.shape for level in tif.series[0].levels] == [(275, 225), (138, 113)]
    np.testing.assert_array_equal(labels, library_labels(tmp_path, source, level=1))


def test_ome_slide_level_context_scale_pyramid(tmp_path):
    (tmp_path / "models.py").write_text(MODEL)
    source = tmp_path / "slide.ome.tif"
    image = np.random.default_rng(4).integers(0, 256, (1200, 1000, 3), dtype=np.uint8)
    with tifffile.TiffWriter(source, ome=True) as tiff:
        options = dict(tile=(128, 128), compression="zlib", photometric="rgb", resolutionunit="CENTIMETER")
        tiff.write(image, subifds=2, resolution=(40_000, 40_000),
                   metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}, **options)
        for level in (1, 2):
            tiff.write(image[::2 ** level, ::2 ** level], subfiletype=1, resolution=(40_000 / 2 ** level,) * 2,
                       **options)
    run = segment(tmp_path, source, "tissue.ome.tif", "--mpp", "0.5", "--pyramid")  # level 1
    assert run.returncode == 0, run.stderr
    with tifffile.TiffFile(tmp_path / "tissue.ome.tif") as tif:
        assert tif.is_ome
        assert [level.shape for level in tif.series[0].levels] == [(300, 250), (150, 125)]
        assert 'PhysicalSizeX="1.0"' in tif.ome_metadata and 'PhysicalSizeY="1.0"' in tif.ome_metadata
        np.testing.assert_allclose(tif.pages[0].resolution, (10_000, 10_000))  # per centimetre: 1 um
        labels = tif.series[0].levels[0].asarray()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a slide has no map
        with rasterio.open(tmp_path / "tissue.ome.tif") as result:
            assert result.shape == (300, 250) and result.overviews(1) == [2]
    np.testing.assert_array_equal(labels, library_labels(tmp_path, source, level=1))


def test_svs_like_jpeg_slide_level_by_resolution(tmp_path):
    """An Aperio-like SVS (JPEG tiles, MPP in the description, a thumbnail page between the levels): the
    level nearest 1 um/pixel, segmented, with its resolution in the output."""
    from test_io_levels import write_svs

    pytest.importorskip("imagecodecs")
    (tmp_path / "models.py").write_text(MODEL)
    source = tmp_path / "slide.svs"
    data = np.random.default_rng(5).integers(0, 200, (300, 260, 3)).astype(np.uint8)  # the size its header says
    write_svs(source, data, "jpeg")
    run = segment(tmp_path, source, "tissue.tif", "--mpp", "1", "--pyramid")  # MPP 0.25: level 2, 75 x 65
    assert run.returncode == 0, run.stderr
    with tifffile.TiffFile(tmp_path / "tissue.tif") as tif:
        labels = tif.series[0].levels[0].asarray()
        assert labels.shape == (38, 33)
        # MPP 0.25 at level 0, 1 at level 2, 2 um per output pixel: 5000 pixels per centimetre
        np.testing.assert_allclose(tif.pages[0].resolution, (5000, 5000))
        assert tif.pages[0].resolutionunit == 3
    np.testing.assert_array_equal(labels, library_labels(tmp_path, source, level=2))
