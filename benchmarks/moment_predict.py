"""Prediction time of moment propagation against 30-draw Monte Carlo mean-field VI, two ways.

The issue's target: MP-GELU predicts at least 10x faster than 30-draw MF-VI (``benchmarks/mp_gelu.py`` measures it
beside the test log-likelihoods; this script isolates the prediction). Prediction time does not depend on how
well a network is trained, so every network here is fitted for ``--steps`` steps only.

Per data set (split 0, 90/10, the test rows as inputs), widths ``--widths``, float64, one thread:

* ``eager``: ``MomentPosterior.predictive(x)`` (one moment pass) for MP-GELU, GELU-MP and ReLU-MP, and
  ``GaussianPosterior.predictive(bnn, x, num_samples=30)`` for MF-VI (a ReLU ``probnets.BNN``);
* ``compiled``: the moment pass through ``torch.compile`` (inductor, static shapes, no gradients), with its
  compile time: a second approach to the per-op overhead that dominates at test-set sizes.

Times are process CPU seconds, best and median of ``--repeats`` passes (the machine may be shared).

Usage::

    python benchmarks/moment_predict.py [--datasets diabetes,boston,concrete] [--repeats 300] [--no-compile]

Writes ``moment_predict.json`` and ``moment_predict.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import pyro.distributions as dist
import torch

from inference.vi import fit_vi
from probnets import BNN, Gaussian, datasets
from probnets.moment import MomentNetwork, predictive_moments

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = {"diabetes": datasets.diabetes, "boston": datasets.boston, "concrete": datasets.concrete}
MOMENT_METHODS = {"mp-gelu": "gelu", "gelu-mp": "exact-gelu", "relu-mp": "relu"}
MC_DRAWS = 30


def cpu_times(call, repeats: int) -> dict:
    """Best and median process CPU seconds of ``call()`` over ``repeats`` passes (after one untimed pass)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return {"best": min(times), "median": statistics.median(times)}


def run(args) -> dict:
    torch.set_num_threads(1)
    rows = []
    for name in args.datasets:
        split = DATASETS[name](test_fraction=0.1, seed=0, dtype=torch.float64)
        data, x = (split.x_train, split.y_train), split.x_test
        for method, activation in MOMENT_METHODS.items():
            network = MomentNetwork(x.shape[1], args.widths, activation=activation, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(0))
            post = fit_vi(network, data, method=method, num_steps=args.steps, seed=0, progress=False)
            row = {"dataset": name, "method": method, "test_rows": int(x.shape[0]),
                   "eager": cpu_times(lambda: post.predictive(x), args.repeats)}
            if args.compile:
                torch._dynamo.reset()  # a fresh cache: the same function object compiled for every network
                start = time.perf_counter()
                compiled = torch.compile(lambda z: predictive_moments(network(z)), dynamic=False)
                with torch.no_grad():
                    compiled(x)
                    row["compile_seconds"] = time.perf_counter() - start
                    row["compiled"] = cpu_times(lambda: compiled(x), args.repeats)
            rows.append(row)
            print(row, flush=True)
        bnn = BNN(x.shape[1], args.widths, activation="relu",
                  likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))  # as mp_gelu.py
        post = fit_vi(bnn, data, method="mfvi", num_steps=args.steps, seed=0, progress=False)
        generator = torch.Generator().manual_seed(0)
        rows.append({"dataset": name, "method": f"mfvi ({MC_DRAWS} draws)", "test_rows": int(x.shape[0]),
                     "eager": cpu_times(lambda: post.predictive(bnn, x, num_samples=MC_DRAWS, generator=generator),
                                        args.repeats)})
        print(rows[-1], flush=True)
    return {"settings": {"datasets": args.datasets, "widths": list(args.widths), "steps": args.steps,
                         "repeats": args.repeats, "dtype": "float64", "threads": 1, "torch": torch.__version__,
                         "machine": platform.machine(), "load_average": os.getloadavg()},
            "rows": rows}


def summarise(report: dict) -> str:
    s = report["settings"]
    lines = ["# Moment propagation vs 30-draw MF-VI: prediction time", "",
             f"Widths {s['widths']}, float64, one thread, process CPU ms per predictive pass over the test rows "
             f"(best / median of {s['repeats']}); load average {s['load_average']} at the end. Speed-up: MF-VI's "
             "best over the method's best (target: MP-GELU >= 10x).", "",
             "| data | method | test rows | eager ms | speed-up | compiled ms | speed-up compiled | compile s |",
             "|---|---|---|---|---|---|---|---|"]
    for name in s["datasets"]:
        rows = [r for r in report["rows"] if r["dataset"] == name]
        mc = next(r for r in rows if r["method"].startswith("mfvi"))["eager"]["best"]
        for r in rows:
            eager = r["eager"]
            cells = [f"{1e3 * eager['best']:.3f} / {1e3 * eager['median']:.3f}", f"{mc / eager['best']:.1f}x"]
            if "compiled" in r:
                cells += [f"{1e3 * r['compiled']['best']:.3f} / {1e3 * r['compiled']['median']:.3f}",
                          f"{mc / r['compiled']['best']:.1f}x", f"{r['compile_seconds']:.1f}"]
            else:
                cells += ["", "", ""]
            lines.append(f"| {name} | {r['method']} | {r['test_rows']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=lambda t: t.split(","), default=list(DATASETS))
    parser.add_argument("--widths", type=lambda t: tuple(int(w) for w in t.split(",")), default=(50, 50))
    parser.add_argument("--steps", type=int, default=50, help="fit steps per network (timing only)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown data sets {unknown}; choose from {list(DATASETS)}")
    report = run(args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "moment_predict.json"), "w") as f:
        json.dump(report, f, indent=1)
    markdown = summarise(report)
    with open(os.path.join(args.out, "moment_predict.md"), "w") as f:
        f.write(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
