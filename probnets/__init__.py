"""probnets: Bayesian and probabilistic deep learning on PyTorch (model classes)."""

import importlib

from probnets import datasets, priors
from probnets.bnn import BNN
from probnets.conditioned import ConditionedModel
from probnets.likelihoods import Bernoulli, Categorical, Gaussian, Likelihood, NormalMarginal, StudentTMarginal
from probnets.masked_bnn import MaskedBNN
from probnets.model import Batch, LogDensity, ProbModel
from probnets.module_model import ModuleModel, from_module
from probnets.predictive import Predictive
from probnets.spec import ParamSpec

__all__ = [
    "BNN", "Batch", "Bernoulli", "Categorical", "ConditionedModel", "Gaussian", "Likelihood", "LogDensity",
    "MaskedBNN", "ModuleModel", "NormalMarginal", "ParamSpec", "Predictive", "ProbModel", "StudentTMarginal",
    "conv_dkm", "datasets", "dkm", "from_module", "priors",
]
__version__ = "0.1.0"

#: Subpackages imported on first use: they bring GPyTorch, which a BNN never needs (0.5-1 s of every start-up).
_LAZY = ("conv_dkm", "dkm")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"probnets.{name}")
    raise AttributeError(f"module 'probnets' has no attribute {name!r}")

