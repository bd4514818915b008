"""Deterministic variational inference of moment-propagation networks: MP-GELU (Hirayama and
Takamaeda-Yamazaki 2022), the deterministic GELU with exact moments (``"gelu-mp"``) and the ReLU baselines of
Wu et al. (2019), ``fit_vi(network, data, method=...)``.

The objective has no sampling: per minibatch ``B`` of ``N`` data,

    L = -(1/|B|) sum_{i in B} E_q[log N(y_i | l_i, exp(s_i))] + kl_weight * KL / N,

with the expected log-likelihood in closed form from the propagated output moments
(:func:`probnets.moment.expected_log_likelihood`) and the empirical-Bayes KL: per parameter tensor of ``k``
weights with ``S = sum(sigma^2 + mu^2)``, the prior ``N(0, v)`` with ``v`` at its MAP under an inverse-gamma
hyperprior ``IG(alpha, beta)``, ``v = (S + 2 beta) / (k + 2 alpha + 2)``, which gives

    KL = 1/2 [k log v + S / v - k - sum log sigma^2].

Minimised with Adam through :func:`inference.optim.minimize` (progress bar with the live loss, non-finite steps
skipped and counted, checkpoints that resume bit for bit).
"""

from __future__ import annotations

import inspect
import time

import torch
from torch import Tensor

from inference.minibatch import Minibatches
from inference.moment_posterior import MomentPosterior
from inference.optim import minimize
from probnets.moment import MomentNetwork, expected_log_likelihood
from probnets.validation import check_positive_float, check_positive_int


def empirical_bayes_kl(mean: Tensor, log_variance: Tensor, concentration: float, rate: float) -> Tensor:
    """KL of ``N(mean, exp(log_variance))`` (elementwise) to ``N(0, v)`` at the MAP ``v`` under
    ``IG(concentration, rate)``; a scalar."""
    k = mean.numel()
    second = (log_variance.exp() + mean.square()).sum()
    prior_var = (second + 2 * rate) / (k + 2 * concentration + 2)
    return 0.5 * (k * prior_var.log() + second / prior_var - k - log_variance.sum())


def network_kl(network: MomentNetwork, concentration: float, rate: float) -> Tensor:
    """The empirical-Bayes KL summed over the weight and bias tensors of every layer."""
    return sum(empirical_bayes_kl(mean, log_var, concentration, rate)
               for layer in network.linears
               for mean, log_var in ((layer.weight_mean, layer.weight_log_variance),
                                     (layer.bias_mean, layer.bias_log_variance)))


def fit(model: MomentNetwork, data, *, num_steps: int = 2000, batch_size: int | None = 128, lr: float = 1e-2,
        kl_weight: float = 1.0, prior_concentration: float = 1.0, prior_rate: float = 10.0,
        grad_clip: float | None = 10.0, seed: int = 0, checkpoint=None, checkpoint_every: int = 100,
        progress: bool = True) -> MomentPosterior:
    """Fit a :class:`~probnets.moment.MomentNetwork` by deterministic VI (trained in place).

    Args:
        model: The network (MP-GELU or ReLU, diagonal or full covariance), in the dtype of the fit.
        data: ``(x, y)``: ``x`` ``n x d``, ``y`` ``n`` or ``n x m`` regression targets.
        num_steps: Adam steps.
        batch_size: Rows per minibatch (``None``: the whole data set every step).
        lr: Adam's learning rate.
        kl_weight: ``lambda``, the weight of the KL term (1: the evidence lower bound).
        prior_concentration, prior_rate: ``alpha``, ``beta`` of the inverse-gamma hyperprior on each tensor's
            prior variance.
        grad_clip: Largest gradient norm (``None``: no clipping).
        seed: Seeds the minibatch order.
        checkpoint: Path of a checkpoint file (written every ``checkpoint_every`` steps and at the end; resumed
            from when it exists, with the same settings).
        checkpoint_every: Steps between checkpoints.
        progress: Show a progress bar with the live loss.

    Returns:
        A :class:`~inference.moment_posterior.MomentPosterior`; its ``info`` holds ``losses`` (``num_steps``, NaN
        where a step was skipped), ``skipped_steps``, ``resumed_from`` and ``wall_time``.
    """
    if not isinstance(model, MomentNetwork):
        raise TypeError(f"model must be a probnets.moment.MomentNetwork, got {type(model).__name__}")
    x, y = model.check_data(data)
    num_steps = check_positive_int(num_steps, "num_steps")
    n = x.shape[0]
    batch_size = n if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n)
    for name, value in (("kl_weight", kl_weight), ("prior_concentration", prior_concentration),
                        ("prior_rate", prior_rate)):
        check_positive_float(value, name)
    generator = torch.Generator().manual_seed(seed)
    batches = Minibatches(n, batch_size, generator)

    def loss_fn() -> Tensor:
        rows = batches.next().to(x.device)
        ell = expected_log_likelihood(model(x[rows]), y[rows]).mean()
        return -ell + kl_weight * network_kl(model, prior_concentration, prior_rate) / n

    settings = {"batch_size": batch_size, "kl_weight": kl_weight, "prior_concentration": prior_concentration,
                "prior_rate": prior_rate, "seed": seed, "network": model.method, "widths": list(model.widths)}
    start = time.perf_counter()
    model.train()
    result = minimize(loss_fn, list(model.parameters()), method="adam", num_steps=num_steps, lr=lr,
                      grad_clip=grad_clip, generator=generator, state={"batches": batches}, settings=settings, checkpoint=checkpoint,
                      checkpoint_every=checkpoint_every, progress=progress, description=model.method)
    info = {"method": model.method, "num_steps": num_steps, "lr": lr, **settings, "losses": result.losses,
            "skipped_steps": result.skipped_steps, "resumed_from": result.resumed_from,
            "wall_time": time.perf_counter() - start, "num_data": n}
    return MomentPosterior(model, info)


def _method_fit(expected: tuple[str, ...]):
    def fit_method(model: MomentNetwork, data, **options) -> MomentPosterior:
        if isinstance(model, MomentNetwork) and model.method not in expected:
            raise ValueError(f"this method fits networks of kind {expected}; the network is {model.method!r} "
                             "(build it with the matching activation and covariance)")
        return fit(model, data, **options)

    fit_method.__signature__ = inspect.signature(fit)
    return fit_method


#: ``fit_vi`` entries: each checks that the network is of its kind.
fit_mp_gelu = _method_fit(("mp-gelu",))
fit_relu_mp = _method_fit(("relu-mp", "relu-mp-full"))
fit_gelu_mp = _method_fit(("gelu-mp",))
