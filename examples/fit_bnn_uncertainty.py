"""Predictive uncertainty of a Bayesian neural network on a 1-D toy problem with a gap in the data.

Data: y = sin(3x) + noise (sd 0.1) observed for x in [-2, -0.6] and [0.6, 2]; nothing in between. A BNN
(one hidden layer of 50 tanh units, N(0, 1) weights, learned noise scale) is sampled with many-chain
ChEES-HMC (or NUTS/HMC). On a test grid over [-3, 3] the predictive band should be tight where there is
data and widen in the gap and outside the observed range.

Outputs in --out (default ``examples_output/``): ``uncertainty_band.png`` (predictive mean and 90% band
over x with noisy test observations) and ``uncertainty_calibration.png`` (coverage of central intervals).

Run:
    python examples/fit_bnn_uncertainty.py            # ~1 minute on 2 cores
    python examples/fit_bnn_uncertainty.py --quick    # a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pyro.distributions as dist
import torch

import inference
from inference import metrics
from inference.diagnostics import ConvergenceWarning, ess_bulk, split_rhat
from probnets import BNN, Gaussian
from probnets_app import plots


def make_data(n_train: int = 80, n_test: int = 200, noise: float = 0.1, seed: int = 0):
    """Training points on both sides of a gap; noisy test points on a grid over a wider range."""
    g = torch.Generator().manual_seed(seed)
    half = n_train // 2
    left = -2.0 + 1.4 * torch.rand(half, generator=g, dtype=torch.float64)
    right = 0.6 + 1.4 * torch.rand(n_train - half, generator=g, dtype=torch.float64)
    x_train = torch.cat([left, right])
    y_train = torch.sin(3 * x_train) + noise * torch.randn(n_train, generator=g, dtype=torch.float64)
    x_test = torch.linspace(-3.0, 3.0, n_test, dtype=torch.float64)
    y_test = torch.sin(3 * x_test) + noise * torch.randn(n_test, generator=g, dtype=torch.float64)
    return x_train[:, None], y_train, x_test[:, None], y_test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--method", choices=["chees", "nuts", "hmc"], default="chees")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = make_data()
    model = BNN(1, [50], activation="tanh", likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    if args.quick:
        settings = {"num_chains": 8, "num_warmup": 40, "num_samples": 20}
    elif args.method == "chees":
        settings = {"num_chains": 16, "num_warmup": 300, "num_samples": 1000}
    else:
        settings = {"num_chains": 4, "num_warmup": 500, "num_samples": 500}
    print(f"Sampling {model} with {args.method}: {settings}")
    with warnings.catch_warnings():
        # Weight-space R-hat/ESS are poor by construction for BNNs (symmetries); checked in function space below.
        warnings.simplefilter("ignore", ConvergenceWarning)
        posterior = inference.sample(model, (x_train, y_train), method=args.method, seed=args.seed,
                                     progress=not args.quick, print_summary=False, **settings)

    pred = posterior.predictive(model, x_test)
    scores = metrics.evaluate(pred, y_test, level=0.9)
    f = posterior.f_draws(model, x_test)
    print(f"Test metrics on [-3, 3]: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    print(f"Function space: max R-hat {float(split_rhat(f).max()):.3f}, min bulk ESS {float(ess_bulk(f).min()):.0f}, "
          f"divergences {posterior.num_divergences}, wall time {posterior.info['wall_time']:.1f} s")
    in_gap = (x_test[:, 0].abs() < 0.6)
    in_data = ((x_test[:, 0].abs() >= 0.6) & (x_test[:, 0].abs() <= 2.0))
    sd = pred.stddev[:, 0]
    print(f"Mean predictive sd: {float(sd[in_data].mean()):.3f} where there is data, "
          f"{float(sd[in_gap].mean()):.3f} in the gap, {float(sd[x_test[:, 0].abs() > 2].mean()):.3f} outside")

    out = Path(args.out)
    band = plots.plot_predictions(pred, y_test, out / "uncertainty_band.png", x=x_test[:, 0], level=0.9,
                                  title="BNN predictive: 90% band (data gap in (-0.6, 0.6))")
    calibration = plots.plot_calibration(pred, y_test, out / "uncertainty_calibration.png")
    print(f"Wrote {band} and {calibration}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
