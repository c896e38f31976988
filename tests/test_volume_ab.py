"""profiling/volume_ab.py: runs end to end on a tiny scenario, and refuses a tree without monai_compare.py."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "profiling", "volume_ab.py")


def test_volume_ab_prints_each_configuration_and_the_ratios():
    out = subprocess.run([sys.executable, SCRIPT, "--base", ROOT, "--rounds", "1", "--side", "labels", "--size",
                          "40,56,56", "--roi", "32", "--overlap", "8", "--channels", "3", "--channel-last"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("labels --size 40,56,56")
    assert [line.split()[0] for line in lines[1:4]] == ["base", "new", "new_serial"]
    assert lines[4].startswith("new / base ")


def test_volume_ab_refuses_a_tree_without_monai_compare(tmp_path):
    out = subprocess.run([sys.executable, SCRIPT, "--base", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().endswith(f"--base={str(tmp_path)!r} is not valid; expected a tree holding "
                                       "profiling/monai_compare.py")
