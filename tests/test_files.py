"""Partials of outputs, their clean-up after a killed run, and outputs that would destroy an input."""

import os
import subprocess
import sys

import numpy as np
import pytest

from seamless_fast._files import (check_output_path, make_partial, partial_prefix, publish, remove_stale_partials,
                                  umask)


def test_partial_lies_beside_the_output_with_umask_permissions(tmp_path):
    target = tmp_path / "labels.tif"
    temp = make_partial(target)
    assert os.path.dirname(temp) == str(tmp_path)
    assert os.path.basename(temp).startswith(partial_prefix(target))
    assert os.stat(temp).st_mode & 0o777 == 0o666 & ~umask()
    folder = make_partial(tmp_path / "labels.zarr", directory=True)
    assert os.path.isdir(folder) and os.stat(folder).st_mode & 0o777 == 0o777 & ~umask()


def test_partials_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "labels.tif"
    code = ("import sys; from seamless_fast._files import make_partial; "
            "print(make_partial(sys.argv[1]), flush=True)")
    live = make_partial(target)  # this process: alive
    dead = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                          check=True).stdout.strip()
    foreign = tmp_path / f"{partial_prefix(target)}otherhost-1-abc"
    foreign.write_bytes(b"")
    unrelated = tmp_path / f"{partial_prefix(tmp_path / 'other.tif')}x-1-y"
    unrelated.write_bytes(b"")
    assert os.path.exists(dead)
    removed = remove_stale_partials(target)
    assert removed == [os.path.basename(dead)]
    assert not os.path.exists(dead)
    assert os.path.exists(live) and foreign.exists() and unrelated.exists()


def test_output_that_is_the_input_is_refused(tmp_path):
    source = tmp_path / "scene.tif"
    source.write_bytes(b"x")
    link = tmp_path / "link.tif"
    link.symlink_to(source)
    hard = tmp_path / "hard.tif"
    os.link(source, hard)
    for output in (source, link, hard, tmp_path / "." / "scene.tif"):
        with pytest.raises(ValueError, match="is the input"):
            check_output_path(output, inputs=[source])


def test_output_inside_an_input_folder_or_an_existing_folder_is_refused(tmp_path):
    store = tmp_path / "s.zarr"
    (store / "part0").mkdir(parents=True)
    with pytest.raises(ValueError, match="is the input"):
        check_output_path(store, inputs=[store], folder_ok=True)
    with pytest.raises(ValueError, match="lies inside the input"):
        check_output_path(store / "out.zarr", inputs=[store], folder_ok=True)
    with pytest.raises(ValueError, match="is an existing folder"):
        check_output_path(tmp_path / "s.zarr" / "part0", name="output")
    with pytest.raises(ValueError, match="folder .* does not exist"):
        check_output_path(tmp_path / "missing" / "out.tif")


def test_an_existing_zarr_array_may_be_replaced(tmp_path):
    import zarr

    zarr.create_array(str(tmp_path / "out.zarr"), shape=(2, 2), dtype=np.uint8)
    assert check_output_path(tmp_path / "out.zarr", folder_ok=True) == str(tmp_path / "out.zarr")
    with pytest.raises(ValueError, match="existing folder"):
        check_output_path(tmp_path / "out.zarr")


def _recording_fsync(monkeypatch, fail_on=None):
    """os.fsync replaced by one that records the paths it syncs (and fails, like a dying disk, on `fail_on`)."""
    synced = []
    real = os.fsync

    def fsync(handle):
        path = os.readlink(f"/proc/self/fd/{handle}")
        if fail_on is not None and fail_on(path):
            raise OSError(5, "Input/output error")
        synced.append(path)
        real(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")


@needs_proc
def test_publish_flushes_the_file_and_its_folder_before_and_after_the_rename(tmp_path, monkeypatch):
    synced = _recording_fsync(monkeypatch)
    final = tmp_path / "out.bin"
    partial = make_partial(final)
    with open(partial, "wb") as handle:
        handle.write(b"x" * 1000)
    publish(partial, final)
    assert synced == [partial, str(tmp_path)]
    assert final.read_bytes() == b"x" * 1000
    assert os.listdir(tmp_path) == ["out.bin"]


@needs_proc
def test_publish_flushes_every_file_of_a_folder_and_replaces_an_old_one_only_when_in_place(tmp_path, monkeypatch):
    final = tmp_path / "out.zarr"
    (final / "old").mkdir(parents=True)
    partial = make_partial(final, directory=True)
    os.makedirs(os.path.join(partial, "c", "0"))
    for name in ("zarr.json", os.path.join("c", "0", "0")):
        with open(os.path.join(partial, name), "w") as handle:
            handle.write(name)
    synced = _recording_fsync(monkeypatch)
    publish(partial, final)
    assert sorted(os.listdir(final)) == ["c", "zarr.json"]
    assert os.listdir(tmp_path) == ["out.zarr"]
    inside = {os.path.relpath(p, partial) for p in synced if p.startswith(partial)}
    assert inside == {"zarr.json", os.path.join("c", "0", "0"), os.path.join("c", "0"), "c", "."}
    assert synced[-1] == str(tmp_path)


@needs_proc
@pytest.mark.parametrize("kind", ["tiff", "zarr", "nifti", "tiff-volume"])
def test_a_failed_flush_is_an_error_of_the_write_and_leaves_nothing_under_the_final_name(tmp_path, monkeypatch,
                                                                                           kind):
    """A disk that reports an error when the file is flushed: the writer raises and no output appears."""
    from seamless_fast.io import TiffWriter, volume_writer

    if kind == "nifti":
        pytest.importorskip("nibabel")
    final = tmp_path / {"tiff": "out.tif", "zarr": "out.zarr", "nifti": "out.nii.gz", "tiff-volume": "vol.tif"}[kind]
    _recording_fsync(monkeypatch, fail_on=lambda path: ".partial-" in path and not os.path.isdir(path))
    with pytest.raises(OSError, match="Input/output error"):
        if kind == "tiff":
            with TiffWriter(final, (64, 64), dtype=np.uint8) as writer:
                writer.write((0, 0, 64, 64), np.full((64, 64), 7, np.uint8))
        else:
            with volume_writer(final, (4, 8, 8), dtype=np.uint8) as writer:
                writer.write((0, 0, 0, 4, 8, 8), np.full((4, 8, 8), 7, np.uint8))
    assert os.listdir(tmp_path) == []
