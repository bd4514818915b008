"""Fully connected deep kernel machines (Yang, Robeyns, Milsom, Anson, Schoots, Aitchison; ICML 2023).

In the Bayesian representation learning limit a deep GP's layer Gram matrices are deterministic and maximise

    L(G_1..G_L) = log P(Y | G_L) - sum_l nu_l KL(N(0, G_l) || N(0, K(G_{l-1}))),      G_0 = X X^T / d,

``nu_l`` proportional to the width of layer ``l``. As ``nu -> inf`` the optimum is ``G_l = K(G_{l-1})`` (the NNGP
recursion, no representation learning) and ``L`` is the NNGP log marginal likelihood; finite ``nu`` lets the
Grams adapt to the data.

* :class:`FullRankDKM`: the exact objective over ``P x P`` Grams of the training set with a Gaussian likelihood
  (cubic in the data size); predictions by the same conditioning as the sparse layers, with the training
  points as inducing points, and the exact GP predictive on top.
* :class:`SparseDKM`: inducing points (linear in the data size, minibatch training): every layer learns
  ``G_ii`` among ``P`` inducing points, test/train points follow by conditioning, and the output is a
  variational ``q(F_ii) = N(mu, A)``; Gaussian or categorical likelihood. The loss per point is
  ``-E_q[log p(y | f)] + (sum_l nu_l KL_l + KL_out) / N``. With inducing inputs equal to the training inputs and
  the optimal ``q``, its objective equals the full-rank one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from probnets.conditioned import ConditionedModel, FitSettings
from probnets.dkm.grams import Grams, check_nu
from probnets.dkm.kernels import make_kernel
from probnets.dkm.layers import FeatureToGram, GramLayer, Output
from probnets.likelihoods import Categorical, NormalMarginal
from probnets.predictive import Predictive
from probnets.validation import as_tensor, check_finite, check_positive_float, check_positive_int

LIKELIHOODS = ("categorical", "gaussian")


class DKMObjective(NamedTuple):
    """The DKM objective and its parts (scalars): ``total = log_likelihood - penalty``, ``penalty`` the sum of
    ``nu_l KL_l`` (plus the output KL for sparse models, whose ``log_likelihood`` is the expected one)."""

    total: Tensor
    log_likelihood: Tensor
    penalty: Tensor


def _layer_nus(nu, num_layers: int) -> tuple[float, ...]:
    if isinstance(nu, Sequence) and not isinstance(nu, str):
        if len(nu) != num_layers:
            raise ValueError(f"nu must be one number or one per layer ({num_layers}), got {len(nu)} values")
        return tuple(check_nu(v) for v in nu)
    return (check_nu(nu),) * num_layers


def _check_inputs(x, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor N x d, got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape N x d with N, d >= 1, got {tuple(x.shape)}")
    return check_finite(x, name)


def _regression_targets(y, num_rows: int, dtype: torch.dtype, num_outputs: int | None = None) -> Tensor:
    y = as_tensor(y, "y", dtype=dtype)
    if y.dim() == 1:
        y = y.unsqueeze(-1)
    if y.dim() != 2 or y.shape[0] != num_rows or (num_outputs is not None and y.shape[1] != num_outputs):
        outputs = "m" if num_outputs is None else num_outputs
        raise ValueError(f"y must have shape ({num_rows},) or ({num_rows}, {outputs}), got {tuple(y.shape)}")
    return check_finite(y, "y")


def _register_log_noise_var(module: nn.Module, noise_var: float, learned: bool, dtype: torch.dtype) -> None:
    log_value = torch.tensor(check_positive_float(noise_var, "noise_var"), dtype=dtype).log()
    if learned:
        module.log_noise_var = nn.Parameter(log_value)
    else:
        module.register_buffer("log_noise_var", log_value)


def sample_outputs(mean: Tensor, var: Tensor, num_samples: int, generator: torch.Generator | None) -> Tensor:
    """Draws of the outputs from their Gaussian marginals: ``mean`` ``B x m``, ``var`` ``B x 1`` -> ``S x B x m``."""
    noise = torch.randn(num_samples, *mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + var.sqrt() * noise


def expected_log_likelihood(mean: Tensor, var: Tensor, target: Tensor, likelihood: str, *, noise_var=1.0,
                            mc_samples: int = 100, generator: torch.Generator | None = None) -> Tensor:
    """``E_q[log p(y | f)]`` per point (``B``) under Gaussian output marginals (``mean`` ``B x m``, ``var`` ``B x 1``).

    Gaussian: in closed form with noise variance ``noise_var``, summed over the outputs (``target`` ``B x m``).
    Categorical: a Monte Carlo average over ``mc_samples`` draws of the logits (``target``: labels ``B``).
    """
    if likelihood == "categorical":
        logits = sample_outputs(mean, var, mc_samples, generator)
        picked = torch.log_softmax(logits, -1).gather(-1, target.expand(logits.shape[0], -1).unsqueeze(-1))
        return picked.squeeze(-1).mean(0)
    noise_var = torch.as_tensor(noise_var, dtype=mean.dtype, device=mean.device)
    terms = -0.5 * (math.log(2 * math.pi) + noise_var.log() + ((target - mean).square() + var) / noise_var)
    return terms.sum(-1)


class _GramStack(nn.Module):
    """``FeatureToGram -> [kernel -> GramLayer(nu_l)] x L -> kernel``: inputs to the top layer's kernel triple."""

    def __init__(self, inducing: Tensor, num_layers: int, kernel, nu, *, learn_inducing: bool, jitter: float,
                 whitened: bool):
        super().__init__()
        num_layers = check_positive_int(num_layers, "num_layers")
        self.inputs = FeatureToGram(inducing, learned=learn_inducing)
        self.kernels = nn.ModuleList(make_kernel(kernel, jitter=jitter, dtype=inducing.dtype)
                                     for _ in range(num_layers + 1))
        self.layers = nn.ModuleList(GramLayer(inducing.shape[0], v, whitened=whitened)
                                    for v in _layer_nus(nu, num_layers))

    def forward(self, x: Tensor) -> Grams:
        grams = self.inputs(x)
        for kernel, layer in zip(self.kernels, self.layers):
            grams = layer(kernel(grams))
        return self.kernels[-1](grams)

    def grams(self) -> list[Tensor]:
        """``[G_0, G_1, ..., G_L]`` among the inducing points (a layer with ``nu = inf`` gives ``K(G_{l-1})``)."""
        z = self.inputs.inducing
        grams = [z @ z.T / z.shape[1]]
        for kernel, layer in zip(self.kernels, self.layers):
            kernel_ii = kernel.matrix(grams[-1])
            grams.append(layer.gram(kernel_ii) if math.isfinite(layer.nu) else kernel_ii)
        return grams

    def nngp_kernel(self) -> Tensor:
        """The top kernel of the ``nu = inf`` limit among the inducing points, ``K(K(...K(G_0)))``, ``P x P``."""
        z = self.inputs.inducing
        gram = z @ z.T / z.shape[1]
        for kernel in self.kernels:
            gram = kernel.matrix(gram)
        return gram


