"""Gaussian variational inference for any ``ProbModel``: mean-field, or low-rank-plus-diagonal.

Maximises the (tempered, KL-annealed) evidence lower bound over ``q(theta) = N(mean, diag(scale^2) + F F^T)``:

    ELBO_t = E_q[sum_i log p(y_i | x_i, theta)] / T + beta_t (E_q[log p(theta)] + H[q])

with the expected log-likelihood estimated on a minibatch (scaled by ``N / B``) by one of the estimators of
:mod:`inference.vi.estimators`, ``E_q[log p(theta)]`` by the same reparameterised draws and the entropy ``H`` in
closed form. ``beta_t`` rises linearly from ``1 / warm-up steps`` to 1 over the first ``kl_warmup`` fraction of the
steps. Several restarts are optimised side by side (one tensor, one optimiser); the optimisation runs in
:func:`inference.optim.minimize` (Adam, skipped non-finite steps, checkpoints with bit-identical resume).

Example:
    >>> posterior = inference.vi.fit_vi(BNN(8, [50]), (x, y), method="mfvi", num_epochs=200, batch_size=64)
    >>> posterior.predictive(model, x_test).mean
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from inference.gaussian_posterior import GaussianPosterior
from inference.minibatch import BatchStream
from inference.optim import minimize
from inference.progress import ProgressBar
from inference.vi.estimators import expected_log_likelihood, resolve_estimator
from inference.vi.family import GaussianFamily, inverse_softplus
from probnets.model import Batch, ProbModel
from probnets.module_model import ModuleModel
from probnets.validation import check_positive_float, check_positive_int

KEEP = ("best", "all")


class ElboTracker:
    """Step counter (for the KL annealing) and a running mean of every restart's ELBO; checkpointed with the run.

    Args:
        num_steps: Steps of the whole run.
        warmup_steps: Steps of the linear KL warm-up (0: ``beta = 1`` throughout).
        num_restarts: ``R``.
    """

    def __init__(self, num_steps: int, warmup_steps: int, num_restarts: int):
        self.num_steps, self.warmup_steps = num_steps, warmup_steps
        self.step = 0
        self.running = torch.full((num_restarts,), math.nan, dtype=torch.float64)

    def beta(self) -> float:
        """The KL weight of the current step."""
        return 1.0 if self.step >= self.warmup_steps else (self.step + 1) / self.warmup_steps

    def record(self, elbo: Tensor) -> None:
        elbo = elbo.detach().to(torch.float64).cpu()
        if bool(torch.isfinite(elbo).all()):
            # an average over about the last 5% of the steps: the value restarts are compared by
            decay = 1.0 - 1.0 / max(1.0, min(self.step + 1, 0.05 * self.num_steps))
            self.running = torch.where(torch.isnan(self.running), elbo, decay * self.running + (1 - decay) * elbo)
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "running": self.running.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.running = int(state["step"]), state["running"].clone()


def prepare_data(model: ProbModel, data, batch_size: int | None, seed: int, dtype: torch.dtype | None):
    """Validate ``data`` and set up its batches.

    Returns:
        ``(next_batch, num_data, stream, dtype)``: a function returning the next prepared batch, ``N``, the
        ``BatchStream`` to checkpoint (``None`` for full-batch fits) and the computation dtype.
    """
    if not isinstance(model, ProbModel):
        raise TypeError(f"model must be a probnets ProbModel, got {type(model).__name__}")
    if isinstance(data, torch.utils.data.DataLoader):
        dtype = dtype or torch.get_default_dtype()
        stream = BatchStream(data, batch_size, seed=seed)
    else:
        x, y = model.prepare_batch(data)
        dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
        if batch_size is None or batch_size >= x.shape[0]:
            full = _cast((x, y), dtype)
            return (lambda: full), x.shape[0], None, dtype
        stream = BatchStream((x, y), batch_size, seed=seed)
    return (lambda: _cast(model.prepare_batch(next(stream)), dtype)), stream.num_data, stream, dtype


def _cast(batch: Batch, dtype: torch.dtype) -> Batch:
    x, y = batch
    return (x.to(dtype) if torch.is_floating_point(x) else x), (y.to(dtype) if torch.is_floating_point(y) else y)


def resolve_steps(num_steps: int | None, num_epochs: int | None, stream: BatchStream | None) -> int:
    """``num_steps``, or ``num_epochs`` passes over the data (exactly one of them; default 1000 steps)."""
    if num_steps is not None and num_epochs is not None:
        raise ValueError("give num_steps or num_epochs, not both")
    if num_epochs is not None:
        return check_positive_int(num_epochs, "num_epochs") * (1 if stream is None else stream.batches_per_epoch)
    return check_positive_int(1000 if num_steps is None else num_steps, "num_steps")


def fit(model: ProbModel, data, *, num_steps: int | None = None, num_epochs: int | None = None,
        batch_size: int | None = None, num_samples: int = 8, estimator: str = "auto", rank: int = 0,
        lr: float = 1e-2, warmup_fraction: float | None = None, grad_clip: float | None = None,
        init_scale: float = 1e-2, kl_warmup: float = 0.0, temperature: float = 1.0, num_restarts: int = 1,
        keep: str = "best", seed: int = 0, dtype: torch.dtype | None = None, checkpoint=None,
        checkpoint_every: int = 100, progress: bool = True) -> GaussianPosterior:
    """Fit a Gaussian variational posterior to ``model`` on ``data``.

    Args:
        model: Any ``ProbModel`` (a ``from_module`` network's deterministic parameters are trained along, shared by
            the restarts).
        data: ``(x, y)`` tensors or a ``DataLoader`` of ``(x, y)`` batches.
        num_steps, num_epochs: Length of the run, in optimiser steps or passes over the data (one of them;
            default 1000 steps).
        batch_size: Minibatch size with tensor data (``None``: full batch).
        num_samples: Draws ``S`` of ``theta`` per restart and step.
        estimator: ``"auto"``, ``"reparam"``, ``"local"`` or ``"flipout"`` (:mod:`inference.vi.estimators`).
        rank: ``K`` of the low-rank factor (0: mean-field).
        lr: Adam's learning rate.
        warmup_fraction: ``None``: constant ``lr``; else linear warm-up over this fraction, then cosine decay to 0.
        grad_clip: Largest gradient norm (``None``: no clipping).
        init_scale: Initial standard deviation of every coordinate (means start at ``model.init_theta``).
        kl_warmup: Fraction of the steps over which the KL weight rises linearly to 1 (0: no annealing).
        temperature: ``T``: the likelihood enters as ``p(y | theta)^(1 / T)``.
        num_restarts: Restarts optimised side by side from different initial means.
        keep: ``"best"``: the restart with the highest final ELBO; ``"all"``: an equally weighted mixture.
        seed: Seeds the initialisation, the Monte Carlo draws and the minibatch order.
        dtype: Computation dtype (default: the data's floating dtype).
        checkpoint, checkpoint_every: Checkpoint file, written every ``checkpoint_every`` steps; an existing one is
            resumed bit for bit.
        progress: Show a progress bar with the live ELBO.

    Returns:
        A ``GaussianPosterior``; ``info`` holds the settings, the final ``elbo`` (running mean over the last steps,
        in nats), ``skipped_steps`` and ``wall_time``; ``elbo_trace`` the ELBO (mean over restarts) of every step.

    Raises:
        TypeError, ValueError: On bad data or settings, naming the argument.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    num_restarts = check_positive_int(num_restarts, "num_restarts")
    rank = check_positive_int(rank, "rank", minimum=0)
    init_scale = check_positive_float(init_scale, "init_scale")
    temperature = check_positive_float(temperature, "temperature")
    if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, (int, float)) or not 0 <= kl_warmup < 1:
        raise ValueError(f"kl_warmup must be a number in [0, 1), got {kl_warmup!r}")
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    next_batch, num_data, stream, dtype = prepare_data(model, data, batch_size, seed, dtype)
    num_steps = resolve_steps(num_steps, num_epochs, stream)
    estimator = resolve_estimator(model, estimator, rank)
    dim = model.spec.dim
    if rank > dim:
        raise ValueError(f"rank must be at most the dimension D={dim}, got {rank}")

    generator = torch.Generator().manual_seed(seed)
    mean = model.init_theta(num_restarts, generator=generator, dtype=dtype).clone().requires_grad_(True)
    rho = inverse_softplus(torch.full_like(mean, init_scale)).requires_grad_(True)
    factor = None
    if rank:
        factor = (init_scale * torch.randn((num_restarts, dim, rank), generator=generator, dtype=dtype)
                  ).to(mean.device).requires_grad_(True)
    family = GaussianFamily(mean, rho, factor)
    params = [p for p in family if p is not None]
    state: dict[str, Any] = {}
    if isinstance(model, ModuleModel):
        params += list(model.deterministic_parameters().values())
        state["module"] = model.module
    tracker = ElboTracker(num_steps, round(kl_warmup * num_steps), num_restarts)
    state["tracker"] = tracker
    if stream is not None:
        state["batches"] = stream

    def loss_fn() -> Tensor:
        x, y = next_batch()
        theta = family.draw(num_samples, generator)
        ll = expected_log_likelihood(model, family, theta, (x, y), estimator, generator)
        elbo = (num_data / (x.shape[0] * temperature)) * ll.mean(1) + tracker.beta() * (
            model.log_prior(theta).mean(1) + family.entropy())
        tracker.record(elbo)
        return -elbo.sum() / num_data

    settings = {"vi": "mfvi", "num_samples": num_samples, "estimator": estimator, "rank": rank,
                "num_restarts": num_restarts, "kl_warmup": kl_warmup, "temperature": temperature,
                "batch_size": None if stream is None else batch_size, "seed": seed, "dtype": str(dtype),
                "dim": dim}
    result, wall_time = optimise_elbo(loss_fn, params, tracker, num_steps=num_steps, lr=lr,
                                      warmup_fraction=warmup_fraction, grad_clip=grad_clip, generator=generator,
                                      state=state, settings=settings, checkpoint=checkpoint,
                                      checkpoint_every=checkpoint_every, progress=progress, description="mfvi")
    with torch.no_grad():
        chosen = (torch.arange(num_restarts) if keep == "all"
                  else tracker.running.nan_to_num(-math.inf).argmax().reshape(1)).to(mean.device)
        posterior = GaussianPosterior(
            mean[chosen].detach().clone(), family.scale[chosen].detach().clone(),
            None if factor is None else factor[chosen].detach().clone(), spec=model.spec,
            info=run_info(settings, result, tracker, chosen, num_steps, lr, wall_time))
    posterior.elbo_trace = -result.losses * num_data / num_restarts
    return posterior


