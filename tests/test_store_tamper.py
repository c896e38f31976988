"""A complete store damaged in any one file or attribute: merge refuses it, before any output is opened."""

import json
import os
import shutil
import tempfile

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from seamless_fast.scale.store import Job, PartStore  # noqa: E402

IMAGE = np.random.default_rng(11).random((150, 120, 3), np.float32)
JOB = Job.from_options(IMAGE.shape[:2], 48, 16, parts=3, chunk=32)


def read_tile(box):
    return IMAGE[box[0]:box[2], box[1]:box[3]]


def model(batch):
    return np.stack([tile - tile.mean() for tile in np.asarray(batch, np.float32)])


@pytest.fixture(scope="module")
def complete_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("complete") / "s.zarr"
    build(path).verify()
    return path


def build(path):
    store = PartStore(path, JOB)
    for part in range(JOB.parts):
        store.run_part(part, read_tile, model)
    return store


def collect():
    """Every file of a complete store (built once here, to parametrise over) and every value of its zarr.json files."""
    folder = tempfile.mkdtemp()
    try:
        path = os.path.join(folder, "s.zarr")
        build(path)
        files = sorted(os.path.relpath(os.path.join(root, name), path).replace(os.sep, "/")
                       for root, _, names in os.walk(path) for name in names)
        edits = []
        for name in files:
            if name.endswith("zarr.json"):
                with open(os.path.join(path, name)) as handle:
                    edits += [(name, leaf) for leaf in leaves(json.load(handle))]
    finally:
        shutil.rmtree(folder)
    return files, edits


