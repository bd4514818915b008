"""surrogates: any probnets posterior as a BoTorch model, and Bayesian-optimisation loops."""

from surrogates.bo import BOResult, run_bo
from surrogates.ensemble_model import SampleEnsembleModel
from surrogates.fit import KINDS, fit_surrogate
from surrogates.problems import PROBLEMS, Problem, get_problem

__all__ = ["KINDS", "PROBLEMS", "BOResult", "Problem", "SampleEnsembleModel", "fit_surrogate", "get_problem",
           "run_bo"]
