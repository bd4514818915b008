"""A masked node-sparse BNN (Kong et al., ICML 2023) on the paper's cubic toy: how many nodes does it keep?

Data: y = x^3 + N(0, 3^2), x ~ U(-4, 4), 20 training points as in the paper (y standardised for sampling,
shown in original units). Model: two hidden ReLU layers of allocated width 100 (the paper: 1000) with a node
mask per layer under the prior exp(-(lambda log n)^5 s^2) / C(p, s), lambda = 0.1, Cauchy(0, 0.3) weights,
sigma^2 ~ InvGamma(1, 1). Sampler: ``inference.sample_masked``, i.e. per iteration one HMC update of the
weights (30 leapfrog steps, step size dual-averaged to acceptance 0.7 during warm-up), 2 birth/death moves on
the masks and a conjugate draw of the noise variance; 4 chains, 3000 warm-up iterations (as in the
paper), then every 10th of 1000 iterations kept.

The active share starts at 90% and falls to a handful of nodes per layer; the predictive band still follows
the cubic.

Outputs in --out (default ``examples_output/``): ``masked_bnn_band.png`` (predictive mean and 90% band over x
with the training points and the true curve), ``masked_bnn_active_nodes.png`` (active share per layer and
chain over the iterations) and ``masked_bnn.json`` (active nodes, held-out RMSE, acceptance rates).

Run:
    python examples/masked_bnn.py            # about 15 minutes on 2 busy cores
    python examples/masked_bnn.py --quick    # under a minute (smoke test)
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

import inference
from inference.diagnostics import ConvergenceWarning
from probnets.masked_bnn import MaskedBNN
from probnets_app.masked_fit import plot_active_nodes
from probnets_app.plots import _new_figure, _numpy, _save


def make_data(n_train: int = 20, n_test: int = 200, seed: int = 0):
    """The paper's toy: ``y = x^3 + N(0, 3^2)``, ``x ~ U(-4, 4)``; a test grid with noisy observations."""
    g = torch.Generator().manual_seed(seed)
    x_train = 8 * torch.rand(n_train, 1, generator=g, dtype=torch.float64) - 4
    y_train = x_train[:, 0] ** 3 + 3 * torch.randn(n_train, generator=g, dtype=torch.float64)
    x_test = torch.linspace(-4, 4, n_test, dtype=torch.float64)[:, None]
    y_test = x_test[:, 0] ** 3 + 3 * torch.randn(n_test, generator=g, dtype=torch.float64)
    return x_train, y_train, x_test, y_test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = make_data()
    y_mean, y_std = y_train.mean(), y_train.std()
    widths = [20, 20] if args.quick else [100, 100]
    model = MaskedBNN(1, widths, num_data=len(x_train), mask_lambda=0.1, prior_scale=0.3)
    settings = (dict(num_chains=2, num_warmup=40, num_samples=40, thin=4) if args.quick
                else dict(num_chains=4, num_warmup=3000, num_samples=1000, thin=10))
    print(f"Sampling {model}: {settings}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported below for the identifiable quantities
        posterior = inference.sample_masked(model, (x_train, (y_train - y_mean) / y_std), num_steps=30,
                                            num_mask_updates=2, seed=args.seed, progress=not args.quick,
                                            print_summary=not args.quick, **settings)

    pred = posterior.predictive(model, x_test)
    mean = pred.mean[:, 0] * y_std + y_mean
    lower, upper = (q[:, 0] * y_std + y_mean for q in pred.interval(0.9))
    active = {f"layer_{layer}": float(posterior.sample_stats[f"active_fraction_{layer}"].mean()) * width
              for layer, width in enumerate(widths)}
    results = {
        "widths": widths,
        "mean_active_nodes": active,
        "held_out_rmse": float((mean - y_test).square().mean().sqrt()),
        "hmc_acceptance_rate": float(posterior.sample_stats["acceptance_rate"].mean()),
        "mask_acceptance_rate": float(posterior.sample_stats["mask_acceptance_rate"].mean()),
        "divergences": posterior.num_divergences,
        "wall_time": posterior.info["wall_time"],
        "settings": settings,
    }
    print(json.dumps(results, indent=2))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "masked_bnn.json").write_text(json.dumps(results, indent=2) + "\n")
    fig, axes = _new_figure(1, 1, width=6.0, height=4.0)
    ax = axes[0, 0]
    grid = _numpy(x_test[:, 0])
    ax.fill_between(grid, _numpy(lower), _numpy(upper), alpha=0.3, label="90% predictive band")
    ax.plot(grid, _numpy(mean), label="predictive mean")
    ax.plot(grid, grid**3, "k--", lw=0.8, label="x^3")
    ax.scatter(_numpy(x_train[:, 0]), _numpy(y_train), s=12, color="k", zorder=3, label="training data")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"masked BNN {widths}: mean active nodes " + ", ".join(f"{v:.1f}" for v in active.values()))
    ax.legend(fontsize="small")
    _save(fig, out / "masked_bnn_band.png")
    plot_active_nodes(posterior, out / "masked_bnn_active_nodes.png")
    print(f"Wrote {out / 'masked_bnn_band.png'}, {out / 'masked_bnn_active_nodes.png'}, {out / 'masked_bnn.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