def leaves(data, prefix=()):
    """Paths to the values of a JSON document (of long lists, the first and last items only)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, prefix + (key,))
    elif isinstance(data, list) and data:
        for index in sorted({0, len(data) - 1}):
            yield from leaves(data[index], prefix + (index,))
    else:
        yield prefix


def edited(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return value[:-1] + ("x" if value[-1:] != "x" else "y")
    return 7  # None, empty list or dict


FILES, EDITS = collect()


def test_the_store_has_every_kind_of_file():
    kinds = {name.split("/")[-1] if name.endswith("zarr.json") else name.split("/")[1] for name in FILES}
    assert kinds == {"zarr.json", "rows", "lead", "crops"}
    assert sum("/c/" in name for name in FILES) > 20


def copy_of(complete_store, tmp_path):
    path = tmp_path / "s.zarr"
    shutil.copytree(complete_store, path)
    return path


def assert_refused(path, tmp_path, match=None):
    with pytest.raises(ValueError, match=match) as error:
        PartStore(path).merge(tmp_path / "out.zarr")
    assert "\n" not in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]  # no output, no partial
    return str(error.value)


def damage(path, how):
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    else:  # flip every bit of one byte, in the middle
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])


@pytest.mark.parametrize("how", ["delete", "truncate", "flip"])
@pytest.mark.parametrize("name", FILES)
def test_merge_refuses_a_damaged_file(complete_store, tmp_path, name, how):
    path = copy_of(complete_store, tmp_path)
    damage(path / name, how)
    assert_refused(path, tmp_path)


def edit_json(path, leaf, value=None, *, use=None):
    data = json.loads(path.read_text())
    node = data
    for key in leaf[:-1]:
        node = node[key]
    node[leaf[-1]] = edited(node[leaf[-1]]) if use is None else use
    path.write_text(json.dumps(data, indent=2))


@pytest.mark.parametrize("name, leaf", EDITS, ids=[f"{n}:{'.'.join(map(str, leaf))}" for n, leaf in EDITS])
def test_merge_refuses_any_edited_value_of_any_zarr_json(complete_store, tmp_path, name, leaf):
    path = copy_of(complete_store, tmp_path)
    edit_json(path / name, leaf)
    assert_refused(path, tmp_path)


@pytest.mark.parametrize("key, value, message", [
    ("chunk", -5, "chunk=-5 must be a positive integer"),
    ("window", "bartlett", "window='bartlett'"),
    ("image_size", [150, 120.5], "image_size=.*not an integer"),
    ("labels", 1, "labels=1 must be True or False"),
    ("area", "00zz", "area=.*hex WKB"),
    ("parts", 0, "parts=0 must be a positive integer"),
    ("image_size", [150000, 120000], "job attributes were changed"),
    ("window", "hann", "job attributes were changed"),
    ("chunk", 64, "job attributes were changed"),
    ("context", [8, 8], "job attributes were changed"),
    ("output_scale", [2, 2], "job attributes were changed"),
    ("context", [-1, 0], r"context=\[-1, 0\]: every entry must be >= 0"),
    ("output_scale", [3, 3], r"overlap=\(16, 16\) is not a multiple of output_scale=\(3, 3\)"),
])
def test_an_edited_job_attribute_is_refused_naming_it(complete_store, tmp_path, key, value, message):
    path = copy_of(complete_store, tmp_path)
    edit_json(path / "zarr.json", ("attributes", "job", key), use=value)
    assert_refused(path, tmp_path, match=message)


@pytest.mark.parametrize("name, leaf, value, message", [
    ("part1/rows/zarr.json", ("shape",), [100_000, 100_000, 3], "part 1: array rows: zarr.json changed"),
    ("part0/lead/zarr.json", ("shape",), [3, 100_000, 100_000], "part 0: array lead: zarr.json changed"),
    ("part1/rows/zarr.json", ("attributes", "origin"), 0, "part 1: array rows: zarr.json changed"),
    ("part2/zarr.json", ("attributes", "complete", "manifest", "arrays", "crops", "shape"), [3, 3, 16, 200000],
     "part 2: its completion record was changed"),
])
def test_edited_shapes_and_attributes_are_refused_before_anything_is_allocated(complete_store, tmp_path, name, leaf,
                                                                               value, message):
    path = copy_of(complete_store, tmp_path)
    edit_json(path / name, leaf, use=value)
    assert_refused(path, tmp_path, match=message)


def test_a_record_rewritten_to_match_an_edited_shape_is_still_refused_by_the_partition(complete_store, tmp_path):
    """Even a record whose checksum was recomputed cannot make the merge read or allocate another shape."""
    from seamless_fast.scale import _manifest

    path = copy_of(complete_store, tmp_path)
    meta_path = path / "part0" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    record = meta["attributes"]["complete"]
    record["manifest"]["arrays"]["lead"]["shape"] = [3, 100_000, 100_000]
    del record["checksum"]
    record["checksum"] = _manifest.checksum(record)
    meta_path.write_text(json.dumps(meta))
    assert_refused(path, tmp_path, match=r"part 0: array lead has shape \[3, 100000, 100000\].*partition needs")


def test_a_missing_chunk_is_named(complete_store, tmp_path):
    path = copy_of(complete_store, tmp_path)
    (path / "part1" / "rows" / "c" / "0" / "2" / "0").unlink()
    message = assert_refused(path, tmp_path, match="part 1: array rows chunk c/0/2/0 is missing")
    assert message.startswith(f"store {str(path)!r}: ")


def test_verify_and_merge_of_an_undamaged_copy_pass(complete_store, tmp_path):
    path = copy_of(complete_store, tmp_path)
    results = PartStore(path).verify()
    assert [r.part for r in results] == [0, 1, 2]
    PartStore(path).merge(tmp_path / "out.zarr")
    assert zarr.open_array(tmp_path / "out.zarr", mode="r").shape == IMAGE.shape


def test_an_array_the_record_does_not_list_is_refused(complete_store, tmp_path):
    path = copy_of(complete_store, tmp_path)
    shutil.copytree(path / "part1" / "crops", path / "part0" / "crops")  # part 0 hands over no crops
    assert_refused(path, tmp_path, match="part 0: it holds an array 'crops' that its record does not list")
