"""Instant GP-style regression with a pretrained PFN: one forward pass instead of fitting or sampling.

Loads the shipped ``gp-rbf-1d`` PFN (trained on functions from a 1-D RBF GP prior), conditions it on a few noisy
observations of a function drawn from that prior, and compares its predictive with the exact GP posterior
predictive (test NLL on held-out points, and a plot of both predictive bands). Also runs the Nagler (2023)
bias/variance diagnostic of the PFN's predictions at one test input as the training set grows.

Outputs in --out (default ``examples_output/``): ``pfn_gp_regression.png`` (bands), ``pfn_bias_variance.png``
and ``pfn_gp_regression.json`` (NLLs).

Run:
    python examples/pfn_gp_regression.py           # a few seconds
    python examples/pfn_gp_regression.py --quick   # smoke test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from probnets.pfn import diagnostics, load_pretrained, task_prior


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--quick", action="store_true", help="smaller diagnostic for a smoke test")
    parser.add_argument("--num-train", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = load_pretrained("gp-rbf-1d")
    prior = task_prior("gp-rbf-1d")
    task = prior.sample(1, num_context=args.num_train, num_target=200, generator=torch.Generator().manual_seed(args.seed),
                        dtype=torch.float64)
    x, y = task.context_x[0], task.context_y[0]
    xt, yt = task.target_x[0], task.target_y[0, :, 0]
    pred = model.predict(x, y, xt)
    _, gp_target = prior.oracle_log_prob(task)
    result = {"num_train": args.num_train, "pfn_test_nll": -pred.log_prob(yt).mean().item(),
              "exact_gp_test_nll": -gp_target.item()}
    print(f"test NLL per point: PFN {result['pfn_test_nll']:.3f}, exact GP {result['exact_gp_test_nll']:.3f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _plot_bands(model, prior, task, out / "pfn_gp_regression.png")
    sizes = [5, 20] if args.quick else [5, 10, 20, 50]
    bv = diagnostics.bias_variance(diagnostics.pfn_predictor(model), sizes, num_replications=50 if args.quick else 400,
                                   generator=torch.Generator().manual_seed(args.seed))
    diagnostics.plot_bias_variance({"PFN gp-rbf-1d": bv}, out / "pfn_bias_variance.png")
    result["bias_variance"] = {"sizes": bv.sizes, "bias": bv.bias.tolist(), "variance": bv.variance.tolist()}
    (out / "pfn_gp_regression.json").write_text(json.dumps(result, indent=2))
    return 0


def _plot_bands(model, prior, task, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = task.context_x[0], task.context_y[0]
    grid = torch.linspace(0, 1, 300, dtype=torch.float64).unsqueeze(-1)
    pred = model.predict(x, y, grid)
    lo, hi = pred.interval(0.9)
    params = {k: v.double() for k, v in task.params.items()}
    noise_cov = prior.noise_covariance(x[None], params)[0]
    cross = prior.covariance(grid[None], x[None], params)[0]
    mean = cross @ torch.linalg.solve(noise_cov, y[:, 0])
    var = noise_cov[0, 0] - (cross * torch.linalg.solve(noise_cov, cross.T).T).sum(-1)
    fig, ax = plt.subplots(figsize=(8, 4))
    g = grid[:, 0].numpy()
    ax.fill_between(g, lo[:, 0].numpy(), hi[:, 0].numpy(), alpha=0.3, label="PFN 90% interval")
    ax.plot(g, pred.mean[:, 0].numpy(), label="PFN mean")
    sd = var.clamp_min(0).sqrt()
    ax.plot(g, mean.numpy(), "k--", label="exact GP mean")
    ax.plot(g, (mean - 1.645 * sd).numpy(), "k:", label="exact GP 90% interval")
    ax.plot(g, (mean + 1.645 * sd).numpy(), "k:")
    ax.scatter(x[:, 0].numpy(), y[:, 0].numpy(), color="red", zorder=3, label="observations")
    ax.set_xlabel("x")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
