"""A part's completion record: a manifest of every file it wrote, and the check that the store still holds them.

When a part completes, its record lists each array it wrote (shape, dtype,
a checksum of its ``zarr.json``, attributes such as ``origin`` included) and
every chunk of each array: its size in bytes and the CRC-32 of its stored
bytes. Arrays are created with ``write_empty_chunks``, so every chunk of the
grid is a file; none may be missing. The record also holds checksums of the
job, of the store's and the part's group metadata, and of itself.

:func:`check_part_metadata` compares a record with what the job's partition
says the part must have written (shapes before anything is read or
allocated); :func:`check_part_chunks` then reads every chunk file once.
"""

import hashlib
import itertools
import json
import math
import os
import zlib

import numpy as np

__all__ = ["checksum", "read_json", "chunk_keys", "build_record", "record_problem", "expected_arrays",
           "check_part_metadata", "check_part_chunks"]

RECORD = "complete"  # attribute of a part's group: the completion record
ARRAY_CONFIG = {"write_empty_chunks": True}  # every chunk a file, so that a missing one is damage
KEY_ENCODING = {"name": "default", "separator": "/"}
MAX_JSON_BYTES = 256 * 2**20  # a manifest lists about 30 bytes per chunk


def checksum(data):
    """blake2b of the canonical JSON of `data` (or of bytes), as hex."""
    if not isinstance(data, bytes):
        data = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_json(path, what):
    """(parsed JSON, raw bytes) of `path`; a ValueError naming `what` if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_JSON_BYTES:
                raise ValueError(f"{what} has {size} bytes, more than any this store writes")
            raw = handle.read()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{what} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        if str(error).startswith(what):
            raise
        raise ValueError(f"{what} cannot be read ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} is not a JSON object")
    return data, raw


def chunk_keys(shape, chunks):
    """Keys (``c/i/j/...``) of every chunk of an array, in C order."""
    grid = [math.ceil(s / c) for s, c in zip(shape, chunks)]
    for index in itertools.product(*(range(n) for n in grid)):
        yield "c/" + "/".join(map(str, index)) if index else "c"


def _file_sum(path, size=None):
    """[bytes, CRC-32] of a file; None without reading it when it does not have `size` bytes."""
    with open(path, "rb") as handle:
        if size is not None and os.fstat(handle.fileno()).st_size != size:
            return None
        data = handle.read()
    return [len(data), zlib.crc32(data)]


def _group_meta_sum(meta):
    """Checksum of a group's zarr.json without its attributes (the record lives there)."""
    return checksum({key: value for key, value in meta.items() if key != "attributes"})


def build_record(root_path, part_path, names, result, job_json):
    """The completion record of a part whose arrays `names` are written; reads every file of theirs once.

    Raises RuntimeError if a chunk file is missing: the part is then not complete.
    """
    root_meta, _ = read_json(os.path.join(root_path, "zarr.json"), "the store's zarr.json")
    group_meta, _ = read_json(os.path.join(part_path, "zarr.json"), "the part's zarr.json")
    arrays = {}
    for name in names:
        folder = os.path.join(part_path, name)
        meta, raw = read_json(os.path.join(folder, "zarr.json"), f"{name}/zarr.json")
        shape, chunks = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
        sums = []
        for key in chunk_keys(shape, chunks):
            try:
                sums.append(_file_sum(os.path.join(folder, key)))
            except FileNotFoundError:
                raise RuntimeError(f"array {name} chunk {key} was not written") from None
        arrays[name] = {"meta": checksum(raw), "shape": shape, "chunks": chunks, "dtype": meta["data_type"],
                        "sums": sums}
    record = dict(result, manifest={"job": checksum(job_json), "root": checksum(root_meta),
                                    "group": _group_meta_sum(group_meta), "arrays": arrays})
    record["checksum"] = checksum(record)
    return record


def record_problem(record):
    """Why a completion record cannot be trusted (a str), or None."""
    if not isinstance(record, dict) or not isinstance(record.get("manifest"), dict):
        return "its completion record is malformed"
    body = {key: value for key, value in record.items() if key != "checksum"}
    if record.get("checksum") != checksum(body):
        return "its completion record was changed (checksum mismatch)"
    return None


def expected_arrays(partition, part, result, labels, chunk):
    """{name: (shape, chunks, dtype or None)} of what a part with `result` must have written.

    dtype None: any integer dtype that holds the labels (the rows of a labels job).
    """
    from ._volume_partition import VolumePartition
    from .partition import part_plan

    if isinstance(partition, VolumePartition):
        from ._volume_store import volume_arrays

        return volume_arrays(partition, part, result, labels, chunk)
    plan = partition.plan
    channels, group = int(result["channels"]), int(result["group"])
    dtype = np.dtype(result["dtype"]).name
    planes = channels // group
    out = {}
    lo, hi = (int(v) for v in partition.own[part])
    if len(part_plan(partition, part).write_cells):
        origin = lo - lo % chunk
        extra = () if labels else (channels,)
        out["rows"] = ((hi - origin, plan.image_size[1]) + extra, (chunk, chunk) + extra, None if labels else dtype)
    lo, hi = (int(v) for v in partition.lead[part])
    if hi > lo:
        x0, x1 = plan.buffer_cols
        shape = (planes, hi - lo, (x1 - x0) * group)
        out["lead"] = (shape, shape, dtype)
    steps = partition.crop_steps(part)
    if len(steps):
        shape = (len(steps), planes, int(partition.crop_rows[steps].max()), int(plan.steps[steps, 3].max()) * group)
        out["crops"] = (shape, (1,) + shape[1:], dtype)
    return out


