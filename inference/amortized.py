"""Meta-training of amortized models (neural processes, PFNs): batches of simulated tasks, minimised by the
engine's loop (:func:`inference.optim.minimize`: AdamW with linear warm-up and cosine decay, gradient-norm
clipping, skipped non-finite steps, a progress bar, and checkpoints that resume bit-identically)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from inference.optim import minimize
from probnets.validation import check_positive_int


class AmortizedTrainResult(NamedTuple):
    """Attributes:
        losses: Training loss of every step, ``num_steps`` (NaN where a step was skipped).
        num_steps: Steps in the whole run.
        resumed_from: Step the run resumed at (0 for a fresh run).
        skipped_steps: Steps whose loss or gradient was not finite (no update was made).
    """

    losses: Tensor
    num_steps: int
    resumed_from: int
    skipped_steps: int


def train_amortized(model: nn.Module, task_prior, *, num_steps: int, batch_size: int, lr: float = 1e-3,
                    warmup_fraction: float = 0.1, grad_clip: float | None = 1.0, weight_decay: float = 0.0,
                    seed: int = 0, sample_kwargs: Mapping[str, Any] | None = None,
                    checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
                    progress: bool = True) -> AmortizedTrainResult:
    """Train an amortized model on fresh tasks from ``task_prior`` at every step.

    Args:
        model: An ``nn.Module`` with ``loss(batch) -> scalar`` (optionally ``loss(batch, generator=...)`` when
            the loss itself is random, e.g. latent samples), minimised.
        task_prior: Has ``sample(batch_size, *, generator, dtype, device, **sample_kwargs) -> TaskBatch``
            (:class:`~probnets.priors.GPTaskPrior`, :class:`~probnets.priors.BNNTaskPrior`).
        num_steps: Optimisation steps (one batch of ``batch_size`` tasks each).
        batch_size: Tasks per step.
        lr: Peak learning rate of AdamW.
        warmup_fraction: Fraction of the steps with a linear warm-up, in ``[0, 1)``; cosine decay afterwards.
        grad_clip: Largest gradient norm (``None``: no clipping).
        weight_decay: AdamW's decoupled weight decay.
        seed: Seeds the task draws and the loss's randomness (one ``torch.Generator``) and torch's global
            generator (dropout).
        sample_kwargs: Extra keyword arguments of ``task_prior.sample`` (e.g. a fixed ``num_context``).
        checkpoint: Path of a checkpoint file, written every ``checkpoint_every`` steps and at the end; if it
            exists, training resumes from it (same settings required) and the result equals an uninterrupted
            run's bit for bit.
        checkpoint_every: Steps between checkpoints.
        progress: Show a progress bar with the running loss.

    Returns:
        :class:`AmortizedTrainResult`.
    """
    if not isinstance(model, nn.Module) or not callable(getattr(model, "loss", None)):
        raise TypeError(f"model must be an nn.Module with a loss(batch) method, got {type(model).__name__}")
    if not callable(getattr(task_prior, "sample", None)):
        raise TypeError(f"task_prior must have a sample(batch_size, ...) method, got {type(task_prior).__name__}")
    num_steps = check_positive_int(num_steps, "num_steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    dtype, device = params[0].dtype, params[0].device
    sample_kwargs = dict(sample_kwargs or {})
    random_loss = "generator" in inspect.signature(model.loss).parameters

    generator = torch.Generator(device="cpu").manual_seed(seed)
    settings = {"batch_size": batch_size, "seed": seed, "warmup_fraction": warmup_fraction}
    torch.manual_seed(seed)

    def loss_fn() -> Tensor:
        batch = task_prior.sample(batch_size, generator=generator, dtype=dtype, device=device, **sample_kwargs)
        return model.loss(batch, generator=generator) if random_loss else model.loss(batch)

    model.train()
    result = minimize(loss_fn, params, method="adamw", num_steps=num_steps, lr=lr, weight_decay=weight_decay,
                      warmup_fraction=warmup_fraction, grad_clip=grad_clip, generator=generator,
                      state={"model": model}, settings=settings, checkpoint=checkpoint,
                      checkpoint_every=checkpoint_every, progress=progress, description="meta-training")
    model.eval()
    return AmortizedTrainResult(result.losses, num_steps, result.resumed_from, result.skipped_steps)

