"""The one meta-training loop of amortized models (neural processes, PFNs): batches of simulated tasks, Adam
with linear warm-up and cosine decay, gradient-norm clipping, a progress bar, and checkpoints that resume
bit-identically."""

from __future__ import annotations

import inspect
import math
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from inference import checkpoint as checkpoint_io
from probnets.validation import check_positive_float, check_positive_int


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


def warmup_cosine(step: int, num_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear from ``1 / warmup_steps`` to 1 over the warm-up, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, num_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


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
    lr = check_positive_float(lr, "lr")
    if isinstance(warmup_fraction, bool) or not isinstance(warmup_fraction, (int, float)) or not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be a number in [0, 1), got {warmup_fraction!r}")
    if grad_clip is not None:
        grad_clip = check_positive_float(grad_clip, "grad_clip")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    dtype, device = params[0].dtype, params[0].device
    sample_kwargs = dict(sample_kwargs or {})
    random_loss = "generator" in inspect.signature(model.loss).parameters

    generator = torch.Generator(device="cpu").manual_seed(seed)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup_steps = max(1, round(warmup_fraction * num_steps)) if warmup_fraction > 0 else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, num_steps, warmup_steps))
    losses = torch.full((num_steps,), math.nan, dtype=torch.float64)
    settings = {"num_steps": num_steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                "warmup_fraction": float(warmup_fraction)}
    start, skipped = 0, 0
    torch.manual_seed(seed)
    if checkpoint is not None and os.path.exists(checkpoint):
        state = checkpoint_io.load(checkpoint)
        if state["settings"] != settings:
            raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} was written with settings {state['settings']}, "
                             f"not {settings}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        losses = state["losses"].clone()
        start, skipped = int(state["step"]), int(state["skipped_steps"])

    def save(step: int) -> None:
        if checkpoint is not None:
            checkpoint_io.save(checkpoint, {
                "settings": settings, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "losses": losses, "step": step, "skipped_steps": skipped})

    bar = _progress_bar(num_steps, start, progress)
    model.train()
    running = None
    for step in range(start, num_steps):
        batch = task_prior.sample(batch_size, generator=generator, dtype=dtype, device=device, **sample_kwargs)
        loss = model.loss(batch, generator=generator) if random_loss else model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip is not None else math.inf)
        if torch.isfinite(loss) and torch.isfinite(norm):
            optimizer.step()
            losses[step] = loss.item()
            running = losses[step].item() if running is None else 0.98 * running + 0.02 * losses[step].item()
        else:
            skipped += 1
        scheduler.step()
        if bar is not None:
            bar.update(1)
            if running is not None:
                bar.set_postfix({"loss": f"{running:.4f}", "lr": f"{scheduler.get_last_lr()[0]:.2e}",
                                 "skipped": skipped}, refresh=False)
        if (step + 1) % checkpoint_every == 0 and step + 1 < num_steps:
            save(step + 1)
    if bar is not None:
        bar.close()
    save(num_steps)
    model.eval()
    return AmortizedTrainResult(losses, num_steps, start, skipped)


def _progress_bar(total: int, start: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()  # off a terminal every refresh is a new line: refresh rarely there
    return tqdm(total=total, initial=start, desc="meta-training", dynamic_ncols=True,
                mininterval=0.25 if interactive else 15.0)
