"""Reading windows of huge images and streaming outputs into tiled TIFFs.

:class:`ImageReader` reads any window of a TIFF (or of an in-memory array)
without loading the image: only the TIFF tiles or strips that meet the window
are decoded. Windows may reach beyond the image; the outside is padded. Of a
pyramidal TIFF (OME-TIFF, SVS, NDPI, GeoTIFF with overviews) any one level is
read, chosen by number or by resolution (:func:`level_for_mpp`).

:class:`TiffWriter` streams an output image into a tiled (Big)TIFF as cells
arrive, holding only the TIFF tile rows that are not yet complete, and only
puts the file under its final name once it is complete.

tifffile is an optional dependency (``pip install 'seamless_fast[tiff]'``);
it is imported only when a TIFF is opened or written.
"""

from ._common import PAD_MODES
from ._geo import GeoReference
from ._levels import Level, level_for_mpp
from ._tiff import _tiff_metadata  # noqa: F401 -- importable here as before the split
from .reader import ImageReader, metadata_for_output
from .writer import BIGTIFF_THRESHOLD, COMPRESSIONS, RESOLUTION_UNITS, WRITER_DTYPES, TiffWriter, to_output_dtype

__all__ = ["GeoReference", "ImageReader", "Level", "TiffWriter", "level_for_mpp", "metadata_for_output"]
