"""NIfTI volumes in (nibabel's array proxy: a window reads only its bytes) and out (NiftiWriter, z-plane by z-plane)."""

import gzip
import os
import shutil
import weakref

import numpy as np

from .._files import make_partial, publish
from ._volume import AxesSource, unit_name
from ._volwrite import BlockWriter, check_shape3, check_source

__all__ = ["NiftiWriter", "zyx_affine"]

# NIfTI's spatial units by their NGFF names.
_NIFTI_UNITS = {"meter": "meter", "millimeter": "mm", "micrometer": "micron"}
# Header (348 bytes) and the 4-byte extension flag: the data start here.
_VOX_OFFSET = 352


def import_nibabel():
    try:
        import nibabel
    except ImportError:
        raise ImportError("reading or writing NIfTI needs nibabel: pip install 'seamless_fast[nifti]'") from None
    return nibabel


def zyx_affine(affine):
    """A NIfTI affine ((i, j, k) = (x, y, z) voxel -> (x, y, z) world) as the (z, y, x) -> (z, y, x) one,
    or back: both the voxel and the world axes reversed.

    Examples
    --------
    >>> import numpy as np
    >>> zyx_affine(np.diag([1.0, 2.0, 3.0, 1.0])).diagonal()
    array([3., 2., 1., 1.])
    """
    try:
        matrix = np.asarray(affine, np.float64)
    except (TypeError, ValueError):
        matrix = np.empty(0)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        shown = " ".join(repr(affine).split())[:120]
        raise ValueError(f"affine={shown} is not a finite 4x4 matrix; expected (z, y, x) voxel -> world")
    affine = matrix
    order = [2, 1, 0, 3]
    return affine[order][:, order]


def open_nifti(path, level):
    nibabel = import_nibabel()
    if level != 0:
        raise ValueError(f"level={level!r}: a NIfTI file has one level; expected 0")
    try:
        image = nibabel.load(path, keep_file_open=True)
    except Exception as exc:  # nibabel raises several kinds for a damaged or foreign file
        detail = " ".join(str(exc).split())[:200]
        raise ValueError(f"source={path!r} is not a NIfTI file nibabel reads ({type(exc).__name__}: {detail})") \
            from None
    if not isinstance(image, (nibabel.Nifti1Image, nibabel.Nifti2Image)):
        raise ValueError(f"source={path!r} is a {type(image).__name__}; expected a NIfTI-1 or NIfTI-2 image")
    shape = image.shape
    if len(shape) == 3:
        axes = "xyz"
    elif len(shape) == 4:
        axes = "xyzc"  # time points or channels, read as channels
    elif len(shape) == 5 and shape[3] == 1:
        axes = "xyztc"  # NIfTI's vector intent keeps components on the fifth axis
    else:
        raise ValueError(f"source={path!r} has shape {shape}; expected (x, y, z), (x, y, z, c) or (x, y, z, 1, c)")
    proxy = image.dataobj
    header = image.header
    source = AxesSource(_Proxy(proxy, len(shape)), axes, path,
                        spacing=tuple(float(v) for v in header.get_zooms()[2::-1]),
                        affine=zyx_affine(image.affine), closer=_closer(proxy),
                        unit=unit_name(header.get_xyzt_units()[0]))
    source.extra = {"nifti_affine": image.affine.copy(), "nifti_header": header.copy()}
    return source


class _Proxy:
    """nibabel's array proxy with the dtype its slices come in (scaled data are float)."""

    def __init__(self, proxy, ndim):
        self.proxy, self.shape = proxy, proxy.shape
        self.dtype = np.asarray(proxy[(slice(0, 1),) * ndim]).dtype

    def __getitem__(self, index):
        return self.proxy[index]


def _closer(proxy):
    def close():
        opener = getattr(proxy, "_opener", None)
        if opener is not None:
            opener.close_if_mine()
    return close


def _open_output(path, gz, compresslevel):
    """The file object a NIfTI is streamed to (tests replace this to simulate a full disk)."""
    return gzip.open(path, "wb", compresslevel=compresslevel) if gz else open(path, "r+b")


