"""The command line as a process: first contact without numba, a core-only install, the compile notice,
the working directory on the path, and a run killed midway."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

import seamless_fast as sf  # noqa: E402
from seamless_fast._progress import COMPILE_NOTICE  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sf.__file__)))


from test_cli import cli_env as env  # noqa: E402


def python(code, *args, cwd=None, timeout=300, **extra):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env(**extra))


# main() in this process, then report whether numba was imported
IN_PROCESS = textwrap.dedent('''
    import sys
    from seamless_fast.cli import main
    try:
        status = main(sys.argv[1:])
    except SystemExit as exit:
        status = exit.code
    print("STATUS", status, "NUMBA", "numba" in sys.modules)
''')


@pytest.mark.parametrize("args", [["--help"], ["segment", "--help"], ["plan", "40000x40000"],
                                  ["plan", "40000x40000", "--json"], ["segment", "in.tif"], ["bogus"],
                                  ["plan", "12x"], ["segment", "in.tif", "out.tif", "--tile", "0", "--model", "m:f"]])
def test_first_contact_does_not_import_numba(tmp_path, args):
    run = python(IN_PROCESS, *args, cwd=tmp_path)
    last = run.stdout.strip().splitlines()[-1]
    assert last.endswith("NUMBA False"), run.stdout + run.stderr
    assert last.split()[1] in ("0", "2")


def test_package_import_is_lazy_and_complete():
    code = textwrap.dedent('''
        import sys
        import seamless_fast as seamless_seg
        assert "numba" not in sys.modules and "numpy" not in sys.modules
        import seamless_fast.engine.pipeline  # binds the subpackage seamless_fast.engine first
        assert callable(seamless_seg.blend) and seamless_seg.blend.__module__ == "seamless_fast.engine.run"
        assert seamless_seg.plan.__name__ == "seamless_fast.plan" and callable(seamless_seg.plan_regular_grid)
        names = {}
        exec("from seamless_fast import *", names)
        missing = set(seamless_seg.__all__) - set(names)
        assert not missing, missing
        assert set(seamless_seg.__all__) <= set(dir(seamless_seg))
        assert seamless_seg.get_plan_logit_geoms is not None
        try:
            seamless_seg.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("no AttributeError")
        print("OK")
    ''')
    run = python(code)
    assert run.stdout.strip() == "OK", run.stderr


# -- 4. a core-only install -------------------------------------------------------------------------

WITHOUT_EXTRAS = textwrap.dedent('''
    import sys
    sys.modules["tifffile"] = None  # as if not installed
    sys.modules["tqdm"] = None
    from seamless_fast.cli import main
    sys.exit(main(sys.argv[1:]))
''')


@pytest.mark.parametrize("args", [["segment", "in.tif", "out.tif", "--model", "m:f"],
                                  ["segment", "in.tif", "out.tif", "--model", "m:f", "--no-progress"],
                                  ["demo", "--size", "512"], ["demo", "--no-progress"],
                                  ["merge", "--store", "s.zarr", "out.tif"]])
def test_core_install_names_the_extra(tmp_path, args):
    (tmp_path / "in.tif").write_bytes(b"")
    run = python(WITHOUT_EXTRAS, *args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'seamless_fast[cli]'" in lines[0], run.stderr
    assert "tifffile" in lines[0] and ("tqdm" in lines[0]) == ("--no-progress" not in args and "merge" not in args)
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_core_install_still_plans():
    run = python(WITHOUT_EXTRAS, "plan", "4000x3000")
    assert run.returncode == 0 and "grid 21 x 16" in run.stdout, run.stderr


# -- 5. python -m: the working directory last -----------------------------------------------------

def test_stray_numpy_in_the_working_directory_is_not_imported(tmp_path):
    (tmp_path / "numpy.py").write_text("raise ImportError('the stray numpy.py was imported')\n")
    image = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(16, 16))
    (tmp_path / "toy.py").write_text("def model(batch):\n    return batch * 2\n")
    run = subprocess.run([sys.executable, "-m", "seamless_fast", "segment", "in.tif", "out.tif", "--model",
                          "toy:model", "--probabilities", "--tile", "16", "--overlap", "4", "--no-progress"],
                         capture_output=True, text=True, cwd=tmp_path, env=env(), timeout=300)
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(tifffile.imread(tmp_path / "out.tif"), 2 * image, rtol=1e-6)


# -- 7. the compile notice --------------------------------------------------------------------------

def test_compile_notice_only_when_kernels_compile(tmp_path):
    image = np.random.default_rng(0).random((50, 40, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(16, 16), photometric="rgb")
    (tmp_path / "toy.py").write_text("def model(batch):\n    return batch * 2\n")
    cache = tmp_path / "numba_cache"
    cache.mkdir()
    for progress in ([], ["--no-progress"]):
        runs = []
        for _ in range(2):  # cold cache, then warm
            runs.append(subprocess.run(
                [sys.executable, "-m", "seamless_fast", "segment", "in.tif", "out.tif", "--model", "toy:model",
                 "--tile", "32", "--overlap", "8", *progress], capture_output=True, text=True, cwd=tmp_path,
                env=env(NUMBA_CACHE_DIR=str(cache / str(len(progress)))), timeout=600))
        cold, warm = runs
        assert cold.returncode == 0 and warm.returncode == 0, cold.stderr + warm.stderr
        assert cold.stderr.count(COMPILE_NOTICE) == 1, cold.stderr
        assert COMPILE_NOTICE not in warm.stderr, warm.stderr


# -- 8. a run killed midway -------------------------------------------------------------------------

SLOW_MODEL = textwrap.dedent('''
    import os
    import time

    import numpy as np

    def model(batch):
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.txt"), "a") as handle:
            handle.write("call\\n")
        if os.environ.get("SLOW"):
            time.sleep(0.3)
        batch = np.asarray(batch, np.float32)
        return np.concatenate([batch[:, :1], 1 - batch[:, :1]], axis=1)
''')


def test_killed_run_leaves_no_partial_after_the_next(tmp_path):
    image = np.random.default_rng(2).random((96, 80)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(16, 16))
    (tmp_path / "slow.py").write_text(SLOW_MODEL)
    args = [sys.executable, "-m", "seamless_fast", "segment", "in.tif", "out.tif", "--model", "slow:model",
            "--tile", "16", "--overlap", "4", "--batch-size", "1", "--no-progress"]
    victim = subprocess.Popen(args, cwd=tmp_path, env=env(SLOW="1"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    calls = tmp_path / "calls.txt"
    try:
        while not (calls.exists() and len(calls.read_text().split()) >= 4):
            assert victim.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
            time.sleep(0.05)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert [name for name in os.listdir(tmp_path) if ".partial-" in name]  # what the kill left
    assert not (tmp_path / "out.tif").exists()
    again = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [name for name in os.listdir(tmp_path) if ".partial-" in name] == []
    plan, _ = sf.plan_regular_grid(image.shape, 16, 4)
    from seamless_fast.io import ImageReader

    reader = ImageReader(image)
    tiles = [np.concatenate([t, 1 - t]) for t in
             (reader.read(tuple(b))[None, ..., 0] for b in plan.tile_boxes[plan.load_order].tolist())]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"),
                                  sf.blend(plan, tiles, channel_first=True, labels=True))
