"""Point estimates by gradient ascent: MAP networks and deep ensembles (independent MAP starts, all rows at once)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from inference.optim import minimize, supplied_gradient
from probnets.model import Batch, ProbModel
from probnets.validation import check_positive_int

__all__ = ["ascend_rows", "map_estimates"]


def ascend_rows(value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]], theta: Tensor, num_steps: int,
                lr: float) -> Tensor:
    """Maximise a function with one value per row of ``theta`` by Adam ascent on their sum (rows are independent).

    Args:
        value_and_grad: ``theta (R x D) -> (values R, gradients R x D)``.
        theta: Starting points, ``R x D``.
        num_steps: Adam steps.
        lr: Adam's learning rate.

    Returns:
        The end points, ``R x D``. A row whose value or gradient is not finite at a step stays put at that step.
    """
    theta = theta.clone().requires_grad_(True)

    def loss() -> Tensor:
        value, grad = value_and_grad(theta.detach())
        clean = {"nan": 0.0, "posinf": 0.0, "neginf": 0.0}
        return supplied_gradient(-torch.nan_to_num(value, **clean).sum(), theta, -torch.nan_to_num(grad, **clean))

    minimize(loss, [theta], method="adam", num_steps=num_steps, lr=lr)
    return theta.detach()


def map_estimates(model: ProbModel, batch: Batch, num_starts: int, num_steps: int, generator: torch.Generator, *,
                  lr: float = 1e-2) -> Tensor:
    """MAP estimates of ``model`` on ``batch`` from ``num_starts`` prior draws (``model.init_theta``), ``num_starts x D``
    (a deep ensemble when ``num_starts > 1``); ``num_steps = 0`` returns the starting points."""
    num_starts = check_positive_int(num_starts, "num_starts")
    num_steps = check_positive_int(num_steps, "num_steps", minimum=0)
    theta = model.init_theta(num_starts, generator=generator, dtype=batch[0].dtype)
    if num_steps == 0:
        return theta
    return ascend_rows(model.logdensity(batch).value_and_grad, theta, num_steps, lr)
