"""Partials of outputs, their clean-up after a killed run, and outputs that would destroy an input."""

import os
import subprocess
import sys

import numpy as np
import pytest

from seamless_fast._files import check_output_path, make_partial, partial_prefix, remove_stale_partials, umask


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
