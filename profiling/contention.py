"""Blend speed beside other work on the machine: the parallel policies against serial, per condition.

    python profiling/contention.py [--rounds 7] [--size 4096] [--tile 256] [--overlap 64] [--channels 3]
        [--labels] [--conditions quiet,thread,process] [--policies default,serial,numba]
        [--layers omp] [--tbb-lib DIR]

Conditions (the neighbours run for the whole condition and are stopped after it):

- ``quiet``: nothing else.
- ``thread``: a thread of the same process multiplying 512 x 512 float64 matrices with numpy in a
  loop (a CPU model beside the blend; numpy's BLAS uses its own threads).
- ``process``: a second Python process running numba ``prange`` loops (numba's default threading
  layer) as fast as it can.

Policies: ``default`` (what ``Blender(plan)`` does: serial or split over numba's threads, tile by
tile, whichever its timings find faster, see `seamless_fast.engine._adaptive`), ``serial``
(``parallel=False``) and ``numba`` (numba's parallel kernels for every large tile, the default
before; set through the private `Blender._policy`). The default's choosers are shared by the
Blenders of a process, so in each condition the default starts from what it learned before.

Each layer of `--layers` (``omp``, ``omp-passive``: omp with ``OMP_WAIT_POLICY=passive``, ``tbb``,
``workqueue``) is measured in a process of its own, numba's layer being fixed once per process.
In each condition every policy runs the whole plan (one reused tile, cells dropped) once per round,
in an order that rotates from round to round; the table gives the median time per tile and the
median over rounds of its ratio to ``serial`` in the same round.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

POLICIES = ("default", "serial", "numba")
CONDITIONS = ("quiet", "thread", "process")
LAYERS = {"omp": {"NUMBA_THREADING_LAYER": "omp"},
          "omp-passive": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive"},
          "tbb": {"NUMBA_THREADING_LAYER": "tbb"},
          "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"}}

NEIGHBOUR_PROCESS = textwrap.dedent("""
    import sys
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def work(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += np.sqrt(a[i] * 1.0001 + i)
        return s

    a = np.random.default_rng(0).random(1 << 20)
    work(a)
    print("ready", numba.threading_layer(), flush=True)
    while True:
        work(a)
""")


class MatmulThread:
    """A thread of this process multiplying matrices with numpy until stopped (a CPU model)."""

    def __init__(self, size=512):
        self._stop = threading.Event()
        a = np.random.default_rng(1).random((size, size))
        self._thread = threading.Thread(target=self._loop, args=(a,), daemon=True, name="matmul-neighbour")

    def _loop(self, a):
        while not self._stop.is_set():
            a @ a

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()


class PrangeProcess:
    """A second Python process running numba prange loops until stopped."""

    def __init__(self, env=None):
        self._env = env

    def start(self):
        self._process = subprocess.Popen([sys.executable, "-c", NEIGHBOUR_PROCESS], stdout=subprocess.PIPE,
                                         text=True, env=self._env)
        line = self._process.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"the prange neighbour did not start: {line!r}")
        return self

    def stop(self):
        self._process.kill()
        self._process.wait()
        self._process.stdout.close()


class Quiet:
    def start(self):
        return self

    def stop(self):
        pass


def neighbour(condition):
    """The neighbour object (not started) for a condition name."""
    # the neighbour process keeps numba's default layer whatever layer the measuring process uses
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    return {"quiet": Quiet, "thread": MatmulThread, "process": lambda: PrangeProcess(env)}[condition]()


def make_blender(plan, policy, labels):
    """A Blender following `policy` (see the module docstring)."""
    import seamless_fast as sf
    if policy == "default":
        return sf.Blender(plan, labels=labels)
    blender = sf.Blender(plan, labels=labels, parallel=policy != "serial")
    blender._policy = policy
    return blender


def time_run(plan, tile, policy, labels):
    """Seconds per tile of one whole run of the plan."""
    blender = make_blender(plan, policy, labels)
    start = time.perf_counter()
    for _ in range(plan.n_loads):
        blender.push(tile)
    blender.close()
    return (time.perf_counter() - start) / plan.n_loads


def measure(plan, tile, policies, condition, rounds, labels):
    """{policy: [seconds per tile per round]} with the neighbour of `condition` running."""
    for policy in policies:  # compile or load the kernels outside the measurement
        time_run(plan, tile, policy, labels)
    times = {policy: [] for policy in policies}
    running = neighbour(condition).start()
    try:
        time_run(plan, tile, policies[0], labels)  # let the neighbour get going
        for r in range(rounds):
            order = policies[r % len(policies):] + policies[:r % len(policies)]
            for policy in order:
                times[policy].append(time_run(plan, tile, policy, labels))
    finally:
        running.stop()
    return times


def summary(times):
    """{policy: (median seconds per tile, median ratio to serial over rounds)}."""
    serial = times.get("serial")
    return {policy: (statistics.median(values),
                     statistics.median(v / s for v, s in zip(values, serial)) if serial else float("nan"))
            for policy, values in times.items()}


def worker(args):
    import numba

    import seamless_fast as sf
    plan, _ = sf.plan_regular_grid((args.size, args.size), args.tile, args.overlap)
    tile = np.random.default_rng(0).random((args.tile, args.tile, args.channels)).astype(np.float32)
    policies = args.policies.split(",")
    for condition in args.conditions.split(","):
        times = measure(plan, tile, policies, condition, args.rounds, args.labels)
        try:
            layer = numba.threading_layer()
        except ValueError:  # no numba parallel code ran in this process
            layer = None
        print(json.dumps({"condition": condition, "layer": layer, "times": times}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--labels", action="store_true")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--layers", default="omp")
    parser.add_argument("--tbb-lib", help="folder holding libtbb.so.12, added to LD_LIBRARY_PATH for tbb")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    print(f"{args.size} x {args.size}, tile {args.tile}, overlap {args.overlap}, C = {args.channels}, "
          f"{'labels' if args.labels else 'values'}, {args.rounds} rounds, {os.cpu_count()} cores")
    print(f"{'layer':12} {'condition':10} {'policy':8} {'us/tile':>9} {'x serial':>9}")
    forwarded = [a for a in sys.argv[1:] if not a.startswith("--layers") and a != args.layers]
    for layer in args.layers.split(","):
        env = {**os.environ, **LAYERS[layer]}
        if layer == "tbb" and args.tbb_lib:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [args.tbb_lib, env.get("LD_LIBRARY_PATH")]))
        run = subprocess.run([sys.executable, __file__, "--worker", *forwarded], env=env, capture_output=True,
                             text=True)
        if run.returncode != 0:
            print(f"{layer:12} failed: {run.stderr.strip().splitlines()[-1:]}")
            continue
        for line in run.stdout.splitlines():
            result = json.loads(line)
            for policy, (median, ratio) in summary(result["times"]).items():
                print(f"{layer:12} {result['condition']:10} {policy:8} {median * 1e6:9.1f} {ratio:9.2f}",
                      flush=True)
            if result["layer"] not in (None, layer.split("-")[0]):
                print(f"{layer:12} (numba ran on {result['layer']})")


if __name__ == "__main__":
    main()
