"""Instant GP-style regression with a pretrained PFN: one forward pass instead of fitting or sampling.

Loads the shipped ``gp-rbf-1d`` PFN (trained on functions from a 1-D RBF GP prior), conditions it on a few noisy
observations of a function drawn from that prior, and compares its predictive with the exact GP posterior
predictive (test NLL on held-out points, and a plot of both predictive bands). Also runs the bias/variance
diagnostic of Nagler (ICML 2023, "Statistical foundations of prior-data fitted networks") on the PFN's
predictions at one test input as the training set grows.

A PFN is a pre-tuned, untrained predictor ``f(D_n)(x_0)``. Its variance over training sets ``D_n`` vanishes when
its sensitivity to single samples does (attention averages: ``O(1/n)``), but its bias vanishes only if it
localises around ``x_0``; softmax attention with fixed query/key maps acts like a kernel smoother with a fixed
bandwidth, whose bias plateaus. :func:`bias_variance` estimates both from ``num_replications`` independent
training sets per size; :func:`nadaraya_watson` is the classical stand-in (fixed or shrinking bandwidth) and
:func:`pfn_predictor` adapts a :class:`~probnets.pfn.PFN`.

Outputs in --out (default ``examples_output/``): ``pfn_gp_regression.png`` (bands), ``pfn_bias_variance.png``
and ``pfn_gp_regression.json`` (NLLs).

Run:
    python examples/pfn_gp_regression.py           # a few seconds
    python examples/pfn_gp_regression.py --quick   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from probnets.pfn import BarDistribution, load_pretrained, task_prior
from probnets.validation import check_positive_int

#: ``predictor(context_x R x n x d, context_y R x n x 1, x0 R x 1 x d) -> R`` point predictions at ``x0``.
Predictor = Callable[[Tensor, Tensor, Tensor], Tensor]


class BiasVariance(NamedTuple):
    """Per training-set size ``n``: ``bias`` = mean prediction minus the truth, ``variance`` of the prediction
    over training sets, and the Monte Carlo standard error of the bias (``sqrt(variance / replications)``)."""

    sizes: list[int]
    bias: Tensor
    variance: Tensor
    bias_se: Tensor


def sine_data(n: int, replications: int, *, noise: float = 0.1, generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """The reference experiment's data: ``x ~ U[0, 1]``, ``y = sin(2 pi x) + noise * eps``; ``R x n x 1`` each."""
    x = torch.rand(replications, n, 1, generator=generator, dtype=dtype)
    y = torch.sin(2 * math.pi * x) + noise * torch.randn(x.shape, generator=generator, dtype=dtype)
    return x, y


def nadaraya_watson(bandwidth: float, *, shrink: float = 0.0, reference_size: int = 10) -> Predictor:
    """Gaussian-kernel Nadaraya-Watson smoother with bandwidth ``bandwidth * (n / reference_size)^-shrink``
    (``shrink = 0``: fixed; ``shrink = 1/5``: the rate that makes it consistent in one dimension)."""

    def predict(context_x: Tensor, context_y: Tensor, x0: Tensor) -> Tensor:
        h = bandwidth * (context_x.shape[1] / reference_size) ** -shrink
        logw = -0.5 * ((context_x - x0).square().sum(-1) / h**2)  # R x n
        w = torch.softmax(logw, -1)
        return (w * context_y[..., 0]).sum(-1)

    return predict


def pfn_predictor(model, *, batch_size: int = 100) -> Predictor:
    """The predictive mean of a :class:`~probnets.pfn.PFN`, evaluated ``batch_size`` training sets at a time."""

    @torch.no_grad()
    def predict(context_x: Tensor, context_y: Tensor, x0: Tensor) -> Tensor:
        dtype = model.borders.dtype
        means = []
        for s in range(0, context_x.shape[0], batch_size):
            logits = model(context_x[s:s + batch_size].to(dtype), context_y[s:s + batch_size].to(dtype),
                           x0[s:s + batch_size].to(dtype))
            means.append(BarDistribution(model.borders, logits).mean[:, 0])
        return torch.cat(means).double()

    return predict


def bias_variance(predictor: Predictor, sizes: Sequence[int], *, x0: float | Sequence[float] = 0.25,
                  truth: float | None = None, num_replications: int = 400,
                  sample_data: Callable[..., tuple[Tensor, Tensor]] = sine_data,
                  generator: torch.Generator | None = None) -> BiasVariance:
    """Bias and variance of ``predictor`` at ``x0`` over ``num_replications`` training sets per size.

    Args:
        predictor: See :data:`Predictor`.
        sizes: Training-set sizes ``n``.
        x0: The test input (a float for ``d = 1``).
        truth: ``f(x0)``; defaults to ``sin(2 pi x0)`` (the reference function of :func:`sine_data`).
        num_replications: Independent training sets per size.
        sample_data: ``sample_data(n, replications, generator=...) -> (x R x n x d, y R x n x 1)``.
        generator: Source of the training sets.
    """
    sizes = [check_positive_int(n, "sizes") for n in sizes]
    if not sizes:
        raise ValueError("sizes must not be empty")
    num_replications = check_positive_int(num_replications, "num_replications", minimum=2)
    point = torch.as_tensor(x0, dtype=torch.float64).reshape(1, 1, -1)
    if truth is None:
        truth = math.sin(2 * math.pi * float(point.reshape(-1)[0]))
    bias, variance = [], []
    for n in sizes:
        x, y = sample_data(n, num_replications, generator=generator)
        pred = predictor(x, y, point.to(x.dtype).expand(num_replications, 1, x.shape[-1]))
        bias.append(pred.mean() - truth)
        variance.append(pred.var())
    bias, variance = torch.stack(bias).double(), torch.stack(variance).double()
    return BiasVariance(sizes, bias, variance, (variance / num_replications).sqrt())


def plot_bias_variance(results: dict[str, BiasVariance], path) -> None:
    """Save |bias| and variance against ``n`` (log-log) for several predictors as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bias, ax_var) = plt.subplots(1, 2, figsize=(10, 4))
    for label, r in results.items():
        ax_bias.errorbar(r.sizes, r.bias.abs().numpy(), yerr=r.bias_se.numpy(), marker="o", label=label)
        ax_var.plot(r.sizes, r.variance.numpy(), marker="o", label=label)
    for ax, title in ((ax_bias, "|bias| at x0"), (ax_var, "variance at x0")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training-set size n")
        ax.set_title(title)
    ax_bias.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    bv = bias_variance(pfn_predictor(model), sizes, num_replications=50 if args.quick else 400,
                                   generator=torch.Generator().manual_seed(args.seed))
    plot_bias_variance({"PFN gp-rbf-1d": bv}, out / "pfn_bias_variance.png")
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