def run_info(settings: dict[str, Any], result, tracker: ElboTracker, chosen: Tensor, num_steps: int, lr: float,
             wall_time: float) -> dict[str, Any]:
    """The posterior's ``info``: the settings, the final ELBO of the kept restarts, skipped steps, wall time."""
    return {**{k: v for k, v in settings.items() if k != "vi"}, "method": settings["vi"], "num_steps": num_steps,
            "lr": lr, "elbo": float(tracker.running[chosen.cpu()].mean()), "skipped_steps": result.skipped_steps,
            "resumed_from": result.resumed_from, "wall_time": wall_time}


def optimise_elbo(loss_fn, params, tracker: ElboTracker, *, num_steps: int, description: str, progress: bool,
                  step_hook=None, **options):
    """:func:`minimize` (Adam) with a progress bar showing the live ELBO; returns its result and the wall time.

    Args:
        loss_fn: ``-ELBO / N`` of one step (recording the ELBO in ``tracker``).
        params: The tensors to optimise.
        options: Further settings of :func:`minimize` (``lr``, ``generator``, ``state``, checkpoints, ...).
    """
    bar: ProgressBar | None = None

    def on_step(step: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = ProgressBar(num_steps, initial=step, description=description, enabled=progress)
        if bar.postfix_due:
            bar.set_postfix({"elbo": float(tracker.running.mean()), "beta": f"{tracker.beta():.2f}"})
        bar.update()

    t0 = time.perf_counter()
    result = minimize(loss_fn, params, method="adam", num_steps=num_steps, callback=on_step, step_hook=step_hook,
                      **options)
    if bar is not None:
        bar.close()
    return result, time.perf_counter() - t0
