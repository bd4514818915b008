"""Bias and variance of a predictor over resampled training sets as the training-set size grows (Nagler, ICML
2023, "Statistical foundations of prior-data fitted networks").

A PFN is a pre-tuned, untrained predictor ``f(D_n)(x_0)``. Its variance over training sets ``D_n`` vanishes when
its sensitivity to single samples does (attention averages: ``O(1/n)``), but its bias vanishes only if it
localises around ``x_0``; softmax attention with fixed query/key maps acts like a kernel smoother with a fixed
bandwidth, whose bias plateaus. :func:`bias_variance` estimates both from ``num_replications`` independent
training sets per size; :func:`nadaraya_watson` is the classical stand-in (fixed or shrinking bandwidth) and
:func:`pfn_predictor` adapts a :class:`~probnets.pfn.PFN`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from probnets.pfn.bar_distribution import BarDistribution
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
