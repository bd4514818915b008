"""The training loop shared by the partial-BNN SMC engines: particles of ``phi``, Adam on ``psi``.

An engine supplies ``init(particles) -> state`` and a step ``(state, batch) -> (state, info)`` whose ``info``
has the Fisher-identity surrogate (``surrogate``, differentiable in ``psi``), ``ess``, ``log_increment``,
``num_nonfinite`` and ``rejected``. :func:`train` draws the initial particles from the prior, feeds minibatches
(tensors or a DataLoader, :class:`~inference.minibatch.BatchStream`), minimises the surrogate over
``model.psi_parameters()`` with :func:`inference.optim.minimize` (progress bar, skipped non-finite steps,
checkpoints with bit-identical resume: the particles, the best state and the records are checkpointed with it),
keeps the state with the best validation NLPD and returns a
:class:`~inference.smc.partial_posterior.PartialPosterior`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from inference import checkpoint as checkpoint_io
from inference.minibatch import BatchStream
from inference.optim import minimize
from inference.smc.partial_posterior import PartialPosterior
from probnets.model import Batch, ProbModel
from probnets.validation import check_positive_int

Move = Callable[[Tensor, torch.Generator], Tensor]

_TRACE = ("loss", "ess", "log_increment", "num_nonfinite")


def resolve_move(model: ProbModel, move: Move | str | None, scale: float) -> Move | None:
    """The particle move of a name: ``"rw"`` (random-walk jitter of variance ``scale``), ``"ou"`` (the
    prior-preserving Ornstein-Uhlenbeck move with time step ``scale``, for Gaussian priors), ``None`` or a
    callable ``(particles, generator) -> particles`` as it is."""
    if move is None or (callable(move) and not isinstance(move, str)):
        return move
    from inference.smc import moves

    if move == "rw":
        std = math.sqrt(scale)
        return lambda particles, generator: moves.random_walk_jitter(particles, generator, std)
    if move == "ou":
        if not callable(getattr(model, "prior_moments", None)):
            raise TypeError(f"move='ou' needs a model with a Gaussian prior and prior_moments() (a PartialBNN), got "
                            f"{type(model).__name__}")
        mean, variance = model.prior_moments()
        return lambda particles, generator: moves.ou_jitter(particles, generator, scale, mean.to(particles),
                                                            variance.to(particles))
    raise ValueError(f"move must be 'rw', 'ou', None or a callable (particles, generator) -> particles, got {move!r}")


def prepared_data(model: ProbModel, data, dtype: torch.dtype | None) -> tuple[Any, torch.dtype]:
    """``data`` validated: prepared ``(x, y)`` tensors, or a DataLoader as it is; and the computation dtype."""
    if isinstance(data, torch.utils.data.DataLoader):
        x = model.prepare_batch(next(iter(data)))[0]
        return data, dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"data must be a pair (x, y) or a torch DataLoader, got {type(data).__name__}")
    x, y = model.prepare_batch(tuple(data))
    dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
    return (_cast(x, dtype), _cast(y, dtype)), dtype


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t.to(dtype) if torch.is_floating_point(t) else t


def psi_of(model: ProbModel) -> list[Tensor]:
    """``model.psi_parameters()``, checked: a partial BNN's deterministic parameters."""
    if not callable(getattr(model, "psi_parameters", None)) or not callable(getattr(model, "state_dict", None)):
        raise TypeError(f"model must be a partial BNN with psi_parameters() and state_dict() (e.g. "
                        f"probnets.partial_bnn.PartialBNN), got {type(model).__name__}")
    params = model.psi_parameters()
    if not params:
        raise ValueError("model has no deterministic parameters psi to train")
    return params


def nlpd(model: ProbModel, particles: Tensor, log_weights: Tensor, batch: Batch) -> float:
    """Negative log predictive density per point of the weighted-particle mixture on ``batch``."""
    with torch.no_grad():
        pred = model.predictive(particles, _cast(batch[0], particles.dtype), log_weights=log_weights)
        return float(-pred.log_prob(batch[1]).mean())


class _Run:
    """The mutable part of a training run (checkpointed through ``minimize``'s ``state``)."""

    def __init__(self, model, state, num_steps: int, tracking_best: bool):
        self.model, self.state, self.step = model, state, 0
        self.trace = {k: torch.full((num_steps,), math.nan, dtype=torch.float64) for k in _TRACE}
        self.best_nlpd, self.best_step = math.inf, -1
        self.best_state = state if tracking_best else None
        self.best_psi = model.state_dict() if tracking_best else None

    def state_dict(self) -> dict[str, Any]:
        out = {"state": checkpoint_io.flatten_state(self.state), "step": self.step, "trace": dict(self.trace),
               "best_nlpd": self.best_nlpd, "best_step": self.best_step}
        if self.best_state is not None:
            out["best_state"] = checkpoint_io.flatten_state(self.best_state)
            out["best_psi"] = self.best_psi
        return out

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.state = checkpoint_io.unflatten_like(self.state, saved["state"])
        self.step = int(saved["step"])
        self.trace = {k: v.clone() for k, v in saved["trace"].items()}
        self.best_nlpd, self.best_step = float(saved["best_nlpd"]), int(saved["best_step"])
        if self.best_state is not None:
            self.best_state = checkpoint_io.unflatten_like(self.best_state, saved["best_state"])
            self.best_psi = saved["best_psi"]