class NiftiWriter(BlockWriter):
    """Stream a volume into a NIfTI-1 file (``.nii`` or ``.nii.gz``), z-plane by z-plane.

    Parameters
    ----------
    path : str or os.PathLike
        Final name, ending in ``.nii`` or ``.nii.gz``. Written under a partial
        name beside it, renamed when :meth:`close` finds every voxel written.
    shape : (int, int, int)
        ``(D, H, W)``: stored as NIfTI (x, y, z) = (W, H, D).
    channels : int, optional, keyword-only
        None for labels (a 3-D image); else C, stored as a 4-D image
        (x, y, z, C).
    dtype : {uint8, uint16, uint32, float16, float32}, keyword-only
        Labels as uint8/uint16, values as float32 (float16 is no NIfTI
        type and is refused). Values go through
        :func:`seamless_fast.dtypes.to_output_dtype`.
    affine : (4, 4) array, optional, keyword-only
        The (z, y, x) affine as :attr:`VolumeReader.affine` gives it.
        Default: the `source`'s NIfTI affine, else identity.
    source : VolumeReader, optional, keyword-only
        Carry its NIfTI header (sform and qform codes, units, description)
        and affine, or, for another kind of source, its :attr:`affine`.
    compresslevel : int, keyword-only
        gzip level of a ``.nii.gz`` (1 fastest, 9 smallest).
    fill : number, optional, keyword-only
        None: :meth:`close` refuses a volume with voxels never written.
        A value: they take it (the dtype must hold it exactly).

    Notes
    -----
    NIfTI stores x fastest and z slowest (then channels), so the writer
    holds only the z-planes not yet complete and streams each one, in z
    order, as it completes: with cells of depth d emitted layer by layer, d
    planes. With channels, each channel is a separate stretch of the file:
    a ``.nii`` is written at those offsets, a ``.nii.gz`` as one gzip member
    per channel in its own partial file, joined at :meth:`close`.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "labels.nii.gz")
    ...     affine = np.diag([3.0, 2.0, 1.0, 1.0])
    ...     with NiftiWriter(path, (2, 3, 4), dtype="uint8", affine=affine) as writer:
    ...         writer.write((0, 0, 0, 2, 3, 4), np.full((2, 3, 4), 7, np.uint8))
    ...     from seamless_fast.io import VolumeReader
    ...     with VolumeReader(path) as reader:
    ...         reader.shape, reader.spacing, int(reader.read((1, 2, 3, 2, 3, 4))[0, 0, 0, 0])
    ((2, 3, 4), (3.0, 2.0, 1.0), 7)
    """

    kind = "NiftiWriter"

    def __init__(self, path, shape, *, channels=None, dtype, affine=None, source=None, compresslevel=1, fill=None):
        nibabel = import_nibabel()
        shape = check_shape3(shape)
        name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
        if not isinstance(name, str) or not name.lower().endswith((".nii", ".nii.gz")):
            raise ValueError(f"path={path!r}: expected a .nii or .nii.gz name")
        if isinstance(compresslevel, bool) or compresslevel not in range(1, 10):
            raise ValueError(f"compresslevel={compresslevel!r}: expected an int from 1 to 9")
        check_source(source, shape)
        header = self._header(nibabel, source, affine)
        self.ordered = name.lower().endswith(".gz")
        super().__init__(path, shape, (1,) + shape[1:], channels=channels, dtype=dtype, fill=fill)
        if self._dtype == np.float16:
            raise ValueError("dtype=float16 is no NIfTI data type; expected uint8, uint16, uint32 or float32")
        depth, height, width = shape
        header.set_data_dtype(self._dtype.newbyteorder("<"))
        header.set_data_shape((width, height, depth) + (() if channels is None else (self._channels,)))
        header["vox_offset"] = _VOX_OFFSET
        header.set_slope_inter(1.0, 0.0)
        self.header = header
        self._plane_bytes = height * width * self._dtype.itemsize
        self._files, self._temps, self._counts = [], [], []
        self._finalizer = weakref.finalize(self, _remove, self._files, self._temps)  # a writer never closed
        try:
            self._open(compresslevel)
        except BaseException:
            self._discard()
            raise

    @staticmethod
    def _header(nibabel, source, affine):
        nifti_header = None if source is None else source.nifti_header
        header = nibabel.Nifti1Header() if nifti_header is None else nibabel.Nifti1Header.from_header(nifti_header)
        if header.endianness != "<":  # the data are written little-endian; the header must say so
            header = header.as_byteswapped("<")
        header.set_intent("none")  # a source's intent (a vector, a time series) is not the output's
        header["cal_min"] = header["cal_max"] = 0
        if affine is not None:
            affine = zyx_affine(affine)
        elif source is not None:
            affine = source.nifti_affine if source.nifti_affine is not None else (
                None if source.affine is None else zyx_affine(source.affine))
        if affine is None:
            affine = np.eye(4)
        sform, qform = (2, 0) if nifti_header is None else (int(header["sform_code"]) or 2, int(header["qform_code"]))
        if nifti_header is None and source is not None and source.unit in _NIFTI_UNITS:
            header.set_xyzt_units(xyz=_NIFTI_UNITS[source.unit])
        header.set_sform(affine, code=sform)
        header.set_qform(affine, code=qform)
        return header

    def _open(self, compresslevel):
        gz = self.ordered
        streams = (self._channels or 1) if gz else 1
        for number in range(streams):
            self._temps.append(make_partial(self._path))
            self._files.append(_open_output(self._temps[-1], gz, compresslevel))
            self._counts.append(0)
        head = self.header.binaryblock + b"\0" * (_VOX_OFFSET - len(self.header.binaryblock))
        self._put(0, head)

    def _put(self, stream, data):
        """Write `data` to a stream, checking that all of it went."""
        data = memoryview(data).cast("B")
        written = self._files[stream].write(data)
        if written != len(data):
            raise OSError(f"writing {self._path!r}: {written} of {len(data)} bytes written")
        self._counts[stream] += len(data)

    def _flush(self, index, block):
        z = index[0]
        planes = [block[0]] if self._channels is None else [block[0, ..., c] for c in range(self._channels)]
        for channel, plane in enumerate(planes):
            plane = np.ascontiguousarray(plane, dtype=self._dtype.newbyteorder("<"))
            if self.ordered:
                self._put(channel, plane)
            else:
                self._files[0].seek(_VOX_OFFSET + (channel * self._shape[0] + z) * self._plane_bytes)
                self._put(0, plane)

    def _finish(self):
        for handle in self._files:
            handle.close()
        total = _VOX_OFFSET + self._plane_bytes * self._shape[0] * (self._channels or 1)
        if sum(self._counts) != total:
            raise RuntimeError(f"writing {self._path!r}: {sum(self._counts)} of {total} bytes were written; "
                               "the output would be wrong")
        if not self.ordered and os.path.getsize(self._temps[0]) != total:
            raise RuntimeError(f"writing {self._path!r}: the file holds {os.path.getsize(self._temps[0])} of "
                               f"{total} bytes")
        if len(self._temps) > 1:  # one gzip member per channel, joined in channel order
            sizes = [os.path.getsize(t) for t in self._temps]
            with open(self._temps[0], "ab") as joined:
                for temp in self._temps[1:]:
                    with open(temp, "rb") as part:
                        shutil.copyfileobj(part, joined)
            if os.path.getsize(self._temps[0]) != sum(sizes):
                raise RuntimeError(f"writing {self._path!r}: joining the channels fell short")
        publish(self._temps[0], self._path)
        self._temps.pop(0)
        self._finalizer()

    def _discard(self):
        self._finalizer()


def _remove(files, temps):
    """Close the streams and remove the partial files (abort, or a writer collected unclosed)."""
    for handle in files:
        try:
            handle.close()
        except OSError:
            pass
    for temp in temps:
        try:
            os.remove(temp)
        except FileNotFoundError:
            pass
    temps.clear()