def check_part_metadata(store_path, part, record, partition, job_json, root_meta, labels, chunk):
    """Compare part `part`'s record and metadata files with its job; raise ValueError naming what differs.

    Returns {name: (folder, sums)} for :func:`check_part_chunks`.
    """
    where = f"part {part}"
    part_path = os.path.join(store_path, f"part{part}")
    manifest = record["manifest"]
    if manifest.get("job") != checksum(job_json):
        raise ValueError(f"{where} was computed for another job (its record names a different job)")
    if manifest.get("root") != checksum(root_meta):
        raise ValueError(f"{where}: the store's zarr.json (job attributes) changed since the part completed")
    group_meta, _ = read_json(os.path.join(part_path, "zarr.json"), f"{where}: zarr.json")
    if set(group_meta.get("attributes") or {}) - {RECORD} or manifest.get("group") != _group_meta_sum(group_meta):
        raise ValueError(f"{where}: its group zarr.json changed since the part completed")
    _check_result(record, part, partition)
    want = expected_arrays(partition, part, record, labels, chunk)
    arrays = manifest.get("arrays")
    if not isinstance(arrays, dict) or set(arrays) != set(want):
        raise ValueError(f"{where}: its record lists arrays {sorted(arrays or ())}; the job's partition needs "
                         f"{sorted(want)}")
    for entry in sorted(os.listdir(part_path)):  # the merge must not find an array the record does not vouch for
        if entry not in want and os.path.lexists(os.path.join(part_path, entry, "zarr.json")):
            raise ValueError(f"{where}: it holds an array {entry!r} that its record does not list")
    found = {}
    for name, (shape, chunks, dtype) in want.items():
        entry = arrays[name]
        what = f"{where}: array {name}"
        if not isinstance(entry, dict):
            raise ValueError(f"{what}: its record entry is malformed")
        if entry.get("shape") != list(shape) or entry.get("chunks") != list(chunks):
            raise ValueError(f"{what} has shape {entry.get('shape')} in chunks {entry.get('chunks')}; the job's "
                             f"partition needs {list(shape)} in chunks {list(chunks)}")
        if dtype is None:
            if not _holds_labels(entry.get("dtype"), int(record["channels"])):
                raise ValueError(f"{what} has dtype {entry.get('dtype')!r}, which cannot hold the "
                                 f"{record['channels']} class labels")
        elif entry.get("dtype") != dtype:
            raise ValueError(f"{what} has dtype {entry.get('dtype')!r}; expected {dtype}")
        sums = entry.get("sums")
        if (not isinstance(sums, list) or len(sums) != math.prod(math.ceil(s / c) for s, c in zip(shape, chunks))
                or not all(isinstance(pair, list) and len(pair) == 2 for pair in sums)):
            raise ValueError(f"{what}: its record does not list every chunk")
        folder = os.path.join(part_path, name)
        meta, raw = read_json(os.path.join(folder, "zarr.json"), f"{what}: zarr.json")
        if checksum(raw) != entry.get("meta"):
            raise ValueError(f"{what}: zarr.json changed since the part completed")
        if (meta.get("shape") != list(shape) or meta.get("data_type") != entry["dtype"]
                or meta.get("chunk_key_encoding") != {"name": "default", "configuration": {"separator": "/"}}):
            raise ValueError(f"{what}: zarr.json does not describe the array the record lists")
        attributes = {"origin": _origin(partition, part, chunk)} if name == "rows" else {}
        if meta.get("attributes", {}) != attributes:
            raise ValueError(f"{what}: attributes {meta.get('attributes')!r}; expected {attributes}")
        found[name] = (folder, shape, chunks, sums)
    return found


def _origin(partition, part, chunk):
    lo = int(partition.own[part][0])
    return lo - lo % chunk


def _holds_labels(name, channels):
    try:
        dtype = np.dtype(name)
    except TypeError:
        return False
    return dtype.kind in "iu" and dtype.itemsize <= 4 and np.iinfo(dtype).max >= channels - 1


def _check_result(record, part, partition):
    fields = {"part": part, "tiles": len(partition.steps_of(part))}
    for name, value in fields.items():
        if record.get(name) != value:
            raise ValueError(f"part {part}: its record has {name}={record.get(name)!r}; expected {value}")
    channels, group = record.get("channels"), record.get("group")
    if not (isinstance(channels, int) and channels >= 1 and group in (1, channels)):
        raise ValueError(f"part {part}: its record has channels={channels!r}, group={group!r}")
    if record.get("dtype") not in ("float32", "float64"):
        raise ValueError(f"part {part}: its record has dtype={record.get('dtype')!r}; expected float32 or float64")


def check_part_chunks(part, found):
    """Read every chunk file of the arrays `found` once; raise ValueError naming the first that differs."""
    for name, (folder, shape, chunks, sums) in found.items():
        for key, (size, crc) in zip(chunk_keys(shape, chunks), sums):
            what = f"part {part}: array {name} chunk {key}"
            path = os.path.join(folder, key)
            try:
                got = _file_sum(path, size)
            except FileNotFoundError:
                raise ValueError(f"{what} is missing") from None
            except OSError as error:
                raise ValueError(f"{what} cannot be read ({error.strerror})") from None
            if got is None or got[0] != size:
                raise ValueError(f"{what} has {os.path.getsize(path)} bytes; {size} were written")
            if got[1] != crc:
                raise ValueError(f"{what} was changed (CRC-32 mismatch)")
