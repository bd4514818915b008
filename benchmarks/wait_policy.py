"""How long torch's OpenMP threads should spin before they sleep, idle and on a shared machine (issue "A user's own
data": the wait policy ``probnets`` sets before torch is imported).

One sampling job, as the demo runs it but shorter: ChEES-HMC on diabetes, ``BNN(10, [50])``, float32, 16 chains x
(300 warm-up + 300 draws), seed 0, in a fresh process per run. Configurations (environment of that process):

* ``default``: libgomp's own (threads spin 300 000 iterations, then sleep);
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once);
* ``spin10k``, ``spin1k``, ``spin100``: ``GOMP_SPINCOUNT`` of 10 000, 1 000 and 100 iterations;
* ``one-thread``: ``OMP_NUM_THREADS=1``.

Load: none, or ``--busy`` processes spinning in pure Python (default: one per core), as other users' jobs would.
Reported per run: the sampler's wall time (the figure compared), the process's wall and CPU time; the gradient
evaluations must be equal across configurations (same draws).

Usage::

    python benchmarks/wait_policy.py [--repeats 3] [--busy 2] [--out benchmarks/results]

Writes ``wait_policy.json`` and ``wait_policy.md`` and prints the markdown (means over repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from demo_cost import busy_processes  # noqa: E402

CONFIGS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin10k": {"GOMP_SPINCOUNT": "10000"},
           "spin1k": {"GOMP_SPINCOUNT": "1000"}, "spin100": {"GOMP_SPINCOUNT": "100"},
           "one-thread": {"OMP_NUM_THREADS": "1"}}
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

_JOB = """
import json, torch, pyro.distributions as dist, inference, probnets
from probnets import BNN, Gaussian
data = probnets.datasets.diabetes(dtype=torch.float32)
model = BNN(10, [50], activation="tanh", prior=dist.Normal(0.0, 1.0),
            likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
post = inference.sample(model, (data.x_train, data.y_train), method="chees", num_warmup={warmup},
                        num_samples={samples}, seed=0, dtype=torch.float32, progress=False, print_summary=False,
                        check_convergence=False)
print(json.dumps({{"sampling_time": post.info["wall_time"], "grad_evals": int(post.info["grad_evals"])}}))
"""


def run_job(config: str, warmup: int = 300, samples: int = 300) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARIABLES}
    env.update(CONFIGS[config])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _JOB.format(warmup=warmup, samples=samples)], env=env, capture_output=True, text=True, cwd=HERE.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-1500:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(wall_time=wall, cpu_time=cpu, **json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=os.cpu_count(), help="spinning processes in the loaded rows")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    configs = args.configs.split(",")
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), busy=args.busy,
                repeats=args.repeats, loadavg_start=os.getloadavg(), python=platform.python_version())
    rows = []
    for load in ("none", "busy"):
        with busy_processes(args.busy if load == "busy" else 0):
            for repeat in range(args.repeats):  # configurations interleaved, so that drifts in load hit them alike
                for config in configs:
                    row = dict(load=load, config=config, repeat=repeat, loadavg=os.getloadavg()[0], **run_job(config))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    meta["loadavg_end"] = os.getloadavg()
    text = markdown(meta, rows, configs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wait_policy.json").write_text(json.dumps(dict(meta=meta, runs=rows), indent=2))
    (out / "wait_policy.md").write_text(text)
    print(text)
    return 0


def markdown(meta: dict, rows: list[dict], configs: list[str]) -> str:
    lines = ["# OpenMP wait policy: ChEES-HMC sampling time, idle and with busy processes", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs; load average at start {meta['loadavg_start']}, at end "
             f"{meta['loadavg_end']}; busy rows: {meta['busy']} spinning Python processes. Diabetes, BNN(10, [50]), "
             "float32, 16 chains x (300 + 300), seed 0; seconds, mean over "
             f"{meta['repeats']} repeats (each run's figure in brackets).", "",
             "| config | idle: sampling | idle: CPU | busy: sampling | busy: CPU | busy / idle |", "|---|---|---|---|---|---|"]
    for config in configs:
        cells = []
        means = {}
        for load in ("none", "busy"):
            sel = [r for r in rows if r["config"] == config and r["load"] == load]
            means[load] = statistics.mean(r["sampling_time"] for r in sel)
            each = ", ".join(f"{r['sampling_time']:.1f}" for r in sel)
            cells += [f"{means[load]:.2f} [{each}]", f"{statistics.mean(r['cpu_time'] for r in sel):.1f}"]
        lines.append(f"| {config} | " + " | ".join(cells) + f" | {means['busy'] / means['none']:.2f} |")
    evals = {r["grad_evals"] for r in rows}
    lines += ["", f"Gradient evaluations per run: {', '.join(map(str, sorted(evals)))} (the same draws in every run)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
