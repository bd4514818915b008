"""Minibatch sampling of a BNN: a ``DataLoader`` fed to a stochastic-gradient sampler through ``inference.sample``.

Data: 5000 points of y = sin(3x) + noise (sd 0.2), x ~ U(-2, 2). A BNN (one hidden layer of 50 tanh units,
N(0, 1) weights, noise scale ~ LogNormal(-1, 1)) is sampled with scale-adapted SGHMC on minibatches of 100
from a ``torch.utils.data.DataLoader`` (every step sees the unbiased estimate of the log posterior,
``log p(theta) + (N / |B|) sum_B log p(y | x, theta)``), 8 chains at once. The run checkpoints to
``--out/sghmc.ckpt``: kill it and start it again and it continues where it stopped, minibatch order included.

Outputs in --out (default ``examples_output/``): ``minibatch_band.png`` (predictive mean and 90% band) and
``minibatch_calibration.png``.

Run:
    python examples/minibatch_sampling.py            # ~1 minute on 2 cores
    python examples/minibatch_sampling.py --quick    # a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import inference
from inference import metrics
from probnets import BNN
from probnets_app import plots


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 4 * torch.rand(n, 1, generator=g) - 2
    return x, torch.sin(3 * x[:, 0]) + 0.2 * torch.randn(n, generator=g)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)

    x, y = make_data(500 if args.quick else 5000)
    x_test, y_test = make_data(200, seed=1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=100, shuffle=True,
                                         generator=torch.Generator())  # reseeded per epoch: resumable order
    model = BNN(1, [50], activation="tanh")
    settings = dict(num_chains=4, num_warmup=100, num_samples=100) if args.quick else \
        dict(num_chains=8, num_warmup=2000, num_samples=2000)
    posterior = inference.sample(model, loader, method="sghmc", seed=args.seed, step_size=0.01,
                                 checkpoint=out / "sghmc.ckpt", progress=not args.quick, print_summary=False,
                                 check_convergence=False, **settings)
    epochs = (settings["num_warmup"] + settings["num_samples"]) / len(loader)
    print(f"{posterior}: {epochs:.0f} epochs of {len(loader)} minibatches, {posterior.num_divergences} divergences, "
          f"wall time {posterior.info['wall_time']:.1f} s")

    pred = posterior.predictive(model, x_test)
    scores = metrics.evaluate(pred, y_test, level=0.9)
    print("Test metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    order = x_test[:, 0].argsort()
    band = plots.plot_predictions(posterior.predictive(model, x_test[order]), y_test[order],
                                  out / "minibatch_band.png", x=x_test[order, 0], level=0.9,
                                  title="BNN sampled by SGHMC on minibatches: 90% band")
    calibration = plots.plot_calibration(pred, y_test, out / "minibatch_calibration.png")
    print(f"Wrote {band} and {calibration}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
