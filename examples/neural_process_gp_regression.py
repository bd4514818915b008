"""Meta-train neural processes on GP functions and compare their predictives with the exact GP.

Trains a CNP, a latent NP and a martingale-posterior NP (MPNP) on 1-D RBF GP tasks (the NPF benchmark prior)
with the shared meta-training loop, then conditions each on a few observations of a new function from that prior.
Reports target log-likelihoods on held-out tasks against the oracle GP, and plots the three predictive bands with
the exact GP's.

Outputs in --out (default ``examples_output/``): ``neural_process_gp_regression.png`` and
``neural_process_gp_regression.json``.

Run:
    python examples/neural_process_gp_regression.py           # about two minutes on one core
    python examples/neural_process_gp_regression.py --quick   # smoke test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from inference.amortized import train_amortized
from probnets.neural_process import CNP, MPNP, NP
from probnets.priors import GPTaskPrior


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--quick", action="store_true", help="a few training steps for a smoke test")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--num-context", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps = 30 if args.quick else args.steps
    prior = GPTaskPrior("rbf")
    held_out = prior.sample(200, num_context=args.num_context, generator=torch.Generator().manual_seed(args.seed + 1))
    result = {"steps": steps, "num_context": args.num_context,
              "oracle_gp_target_ll": prior.oracle_log_prob(held_out)[1].mean().item()}
    models = {}
    for cls in (CNP, NP, MPNP):
        torch.manual_seed(args.seed)
        model = cls(width=64)
        train_amortized(model, prior, num_steps=steps, batch_size=16, lr=5e-4, seed=args.seed, progress=True)
        with torch.no_grad():
            target_ll = model.log_likelihood(held_out, generator=torch.Generator().manual_seed(args.seed))[1]
        result[f"{cls.__name__}_target_ll"] = target_ll.mean().item()
        models[cls.__name__] = model
    print(json.dumps(result, indent=2))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = prior.sample(1, num_context=args.num_context, num_target=1,
                        generator=torch.Generator().manual_seed(args.seed + 2), dtype=torch.float64)
    _plot_bands(models, prior, task, out / "neural_process_gp_regression.png")
    (out / "neural_process_gp_regression.json").write_text(json.dumps(result, indent=2))
    return 0


def _plot_bands(models, prior, task, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = task.context_x[0], task.context_y[0]
    grid = torch.linspace(*prior.x_range, 300, dtype=torch.float64).unsqueeze(-1)
    params = {k: v.double() for k, v in task.params.items()}
    noise_cov = prior.noise_covariance(x[None], params)[0]
    cross = prior.covariance(grid[None], x[None], params)[0]
    gp_mean = cross @ torch.linalg.solve(noise_cov, y[:, 0])
    gp_sd = (noise_cov[0, 0] - (cross * torch.linalg.solve(noise_cov, cross.T).T).sum(-1)).clamp_min(0).sqrt()
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), sharey=True)
    g = grid[:, 0].numpy()
    for ax, (name, model) in zip(axes, models.items()):
        pred = model.predict(x.float(), y.float(), grid.float(), generator=torch.Generator().manual_seed(0))
        lo, hi = pred.interval(0.9)
        ax.fill_between(g, lo[:, 0].numpy(), hi[:, 0].numpy(), alpha=0.3, label=f"{name} 90% interval")
        ax.plot(g, pred.mean[:, 0].numpy(), label=f"{name} mean")
        ax.plot(g, gp_mean.numpy(), "k--", label="exact GP mean")
        ax.plot(g, (gp_mean - 1.645 * gp_sd).numpy(), "k:", label="exact GP 90% interval")
        ax.plot(g, (gp_mean + 1.645 * gp_sd).numpy(), "k:")
        ax.scatter(x[:, 0].numpy(), y[:, 0].numpy(), color="red", zorder=3, label="observations")
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
