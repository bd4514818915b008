"""Conv nets end to end at CPU scale: a small ResNet made Bayesian by ``probnets.from_module`` on scikit-learn's
digits, SGHMC vs structured SGHMC.

Model: a ResNet for 1 x 8 x 8 images written in plain ``torch.nn`` (``ResNet``): a 3 x 3 stem convolution to
``CHANNELS`` channels, ``NUM_BLOCKS`` residual blocks (conv-ReLU-conv plus the identity, then ReLU; no batch
normalisation, whose running statistics have no place in a function of ``theta``), global average pooling and a
linear head to 10 classes. ``from_module`` puts ``N(0, 1)`` priors on every weight and bias; categorical likelihood.
Data: the H2 protocol's digits split (``benchmarks/sgmcmc.py``: pixels in [0, 1], fixed 80/20 split with seed 0,
1437 training and 360 test images), reshaped to images.

Configurations (same start ``model.init_theta`` per seed, same epochs, batch size and step size):
  * ``sghmc`` (scale-adapted SGHMC, ``step_size=3e-2`` (``STEP_SIZE``), friction 0.05 as in H2);
  * ``structured-sghmc`` with its default groups (4 balanced random groups of coordinates);
  * ``structured-sghmc`` with ``groups="layer"`` (one group per conv/linear layer).
One chain per run, one draw per epoch after the burn-in epochs.

Reported per run and as means over seeds: test accuracy, NLL and ECE (15 bins) of the mixture predictive over the
draws, wall time per epoch of the sampling loop (``posterior.info["wall_time"]``), and the ESS of the test
predictive as in H2: the median over test images of the bulk ESS (``inference.diagnostics.ess_bulk``) of
``p(y_true | x, theta_s)`` over the draws; IAT = draws / ESS (in draws, i.e. epochs); ESS/s over the wall time.

Size: at the defaults (60 epochs, 20 burn-in, 3 seeds, one thread) about 4 minutes of sampling, estimated from a
3-epoch run on a loaded machine (0.26, 0.39 and 0.42 s per epoch for the three configurations; structured SGHMC's
1 + K evaluations are one vectorised call, so it costs 1.5-1.6x SGHMC per step, not 1 + K times).

Usage:
    python benchmarks/sgmcmc_resnet.py                                   # full size (see defaults)
    python benchmarks/sgmcmc_resnet.py --epochs 3 --burnin 1 --seeds 0 --train 200 --out /tmp/resnet   # smoke
Results: benchmarks/results/sgmcmc_resnet.json and .md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BATCH_SIZE = 64
CHANNELS = 8
NUM_BLOCKS = 2
#: Set from one 15-epoch SGHMC run (seed 0) at 1e-2 (H2's step: test accuracy 0.92, NLL 0.55) and 3e-2 (0.95, 0.24).
STEP_SIZE = 3e-2
CONFIGS = [
    dict(label="SGHMC", method="sghmc", options=dict(step_size=STEP_SIZE)),
    dict(label="structured SGHMC (default groups)", method="structured-sghmc", options=dict(step_size=STEP_SIZE)),
    dict(label="structured SGHMC (layer groups)", method="structured-sghmc",
         options=dict(step_size=STEP_SIZE, groups="layer")),
]
METRICS = ("time_per_epoch", "accuracy", "nll", "ece", "ess", "iat", "ess_per_s")


def _h2():
    """The H2 script (``benchmarks/sgmcmc.py``), for its digits split."""
    spec = importlib.util.spec_from_file_location("benchmarks_sgmcmc_h2", HERE / "sgmcmc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_images(dtype):
    """H2's digits split as ``n x 1 x 8 x 8`` images: ``(x_train, y_train, x_test, y_test)``."""
    x, y, x_test, y_test = _h2().digits_split(dtype)
    return x.reshape(-1, 1, 8, 8), y, x_test.reshape(-1, 1, 8, 8), y_test


