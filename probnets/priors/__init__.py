"""Priors: over named model parameters and scales (:mod:`probnets.priors.parameters`) and over whole tasks,
the simulated data sets amortized models learn from (:mod:`probnets.priors.tasks`)."""

from probnets.priors.parameters import (
    BurrXII,
    PriorFactory,
    PriorLike,
    PriorSpec,
    fan_in_normal,
    log_prob,
    resolve,
    rsample,
    sample,
    student_t,
    variance_prior,
)
from probnets.priors.tasks import BNNTaskPrior, GPTaskPrior, TaskBatch, TaskPrior

__all__ = [
    "BNNTaskPrior", "BurrXII", "GPTaskPrior", "PriorFactory", "PriorLike", "PriorSpec", "TaskBatch", "TaskPrior",
    "fan_in_normal", "log_prob", "resolve", "rsample", "sample", "student_t", "variance_prior",
]
