"""Where the demo's time goes, and how it degrades on a shared machine (issue "A user's own data"): ``probnets fit``
on diabetes with its defaults, under each dtype, thread setting and OpenMP wait policy, on an idle machine and with
busy processes competing for the cores.

Configurations (each run a fresh ``probnets fit --data diabetes --no-progress`` process):

* ``--dtype float64`` (the default) and ``float32``;
* threads: as started (torch's default, one per core) and ``OMP_NUM_THREADS=1``;
* wait policy: libgomp's default (threads spin 300 000 times while waiting, set as ``GOMP_SPINCOUNT``, since
  ``probnets`` otherwise sets 1 000; ``benchmarks/wait_policy.py`` compares spin counts) and
  ``OMP_WAIT_POLICY=PASSIVE`` (they sleep);
* load: none, or ``--busy`` processes (default: one per core) spinning in pure Python during the run, as other
  users' jobs would.

Reported per run: wall time of the command, the sampler's wall time (``report.json``), the command's CPU time
(user + system; above the wall time when several threads run, and far above it when threads spin), gradient
evaluations and the function-space R-hat (the draws must not depend on the setting beyond round-off).

Usage::

    python benchmarks/demo_cost.py [--busy 2] [--repeats 1] [--out benchmarks/results]

Writes ``demo_cost.json`` and ``demo_cost.md`` into ``--out`` and prints the markdown. Run it on an otherwise idle
machine: its "no load" rows assume so (the load average is recorded).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` processes spinning in pure Python while the block runs, as other users' jobs would."""
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(count)]
    for p in spinners:
        p.start()
    try:
        yield
    finally:
        stop.set()
        for p in spinners:
            p.join()


def run_fit(dtype: str, threads: str, wait: str, extra: list[str]) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(key, None)
    if threads == "1":
        env["OMP_NUM_THREADS"] = "1"
    # libgomp's own default spins 300 000 times; set explicitly, as probnets otherwise shortens it
    env.update({"OMP_WAIT_POLICY": "PASSIVE"} if wait == "passive" else {"GOMP_SPINCOUNT": "300000"})
    with tempfile.TemporaryDirectory() as out:
        command = [str(Path(sys.executable).parent / "probnets"), "fit", "--data", "diabetes", "--dtype", dtype,
                   "--no-progress", "--out", out, *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-1500:]}")
        report = json.loads((Path(out) / "report.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    diag = report["diagnostics"]
    return dict(wall_time=wall, sampling_time=diag["wall_time"], cpu_time=cpu, grad_evals=diag.get("grad_evals"),
                max_rhat=diag["max_rhat"], nll=report["metrics"]["nll"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=os.cpu_count(), help="spinning processes in the loaded rows")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fit-options", default="", help="extra `probnets fit` options (smoke tests)")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), busy=args.busy,
                loadavg_start=os.getloadavg(), python=platform.python_version())
    rows = []
    for load, dtype, threads, wait in itertools.product(("none", "busy"), ("float64", "float32"), ("default", "1"),
                                                         ("default", "passive")):
        if threads == "1" and wait == "passive":
            continue  # one thread never waits for another
        with busy_processes(args.busy if load == "busy" else 0):
            for repeat in range(args.repeats):
                row = dict(load=load, dtype=dtype, threads=threads, wait_policy=wait, repeat=repeat,
                           loadavg=os.getloadavg()[0])
                try:
                    row.update(run_fit(dtype, threads, wait, args.fit_options.split()))
                except RuntimeError as exc:
                    row["error"] = str(exc)
                rows.append(row)
                print(json.dumps(row), flush=True)
    meta["loadavg_end"] = os.getloadavg()
    cols = ["load", "dtype", "threads", "wait_policy", "repeat", "wall_time", "sampling_time", "cpu_time",
            "grad_evals", "max_rhat", "nll", "loadavg"]
    fmt = lambda v: "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["# The demo's cost (`probnets fit --data diabetes`, defaults) by dtype, threads and wait policy", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs; load average at start {meta['loadavg_start']}, at end "
             f"{meta['loadavg_end']}; loaded rows: {args.busy} spinning Python processes. Times in seconds: the whole "
             "command, the sampler, and the command's CPU time.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + (f" failed: {r['error'][:120]}" if "error" in r else "")
              + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_cost.json").write_text(json.dumps(dict(meta=meta, runs=rows), indent=2))
    (out / "demo_cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
