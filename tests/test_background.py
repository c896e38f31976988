"""Kernels compiled in a background process (`seamless_fast.engine._background`): a run does without them until they
are ready and gives the same result, a failed compile is reported, nothing is left running at exit."""

import importlib
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import seamless_fast as sf
from seamless_fast.engine import _adaptive, _background, _kernels

blend_module = importlib.import_module("seamless_fast.engine.blender")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _NeverReady:
    def ready(self, wait=None):
        return False


@pytest.mark.parametrize("labels", [False, True], ids=["values", "labels"])
def test_a_run_whose_parallel_kernel_is_not_compiled_yet_runs_serially_and_exactly(monkeypatch, labels):
    plan = sf.plan_regular_grid((300, 280), 64, 16)[0]
    rng = np.random.default_rng(3)
    tiles = [rng.random((64, 64, 4)).astype(np.float32) for _ in range(plan.n_loads)]
    expected = sf.blend(plan, tiles, labels=labels, parallel=False)
    asked = []
    monkeypatch.setattr(blend_module, "compile_in_background", lambda kernel, args: asked.append(kernel)
                        or _NeverReady())
    monkeypatch.setattr(blend_module, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(_adaptive.Chooser, "choose", lambda self: 1)  # every tile asks for the split
    monkeypatch.setattr(_kernels, "blend_values_parallel", None)  # and must not call it
    monkeypatch.setattr(_kernels, "blend_labels_parallel", None)
    if numba.get_num_threads() < 2:
        pytest.skip("numba has one thread here: every tile runs serially")
    np.testing.assert_array_equal(sf.blend(plan, tiles, labels=labels, parallel=True), expected)
    assert len(asked) == 1  # one ticket per Blender, asked once


def test_a_failed_background_compile_is_reported_and_the_ticket_stays_not_ready():
    ticket = _background.compile_in_background(_kernels.half_to_float, (1, 2.5))  # no such signature compiles
    with pytest.warns(_background.BackgroundCompileWarning, match="(?s)half_to_float.*exit status 1"):
        assert not ticket.ready(wait=True)
    assert not ticket.ready(wait=True) and ticket.state == "failed"  # reported once


def test_a_ticket_for_a_compiled_kernel_is_ready_at_once():
    bits, out = np.zeros(3, np.uint16), np.empty(3, np.float32)
    _kernels.half_to_float(bits, out)
    ticket = _background.compile_in_background(_kernels.half_to_float, (bits, out))
    assert ticket.state == "ready" and ticket.ready()


BACKGROUND_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from seamless_fast.engine import _background, _kernels

    bits, out = np.arange(8, dtype=np.uint16), np.empty(8, np.float32)
    ticket = _background.compile_in_background(_kernels.half_to_float, (bits, out))
    print(ticket.state, len(_kernels.half_to_float.signatures), flush=True)
    if sys.argv[1] == "exit":  # a compile still running at exit is stopped
        print(ticket._process.pid, flush=True)
        sys.exit(0)
    if sys.argv[1] == "fork":  # a forked child's exit leaves the parent's compile alone
        pid = os.fork()
        if pid == 0:
            _background._stop_processes()
            os._exit(0)
        os.waitpid(pid, 0)
        assert ticket._process.poll() is None, "the forked child stopped the compile"
    deadline = time.monotonic() + 240
    while not ticket.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    _kernels.half_to_float(bits, out)
    print(ticket.state, np.array_equal(out, bits.view(np.float16).astype(np.float32)), flush=True)
""")


def _run_with_empty_cache(tmp_path, mode):
    env = {**os.environ, "PYTHONPATH": ROOT, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run([sys.executable, "-c", BACKGROUND_SCRIPT, mode], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_a_kernel_compiled_in_the_background_is_loaded_from_the_cache_not_compiled_here(tmp_path):
    assert _run_with_empty_cache(tmp_path, "wait") == ["compiling", "0", "ready", "True"]


def test_a_forked_child_leaves_the_parents_compile_alone(tmp_path):
    assert _run_with_empty_cache(tmp_path, "fork") == ["compiling", "0", "ready", "True"]


def test_a_compile_still_running_at_exit_is_stopped(tmp_path):
    state, signatures, pid = _run_with_empty_cache(tmp_path, "exit")
    assert (state, signatures) == ("compiling", "0")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
