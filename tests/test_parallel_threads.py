"""parallel=True from several Python threads under numba's workqueue layer: no abort, and the exact output."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import threading
    import numba
    import numpy as np
    import seamless_fast as sf

    plan, _ = sf.plan_regular_grid((700, 900), 256, 64)
    rng = np.random.default_rng(0)
    tiles = [rng.random((256, 256, 4)).astype(np.float32) for _ in range(plan.n_loads)]
    expected = {labels: sf.blend(plan, tiles, labels=labels, parallel=False) for labels in (False, True)}
    assert numba.get_num_threads() == 2 and numba.threading_layer() == "workqueue", numba.threading_layer()
    failures = []

    def work(i):
        for round in range(6):
            labels = (i + round) % 2 == 1
            with sf.Blender(plan, labels=labels, parallel=True,
                            out=np.zeros_like(expected[labels])) as blender:
                for tile in tiles:
                    blender.push(tile)
            if not np.array_equal(blender.out, expected[labels]):
                failures.append((i, round, labels))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("ok" if not failures else f"WRONG {failures}")
""")


def test_parallel_blends_in_threads_under_workqueue():
    env = {**os.environ, "PYTHONPATH": ROOT, "NUMBA_THREADING_LAYER": "workqueue", "NUMBA_NUM_THREADS": "2"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=env)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert run.stdout.strip() == "ok"
