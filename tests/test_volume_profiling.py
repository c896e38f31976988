"""profiling/volume_memory.py runs end to end on a small case and prints what its docstring promises."""

import os
import subprocess
import sys

PROFILING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiling")


def test_volume_memory_prints_memory_against_depth_and_times():
    out = subprocess.run([sys.executable, os.path.join(PROFILING, "volume_memory.py"), "--depths", "24", "48",
                          "--size", "32", "--tile", "16", "--overlap", "4", "--channels", "2", "--rounds", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "D x 32 x 32, tile 16, overlap 4, C = 2, float32"
    rows = [line.split() for line in lines[2:4]]
    assert [row[0] for row in rows] == ["24", "48"] and all(float(row[-1]) >= 0 for row in rows)
    assert lines[4].startswith("time per tile")
    assert [line.split()[0] for line in lines[5:11]] == ["copyto", "values", "labels", "values_cf", "labels_cf",
                                                    "numpy"]
    assert lines[11].startswith("labels / values")
