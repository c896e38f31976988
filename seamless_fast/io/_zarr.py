"""Zarr volumes in (v2 and v3 arrays, OME-Zarr NGFF 0.4 and 0.5 multiscale images) and out (ZarrWriter)."""

import json
import math
import os
import shutil
import weakref

import numpy as np

from .._files import make_partial, publish
from ._volume import AxesSource, VolumeLevel, array_axes, unit_name
from ._volwrite import BlockWriter, check_positive_floats, check_shape3, check_source

__all__ = ["ZarrWriter"]

_CHANNEL_NAMES = ("c", "channel", "channels")


def import_zarr():
    try:
        import zarr
    except ImportError:
        raise ImportError("reading or writing zarr, and reading TIFF volumes, needs zarr 3: pip install 'zarr>=3.1' "
                          "(or the extra 'seamless_fast[dask]')") from None
    return zarr


def zarr_array_axes(array, channel_axis, name):
    """Axes letters of a plain zarr array: from its v3 ``dimension_names`` if they name z, y, x (and c),
    else as :func:`array_axes` gives them."""
    shape = tuple(int(n) for n in array.shape)
    names = getattr(array.metadata, "dimension_names", None)
    if names and all(isinstance(n, str) for n in names):
        letters = "".join("c" if n.lower() in _CHANNEL_NAMES else n.lower()[:1] if n.lower() in "zyx" else "t"
                          for n in names)
        if sorted(letters.replace("t", "")) in (sorted("zyx"), sorted("zyxc")):
            if channel_axis is not None:
                raise ValueError(f"channel_axis={channel_axis!r} is not needed: source={name!r} names its axes "
                                 f"{tuple(names)}")
            return letters
    return array_axes(len(shape), channel_axis, name, shape)


def _ome_axes(axes, path):
    """Axes letters of NGFF "axes" (dicts with name and type, or 0.3's plain names)."""
    letters, space = [], []
    for axis in axes:
        name, kind = (axis.get("name", ""), axis.get("type")) if isinstance(axis, dict) else (axis, None)
        name = str(name).lower()
        if kind == "channel" or name in _CHANNEL_NAMES:
            letters.append("c")
        elif kind == "space" or (kind is None and name in "zyx"):
            letters.append("s")
            space.append(name)
        else:
            letters.append("t")
    if len(space) != 3:
        raise ValueError(f"source={path!r} has {len(space)} space axes {tuple(space)}; expected a volume (z, y, x)")
    names = iter(space if sorted(space) == ["x", "y", "z"] else "zyx")
    return "".join(next(names) if a == "s" else a for a in letters)


def _compose(transforms, ndim, path):
    """(scale, translation) of a list of NGFF coordinateTransformations."""
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for transform in transforms or ():
        kind = transform.get("type")
        if kind == "identity":
            continue
        values = transform.get(kind)
        if kind not in ("scale", "translation") or values is None or len(values) != ndim:
            raise ValueError(f"source={path!r} has a coordinate transformation {transform!r} this reader does not "
                             f"support; expected inline 'scale' and 'translation' of {ndim} values")
        values = np.asarray(values, np.float64)
        if kind == "scale":
            scale, translation = scale * values, translation * values
        else:
            translation = translation + values
    return scale, translation


def open_zarr(path, level, channel_axis):
    zarr = import_zarr()
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:  # zarr raises several kinds for a folder that is no zarr
        detail = " ".join(str(exc).split())[:200]
        raise ValueError(f"source={path!r} is not a zarr array or group ({type(exc).__name__}: {detail})") from None
    if isinstance(node, zarr.Array):
        if level != 0:
            raise ValueError(f"level={level!r}: source={path!r} is a single zarr array with one level; expected 0")
        return AxesSource(node, zarr_array_axes(node, channel_axis, path), path)
    attrs = dict(node.attrs)
    multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        raise ValueError(f"source={path!r} is a zarr group without OME-Zarr 'multiscales' metadata; "
                         "expected an array or an OME-Zarr image")
    if channel_axis is not None:
        raise ValueError(f"channel_axis={channel_axis!r} is not needed: the axes of the OME-Zarr {path!r} come "
                         "from its metadata")
    image = multiscales[0]
    datasets = image.get("datasets") or []
    axes = _ome_axes(image.get("axes") or "tczyx"[-len(node[datasets[0]["path"]].shape):], path)
    if not 0 <= level < len(datasets):
        raise ValueError(f"level={level!r} is not a level of {path!r}; expected 0 to {len(datasets) - 1}")
    outer = _compose(image.get("coordinateTransformations"), len(axes), path)
    where = [axes.index(a) for a in "zyx"]
    levels, chosen = [], None
    for number, dataset in enumerate(datasets):
        array = node[dataset["path"]]
        scale, translation = _compose(dataset.get("coordinateTransformations"), len(axes), path)
        scale, translation = scale * outer[0], translation * outer[0] + outer[1]
        shape = tuple(int(array.shape[i]) for i in where)
        levels.append(VolumeLevel(shape, tuple(float(scale[i]) for i in where)))
        if number == level:
            chosen = array, scale[where], translation[where]
    array, scale, translation = chosen
    affine = np.eye(4)
    affine[[0, 1, 2], [0, 1, 2]] = scale
    affine[:3, 3] = translation
    units = [axis.get("unit") for axis in image.get("axes") or () if isinstance(axis, dict)
             and axis.get("type") == "space"]
    unit = unit_name(units[0]) if units and len(set(units)) == 1 else None
    return AxesSource(array, axes, path, spacing=levels[level].spacing, affine=affine, levels=tuple(levels),
                      level=level, unit=unit)


