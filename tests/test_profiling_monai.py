"""profiling/monai_compare.py: its command line, its pure helpers, and a quick run of each side."""

import doctest
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import seamless_fast as sf

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling", "monai_compare.py")
spec = importlib.util.spec_from_file_location("monai_compare", SCRIPT)
mc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mc)


def test_the_examples_in_the_docstrings_hold():
    assert doctest.testmod(mc).failed == 0


def test_defaults_are_the_scenario_of_the_issue():
    args = mc.parse_args([])
    assert (args.size, args.roi, args.overlap, args.channels, args.rounds) == ((256, 384, 384), 128, 32, 16, 3)
    assert args.sides == ("monai", "values", "labels", "values_out", "labels_out") and args.window == "gaussian"
    check = mc.parse_args(["--check"])
    assert (check.size, check.channels) == ((160, 224, 224), 3)
    given = mc.parse_args(["--size", "160,224,224", "--channels", "100", "--rounds", "5", "--sides", "monai,labels"])
    assert (given.size, given.channels, given.rounds, given.sides) == ((160, 224, 224), 100, 5, ("monai", "labels"))


@pytest.mark.parametrize("argv, message", [
    (["--size", "256,384"], "--size='256,384' is not valid"),
    (["--size", "a,b,c"], "--size='a,b,c' is not valid"),
    (["--size", "100,384,384"], "smaller than --roi=128"),
    (["--overlap", "128"], "--overlap=128 is not valid"),
    (["--overlap", "-1"], "--overlap=-1 is not valid"),
    (["--roi", "12", "--overlap", "5", "--size", "40,40,40"], "MONAI's step"),
    (["--channels", "0"], "--channels=0 is not valid"),
    (["--rounds", "0"], "--rounds=0 is not valid"),
    (["--sides", "monai,fast"], "--sides='monai,fast' is not valid"),
])
def test_a_bad_value_exits_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        mc.parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("n, roi, overlap", [(384, 128, 32), (256, 128, 32), (128, 128, 32), (129, 128, 32),
                                             (500, 64, 16), (77, 20, 5), (40, 32, 8)])
def test_monai_window_rule_is_our_grid_rule(n, roi, overlap):
    plan, _ = sf.plan_regular_grid((n, roi), roi, overlap)
    assert mc.window_starts(n, roi, overlap) == sorted({int(box[0]) for box in plan.tile_boxes})


def test_monai_bytes_add_up():
    parts = mc.monai_bytes((160, 224, 224), 128, 100)
    assert parts["output"] == 100 * parts["count_map"] == 100 * 4 * 160 * 224 * 224
    assert parts["model_batch"] == 100 * parts["input_batch"] == 100 * 4 * 4 * 128 ** 3


def test_write_json_leaves_only_the_final_file(tmp_path):
    path = tmp_path / "figures.json"
    mc.write_json(str(path), dict(a=[1, 2]))
    assert json.loads(path.read_text()) == dict(a=[1, 2]) and os.listdir(tmp_path) == ["figures.json"]
    with pytest.raises(TypeError):
        mc.write_json(str(tmp_path / "bad.json"), dict(a=object()))
    assert os.listdir(tmp_path) == ["figures.json"]


def run_script(*args):
    out = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(SCRIPT))))
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.splitlines()


@pytest.mark.skipif(not os.access(mc.DEFAULT_MONAI_PYTHON, os.X_OK), reason="no MONAI environment here")
def test_quick_run_of_monai_prints_its_row(tmp_path):
    lines = run_script("--quick", "--sides", "monai,monai_argmax", "--json", str(tmp_path / "out.json"))
    assert lines[1].startswith("40 x 56 x 56, roi 32, overlap 8, C = 3, float32, 8 windows")
    rows = {line.split()[0]: line.split() for line in lines[3:5]}
    assert set(rows) == {"monai", "monai_argmax"} and all(float(row[2]) > 0 for row in rows.values())
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["scenario"]["windows"] == 8 and set(data["medians"]) == {"monai", "monai_argmax"}


def test_quick_run_of_our_sides_prints_their_rows_and_the_labels_ratio():
    lines = run_script("--quick", "--sides", "values,labels,values_out,labels_out")
    assert lines[1].startswith("40 x 56 x 56, roi 32, overlap 8, C = 3, float32, 8 windows, channel-first tiles")
    rows = {line.split()[0]: line.split() for line in lines[3:7]}
    assert list(rows) == ["values", "labels", "values_out", "labels_out"]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows.values())
    assert lines[7].startswith("labels / values ") and lines[8].startswith("our blend buffer (analyse_plan): ")
    assert lines[9].startswith("MONAI's allocations: output 1.4 MiB")


@pytest.mark.skipif(not os.access(mc.DEFAULT_MONAI_PYTHON, os.X_OK), reason="no MONAI environment here")
@pytest.mark.parametrize("window", ["gaussian", "constant"])
def test_check_finds_each_side_equal_to_the_reference_of_its_window(window):
    lines = run_script("--check", "--quick", "--window", window)
    found = {line.split("|")[1].strip(): float(line.split("|")[2].split(";")[0]) for line in lines[3:6]}
    assert found["ours - reference, separable window"] < 1e-6
    assert found["monai - reference, clamped window"] < 1e-6
    # the two gaussians differ where MONAI's floor of 1e-3 lifts a window's corners; constant windows agree
    assert (found["ours - monai"] > 0.1) if window == "gaussian" else (found["ours - monai"] < 1e-6)
