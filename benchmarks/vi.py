"""SSVI at densities 0.1 and 0.05 against dense mean-field VI on scikit-learn's digits with a wide MLP (CPU).

Protocol (the issue "Variational engines"): a BNN classifier ``64 -> 1024 -> 1024 -> 10`` (``--widths``; ReLU,
fan-in Normal priors with scale 1, categorical likelihood) on scikit-learn's digits (1797 8 x 8 images, pixels
divided by 16), a stratified 80/20 train/test split per seed, ``--seeds`` seeds. No larger image set is used: none
of the installed packages ships one offline (MNIST-style packages download at first use), so digits is the only
image set of this benchmark.

Methods, one training budget for all (``--epochs`` passes of batch ``--batch-size``, ``--num-samples`` weight draws
per step, Adam at ``--lr`` with a 5% linear warm-up then cosine decay to 0, initial posterior scale 1e-2, the
likelihood tempered by ``--temperature``):

* ``mfvi``: dense mean-field VI with the local reparameterisation trick (``inference.vi.mfvi``);
* ``ssvi@d``: SSVI at density ``d`` of every weight matrix (``inference.vi.ssvi``, its defaults: |SNR| removal,
  subspace updates every 100 steps until 75% of the run, 30% exchanged at first; biases dense).

Why the default temperature is 0.1 (a KL weight of 0.1 relative to the likelihood): with 1.1M weights and 1437
training images the untempered ELBO's KL dominates. Measured on 64-256-256-10 after 20 epochs (seed 0, constant
lr 3e-3): at T = 1 dense VI reaches 64% test accuracy and SSVI at density 0.1 stays at chance (10%, NLL log 10;
also at 64-100-100-10 and with a 20% KL warm-up, while SSVI with one sparse hidden layer of 100 learns), at T = 0.1
96% and 87%. Since SSVI's initial means are rescaled to the fan-in each unit keeps (``ssvi.sparse_init``; before,
SSVI stayed at chance on 64-1024-1024-10 at T = 0.1, ``results/vi_run1_chance.md``), the same measurement gives
SSVI 93% at T = 0.1 and still chance at T = 1. ``--temperature 1`` runs the untempered ELBO.

Every (method, seed) runs in a fresh subprocess with ``OMP_NUM_THREADS=--threads`` (so that its peak memory is its
own). Reported per run: test accuracy, NLL and ECE (15 bins) of the predictive with ``--pred-samples`` weight
draws; parameter count (active weights plus biases; a variational posterior stores a mean and a scale for each);
training wall time and process CPU time; prediction wall time (the best of 3 predictive passes over the test set);
peak resident memory above a baseline subprocess that only imports and loads the data.

Targets, checked per density on the means over seeds and printed PASS/FAIL (rules fixed before any full run):

* compression: dense parameter count / sparse parameter count >= 10;
* accuracy: dense accuracy - sparse accuracy <= 3 points;
* NLL and ECE within dense VI's noise: sparse mean <= dense mean + 2 x the standard error of the difference of
  the two means over seeds (``sqrt(se_dense^2 + se_sparse^2)``);
* training wall time <= 0.5 x dense VI's; prediction wall time <= 0.3 x dense VI's (medians over seeds).

Usage::

    python benchmarks/vi.py [--widths 1024,1024] [--densities 0.1,0.05] [--seeds 0,1,2] [--epochs 100]
                            [--batch-size 128] [--num-samples 4] [--lr 3e-3] [--temperature 0.1]
                            [--pred-samples 32] [--threads 1]
                            [--out benchmarks/results] [--tag ""]

Writes ``vi<tag>.json`` and ``vi<tag>.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
METRICS = ("accuracy", "nll", "ece")


def _setup(cfg: dict):
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from probnets import BNN, Categorical, priors

    torch.set_num_threads(cfg["threads"])
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.data / 16.0, digits.target, test_size=0.2,
                                                        stratify=digits.target, random_state=cfg["seed"])
    if cfg.get("num_train"):
        x_train, y_train = x_train[:cfg["num_train"]], y_train[:cfg["num_train"]]
    tensors = [torch.tensor(np.asarray(a), dtype=torch.float32) for a in (x_train, x_test)]
    labels = [torch.tensor(np.asarray(a), dtype=torch.long) for a in (y_train, y_test)]
    model = BNN(64, cfg["widths"], 10, activation="relu", prior=priors.fan_in_normal(1.0),
                likelihood=Categorical(10))
    return model, (tensors[0], labels[0]), (tensors[1], labels[1])


def _child(cfg: dict) -> dict:
    warnings.simplefilter("ignore")
    import torch

    from inference import metrics
    from inference.vi import fit_vi

    model, train, (x_test, y_test) = _setup(cfg)
    if cfg["method"] == "baseline":
        return {"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    options = dict(num_epochs=cfg["epochs"], batch_size=cfg["batch_size"], num_samples=cfg["num_samples"],
                   lr=cfg["lr"], warmup_fraction=0.05, init_scale=1e-2, temperature=cfg["temperature"],
                   seed=cfg["seed"], progress=False)
    if cfg["method"] == "ssvi":
        options["density"] = cfg["density"]
    else:
        options["estimator"] = "local"
    cpu = time.process_time()
    post = fit_vi(model, train, method=cfg["method"], **options)
    train_cpu = time.process_time() - cpu
    times = []
    for r in range(3):
        start = time.perf_counter()
        with torch.no_grad():
            pred = post.predictive(model, x_test, num_samples=cfg["pred_samples"],
                                   generator=torch.Generator().manual_seed(cfg["seed"]))
        times.append(time.perf_counter() - start)
    scores = metrics.evaluate(pred, y_test)
    params = int(post.mask.sum()) if post.mask is not None else model.spec.dim
    return {**{k: scores[k] for k in METRICS}, "params": params, "train_seconds": float(post.info["wall_time"]),
            "train_cpu_seconds": train_cpu, "predict_seconds": min(times),
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _run_child(cfg: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), MKL_NUM_THREADS=str(cfg["threads"]),
               PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "_child", json.dumps(cfg)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"configuration {cfg} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))


def summarise(rows: list[dict]) -> tuple[dict, list[dict]]:
    """Per method: means, standard errors and medians over seeds; per sparse method: the targets' verdicts."""
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        runs = [r for r in rows if r["method"] == method]
        entry = {"seeds": len(runs), "params": runs[0]["params"]}
        for key in METRICS:
            entry[key], entry[f"{key}_se"] = _mean_se([r[key] for r in runs])
        for key in ("train_seconds", "train_cpu_seconds", "predict_seconds", "peak_rss_mb"):
            entry[key] = statistics.median(r[key] for r in runs)
        summary[method] = entry
    dense = summary["mfvi"]
    targets = []
    for method, s in summary.items():
        if method == "mfvi":
            continue
        checks = [("compression >= 10x", dense["params"] / s["params"], dense["params"] / s["params"] >= 10),
                  ("accuracy drop <= 3 points", 100 * (dense["accuracy"] - s["accuracy"]),
                   100 * (dense["accuracy"] - s["accuracy"]) <= 3)]
        for key in ("nll", "ece"):
            noise = 2 * math.sqrt(dense[f"{key}_se"] ** 2 + s[f"{key}_se"] ** 2)
            checks.append((f"{key} <= dense + 2 SE(diff) ({noise:.4f})", s[key] - dense[key],
                           s[key] - dense[key] <= noise))
        for key, bound in (("train_seconds", 0.5), ("predict_seconds", 0.3)):
            ratio = s[key] / dense[key]
            checks.append((f"{key.split('_')[0]} wall time <= {bound} x dense", ratio, ratio <= bound))
        targets += [{"method": method, "target": name, "value": value, "pass": bool(ok)} for name, value, ok in checks]
    return summary, targets


