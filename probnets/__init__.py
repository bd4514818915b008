"""probnets: Bayesian and probabilistic deep learning on PyTorch (model classes)."""

from probnets import datasets, priors
from probnets.bnn import BNN
from probnets.likelihoods import Bernoulli, Categorical, Gaussian, Likelihood
from probnets.model import Batch, LogDensity, ProbModel
from probnets.predictive import Predictive
from probnets.spec import ParamSpec

__all__ = [
    "BNN", "Batch", "Bernoulli", "Categorical", "Gaussian", "Likelihood", "LogDensity", "ParamSpec",
    "Predictive", "ProbModel", "datasets", "priors",
]
__version__ = "0.1.0"
