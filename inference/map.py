"""Point estimates by gradient ascent: MAP networks and deep ensembles (independent MAP starts, all rows at once)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from inference.optim import minimize, supplied_gradient
from probnets.model import Batch, ProbModel
from probnets.validation import check_positive_int

__all__ = ["ascend_rows", "early_stopped_map", "map_estimates"]


def ascend_rows(value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]], theta: Tensor, num_steps: int,
                lr: float, *, callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Maximise a function with one value per row of ``theta`` by Adam ascent on their sum (rows are independent).

    Args:
        value_and_grad: ``theta (R x D) -> (values R, gradients R x D)``.
        theta: Starting points, ``R x D``.
        num_steps: Adam steps.
        lr: Adam's learning rate.
        callback: Called as ``callback(steps_done, theta)`` after every step (``theta`` ``R x D``, detached).

    Returns:
        The end points, ``R x D``. A row whose value or gradient is not finite at a step stays put at that step.
    """
    theta = theta.clone().requires_grad_(True)

    def loss() -> Tensor:
        value, grad = value_and_grad(theta.detach())
        clean = {"nan": 0.0, "posinf": 0.0, "neginf": 0.0}
        return supplied_gradient(-torch.nan_to_num(value, **clean).sum(), theta, -torch.nan_to_num(grad, **clean))

    after_step = None if callback is None else (lambda step, value: callback(step + 1, theta.detach()))
    minimize(loss, [theta], method="adam", num_steps=num_steps, lr=lr, callback=after_step)
    return theta.detach()


def map_estimates(model: ProbModel, batch: Batch, num_starts: int, num_steps: int, generator: torch.Generator, *,
                  lr: float = 1e-2) -> Tensor:
    """MAP estimates of ``model`` on ``batch`` from ``num_starts`` prior draws (``model.init_theta``),
    ``num_starts x D`` (a deep ensemble when ``num_starts > 1``); ``num_steps = 0`` returns the starting points."""
    num_starts = check_positive_int(num_starts, "num_starts")
    num_steps = check_positive_int(num_steps, "num_steps", minimum=0)
    theta = model.init_theta(num_starts, generator=generator, dtype=batch[0].dtype)
    if num_steps == 0:
        return theta
    return ascend_rows(model.logdensity(batch).value_and_grad, theta, num_steps, lr)


def early_stopped_map(model: ProbModel, batch: Batch, validation: Batch, num_starts: int, num_steps: int,
                      generator: torch.Generator, *, refit: Batch | None = None, eval_every: int = 50,
                      lr: float = 1e-2) -> tuple[Tensor, Tensor]:
    """MAP estimates whose number of Adam steps is chosen, per start, by the validation NLL.

    Every start ascends the log posterior on ``batch`` for ``num_steps`` steps; the mean NLL of ``validation`` is
    checked at the start and every ``eval_every`` steps, and the step count with the lowest one is kept. With
    ``refit`` (e.g. all the training rows, of which ``batch`` and ``validation`` are parts) every start is run again
    from the same point on ``refit`` for its chosen number of steps (the protocol of Hernandez-Lobato and Adams
    2015); without, the estimates at the chosen steps are returned.

    Returns:
        ``(theta, steps)``: the estimates ``num_starts x D`` and the chosen step counts ``num_starts``.
    """
    num_starts = check_positive_int(num_starts, "num_starts")
    num_steps = check_positive_int(num_steps, "num_steps")
    eval_every = check_positive_int(eval_every, "eval_every")
    start = model.init_theta(num_starts, generator=generator, dtype=batch[0].dtype)

    def validation_nll(theta: Tensor) -> Tensor:
        with torch.no_grad():
            return -model.log_likelihood(theta, validation).mean(-1)

    best, steps, chosen = validation_nll(start), torch.zeros(num_starts, dtype=torch.long), start.clone()

    def track(done: int, theta: Tensor) -> None:
        if done % eval_every == 0 or done == num_steps:
            nll = validation_nll(theta)
            better = nll < best
            best[better], steps[better], chosen[better] = nll[better], done, theta[better]

    ascend_rows(model.logdensity(batch).value_and_grad, start, num_steps, lr, callback=track)
    if refit is None or int(steps.max()) == 0:
        return (chosen if refit is None else start), steps
    refitted = start.clone()

    def keep(done: int, theta: Tensor) -> None:
        at = steps == done
        refitted[at] = theta[at]

    ascend_rows(model.logdensity(refit).value_and_grad, start, int(steps.max()), lr, callback=keep)
    return refitted, steps
