"""probnets: Bayesian and probabilistic deep learning on PyTorch (model classes)."""

from probnets import datasets, priors
from probnets.bnn import BNN
from probnets.likelihoods import Bernoulli, Categorical, Gaussian, Likelihood
from probnets.model import Batch, LogDensity, ProbModel
from probnets.module_model import ModuleModel, from_module
from probnets.predictive import Predictive
from probnets.spec import ParamSpec

__all__ = [
    "BNN", "Batch", "Bernoulli", "Categorical", "Gaussian", "Likelihood", "LogDensity", "ModuleModel", "ParamSpec",
    "Predictive", "ProbModel", "datasets", "from_module", "priors",
]
__version__ = "0.1.0"
