"""scikit-learn style estimators: fully Bayesian MLPs sampled with HMC/NUTS/ChEES.

``BNNRegressor`` and ``BNNClassifier`` follow scikit-learn's conventions: constructor arguments are
stored unchanged (``get_params``/``set_params``/``clone`` work), fitted attributes end with an
underscore, inputs are checked with ``sklearn.utils.validation`` (NaN/inf raise ``ValueError``) and
predicting before fitting raises ``NotFittedError``. They work in pipelines, grid searches and
``cross_val_score``.

Inputs (and regression targets) are standardised with training statistics; the BNN has
``Normal(0, prior_scale)`` priors on all weights and, for regression, a Gaussian likelihood whose noise
scale has the prior ``noise_prior`` (default ``LogNormal(-1, 1)``) on the standardised targets.

Example:
    >>> reg = BNNRegressor(widths=(50,), method="chees").fit(X_train, y_train)
    >>> mean, std = reg.predict(X_test, return_std=True)
    >>> lower, upper = reg.predict_interval(X_test, level=0.9)
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from inference import registry

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, X="no_validation", y="no_validation", reset=True, **kwargs):
        return estimator._validate_data(X, y, reset=reset, **kwargs)

__all__ = ["BNNClassifier", "BNNRegressor"]

_DTYPES = ("float32", "float64")
# Bound on (draws x points x outputs) evaluated at once by predict/predict_proba.
_PREDICT_BLOCK = 2**22
# Function-space diagnostics after fit use at most this many training points.
_DIAGNOSTIC_POINTS = 200


def _check_two_samples(X: np.ndarray) -> None:
    if X.shape[0] < 2:  # worded as scikit-learn's checks expect ("n_samples=1")
        raise ValueError(f"need at least 2 samples to fit, got n_samples={X.shape[0]}")


def _verbosity(progress) -> tuple[bool, bool]:
    """``(progress bar, start/end lines)`` for ``progress`` ``True``/``False``/``"auto"``: ``"auto"`` shows the
    bar on a terminal and one line at the start and end of sampling elsewhere (logs, notebooks' captured
    stderr), so that a fit of minutes is never silent unless asked to be."""
    if progress == "auto":
        tty = sys.stderr.isatty()
        return tty, not tty
    if not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True, False or 'auto', got {progress!r}")
    return bool(progress), False


class _BNNBase(BaseEstimator):
    """Shared fitting machinery of the regressor and the classifier."""

    def _check_settings(self):
        import torch

        if self.method not in registry.SAMPLERS:
            raise ValueError(f"method must be one of {tuple(registry.SAMPLERS)}, got {self.method!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        widths = tuple(self.widths) if not isinstance(self.widths, (int, np.integer)) else (int(self.widths),)
        if any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
            raise ValueError(f"widths must be positive integers, got {self.widths!r}")
        if not (isinstance(self.prior_scale, (int, float)) and np.isfinite(self.prior_scale) and self.prior_scale > 0):
            raise ValueError(f"prior_scale must be a positive finite number, got {self.prior_scale!r}")
        sampler = registry.get(self.method)
        settings = {k: (getattr(self, k) if getattr(self, k) is not None else getattr(sampler, k))
                    for k in ("num_chains", "num_warmup", "num_samples")}
        return widths, settings, getattr(torch, self.dtype)

    def _sample(self, likelihood, x: np.ndarray, y: np.ndarray, out_features: int):
        import pyro.distributions as dist
        import torch

        import inference
        from inference import diagnostics
        from inference.diagnostics import ConvergenceWarning
        from inference.function_space import format_check, function_space_check
        from inference.sampling_problems import sampling_warnings
        from probnets import BNN

        widths, settings, dtype = self._check_settings()
        model = BNN(x.shape[1], widths, out_features, activation=self.activation,
                    prior=dist.Normal(0.0, float(self.prior_scale)), likelihood=likelihood)
        xt = torch.as_tensor(x, dtype=dtype)
        yt = torch.as_tensor(y, dtype=dtype if np.issubdtype(y.dtype, np.floating) else torch.long)
        bar, lines = _verbosity(self.progress)
        name = type(self).__name__
        if lines:
            print(f"{name}: sampling {model} with {self.method}, {settings['num_chains']} chains x "
                  f"({settings['num_warmup']} warm-up + {settings['num_samples']}) iterations", file=sys.stderr)
        with warnings.catch_warnings():
            # Parameter-space R-hat/ESS of BNN weights is poor by construction (symmetries); the
            # function-space check below is what matters for predictions.
            warnings.simplefilter("ignore", ConvergenceWarning)
            posterior = inference.sample(model, (xt, yt), method=self.method, seed=self.seed, dtype=dtype,
                                         progress=bar, print_summary=False, check_convergence=False,
                                         until_converged=self.until_converged,
                                         max_time=self.max_time, **settings)
        self.model_, self.posterior_ = model, posterior
        check, f_warnings = function_space_check(model, posterior, xt[:_DIAGNOSTIC_POINTS])
        self.diagnostics_ = {
            "max_rhat": check["max_rhat"],
            "min_ess_bulk": check["min_ess_bulk"],
            "min_ess_tail": check["min_ess_tail"],
            "num_divergences": posterior.num_divergences,
            "wall_time": float(posterior.info.get("wall_time", float("nan"))),
        }
        if "noise_scale_rhat" in check:  # the noise scale is identifiable and part of predictions
            self.diagnostics_["noise_scale_rhat"] = check["noise_scale_rhat"]
        if "until_converged" in posterior.info:
            outcome = posterior.info["until_converged"]
            self.diagnostics_["until_converged"] = {k: outcome[k] for k in ("converged", "reason", "rounds",
                                                                             "total_time")}
        diverging = posterior.sample_stats.get("diverging")
        self.convergence_warnings_ = (f_warnings + (diagnostics.divergence_warnings(diverging) if diverging is not None
                                                    else []) + sampling_warnings(posterior))
        if lines:
            print(f"{name}: done in {self.diagnostics_['wall_time']:.1f} s; {format_check(check)}; "
                  f"{posterior.num_divergences} divergences", file=sys.stderr)
        for message in self.convergence_warnings_:
            warnings.warn(f"{name}: {message}", ConvergenceWarning, stacklevel=3)

    def _standardise_x(self, X) -> np.ndarray:
        return (X - self.x_mean_) / self.x_scale_

    def _f_chunks(self, X):
        """Yield ``(rows, Predictive)`` over blocks of standardised inputs."""
        import torch

        x = torch.as_tensor(self._standardise_x(X), dtype=self.posterior_.samples.dtype)
        num_draws = self.posterior_.num_chains * self.posterior_.num_draws
        rows = max(1, _PREDICT_BLOCK // (num_draws * self.model_.num_latent))
        for start in range(0, x.shape[0], rows):
            yield slice(start, start + rows), self.posterior_.predictive(self.model_, x[start:start + rows])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False  # seeded: the same seed gives the same draws
        return tags


class BNNRegressor(RegressorMixin, _BNNBase):
    """Bayesian MLP regressor sampled with HMC-family MCMC.

    Args:
        widths: Hidden layer widths.
        activation: Activation name (``"tanh"``, ``"relu"``, ``"gelu"``, ...).
        method: ``"chees"`` (many-chain ChEES-HMC), ``"nuts"`` or ``"hmc"``.
        num_chains, num_warmup, num_samples: Sampler settings; ``None`` uses the sampler's registered defaults (``inference.registry``).
        prior_scale: Standard deviation of the Normal prior of every weight and bias.
        noise_prior: Prior of the noise scale of the standardised targets (a positive pyro distribution);
            ``None`` means ``LogNormal(-1, 1)``.
        seed: Sampler seed.
        progress: ``"auto"`` (default): the sampler's progress bar on a terminal, else one line on stderr when
            sampling starts and one with the time and function-space diagnostics when it ends; ``True``: the
            bar; ``False``: silent.
        dtype: ``"float64"`` or ``"float32"``.
        until_converged: Sample in rounds of doubling warm-up and draws until the function-space R-hat is at
            most 1.01 and the bulk and tail ESS at least 400, or ``max_time`` runs out
            (``inference.sample(until_converged=True)``); ``diagnostics_["until_converged"]`` says which.
        max_time: Time budget in seconds of ``until_converged`` (``None``: rounds until converged, at most
            ``inference.until_converged.DEFAULT_MAX_ROUNDS``).

    Attributes:
        posterior_: The :class:`~inference.posterior.SamplePosterior` (standardised units).
        model_: The :class:`~probnets.bnn.BNN`.
        n_features_in_: Number of input features.
        x_mean_, x_scale_, y_mean_, y_scale_: Standardisation statistics of the training data.
        diagnostics_: Function-space ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` on (up to 200)
            training inputs (``inference.function_space``), ``noise_scale_rhat``, divergences, wall time.
        convergence_warnings_: Convergence warnings of ``f(x_train)`` and the noise scale, divergences,
            stuck chains, saturated NUTS trees (also issued as ``ConvergenceWarning``); parameter-space
            warnings on the weights are not issued (the weights are not identifiable, see
            :mod:`inference.function_space`).
    """

    def __init__(self, widths=(50,), activation="tanh", method="chees", num_chains=None, num_warmup=None,
                 num_samples=None, prior_scale=1.0, noise_prior=None, seed=0, progress="auto", dtype="float64",
                 until_converged=False, max_time=None):
        self.widths = widths
        self.activation = activation
        self.method = method
        self.num_chains = num_chains
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.prior_scale = prior_scale
        self.noise_prior = noise_prior
        self.seed = seed
        self.progress = progress
        self.dtype = dtype
        self.until_converged = until_converged
        self.max_time = max_time

    def fit(self, X, y):
        """Standardise ``X`` and ``y`` with their training statistics and sample the posterior."""
        import pyro.distributions as dist

        from probnets import Gaussian

        X, y = _validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        _check_two_samples(X)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:  # one target as a column: sklearn's convention is a warning and 1-D
            y = column_or_1d(y, warn=True)
        self._single_output_ = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.x_mean_ = X.mean(0)
        x_scale = X.std(0)
        self.x_scale_ = np.where(x_scale > 0, x_scale, 1.0)
        self.y_mean_ = y2.mean(0)
        y_scale = y2.std(0)
        self.y_scale_ = np.where(y_scale > 0, y_scale, 1.0)
        noise_prior = self.noise_prior if self.noise_prior is not None else dist.LogNormal(-1.0, 1.0)
        self._sample(Gaussian(noise_prior=noise_prior), self._standardise_x(X),
                     (y2 - self.y_mean_) / self.y_scale_, y2.shape[1])
        return self

    def _output(self, a: np.ndarray) -> np.ndarray:
        return a[:, 0] if self._single_output_ else a

    def predict(self, X, return_std: bool = False):
        """Posterior predictive mean in original units; with ``return_std`` also the predictive standard
        deviation (observation noise included)."""
        check_is_fitted(self)
        X = _validate_data(self, X, dtype=np.float64, reset=False)
        mean = np.empty((X.shape[0], self.model_.num_latent))
        std = np.empty_like(mean)
        for rows, pred in self._f_chunks(X):
            mean[rows] = pred.mean.cpu().double().numpy()
            if return_std:
                std[rows] = pred.stddev.cpu().double().numpy()
        mean = self._output(self.y_mean_ + self.y_scale_ * mean)
        if return_std:
            return mean, self._output(self.y_scale_ * std)
        return mean

    def predict_interval(self, X, level: float = 0.9):
        """Central predictive interval with probability ``level``: ``(lower, upper)`` in original units."""
        check_is_fitted(self)
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
        X = _validate_data(self, X, dtype=np.float64, reset=False)
        lower = np.empty((X.shape[0], self.model_.num_latent))
        upper = np.empty_like(lower)
        for rows, pred in self._f_chunks(X):
            lo, hi = pred.interval(level)
            lower[rows], upper[rows] = lo.cpu().double().numpy(), hi.cpu().double().numpy()
        return (self._output(self.y_mean_ + self.y_scale_ * lower), self._output(self.y_mean_ + self.y_scale_ * upper))


class BNNClassifier(ClassifierMixin, _BNNBase):
    """Bayesian MLP classifier (Bernoulli likelihood for 2 classes, Categorical for more).

    Args: as :class:`BNNRegressor`, without ``noise_prior``.

    Attributes:
        classes_: The class labels (sorted), as seen in ``fit``.
        posterior_, model_, n_features_in_, x_mean_, x_scale_, diagnostics_, convergence_warnings_: As
            for :class:`BNNRegressor` (diagnostics on the class probabilities of training inputs).
    """

    def __init__(self, widths=(50,), activation="tanh", method="chees", num_chains=None, num_warmup=None,
                 num_samples=None, prior_scale=1.0, seed=0, progress="auto", dtype="float64",
                 until_converged=False, max_time=None):
        self.widths = widths
        self.activation = activation
        self.method = method
        self.num_chains = num_chains
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.prior_scale = prior_scale
        self.seed = seed
        self.progress = progress
        self.dtype = dtype
        self.until_converged = until_converged
        self.max_time = max_time

    def fit(self, X, y):
        """Standardise ``X``, encode the labels as ``0..K-1`` and sample the posterior."""
        from probnets import Bernoulli, Categorical

        X, y = _validate_data(self, X, y, dtype=np.float64)
        _check_two_samples(X)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"need samples of at least 2 classes to fit, got {len(self.classes_)} class")
        self.x_mean_ = X.mean(0)
        x_scale = X.std(0)
        self.x_scale_ = np.where(x_scale > 0, x_scale, 1.0)
        k = len(self.classes_)
        likelihood = Bernoulli() if k == 2 else Categorical(k)
        target = encoded.astype(np.float64) if k == 2 else encoded.astype(np.int64)
        self._sample(likelihood, self._standardise_x(X), target, 1 if k == 2 else k)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Posterior predictive class probabilities, ``n x len(classes_)`` (columns in ``classes_`` order)."""
        check_is_fitted(self)
        X = _validate_data(self, X, dtype=np.float64, reset=False)
        out = np.empty((X.shape[0], len(self.classes_)))
        for rows, pred in self._f_chunks(X):
            out[rows] = pred.probs.cpu().double().numpy()
        return out

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
