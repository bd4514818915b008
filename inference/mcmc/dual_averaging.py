"""Nesterov dual averaging of the log step size (Hoffman & Gelman 2014, section 3.2.1), per chain."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class DualAveragingState(NamedTuple):
    log_step_size: Tensor  # current iterate, (C,) or ()
    log_step_size_avg: Tensor  # averaged iterate (used after warm-up)
    error_avg: Tensor  # running average of (target - acceptance)
    count: Tensor  # number of updates so far
    mu: Tensor  # shrinkage point, log(10 * initial step size)


def init(step_size: Tensor) -> DualAveragingState:
    log_eps = torch.log(step_size)
    zero = torch.zeros_like(log_eps)
    return DualAveragingState(log_eps, zero, zero, zero, log_eps + math.log(10.0))


def update(state: DualAveragingState, acceptance: Tensor, *, target: float = 0.8, gamma: float = 0.05,
           t0: float = 10.0, kappa: float = 0.75) -> DualAveragingState:
    """One dual-averaging update from the observed acceptance statistic (same shape as the state)."""
    acceptance = torch.nan_to_num(acceptance, nan=0.0)
    count = state.count + 1
    eta = 1.0 / (count + t0)
    error_avg = (1 - eta) * state.error_avg + eta * (target - acceptance)
    log_eps = state.mu - count.sqrt() / gamma * error_avg
    weight = count.pow(-kappa)
    log_eps_avg = weight * log_eps + (1 - weight) * state.log_step_size_avg
    return DualAveragingState(log_eps, log_eps_avg, error_avg, count, state.mu)
