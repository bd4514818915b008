"""``fit``: the engine's side of the conditioned-model contract (:mod:`probnets.conditioned`).

A conditioned model (scale mixtures, DKMs, neural processes, PFNs) states what fitting means: its data
conditioning, its loss, its learnable parameters and its default settings. :func:`fit` conditions it on the data
and runs the optimisation with the engine's loop (:func:`inference.optim.minimize`: progress bar, skipped
non-finite steps, checkpoints with bit-identical resume), then returns the fitted model:

    >>> model = inference.fit(StudentTProcess(), (x_train, y_train))            # x: n x d, y: n
    >>> model.predict(x_test).interval(0.9)                                     # t x d -> 2 x t x 1
    >>> svsp = inference.fit(SVSP(z, 3), (x, labels), num_epochs=30, generator=g)
    >>> svsp.fit_result.losses                                                  # the loss of every step

Fitting an :class:`~probnets.scale_mixture.ImportanceScaleMixture` also draws its final importance sample
(:func:`inference.importance.sample_scale_mixture`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from inference.importance import sample_scale_mixture
from inference.minibatch import Minibatches
from inference.optim import minimize
from probnets.conditioned import ConditionedModel
from probnets.scale_mixture import ImportanceScaleMixture
from probnets.validation import check_positive_int

__all__ = ["FitResult", "fit"]


class FitResult(NamedTuple):
    """The record of a fit, in the model's ``fit_result``.

    Attributes:
        losses: ``float64``: the loss of every step (Adam; NaN where skipped) or evaluation (L-BFGS); empty when
            nothing was optimised.
        epoch_losses: Minibatch fits: the mean loss over the points of every epoch; ``None`` otherwise.
        resumed_from: Step the optimisation resumed at from a checkpoint (0 for a fresh run).
        skipped_steps: Steps whose loss or gradient was not finite (no update was made).
    """

    losses: Tensor
    epoch_losses: list[float] | None
    resumed_from: int
    skipped_steps: int


@functools.singledispatch
def fit(model: ConditionedModel, data, *, optimizer: str | None = None, num_steps: int | None = None,
        num_epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
        generator: torch.Generator | None = None, progress: bool = False,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
        callback: Callable[[int, float], None] | None = None, **options) -> ConditionedModel:
    """Condition ``model`` on ``data`` and fit it; every setting left ``None`` takes the model's default
    (its ``fit_settings``, documented on each model).

    Args:
        model: A :class:`~probnets.conditioned.ConditionedModel`.
        data: ``(x, y)``: inputs ``n x ...`` and targets or labels ``n`` or ``n x m`` (for neural processes
            and PFNs: the context).
        optimizer: ``"lbfgs"`` or ``"adam"`` (each model says which it takes).
        num_steps: Steps (Adam) or iterations (L-BFGS) of a full-batch fit; 0 only conditions.
        num_epochs: Passes over the data of a minibatch fit; 0 only conditions.
        batch_size: Minibatch size of a minibatch fit.
        lr: Learning rate.
        generator: Source of the randomness of the fit (minibatch order, Monte Carlo draws).
        progress: Show a progress bar with the live loss.
        checkpoint, checkpoint_every: Checkpoint file and interval (steps) of the optimisation; an existing
            checkpoint is resumed bit for bit (see :func:`inference.optim.minimize`).
        callback: Called as ``callback(step, loss)`` after every step (Adam) or evaluation (L-BFGS).
        **options: Settings of the model's loss (e.g. ``num_samples`` of :class:`~probnets.scale_mixture.SVSP`,
            ``num_fit_samples`` of :class:`~probnets.scale_mixture.ImportanceScaleMixture`).

    Returns:
        ``model``, fitted, with the record of the optimisation in ``model.fit_result`` (:class:`FitResult`).

    Raises:
        TypeError: When ``model`` is not a conditioned model or ``data`` not a pair.
        ValueError: On bad data (naming the argument) or settings the model does not take.
    """
    _optimise(model, _condition(model, data), model.fit_loss, optimizer=optimizer, num_steps=num_steps,
              num_epochs=num_epochs, batch_size=batch_size, lr=lr, generator=generator, progress=progress,
              checkpoint=checkpoint, checkpoint_every=checkpoint_every, callback=callback, options=options)
    return model


@fit.register(ImportanceScaleMixture)
def _fit_importance_mixture(model: ImportanceScaleMixture, data, *, generator: torch.Generator | None = None,
                            num_fit_samples: int = 1024, **settings) -> ImportanceScaleMixture:
    """Empirical Bayes on the importance estimate of the marginal likelihood (``num_fit_samples`` fresh draws
    every step), then the final ``model.num_samples`` draws into ``model.importance``."""
    num_fit_samples = check_positive_int(num_fit_samples, "num_fit_samples")
    num_data = _condition(model, data)

    def loss(rows: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        samples = sample_scale_mixture(model, num_fit_samples, generator=generator, ess_threshold=0.0)
        return -samples.log_normalizer / model.num_data

    _optimise(model, num_data, loss, generator=generator, options={}, **settings)
    with torch.no_grad():
        model.importance = sample_scale_mixture(model, model.num_samples, generator=generator,
                                                ess_threshold=model.ess_threshold)
    return model


def _condition(model, data) -> int:
    """Condition ``model`` on ``data``; returns the number of data points."""
    if not isinstance(model, ConditionedModel):
        raise TypeError(f"model must be a probnets.conditioned.ConditionedModel, got {type(model).__name__}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"data must be a pair (x, y), got {type(data).__name__}")
    model.condition(*data)
    return len(data[0])


def _optimise(model: ConditionedModel, num_data: int, loss: Callable[..., Tensor], *, optimizer=None,
              num_steps=None, num_epochs=None, batch_size=None, lr=None, generator=None, progress=False,
              checkpoint=None, checkpoint_every=100, callback=None, options) -> None:
    """Minimise ``loss(rows, generator=..., **options)`` over ``model.fit_parameters()`` with the model's
    default settings where the arguments are ``None``; sets ``model.fit_result``."""
    defaults = model.fit_settings
    if defaults is None:
        given = {name for name, value in (("optimizer", optimizer), ("num_steps", num_steps),
                                          ("num_epochs", num_epochs), ("batch_size", batch_size), ("lr", lr),
                                          ("checkpoint", checkpoint)) if value is not None} | set(options)
        if given:
            raise ValueError(f"{type(model).__name__} is fitted by conditioning alone: {sorted(given)} do not apply")
        model.fit_result = FitResult(torch.zeros(0, dtype=torch.float64), None, 0, 0)
        return
    optimizer = defaults.optimizer if optimizer is None else optimizer
    if optimizer not in defaults.lr:
        raise ValueError(f"optimizer must be one of {tuple(defaults.lr)} for {type(model).__name__}, got "
                         f"{optimizer!r}")
    batches = None
    if defaults.batch_size is None:
        for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size)):
            if value is not None:
                raise ValueError(f"{name} does not apply: {type(model).__name__} fits on all its data at once "
                                 "(use num_steps)")
        num_steps = check_positive_int(defaults.num_steps if num_steps is None else num_steps, "num_steps",
                                       minimum=0)
    else:
        if num_steps is not None:
            raise ValueError(f"num_steps does not apply: {type(model).__name__} fits on minibatches (use num_epochs)")
        num_epochs = check_positive_int(defaults.num_epochs if num_epochs is None else num_epochs, "num_epochs",
                                        minimum=0)
        batches = Minibatches(num_data, defaults.batch_size if batch_size is None else batch_size, generator)
        num_steps = num_epochs * batches.num_batches
    params = model.fit_parameters()
    if not params or not num_steps:
        model.fit_result = FitResult(torch.zeros(0, dtype=torch.float64), [] if batches else None, 0, 0)
        return

    def loss_fn() -> Tensor:
        return loss(None if batches is None else batches.next(), generator=generator, **options)

    state = {"model": model} if isinstance(model, nn.Module) else {}
    settings = {"model": type(model).__name__}
    if batches is not None:
        state["batches"] = batches
        settings["batch_size"] = batches.batch_size
    result = minimize(loss_fn, params, method=optimizer, num_steps=num_steps,
                      lr=defaults.lr[optimizer] if lr is None else lr, keep_best=defaults.keep_best,
                      stop_on=defaults.stop_on, generator=generator, state=state, settings=settings,
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                      description=f"fitting {type(model).__name__}", callback=callback,
                      **({"betas": defaults.betas} if optimizer != "lbfgs" else dict(defaults.lbfgs)))
    epoch_losses = None if batches is None else _epoch_means(result.losses, batches)
    model.fit_result = FitResult(result.losses, epoch_losses, result.resumed_from, result.skipped_steps)
    model.check_fitted()


def _epoch_means(losses: Tensor, batches: Minibatches) -> list[float]:
    """The mean loss over the points of every epoch (each minibatch's loss weighs by its size)."""
    sizes = [min(batches.batch_size, batches.num_data - start)
             for start in range(0, batches.num_data, batches.batch_size)]
    means = []
    for epoch in range(0, len(losses), len(sizes)):
        total = 0.0
        for value, size in zip(losses[epoch:epoch + len(sizes)].tolist(), sizes):
            total += value * size
        means.append(total / batches.num_data)
    return means