class ZarrWriter(BlockWriter):
    """Stream a volume into a zarr v3 array or an OME-Zarr 0.5 image, chunk by chunk.

    Parameters
    ----------
    path : str or os.PathLike
        Final folder name (``.zarr``). Written in a partial folder beside it,
        which replaces `path` (an earlier zarr array there included) only
        when :meth:`close` finds every voxel written.
    shape : (int, int, int)
        ``(D, H, W)``.
    channels : int, optional, keyword-only
        None for labels (data (d, h, w)); else C (data (d, h, w, C)),
        stored channel first, (C, D, H, W), all channels in each chunk.
    dtype : {uint8, uint16, uint32, float16, float32}, keyword-only
        Every value is converted by :func:`seamless_fast.dtypes.to_output_dtype`
        (a label too large, or probabilities outside [0, 1] into uint8, are refused).
    chunks : int or (int, int, int), optional, keyword-only
        Chunk ``(z, y, x)``; default 64 per axis, clipped to the shape. Chunks
        aligned to the blend's cells complete soonest.
    spacing : (float, float, float), optional, keyword-only
        ``(z, y, x)`` voxel size, written as the OME-Zarr scale.
    translation : (float, float, float), optional, keyword-only
        ``(z, y, x)`` world position of voxel (0, 0, 0), an OME-Zarr translation.
    unit : str, optional, keyword-only
        Length unit of `spacing` ("micrometer", "millimeter", "um", "mm", ...),
        written as each space axis's unit.
    ome : bool, keyword-only
        True: an OME-Zarr 0.5 image (a group with "multiscales" metadata, axes
        (c,) z, y, x, one level at path "0"). False: a plain zarr v3 array
        (with ``dimension_names``).
    source : VolumeReader, optional, keyword-only
        Take `spacing`, `unit` and `translation` (its affine's last column) from this
        reader where not given. A NIfTI's rotation is not carried: OME-Zarr
        has scale and translation only.
    compressor : bool, keyword-only
        Compress chunks with zarr's default codec (zstd).
    fill : number, optional, keyword-only
        None: :meth:`close` refuses a volume with voxels never written.
        A value: they take it (the dtype must hold it exactly).

    Notes
    -----
    A chunk is held in memory from its first write until its last voxel is
    written, then written once, whole. Cells emitted z-layer by z-layer hold
    at most the chunk layers they meet across the (H, W) plane (see
    :attr:`held_bytes`). Every chunk is written, also one equal to the fill,
    and :meth:`close` counts the chunk files.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "labels.zarr")
    ...     with ZarrWriter(path, (2, 3, 4), dtype="uint8", spacing=(2.0, 0.5, 0.5)) as writer:
    ...         writer.write((0, 0, 0, 2, 3, 4), np.ones((2, 3, 4), np.uint8))
    ...     from seamless_fast.io import VolumeReader
    ...     with VolumeReader(path) as reader:
    ...         reader.shape, reader.spacing, int(reader.read((0, 0, 0, 2, 3, 4)).sum())
    ((2, 3, 4), (2.0, 0.5, 0.5), 24)
    """

    kind = "ZarrWriter"

    def __init__(self, path, shape, *, channels=None, dtype, chunks=None, spacing=None, translation=None, ome=True,
                 source=None, compressor=True, fill=None, unit=None):
        shape = check_shape3(shape)
        chunks = _check_chunks(chunks, shape)
        if not isinstance(ome, (bool, np.bool_)):
            raise ValueError(f"ome={ome!r} must be True or False")
        check_source(source, shape)
        if source is not None:
            spacing = source.spacing if spacing is None else spacing
            unit = source.unit if unit is None else unit
            if translation is None and source.affine is not None:
                translation = tuple(float(v) for v in source.affine[:3, 3])
        spacing = None if spacing is None else check_positive_floats(spacing, "spacing")
        if unit is not None and unit_name(unit) is None:
            raise ValueError(f"unit={unit!r} is not a length unit; expected e.g. 'micrometer' or 'millimeter'")
        self._unit = None if unit is None else unit_name(unit)
        translation = None if translation is None else check_positive_floats(translation, "translation",
                                                                             positive=False)
        super().__init__(path, shape, chunks, channels=channels, dtype=dtype, fill=fill, folder=_zarr_group(path))
        zarr = import_zarr()
        self._temp = make_partial(self._path, directory=True)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._temp, ignore_errors=True)  # never closed
        try:
            self._array = self._create(zarr, bool(ome), spacing, translation, bool(compressor))
        except BaseException:
            shutil.rmtree(self._temp, ignore_errors=True)
            raise

    def _create(self, zarr, ome, spacing, translation, compressor):
        extra = () if self._channels is None else (self._channels,)
        names = ("c",) * len(extra) + ("z", "y", "x")
        kwargs = dict(shape=extra + self._shape, chunks=extra + self._block, dtype=self._dtype, fill_value=0,
                      dimension_names=names, config={"write_empty_chunks": True})
        if not compressor:
            kwargs["compressors"] = None
        if not ome:
            return zarr.create_array(self._temp, overwrite=True, zarr_format=3, **kwargs)
        group = zarr.open_group(self._temp, mode="w", zarr_format=3)
        axes = [{"name": "c", "type": "channel"}] * len(extra) + [
            {"name": a, "type": "space", **({} if self._unit is None else {"unit": self._unit})} for a in "zyx"]
        transforms = [{"type": "scale", "scale": [1.0] * len(extra) + list(spacing or (1.0, 1.0, 1.0))}]
        if translation is not None:
            transforms.append({"type": "translation", "translation": [0.0] * len(extra) + list(translation)})
        group.attrs["ome"] = {"version": "0.5", "multiscales": [
            {"name": os.path.basename(self._path), "axes": axes,
             "datasets": [{"path": "0", "coordinateTransformations": transforms}]}]}
        self._array_dir = os.path.join(self._temp, "0")
        return group.create_array("0", **kwargs)

    def _flush(self, index, block):
        lo = [i * b for i, b in zip(index, self._block)]
        hi = [min(l + b, n) for l, b, n in zip(lo, self._block, self._shape)]
        data = block[:hi[0] - lo[0], :hi[1] - lo[1], :hi[2] - lo[2]]
        region = tuple(slice(l, h) for l, h in zip(lo, hi))
        if self._channels is not None:
            data, region = np.moveaxis(data, -1, 0), (slice(None),) + region
        self._array[region] = data

    def _finish(self):
        folder = getattr(self, "_array_dir", self._temp)
        expected = math.prod(self._grid)
        found = sum(len(files) for _, _, files in os.walk(os.path.join(folder, "c")))
        if found != expected:
            raise RuntimeError(f"writing {self._path!r}: the store holds {found} chunk files of the {expected} "
                               "written; the output would be wrong")
        publish(self._temp, self._path)  # an earlier output stays until the new one is complete
        self._finalizer.detach()

    def _discard(self):
        self._finalizer()


def _zarr_group(path):
    """True for a path that may be replaced as a folder: an existing zarr array (check_output_path's own rule)
    or zarr group (an OME-Zarr image written before); "group" then means: skip the folder check."""
    for name, key, value in (("zarr.json", "node_type", "group"), (".zgroup", None, None)):
        try:
            with open(os.path.join(os.fspath(path), name)) as handle:
                if key is None or json.load(handle).get(key) == value:
                    return "group"
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    return True


def _check_chunks(chunks, shape):
    if chunks is None:
        return tuple(min(64, n) for n in shape)
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, (bool, np.bool_)):
        chunks = (int(chunks),) * 3
    try:
        out = check_shape3(chunks, "chunks")
    except ValueError:
        raise ValueError(f"chunks={chunks!r} is not a chunk shape; expected a positive int or (z, y, x) "
                         "positive ints") from None
    return tuple(min(c, n) for c, n in zip(out, shape))