def resnet():
    """The small ResNet (a module; its own initial weights are unused: chains start from ``init_theta``)."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

        def forward(self, x):
            return nn.functional.relu(x + self.conv2(nn.functional.relu(self.conv1(x))))

    class ResNet(nn.Module):
        def __init__(self, channels: int = CHANNELS, num_blocks: int = NUM_BLOCKS, num_classes: int = 10):
            super().__init__()
            self.stem = nn.Conv2d(1, channels, 3, padding=1)
            self.blocks = nn.Sequential(*(Block(channels) for _ in range(num_blocks)))
            self.head = nn.Linear(channels, num_classes)

        def forward(self, x):
            h = self.blocks(nn.functional.relu(self.stem(x)))
            return self.head(h.mean((-2, -1)))

    return ResNet()


def bayesian_resnet():
    import pyro.distributions as dist

    from probnets import Categorical, from_module

    return from_module(resnet(), dist.Normal(0.0, 1.0), likelihood=Categorical(10))


def run(config: dict, seed: int, epochs: int, burnin: int, data) -> dict:
    """One configuration and seed: sample, then score the test predictive."""
    import torch

    import inference
    from inference import diagnostics, metrics

    x, y, x_test, y_test = data
    model = bayesian_resnet()
    steps = -(-x.shape[0] // BATCH_SIZE)
    post = inference.sample(model, (x, y), method=config["method"], batch_size=BATCH_SIZE, num_chains=1,
                            num_warmup=burnin * steps, num_samples=(epochs - burnin) * steps, thin=steps, seed=seed,
                            progress=False, print_summary=False, check_convergence=False, **config["options"])
    samples = post.samples[0]
    wall = post.info["wall_time"]
    result = dict(label=config["label"], seed=seed, epochs=epochs, burnin=burnin, draws=int(samples.shape[0]),
                  num_groups=post.info.get("num_groups", 1), wall_time=wall, time_per_epoch=wall / epochs,
                  divergences=post.num_divergences, threads=torch.get_num_threads())
    if not bool(torch.isfinite(samples).all()):
        return {**result, **{k: None for k in METRICS if k != "time_per_epoch"}, "note": "non-finite draws"}
    with torch.no_grad():
        f = model.predict_f(samples, x_test)  # S x n x 10
    pred = model.predictive(samples, x_test)
    p_true = torch.softmax(f.double(), -1).gather(-1, y_test[None, :, None].expand(f.shape[0], -1, 1))[..., 0]
    ess = float(diagnostics.ess_bulk(p_true[None]).nanmedian()) if samples.shape[0] >= 4 else None
    return {**result, "accuracy": metrics.accuracy(pred, y_test), "nll": metrics.nll(pred, y_test),
            "ece": metrics.ece(pred, y_test), "ess": ess, "iat": None if ess is None else samples.shape[0] / ess,
            "ess_per_s": None if ess is None else ess / wall}


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)

    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else None

    return [dict(label=label, runs=len(rs), draws=rs[0]["draws"], num_groups=rs[0]["num_groups"],
                 **{k: mean(r[k] for r in rs) for k in METRICS}, divergences=sum(r["divergences"] for r in rs))
            for label, rs in groups.items()]


def _fmt(value, digits=4):
    return "" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown(meta: dict, summary: list[dict], rows: list[dict]) -> str:
    cols = ["label", "runs", "draws", "num_groups", *METRICS, "divergences"]
    lines = ["# SG-MCMC on a small ResNet (from_module) on digits: SGHMC vs structured SGHMC", "",
             f"Model: ResNet with a {CHANNELS}-channel stem, {NUM_BLOCKS} residual blocks, global average pooling and "
             f"a linear head, D = {meta['dim']} parameters, N(0, 1) priors. Machine: {meta['machine']}; {meta['cpus']} "
             f"CPUs; {meta['threads']} thread(s); load average at start {meta['loadavg_start']}, at end "
             f"{meta['loadavg_end']}. {meta['epochs']} epochs, {meta['burnin']} burn-in, batch {BATCH_SIZE}, step "
             f"size {STEP_SIZE}, {meta['train']} training and {meta['test']} test images, seeds {meta['seeds']}; "
             "means over seeds. time_per_epoch in seconds (sampling loop); ESS = median over test images of the bulk "
             "ESS of p(y_true | x, theta_s); IAT = draws / ESS (in draws = epochs); ESS/s over the run's wall time.",
             "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(s.get(c)) for c in cols) + " |" for s in summary]
    lines += ["", "## All runs", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(_fmt(v) for v in r.values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--burnin", type=int, default=20, help="burn-in epochs (default 20)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: as OMP_NUM_THREADS sets them; the results used 1)")
    parser.add_argument("--train", type=int, default=None, help="use only the first TRAIN training images (smoke)")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for sgmcmc_resnet.json/.md")
    args = parser.parse_args(argv)
    if not 0 <= args.burnin < args.epochs:
        parser.error("--burnin must be in [0, --epochs)")
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    x, y, x_test, y_test = digits_images(torch.float32)
    if args.train is not None:
        x, y = x[: args.train], y[: args.train]
    seeds = [int(s) for s in args.seeds.split(",")]
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                threads=torch.get_num_threads(),
                epochs=args.epochs, burnin=args.burnin, seeds=seeds, train=int(x.shape[0]), test=int(x_test.shape[0]),
                dim=bayesian_resnet().spec.dim, loadavg_start=os.getloadavg(), python=platform.python_version())
    rows = []
    for seed in seeds:
        for config in CONFIGS:
            rows.append(run(config, seed, args.epochs, args.burnin, (x, y, x_test, y_test)))
            print(json.dumps(rows[-1]), flush=True)
    meta["loadavg_end"] = os.getloadavg()
    summary = summarise(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sgmcmc_resnet.json").write_text(json.dumps(dict(meta=meta, summary=summary, runs=rows), indent=2))
    text = markdown(meta, summary, rows)
    (out / "sgmcmc_resnet.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
