#!/usr/bin/env python3
"""Write two sample inputs for unet_segment.py, made from the synthetic scene of seamless_fast.demo.

    python examples/make_samples.py samples/            # samples/scene.tif and samples/slide.ome.tif

- ``scene.tif``: a GeoTIFF (RGB, uint8, tiled, deflate) in UTM zone 33N (EPSG:32633) with 10 m pixels, as a
  satellite scene; QGIS and GDAL place it near 15 degrees E, 41.5 degrees N.
- ``slide.ome.tif``: a pyramidal OME-TIFF (RGB, uint8, tiled) at 0.25 micrometres per pixel, with reduced levels
  at 1/2 and 1/4 in SubIFDs, as slide scanners write them; QuPath opens it.

Needs only tifffile (``pip install 'seamless_fast[tiff]'``); no torch, no GDAL.
"""

import argparse
import os
import sys

import numpy as np

from seamless_fast.demo import SyntheticScene

__all__ = ["scene_image", "write_geotiff", "write_slide", "main"]

# GeoTIFF tags (OGC GeoTIFF 1.1): pixel size, the tie point of pixel (0, 0), and the keys naming the CRS
MODEL_PIXEL_SCALE, MODEL_TIEPOINT, GEO_KEY_DIRECTORY = 33550, 33922, 34735


def scene_image(size, seed=0):
    """The synthetic scene as an (size, size, 3) uint8 RGB image."""
    return np.rint(SyntheticScene(size, seed=seed).read((0, 0, size, size)) * 255).clip(0, 255).astype(np.uint8)


def write_geotiff(path, image, *, epsg=32633, origin=(500_000.0, 4_600_000.0), pixel=10.0):
    """Write `image` as a tiled GeoTIFF: projected CRS `epsg`, upper-left corner at `origin` (x, y), square pixels."""
    import tifffile

    keys = [1, 1, 0, 3,  # version 1.1.0, three keys:
            1024, 0, 1, 1,  # GTModelTypeGeoKey: projected
            1025, 0, 1, 1,  # GTRasterTypeGeoKey: pixel is area
            3072, 0, 1, epsg]  # ProjectedCSTypeGeoKey
    tags = [(MODEL_PIXEL_SCALE, "d", 3, (pixel, pixel, 0.0), True),
            (MODEL_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),
            (GEO_KEY_DIRECTORY, "H", len(keys), keys, True)]
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib", photometric="rgb", extratags=tags)


def write_slide(path, image, *, mpp=0.25, levels=3):
    """Write `image` as a pyramidal OME-TIFF at `mpp` micrometres per pixel, with `levels` - 1 reduced levels."""
    import tifffile

    with tifffile.TiffWriter(path, ome=True, bigtiff=True) as tiff:
        for level in range(levels):
            step = 2 ** level
            options = dict(tile=(256, 256), compression="zlib", photometric="rgb",
                           resolution=(1e4 / (mpp * step), 1e4 / (mpp * step)), resolutionunit="CENTIMETER")
            if level == 0:
                tiff.write(image, subifds=levels - 1, metadata={"axes": "YXS", "PhysicalSizeX": mpp,
                                                                "PhysicalSizeY": mpp}, **options)
            else:  # nearest-neighbour reduction: enough for a sample
                tiff.write(image[::step, ::step], subfiletype=1, **options)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make_samples.py", description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="where to write scene.tif and slide.ome.tif (made if missing)")
    parser.add_argument("--size", type=int, default=2048, help="height and width of both images (default 2048)")
    args = parser.parse_args(argv)
    if not 16 <= args.size <= 16384:
        parser.error(f"--size {args.size} must be from 16 to 16384")
    os.makedirs(args.folder, exist_ok=True)
    image = scene_image(args.size)
    write_geotiff(os.path.join(args.folder, "scene.tif"), image)
    write_slide(os.path.join(args.folder, "slide.ome.tif"), image)
    print(f"wrote {args.folder}/scene.tif and {args.folder}/slide.ome.tif ({args.size} x {args.size} RGB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