def train(model: ProbModel, data, *, init: Callable[[Tensor], Any],
          make_step: Callable[[torch.Generator], Callable[[Any, Batch], tuple[Any, Any]]], num_particles: int,
          num_epochs: int, batch_size: int | None, lr: float, validation: Batch | None, eval_every: int | None,
          seed: int, dtype: torch.dtype | None, progress: bool, checkpoint: str | os.PathLike | None,
          checkpoint_every: int, callback: Callable[[int, float], None] | None,
          settings: dict[str, Any]) -> PartialPosterior:
    """Run an engine's step over ``num_epochs`` of minibatches with Adam on ``psi`` (see the module docstring)."""
    params = psi_of(model)
    num_epochs = check_positive_int(num_epochs, "num_epochs")
    data, dtype = prepared_data(model, data, dtype)
    is_loader = isinstance(data, torch.utils.data.DataLoader)
    if not is_loader and batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    stream = BatchStream(data, None if is_loader else (batch_size or data[0].shape[0]), seed=seed)
    num_steps = num_epochs * stream.batches_per_epoch
    if validation is not None:
        validation, _ = prepared_data(model, validation, dtype)
        eval_every = check_positive_int(eval_every or 1, "eval_every")  # the paper checks after every step
    module = getattr(model, "module", None)
    if module is not None:
        module.to(dtype)

    generator = torch.Generator().manual_seed(int(seed))
    particles = model.init_theta(num_particles, generator=generator, dtype=dtype).to(params[0].device)
    run = _Run(model, init(particles), num_steps, validation is not None)
    step_fn = make_step(generator)

    def loss_fn() -> Tensor:
        x, y = next(stream)
        state, info = step_fn(run.state, (_cast(x, dtype), _cast(y, dtype)))
        run.state, i = state, run.step
        run.step += 1
        loss = info.surrogate
        if bool(info.rejected.all()):
            loss = loss * math.nan  # every particle had zero weight: minimize skips the step
        for name, value in (("loss", loss), ("ess", info.ess), ("log_increment", info.log_increment),
                            ("num_nonfinite", info.num_nonfinite)):
            run.trace[name][i] = float(value.detach().double().mean())
        return loss

    def after_step(i: int, loss: float) -> None:
        if validation is not None and ((i + 1) % eval_every == 0 or i + 1 == num_steps):
            score = nlpd(model, run.state.particles, run.state.log_weights, validation)
            if score < run.best_nlpd:
                run.best_nlpd, run.best_step = score, i + 1
                run.best_state, run.best_psi = run.state, model.state_dict()
        if callback is not None:
            callback(i, loss)

    config = {**settings, "num_epochs": num_epochs, "batch_size": batch_size, "lr": lr, "seed": int(seed),
              "dtype": str(dtype), "validation": validation is not None, "eval_every": eval_every}
    start = time.perf_counter()
    result = minimize(loss_fn, params, method="adam", num_steps=num_steps, lr=lr, generator=generator,
                      state={"run": run, "batches": stream}, settings={k: str(v) for k, v in config.items()},
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                      description=settings["method"], callback=after_step)
    state = run.state
    if validation is not None and run.best_state is not None and run.best_step > 0:
        state = run.best_state
        model.load_state_dict(run.best_psi)
    # num_chains / num_samples / num_warmup as the fit report reads them: one population of particles after the
    # training steps.
    info = {**config, "num_steps": num_steps, "num_chains": 1, "num_samples": num_particles, "num_warmup": num_steps,
            "wall_time": time.perf_counter() - start,
            "skipped_steps": result.skipped_steps, "resumed_from": result.resumed_from,
            "num_nonfinite": int(torch.nan_to_num(run.trace["num_nonfinite"]).sum()),
            "best_step": run.best_step if validation is not None else num_steps,
            "best_nlpd": run.best_nlpd if validation is not None else math.nan}
    return PartialPosterior(state.particles.detach()[None], log_weights=state.log_weights.detach()[None],
                            spec=model.spec, info=info, final_state=state, psi=model.state_dict(),
                            trace=dict(run.trace))


__all__ = ["Move", "nlpd", "prepared_data", "psi_of", "resolve_move", "train"]