class FullRankDKM(nn.Module, ConditionedModel):
    """Full-rank DKM for regression: the exact objective over the training set's Gram matrices.

    Args:
        x: Training inputs ``N x d``.
        y: Training targets ``N`` or ``N x m``.
        num_layers: Number of learned Gram layers ``L``.
        kernel: ``"se"``, ``"relu"`` or a zero-argument factory of a :class:`~probnets.dkm.GramKernel`; each
            layer (and the output) gets its own kernel hyperparameters.
        nu: ``nu_l`` in ``(0, inf]``, one number or one per layer.
        noise_var: Initial Gaussian noise variance.
        learn_noise: Whether the noise variance is trained.
        jitter: Diagonal jitter of the kernels (named kernels only).

    Parameters take ``x``'s dtype. ``G_l`` is whitened (parameterised relative to ``chol(K(G_{l-1}))``, see
    :class:`GramLayer`) and starts at ``K(G_{l-1})``, where the objective equals
    :meth:`nngp_log_marginal_likelihood`. Categorical likelihoods need :class:`SparseDKM`.

    The Grams are over the training points, so the model is conditioned at construction;
    ``inference.fit(model, (x, y))`` (the same data) maximises the objective over all parameters with L-BFGS
    (strong Wolfe line search, history 50, tolerances ``1e-9`` on the gradient and ``1e-12`` on changes), 500
    iterations at most by default; its ``fit_result.losses`` are the negative objective at every evaluation.

    Example:
        >>> model = inference.fit(FullRankDKM(x, y, nu=1.0), (x, y), num_steps=200)   # x: N x d, y: N x m
        >>> model.predict(x_test).mean                                                # n x m
    """

    fit_settings = FitSettings("lbfgs", lr={"lbfgs": 1.0}, num_steps=500,
                               lbfgs={"history_size": 50, "tolerance_grad": 1e-9, "tolerance_change": 1e-12})

    def __init__(self, x: Tensor, y, *, num_layers: int = 2, kernel="se", nu=1.0, noise_var: float = 0.1,
                 learn_noise: bool = True, jitter: float = 1e-4):
        super().__init__()
        x = _check_inputs(x)
        self.register_buffer("y", _regression_targets(y, x.shape[0], x.dtype))
        self.stack = _GramStack(x, num_layers, kernel, nu, learn_inducing=False, jitter=jitter,
                                whitened=True).to(x.dtype)
        _register_log_noise_var(self, noise_var, learn_noise, x.dtype)

    @property
    def noise_var(self) -> Tensor:
        return self.log_noise_var.exp()

    def _log_marginal(self, kernel: Tensor) -> Tensor:
        """``sum_columns log N(y; 0, K + noise I)``."""
        cov = kernel + self.noise_var * torch.eye(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
        chol = torch.linalg.cholesky(cov)
        white = torch.linalg.solve_triangular(chol, self.y, upper=False)
        num, outputs = self.y.shape
        return -0.5 * (white.square().sum() + outputs * (2 * chol.diagonal().log().sum() + num * math.log(2 * math.pi)))

    def objective(self) -> DKMObjective:
        """``log N(Y; 0, K(G_L) + noise I) - sum_l nu_l KL(N(0, G_l) || N(0, K(G_{l-1})))``."""
        top = self.stack(self.stack.inputs.inducing[:0])
        log_likelihood = self._log_marginal(top.ii)
        return DKMObjective(log_likelihood - top.penalty, log_likelihood, top.penalty)

    def nngp_log_marginal_likelihood(self) -> Tensor:
        """The ``nu = inf`` value: the deep-GP-limit (NNGP) log marginal likelihood at the current kernel
        hyperparameters and noise."""
        return self._log_marginal(self.stack.nngp_kernel())

    def grams(self) -> list[Tensor]:
        """``[G_0, G_1, ..., G_L]``, each ``N x N``."""
        self.objective()  # sets G_l = K(G_{l-1}) on first use
        return self.stack.grams()

    def condition(self, x, y) -> FullRankDKM:
        """Check that ``(x, y)`` is the training data of the model and set the Grams up for fitting."""
        x = _check_inputs(x)
        y = _regression_targets(y, x.shape[0], x.dtype)
        if not (torch.equal(x, self.stack.inputs.inducing) and torch.equal(y, self.y)):
            raise ValueError("x and y must be the data the FullRankDKM was built on (its Grams are over those "
                             "points); build a new model for other data")
        self.objective()  # initialises the Grams before the parameters are optimised
        return self

    @property
    def is_conditioned(self) -> bool:
        return True

    def fit_loss(self, rows: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """The negative objective (full batch, deterministic)."""
        return -self.objective().total

    @torch.no_grad()
    def predict(self, x: Tensor, *, generator: torch.Generator | None = None) -> Predictive:
        """Gaussian predictive of ``y`` at ``x`` (``n x d``): the GP posterior under ``K(G_L)`` with the test
        points conditioned through every layer as in the sparse DKM (training points as inducing points).
        Deterministic: ``generator`` is unused."""
        x = _check_inputs(x)
        top = self.stack(x)
        cov = top.ii + self.noise_var * torch.eye(top.ii.shape[0], dtype=x.dtype, device=x.device)
        chol = torch.linalg.cholesky(cov)
        mean = top.ti @ torch.cholesky_solve(self.y, chol)
        half = torch.linalg.solve_triangular(chol, top.ti.T, upper=False)
        var = (top.t - half.square().sum(0)).clamp_min(0) + self.noise_var
        scale = var.sqrt().unsqueeze(-1).expand_as(mean)
        return Predictive(mean.unsqueeze(0), NormalMarginal(), {"scale": scale.unsqueeze(0)})


class MinibatchDKM(ConditionedModel):
    """Conditioning and fitting shared by the sparse and convolutional DKMs, which define
    ``loss(x, y, num_data, generator=...)``: Adam with the reference's settings (``lr = 0.01``, betas
    ``(0.8, 0.9)``) on the negative objective per training point over shuffled minibatches of 128 points, 100
    epochs by default. ``inference.fit``'s ``fit_result.epoch_losses`` holds the mean loss of every epoch.

    The predictive depends on the parameters only, so these models also predict before fitting.
    """

    fit_settings = FitSettings("adam", lr={"adam": 0.01}, num_epochs=100, batch_size=128, betas=(0.8, 0.9))
    train_x: Tensor | None = None
    train_y: Tensor | None = None

    def condition(self, x, y) -> MinibatchDKM:
        """Store the training data: inputs ``N x ...`` and targets or labels ``N x ...``."""
        if not isinstance(x, Tensor) or not torch.is_floating_point(x):
            raise TypeError(f"x must be a floating-point tensor with one row per data point, got "
                            f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
        y = as_tensor(y, "y")
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"x must have one row per data point and at least one row, got shape {tuple(x.shape)}")
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"x and y must have the same number of rows, got {x.shape[0]} and "
                             f"{y.shape[0] if y.dim() else 'a scalar'}")
        check_finite(x, "x")
        check_finite(y, "y")
        self.train_x, self.train_y = x, y
        return self

    @property
    def is_conditioned(self) -> bool:
        return self.train_x is not None

    def fit_loss(self, rows: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """``loss`` on the minibatch ``rows`` of the training data (``None``: all of it)."""
        x, y = (self.train_x, self.train_y) if rows is None else (self.train_x[rows], self.train_y[rows])
        return self.loss(x, y, self.train_x.shape[0], generator=generator)


class SparseDKM(nn.Module, MinibatchDKM):
    """Sparse DKM with inducing points: linear in the data size, trained on minibatches (:class:`MinibatchDKM`).

    Args:
        inducing: Initial inducing inputs ``P x d`` (e.g. a random subset of the training inputs).
        num_outputs: Regression outputs ``m`` or classes.
        num_layers: Number of learned Gram layers ``L``.
        kernel: ``"relu"``, ``"se"`` or a zero-argument factory of a :class:`~probnets.dkm.GramKernel`.
        nu: ``nu_l`` in ``(0, inf]``, one number or one per layer; ``math.inf`` is the fixed-kernel limit.
        likelihood: ``"gaussian"`` (learned noise variance, expected log-likelihood in closed form) or
            ``"categorical"`` (softmax of ``mc_samples`` Monte Carlo draws of the logits).
        noise_var: Initial noise variance (Gaussian).
        learn_inducing: Whether the inducing inputs are trained.
        mc_samples: Monte Carlo draws per point (categorical training and predictions).
        jitter: Diagonal jitter of the kernels (named kernels only).
        whitened: Parameterise each ``G_ii`` relative to ``chol(K_ii)`` (see :class:`GramLayer`); the
            reference's unwhitened form by default.
        generator: Source of the initial output parameters.

    Parameters take ``inducing``'s dtype.
    """

    def __init__(self, inducing: Tensor, num_outputs: int = 1, *, num_layers: int = 2, kernel="relu", nu=1.0,
                 likelihood: str = "gaussian", noise_var: float = 0.1, learn_inducing: bool = True,
                 mc_samples: int = 100, jitter: float = 1e-4, whitened: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        inducing = _check_inputs(inducing, "inducing")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.likelihood = likelihood
        self.num_outputs = check_positive_int(num_outputs, "num_outputs")
        if likelihood == "categorical" and self.num_outputs < 2:
            raise ValueError(f"num_outputs must be >= 2 for a categorical likelihood, got {num_outputs}")
        self.mc_samples = check_positive_int(mc_samples, "mc_samples")
        self.stack = _GramStack(inducing, num_layers, kernel, nu, learn_inducing=learn_inducing, jitter=jitter,
                                whitened=whitened)
        self.output = Output(inducing.shape[0], self.num_outputs, sum_kl=True, generator=generator)
        self.to(inducing.dtype)
        _register_log_noise_var(self, noise_var, likelihood == "gaussian", inducing.dtype)

    @property
    def noise_var(self) -> Tensor:
        return self.log_noise_var.exp()

    def latent(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean B x m, variance B x 1, penalty)`` of the outputs at ``x`` (``B x d``), ``penalty`` the sum
        of ``nu_l KL_l`` and the output KL."""
        top = self.stack(x)
        mean, var = self.output(top)
        return mean, var, top.penalty + self.output.kl(top.ii)

    def _targets(self, y, num_rows: int) -> Tensor:
        if self.likelihood == "categorical":
            labels = Categorical(self.num_outputs).prepare_targets(as_tensor(y, "y"))
            if labels.shape != (num_rows,):
                raise ValueError(f"y must hold {num_rows} labels, got shape {tuple(labels.shape)}")
            return labels
        return _regression_targets(y, num_rows, self.noise_var.dtype, self.num_outputs)

    def expected_log_likelihood(self, x: Tensor, y, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(sum over points of E_q[log p(y | f)], penalty)`` on the points ``x`` (``B x d``)."""
        mean, var, penalty = self.latent(x)
        target = self._targets(y, mean.shape[0])
        expected = expected_log_likelihood(mean, var, target, self.likelihood, noise_var=self.noise_var,
                                           mc_samples=self.mc_samples, generator=generator)
        return expected.sum(), penalty

    def loss(self, x: Tensor, y, num_data: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Negative objective per training point on a minibatch (scalar).

        Args:
            x: Inputs ``B x d``.
            y: Targets ``B`` or ``B x m`` (Gaussian) or labels ``B`` (categorical).
            num_data: Size ``N`` of the training set the minibatch is drawn from.
            generator: Source of the Monte Carlo draws (categorical).
        """
        num_data = check_positive_int(num_data, "num_data")
        expected, penalty = self.expected_log_likelihood(x, y, generator=generator)
        return -expected / x.shape[0] + penalty / num_data

    def objective(self, x: Tensor, y, *, generator: torch.Generator | None = None) -> DKMObjective:
        """The whole-data objective ``sum_t E_q[log p(y_t | f_t)] - sum_l nu_l KL_l - KL_out``."""
        expected, penalty = self.expected_log_likelihood(x, y, generator=generator)
        return DKMObjective(expected - penalty, expected, penalty)

    @torch.no_grad()
    def predict(self, x: Tensor, *, batch_size: int = 1024, generator: torch.Generator | None = None) -> Predictive:
        """Predictive at ``x`` (``n x d``), evaluated in chunks of ``batch_size`` points.

        Gaussian: one closed-form normal per point (:class:`~probnets.likelihoods.NormalMarginal`, latent
        variance plus noise). Categorical: ``mc_samples`` draws of the logits (probabilities averaged).
        """
        x = _check_inputs(x)
        batch_size = check_positive_int(batch_size, "batch_size")
        means, variances = zip(*(self.latent(x[s:s + batch_size])[:2] for s in range(0, x.shape[0], batch_size)))
        mean, var = torch.cat(means), torch.cat(variances)
        if self.likelihood == "categorical":
            return Predictive(sample_outputs(mean, var, self.mc_samples, generator), Categorical(self.num_outputs))
        scale = (var.clamp_min(0) + self.noise_var).sqrt().expand_as(mean)
        return Predictive(mean.unsqueeze(0), NormalMarginal(), {"scale": scale.unsqueeze(0)})

