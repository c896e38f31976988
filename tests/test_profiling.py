"""The quick profiling scripts run end to end on small cases and print what their docstrings promise."""

import os
import subprocess
import sys

import pytest

import seamless_fast as sf

PROFILING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling")


def run_script(name, *args):
    out = subprocess.run([sys.executable, os.path.join(PROFILING, name), *args], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def numbers(line):
    return [float(field.rstrip("us")) for field in line.split()[-3:]]


@pytest.mark.parametrize("layout", [[], ["--channel-first"]])
@pytest.mark.parametrize("channels", ["3", "8"])
def test_labels_cost_times_three_calls(layout, channels):
    lines = run_script("labels_cost.py", "--tile", "64", "--overlap", "16", "--channels", channels, "--rounds", "3",
                       *layout)
    assert f"C = {channels}" in lines[0] and "cell of 2304 pixels" in lines[0]
    rows = {line[:16].strip(): numbers(line) for line in lines[2:5]}
    assert list(rows) == ["values kernel", "labels kernel", "arg-max alone"]
    assert all(value > 0 for row in rows.values() for value in row)
    assert lines[5].startswith("labels - values")


@pytest.mark.parametrize("labels", [False, True])
def test_profile_run_splits_the_run_into_kernels_and_python(labels):
    lines = run_script("profile_run.py", "--size", "512", "--tile", "128", "--overlap", "32",
                       *(["--labels"] if labels else []))
    assert lines[0].startswith("512 x 512, tile 128") and "25 tiles" in lines[0]
    total_ms = float(lines[2].split()[1])
    parts = {line.split()[0]: float(line.split()[1]) for line in lines[3:-1]}
    kernels = ("blend_labels", "band_labels") if labels else ("blend_values", "band_values")
    assert parts and all(name.startswith(kernels) for name in parts)
    python_ms = float(lines[-1].split()[-6])
    assert sum(parts.values()) + python_ms == pytest.approx(total_ms, abs=0.05)


def test_small_tiles_times_every_case_and_prints_the_ratios():
    lines = run_script("small_tiles.py", "--size", "256", "--tile", "64", "--overlap", "16", "--rounds", "2")
    assert lines[0].startswith("256 x 256, tile 64") and "2 rounds" in lines[0]
    assert [line.split()[0] for line in lines[1:5]] == ["blend", "run_plan", "run_plan_seed", "numpy_reference"]
    ratios = {line.rsplit(None, 1)[0]: float(line.split()[-1]) for line in lines[5:]}
    assert len(ratios) == 4 and all(value > 0 for value in ratios.values())


def test_traverse_times_rows_and_columns_and_prints_the_buffers():
    lines = run_script("traverse.py", "--height", "64", "--width", "400", "--tile", "32", "--overlap", "8",
                       "--rounds", "2")
    assert lines[0].startswith("64 x 400, tile 32, overlap 8, C = 3") and "2 rounds" in lines[0]
    assert [line.split()[0] for line in lines[1:4]] == ["copyto", "rows", "columns"]
    assert [line.rsplit(None, 4)[0] for line in lines[4:7]] == ["rows / copyto", "columns / copyto", "rows / columns"]
    assert all(line.split()[-4] == "cpu" and line.split()[-2] == "wall" for line in lines[4:7])
    for line, traverse in zip(lines[7:9], ("rows", "columns")):
        plan, _ = sf.plan_regular_grid((64, 400), 32, 8, traverse=traverse)
        nbytes = sf.analyse_plan(plan, channels=3).buffer_bytes
        assert line == f"buffer {traverse} {nbytes} bytes ({nbytes / 2**20:.1f} MiB)"


def test_band_layout_times_both_layouts_and_the_copy():
    lines = run_script("band_layout.py", "--sizes", "300x700", "--tile", "64", "--overlap", "16", "--rounds", "2")
    assert lines[0] == "python profiling/band_layout.py --sizes 300x700 --tile 64 --overlap 16 --rounds 2"
    assert lines[2].startswith("300 x 700: 90 tiles; buffer band") and "ring" in lines[2]
    times = dict(part.split() for part in lines[3].split(": ")[1].split(", "))
    assert set(times) == {"band", "ring", "copyto"} and all(float(v) > 0 for v in times.values())
    assert lines[4].startswith("  ratios (median of rounds): band / copyto")


def test_batch_cold_times_batches_single_pushes_and_the_copy():
    lines = run_script("batch_cold.py", "--size", "600", "--tile", "128", "--overlap", "32", "--batch", "4",
                       "--pool-mib", "2", "--rounds", "2")
    assert lines[0].startswith("600 x 600, tile 128") and "batches of 4" in lines[0]
    rows = {line[:13].strip(): line.split()[-7:] for line in lines[1:]}
    assert list(rows) == ["batch", "batch serial", "single", "copy"]
    assert all(float(row[0]) > 0 and row[1:4] == ["us", "a", "tile"] and float(row[4]) > 0 for row in rows.values())
    assert rows["copy"][4] == "1.00"


@pytest.mark.parametrize("sink", ["drop", "raw", "memmap"])
def test_end_to_end_reports_time_memory_and_buffer(tmp_path, sink):
    path = tmp_path / "out.raw"
    lines = run_script("end_to_end.py", "--size", "700", "--sink", sink, *(["--path", str(path)] if sink != "drop"
                                                                             else []))
    assert lines[0].startswith("700 x 700 x 3, tile 256, overlap 64, values, sink " + sink)
    assert lines[1].startswith("tiles 16 ") and "us a tile" in lines[1]
    assert lines[2].startswith("output 0.01 GiB; buffer ")
    assert lines[3].startswith("peak RSS over imports") and lines[4].startswith("RSS grown during the run")
    assert not path.exists()  # the output file is removed after the run
