"""Partial BNNs trained by Feynman-Kac SMC (Zhao, Mair, Schoen, Sjoelund 2024) against a MAP network.

Protocol (the paper's, at the sizes given on the command line): each data set is split 60/30/10 into
train/validation/test (``--splits`` random splits; inputs and targets standardised on the training part); the
paper's architectures (regression: ``d -> 50 -> 20 | 20 -> 5 | 5 -> 1``, Gaussian noise of variance 1 on the
standardised target; moons: ``2 -> 100 -> 20 | 20 -> 5 | 5 -> 1``, Bernoulli), GELU, N(0, 1) prior on the stochastic
block, Adam 1e-2 on psi, batches of ``--batch-size``. Methods:

* ``ohsmc``: open-horizon SMC with the random-walk jitter (variance 1e-2), stratified resampling at every step;
* ``ohsmc-ou``: the same with the prior-preserving OU jitter (time step 1e-2);
* ``sgsmc-hmc``: SGSMC (10 RW-MH steps of variance 5e-2 per datum), then HMC on phi with psi fixed;
* ``map``: the same network with phi as a point estimate, Adam on the log posterior.

Every method keeps the state with the best validation NLPD (checked once per epoch). Reported: test NLPD and RMSE
(original units) or accuracy (moons), and wall time, as mean and standard error over splits.

Usage::

    python benchmarks/pbnn_smc.py [--datasets diabetes,boston,concrete,moons] [--methods ohsmc,ohsmc-ou,sgsmc-hmc,map]
                                  [--splits 10] [--particles 1000] [--epochs 100] [--batch-size 50]
                                  [--mh-steps 10] [--hmc-warmup 2000] [--hmc-samples 1000] [--quick]
                                  [--out benchmarks/results]

Writes ``pbnn_smc.json`` and ``pbnn_smc.md`` into ``--out`` and prints the markdown. ``--quick`` is a smoke run
(one split, a few epochs, few particles): its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import metrics  # noqa: E402
from inference.smc.fisher_training import nlpd  # noqa: E402
from inference.smc.open_horizon import fit_open_horizon  # noqa: E402
from inference.smc.sgsmc import fit_sgsmc  # noqa: E402
from probnets import datasets  # noqa: E402
from probnets.partial_bnn import paper_mlp  # noqa: E402

METHODS = ("ohsmc", "ohsmc-ou", "sgsmc-hmc", "map")
DATASETS = ("diabetes", "boston", "concrete", "moons")


def load(name: str, seed: int):
    """``(train, validation, test, y_scale, task)`` with a 60/30/10 split."""
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(1000, noise=0.3, random_state=seed)
        x, y = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64)
        perm = torch.randperm(1000, generator=torch.Generator().manual_seed(seed))
        train_rows, test_rows = perm[100:], perm[:100]
        mean, std = x[train_rows].mean(0), x[train_rows].std(0)
        split = datasets.RegressionSplit((x[train_rows] - mean) / std, y[train_rows], (x[test_rows] - mean) / std,
                                         y[test_rows], mean, std, 0.0, 1.0, ("x1", "x2"), "label")
        y_train, y_test, y_scale, task = split.y_train, split.y_test, 1.0, "classification"
    else:
        split = getattr(datasets, name)(test_fraction=0.1, seed=seed)
        y_train, y_test, y_scale, task = split.y_train, split.y_test, split.y_std, "regression"
    n = split.x_train.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n / 3)
    val, train = order[:n_val], order[n_val:]
    return ((split.x_train[train], y_train[train]), (split.x_train[val], y_train[val]),
            (split.x_test, y_test), y_scale, task)


def fit_map(model, train, validation, epochs: int, batch_size: int, seed: int):
    """MAP of phi and psi by Adam; the phi/psi of the best validation NLPD (checked once per epoch)."""
    from inference.minibatch import Minibatches

    phi = model.init_theta(1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).requires_grad_(True)
    optimizer = torch.optim.Adam([phi, *model.psi_parameters()], lr=1e-2)
    rows = Minibatches(len(train[1]), batch_size, torch.Generator().manual_seed(seed + 1))
    n = len(train[1])
    best, best_state = math.inf, None
    for _ in range(epochs):
        for _ in range(rows.num_batches):
            r = rows.next()
            loss = -(model.log_prior(phi).sum() + n * model.log_likelihood(phi, (train[0][r], train[1][r])).mean())
            optimizer.zero_grad()
            (loss / n).backward()
            optimizer.step()
        score = nlpd(model, phi.detach(), torch.zeros(1, dtype=torch.float64), validation)
        if score < best:
            best, best_state = score, (phi.detach().clone(), model.state_dict())
    model.load_state_dict(best_state[1])
    return best_state[0], None


def run_one(method: str, name: str, seed: int, args) -> dict:
    train, validation, test, y_scale, task = load(name, seed)
    model = paper_mlp("moons" if name == "moons" else "uci", train[0].shape[1],
                      generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    common = dict(num_particles=args.particles, num_epochs=args.epochs, batch_size=args.batch_size,
                  validation=validation, seed=seed, progress=False)
    start = time.perf_counter()
    if method == "map":
        theta, log_w = fit_map(model, train, validation, args.epochs, args.batch_size, seed)
    else:
        if method == "ohsmc":
            post = fit_open_horizon(model, train, move="rw", **common)
        elif method == "ohsmc-ou":
            post = fit_open_horizon(model, train, move="ou", **common)
        else:
            post = fit_sgsmc(model, train, num_mh_steps=args.mh_steps, hmc_warmup=args.hmc_warmup,
                             hmc_samples=args.hmc_samples, **common)
        post.apply_psi(model)
        theta, log_w = post.flat_samples(), None if post.log_weights is None else post.log_weights.reshape(-1)
    wall = time.perf_counter() - start
    with torch.no_grad():
        pred = model.predictive(theta, test[0], log_weights=log_w)
        out = {"nlpd": metrics.nll(pred, test[1], y_scale=1.0 if task == "classification" else y_scale),
               "wall_time": wall}
        if task == "classification":
            out["accuracy"] = metrics.accuracy(pred, test[1])
        else:
            out["rmse"] = metrics.rmse(pred, test[1], y_scale=y_scale)
    return out


def markdown(results: dict, args) -> str:
    lines = ["# Partial BNNs by Feynman-Kac SMC vs MAP", "",
             f"Settings: {args.splits} split(s), {args.particles} particles, {args.epochs} epochs, batches of "
             f"{args.batch_size}; HMC {args.hmc_warmup} + {args.hmc_samples}; "
             f"{platform.processor() or platform.machine()}, torch {torch.__version__}."
             + (" **Smoke run (--quick): the numbers mean nothing.**" if args.quick else ""),
             "", "| data | method | test NLPD | RMSE / accuracy | wall time (s) |", "|---|---|---|---|---|"]
    for name, per_method in results.items():
        for method, runs in per_method.items():
            def cell(key):
                values = np.array([r[key] for r in runs if key in r])
                if values.size == 0:
                    return "-"
                se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
                return f"{values.mean():.3f} ± {se:.3f}" if values.size > 1 else f"{values.mean():.3f}"
            second = cell("accuracy") if name == "moons" else cell("rmse")
            lines.append(f"| {name} | {method} | {cell('nlpd')} | {second} | {cell('wall_time')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--mh-steps", type=int, default=10, help="SGSMC: RW-MH steps per datum")
    parser.add_argument("--hmc-warmup", type=int, default=2000)
    parser.add_argument("--hmc-samples", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 split, 2 epochs, 16 particles, 1 MH step")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.splits, args.particles, args.epochs, args.mh_steps, args.hmc_warmup, args.hmc_samples = 1, 16, 2, 1, 20, 10
    names = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            parser.error(f"--methods: {m!r} is not one of {METHODS}")
    results: dict = {}
    for name in names:
        try:
            load(name, 0)
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        results[name] = {m: [run_one(m, name, seed, args) for seed in range(args.splits)] for m in methods}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pbnn_smc.json").write_text(json.dumps({"settings": vars(args), "results": results}, indent=2) + "\n")
    text = markdown(results, args)
    (out / "pbnn_smc.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
