"""probnets: Bayesian and probabilistic deep learning on PyTorch (model classes)."""

from probnets import conv_dkm, datasets, dkm, priors
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