def markdown(report: dict) -> str:
    c = report["config"]
    arch = "-".join(str(w) for w in [64, *c["widths"], 10])
    lines = ["# SSVI vs dense mean-field VI on digits", "",
             f"BNN {arch} (ReLU), digits 80/20 stratified split per seed, seeds {c['seeds']}; {c['epochs']} epochs "
             f"of batch {c['batch_size']} x {c['num_samples']} draws, Adam lr {c['lr']} (5% warm-up, cosine decay), "
             f"temperature {c['temperature']}; "
             f"predictive from {c['pred_samples']} draws; {c['threads']} thread(s) per run; load average "
             f"{report['machine']['load_average']} at the end.", "",
             "Mean +- standard error over seeds (accuracy, NLL, ECE); medians over seeds (times, memory).", "",
             "| method | parameters | accuracy | NLL | ECE | train s | train CPU s | predict s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, s in report["summary"].items():
        lines.append(f"| {method} | {s['params']} | " + " | ".join(f"{s[k]:.4f} +- {s[k + '_se']:.4f}" for k in METRICS)
                     + f" | {s['train_seconds']:.1f} | {s['train_cpu_seconds']:.1f} | {s['predict_seconds']:.3f} | "
                     f"{s['peak_rss_mb']:.0f} |")
    lines += ["", "## Targets", "", "| method | target | value | verdict |", "|---|---|---|---|"]
    lines += [f"| {t['method']} | {t['target']} | {t['value']:.4g} | {'PASS' if t['pass'] else 'FAIL'} |"
              for t in report["targets"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="1024,1024")
    p.add_argument("--densities", default="0.1,0.05")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--pred-samples", type=int, default=32)
    p.add_argument("--num-train", type=int, default=0, help="use only this many training images (0: all; smoke)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    config = {"widths": [int(w) for w in a.widths.split(",")], "seeds": [int(s) for s in a.seeds.split(",")],
              "epochs": a.epochs, "batch_size": a.batch_size, "num_samples": a.num_samples, "lr": a.lr,
              "temperature": a.temperature, "pred_samples": a.pred_samples, "num_train": a.num_train,
              "threads": a.threads}
    base = {k: v for k, v in config.items() if k != "seeds"}
    baseline = _run_child({**base, "method": "baseline", "seed": 0})["peak_rss_kb"]
    rows = []
    for method, density in [("mfvi", 1.0)] + [("ssvi", float(d)) for d in a.densities.split(",")]:
        for seed in config["seeds"]:
            result = _run_child({**base, "method": method, "density": density, "seed": seed})
            result["peak_rss_mb"] = (result.pop("peak_rss_kb") - baseline) / 1024
            rows.append({"method": "mfvi" if method == "mfvi" else f"ssvi@{density:g}", "density": density,
                         "seed": seed, **result})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    summary, targets = summarise(rows)
    report = {"config": config, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                            "load_average": [round(v, 2) for v in os.getloadavg()]},
              "rows": rows, "summary": summary, "targets": targets}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"vi{a.tag}.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    text = markdown(report)
    with open(os.path.join(a.out, f"vi{a.tag}.md"), "w") as fh:
        fh.write(text)
    print(text)
    return report


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        print(json.dumps(_child(json.loads(sys.argv[2]))))
    else:
        main()
