"""Scale mixtures of NNGPs (Lee, Yun, Yang & Lee, ICLR 2022): GP, Student-t process and any scale prior.

An infinitely wide network whose last-layer weights have variance ``s / n_L`` with a prior ``s ~ H`` on the
scale is the mixture ``f ~ int GP(0, s K) dH(s)`` over its NNGP kernel ``K``. For regression the observation
noise sits inside the mixture, ``y | s ~ N(0, s A)`` with ``A = K_DD + noise I``, so everything about ``s``
goes through two numbers of the data, ``n`` and ``q = y^T A^-1 y``:

    p(y | s)     = N(y; 0, s A)                    the conditional posterior of s is  H(s) s^(-n/2) e^(-q/(2s))
    y* | s, D    ~ N(mu*, s Sigma*),   mu* = K_*D A^-1 y,   Sigma* = k_** + noise - K_*D A^-1 K_D*

Models (kernel: any GPyTorch kernel; by default the ReLU NNGP of depth 4 with ``weight_var = 2``,
``bias_var = 1``; float64 and a Cholesky factor of ``A`` with jitter as needed):

- :class:`GaussianProcess`: a point mass at the ML-II scale ``s = q / n`` (the "NNGP-GP" baseline);
- :class:`StudentTProcess`: ``H = InvGamma(alpha, beta)``, in closed form a Student-t process;
- :class:`ImportanceScaleMixture`: any ``H`` (Burr XII, half-Cauchy on ``sigma``, log-normal, ...) by
  self-normalised importance sampling over ``s``;
- :class:`SVSP`: sparse variational scale-mixture classification with ``q(s) = InvGamma(a, b)``.

Each regression model has ``fit(x, y)`` (empirical Bayes on the hyperparameters named in ``learn``) and
``predictive(x) -> Predictive``, so that ``inference.metrics.nll(model.predictive(x_test), y_test)`` scores it.

Example:
    >>> model = StudentTProcess(alpha=2.0, beta=2.0).fit(x_train, y_train)
    >>> pred = model.predictive(x_test)          # Predictive over a Student-t per test point
    >>> pred.mean, pred.interval(0.9)
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import NamedTuple

import gpytorch
import pyro.distributions as dist
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor
from torch.distributions import constraints

from probnets.kernels.nngp import NNGPKernel
from probnets.likelihoods import Categorical, NormalMarginal, StudentTMarginal, lgamma_difference
from probnets.predictive import Predictive
from probnets.priors import rsample
from probnets.validation import as_tensor, check_finite, check_positive_float, check_positive_int, validate_batch

__all__ = [
    "GaussianProcess", "ImportanceScaleMixture", "SVSP", "StudentTProcess", "inverse_gamma_kl",
    "posterior_inverse_gamma", "student_t_process_log_marginal",
]


def default_kernel(dtype: torch.dtype = torch.float64) -> NNGPKernel:
    """The ReLU NNGP kernel with 4 hidden layers, ``weight_var = 2`` and ``bias_var = 1``, in ``dtype``."""
    kernel = NNGPKernel(depth=4, activation="relu").to(dtype)
    # set after the cast, so that the variances are exact in dtype
    kernel.weight_var, kernel.bias_var = 2.0, 1.0
    return kernel


# --------------------------------------------------------------------------------------------------
# Regression: the shared Gaussian algebra


class _Factor(NamedTuple):
    """The training data through ``A = K_DD + noise I``."""

    chol: Tensor  # n x n, lower Cholesky factor of A
    a_inv_y: Tensor  # n
    quad: Tensor  # y^T A^-1 y
    logdet: Tensor  # log |A|


class _ExactScaleMixture(torch.nn.Module, ABC):
    """Data, kernel, noise, the factor of ``A`` and the conditional predictive shared by regression models."""

    LEARNABLE: tuple[str, ...] = ("kernel", "noise")

    def __init__(self, kernel: gpytorch.kernels.Kernel | None, *, noise: float, learn: Iterable[str],
                 dtype: torch.dtype):
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        kernel = default_kernel(dtype) if kernel is None else kernel
        if not isinstance(kernel, gpytorch.kernels.Kernel):
            raise TypeError(f"kernel must be a gpytorch.kernels.Kernel, got {type(kernel).__name__}")
        self.dtype = dtype
        self.kernel = kernel.to(dtype)
        self.raw_noise = torch.nn.Parameter(torch.tensor(check_positive_float(noise, "noise"), dtype=dtype).log())
        self.learn = _check_learn(learn, self.LEARNABLE)
        self.train_x: Tensor | None = None
        self.train_y: Tensor | None = None

    @property
    def noise(self) -> Tensor:
        """Observation noise variance inside the mixture (``A = K + noise I``), detached."""
        return self.raw_noise.detach().exp()

    @property
    def num_data(self) -> int:
        self._require_data()
        return self.train_x.shape[0]

    def _set_data(self, x, y) -> None:
        x, y = validate_batch((x, y))
        if not torch.is_floating_point(y):
            y = y.to(self.dtype)
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.dim() != 1:
            raise ValueError(f"y must have shape (n,) or (n, 1), got {tuple(y.shape)}")
        if x.dim() != 2:
            raise ValueError(f"x must have shape (n, d), got {tuple(x.shape)}")
        self.train_x, self.train_y = x.to(self.dtype), y.to(self.dtype)

    def _require_data(self) -> None:
        if self.train_x is None:
            raise RuntimeError(f"{type(self).__name__} has no data: call fit(x, y) first")

    def _test_inputs(self, x) -> Tensor:
        self._require_data()
        x = check_finite(as_tensor(x, "x", dtype=self.dtype), "x")
        if x.dim() != 2 or x.shape[1] != self.train_x.shape[1]:
            raise ValueError(f"x must have shape (n, {self.train_x.shape[1]}) like the training inputs, got "
                             f"{tuple(x.shape)}")
        return x

    def _learnable_parameters(self) -> list[torch.nn.Parameter]:
        params = []
        if "kernel" in self.learn:
            params += [p for p in self.kernel.parameters() if p.requires_grad]
        params += [getattr(self, f"raw_{name}") for name in self.learn if name != "kernel"]
        return params

    def _factor(self) -> _Factor:
        self._require_data()
        x, y = self.train_x, self.train_y
        a = self.kernel(x).to_dense() + self.raw_noise.exp() * torch.eye(x.shape[0], dtype=self.dtype)
        chol = psd_safe_cholesky(a)
        a_inv_y = torch.cholesky_solve(y[:, None], chol)[:, 0]
        return _Factor(chol, a_inv_y, y @ a_inv_y, 2 * chol.diagonal().log().sum())

    def _conditional(self, x: Tensor, factor: _Factor) -> tuple[Tensor, Tensor]:
        """``mu*`` and the diagonal of ``Sigma*`` (noise included) at test inputs ``x``, each ``t``."""
        k_xd = self.kernel(x, self.train_x).to_dense()
        v = torch.linalg.solve_triangular(factor.chol, k_xd.T, upper=False)
        # k_** - |v|^2 >= 0 in exact arithmetic; round-off can push it below.
        latent_var = (self.kernel(x, diag=True) - v.square().sum(0)).clamp_min(0)
        return k_xd @ factor.a_inv_y, latent_var + self.raw_noise.exp()

    def joint_conditional(self, x: Tensor, *, observation_noise: bool = False) -> tuple[Tensor, Tensor]:
        """Gaussian conditional at a unit scale: mean ``... x t`` and covariance ``... x t x t`` of the latent
        values (plus the noise with ``observation_noise``) at inputs ``... x t x d``, differentiable in ``x``
        and in the hyperparameters; each model's predictive scales the covariance by its scale (mixture)."""
        factor = self._factor()
        k_xd = self.kernel(x, self.train_x).to_dense()
        v = torch.linalg.solve_triangular(factor.chol, k_xd.transpose(-1, -2), upper=False)
        cov = self.kernel(x).to_dense() - v.transpose(-1, -2) @ v
        if observation_noise:
            cov = cov + self.raw_noise.exp() * torch.eye(x.shape[-2], dtype=cov.dtype, device=cov.device)
        return k_xd @ factor.a_inv_y, cov

    def _check_fitted(self) -> None:
        bad = [n for n, p in self.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise RuntimeError(f"fitting diverged: non-finite parameters {bad}; try fewer steps, a smaller lr, "
                               "or optimizer='adam'")

    def fit(self, x, y, *, num_steps: int = 100, optimizer: str = "lbfgs", lr: float | None = None):
        """Condition on ``(x, y)`` and fit the hyperparameters in ``learn`` by empirical Bayes.

        Args:
            x: Training inputs, ``n x d``.
            y: Training targets, ``n`` or ``n x 1``.
            num_steps: Optimiser iterations (0: keep the hyperparameters, only condition).
            optimizer: ``"lbfgs"`` (strong Wolfe line search; default ``lr = 1``) or ``"adam"``
                (default ``lr = 0.01``) on :meth:`loss`.
            lr: Learning rate.

        Returns:
            ``self``.
        """
        if optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
        self._set_data(x, y)
        num_steps = check_positive_int(num_steps, "num_steps", minimum=0)
        params = self._learnable_parameters()
        if params and num_steps:
            _minimise(self.loss, params, optimizer=optimizer, num_steps=num_steps, lr=lr)
            self._check_fitted()
        return self

    @abstractmethod
    def loss(self) -> Tensor:
        """Negative log marginal likelihood per datum, ``-(1/n) log p(y)``."""

    def log_marginal_likelihood(self) -> float:
        """``log p(y)`` of the training data at the current hyperparameters."""
        with torch.no_grad():
            return float(-self.num_data * self.loss())


class GaussianProcess(_ExactScaleMixture):
    """Exact GP regression ``y ~ N(0, s (K + noise I))``, the "NNGP-GP" baseline.

    The scale mixture with a point mass at the ML-II scale ``s = y^T A^-1 y / n`` (closed form, profiled
    out), so ``fit`` maximises the profile marginal likelihood over the kernel hyperparameters and the noise.
    The predictive is Gaussian per test point: ``N(mu*, s Sigma*)``.

    Args:
        kernel: A GPyTorch kernel (moved to ``dtype``); default :func:`default_kernel`.
        noise: Initial noise variance inside the mixture (positive).
        learn: Hyperparameters to fit: any of ``"kernel"`` (all trainable kernel parameters), ``"noise"``.
        dtype: Floating-point type of all computations.
    """

    def __init__(self, kernel: gpytorch.kernels.Kernel | None = None, *, noise: float = 0.1,
                 learn: Iterable[str] = ("kernel", "noise"), dtype: torch.dtype = torch.float64):
        super().__init__(kernel, noise=noise, learn=learn, dtype=dtype)

    @property
    def scale(self) -> Tensor:
        """The ML-II scale ``s = y^T A^-1 y / n``."""
        with torch.no_grad():
            return self._factor().quad / self.num_data

    def loss(self) -> Tensor:
        factor = self._factor()
        n = self.num_data
        return 0.5 * (torch.log(2 * math.pi * factor.quad / n) + 1 + factor.logdet / n)

    @torch.no_grad()
    def predictive(self, x) -> Predictive:
        """Gaussian predictive at ``x`` (``t x d``): one draw, ``NormalMarginal`` with scale ``sqrt(s Sigma*)``."""
        x = self._test_inputs(x)
        factor = self._factor()
        mean, var = self._conditional(x, factor)
        scale = (factor.quad / self.num_data * var).sqrt()
        return Predictive(mean[None, :, None], NormalMarginal(), {"scale": scale[None, :, None]})


def student_t_process_log_marginal(quad: Tensor, logdet: Tensor, num_data: int, alpha: Tensor,
                                   beta: Tensor) -> Tensor:
    """``log MVT_{2 alpha}(y; 0, (beta / alpha) A)``, the marginal likelihood under ``s ~ InvGamma(alpha, beta)``.

    Equal to ``log int N(y; 0, s A) InvGamma(s; alpha, beta) ds``:
    ``lgamma(alpha + n/2) - lgamma(alpha) - (n/2) log(2 pi beta) - log|A| / 2 - (alpha + n/2) log(1 + q/(2 beta))``.

    Args:
        quad: ``q = y^T A^-1 y``.
        logdet: ``log |A|``.
        num_data: ``n``.
        alpha, beta: Inverse-gamma shape and scale.
    """
    half_n = num_data / 2
    return (lgamma_difference(alpha, half_n) - half_n * torch.log(2 * math.pi * beta)
            - 0.5 * logdet - (alpha + half_n) * torch.log1p(quad / (2 * beta)))


class StudentTProcess(_ExactScaleMixture):
    """Student-t process regression: the scale mixture with ``s ~ InvGamma(alpha, beta)``, in closed form.

    ``y ~ MVT_{2 alpha}(0, (beta / alpha) A)``; ``fit`` minimises ``-(1/n)`` of its log density over the
    hyperparameters in ``learn``. Given the data ``s | y ~ InvGamma(alpha + n/2, beta + q/2)`` and the
    predictive is ``y* ~ t_{2 alpha + n}(mu*, s2 Sigma*)`` with ``s2 = (2 beta + q) / (2 alpha + n)``.

    Args:
        kernel: A GPyTorch kernel (moved to ``dtype``); default :func:`default_kernel`.
        alpha, beta: Initial shape and scale of the inverse-gamma scale prior (positive).
        noise: Initial noise variance inside the mixture (positive).
        learn: Hyperparameters to fit: any of ``"kernel"``, ``"noise"``, ``"alpha"``, ``"beta"``.
        dtype: Floating-point type of all computations.
    """

    LEARNABLE = ("kernel", "noise", "alpha", "beta")

    def __init__(self, kernel: gpytorch.kernels.Kernel | None = None, *, alpha: float = 2.0, beta: float = 2.0,
                 noise: float = 0.1, learn: Iterable[str] = LEARNABLE, dtype: torch.dtype = torch.float64):
        super().__init__(kernel, noise=noise, learn=learn, dtype=dtype)
        self.raw_alpha = torch.nn.Parameter(torch.tensor(check_positive_float(alpha, "alpha"), dtype=dtype).log())
        self.raw_beta = torch.nn.Parameter(torch.tensor(check_positive_float(beta, "beta"), dtype=dtype).log())

    @property
    def alpha(self) -> Tensor:
        """Shape of the inverse-gamma scale prior, detached."""
        return self.raw_alpha.detach().exp()

    @property
    def beta(self) -> Tensor:
        """Scale of the inverse-gamma scale prior, detached."""
        return self.raw_beta.detach().exp()

    def loss(self) -> Tensor:
        factor = self._factor()
        n = self.num_data
        alpha, beta = self.raw_alpha.exp(), self.raw_beta.exp()
        return -student_t_process_log_marginal(factor.quad, factor.logdet, n, alpha, beta) / n

    @torch.no_grad()
    def scale_posterior(self) -> dist.InverseGamma:
        """The posterior of the scale, ``s | y ~ InvGamma(alpha + n/2, beta + q/2)``."""
        q = self._factor().quad
        return dist.InverseGamma(self.alpha + self.num_data / 2, self.beta + q / 2)

    @torch.no_grad()
    def predictive(self, x) -> Predictive:
        """Student-t predictive at ``x`` (``t x d``): one draw, ``StudentTMarginal`` with ``df = 2 alpha + n``."""
        x = self._test_inputs(x)
        factor = self._factor()
        mean, var = self._conditional(x, factor)
        n = self.num_data
        s2 = (2 * self.beta + factor.quad) / (2 * self.alpha + n)
        phi = {"scale": (s2 * var).sqrt()[None, :, None], "df": (2 * self.alpha + n).reshape(1)}
        return Predictive(mean[None, :, None], StudentTMarginal(), phi)


# --------------------------------------------------------------------------------------------------
# Regression with any scale prior: importance sampling over s


def posterior_inverse_gamma(prior: torch.distributions.Distribution, num_data: int, quad: Tensor, *,
                            max_iter: int = 100) -> tuple[Tensor, Tensor]:
    """Inverse gamma ``IG(a, b)`` fitted to the scale's conditional posterior ``H(s) s^(-n/2) exp(-q / (2 s))``.

    In ``t = log s`` the log density of ``IG(a, b)`` is ``-a t - b e^(-t)`` (with the Jacobian), whose mode is
    ``log(b / a)`` and curvature ``-a``. Matching them to the mode ``t*`` and curvature ``-c`` of the
    posterior (damped Newton in ``t``) gives ``a = c``, ``b = c e^(t*)``: a Laplace fit with inverse-gamma
    tails. For ``H = IG(alpha, beta)`` it is the exact posterior ``IG(alpha + n/2, beta + q/2)``.

    Args:
        prior: Distribution of ``s`` on the positive reals.
        num_data: ``n``.
        quad: ``q = y^T A^-1 y`` (no gradient is taken through it).
        max_iter: Newton iterations at most.

    Returns:
        ``(a, b)``, 0-d float64 tensors.

    Raises:
        RuntimeError: When the posterior has no interior mode with positive curvature (e.g. an improper
            or pathological prior); use the prior itself or another proposal then.
    """
    half_n, q = num_data / 2, quad.detach().to(torch.float64)

    def log_post(t: Tensor) -> Tensor:
        return prior.log_prob(t.exp()).to(torch.float64) + (1 - half_n) * t - 0.5 * q * torch.exp(-t)

    t = torch.log(q / num_data)
    for _ in range(max_iter):
        grad, curvature = _derivatives(log_post, t)
        step = grad / curvature if curvature > 0 else grad.sign()  # ascend where not concave
        step = step.clamp(-1.0, 1.0)
        t = t + step
        if float(step.abs()) < 1e-12 * max(1.0, float(t.abs())):
            break
    _, curvature = _derivatives(log_post, t)
    if not (bool(torch.isfinite(t)) and bool(torch.isfinite(curvature)) and float(curvature) > 0):
        raise RuntimeError("could not fit an inverse gamma to the scale posterior (no interior mode with "
                           "positive curvature); use proposal='prior' or pass a proposal distribution")
    return curvature, curvature * t.exp()


#: Shape of the heavy-tailed part of the "posterior" proposal: the tail s^-3 has a mean, no variance.
_HEAVY_SHAPE = 2.0


def _defensive_mixture(main: torch.distributions.Distribution, heavy: torch.distributions.Distribution,
                       weight: float) -> tuple[Callable, Callable]:
    """``(sample_fn, log_prob_fn)`` of ``(1 - weight) main + weight heavy`` (``main`` alone for weight 0)."""
    if weight == 0:
        return (lambda num, generator: rsample(main, (num,), generator=generator).detach()), main.log_prob

    def sample(num: int, generator: torch.Generator | None) -> Tensor:
        draws = torch.stack([rsample(main, (num,), generator=generator), rsample(heavy, (num,), generator=generator)])
        pick = torch.rand(num, generator=generator, dtype=draws.dtype) < weight
        return torch.where(pick, draws[1], draws[0]).detach()

    def log_prob(s: Tensor) -> Tensor:
        return torch.logaddexp(math.log1p(-weight) + main.log_prob(s), math.log(weight) + heavy.log_prob(s))

    return sample, log_prob


def _derivatives(fn: Callable[[Tensor], Tensor], t: Tensor) -> tuple[Tensor, Tensor]:
    """``fn'(t)`` and ``-fn''(t)`` of a scalar function, as detached 0-d tensors."""
    t = t.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(fn(t), t, create_graph=True)
        (second,) = torch.autograd.grad(grad, t)
    return grad.detach(), -second.detach()


class ImportanceScaleMixture(_ExactScaleMixture):
    """Regression with any scale prior ``s ~ H`` by self-normalised importance sampling over ``s``.

    With draws ``s_k ~ r`` from a proposal ``r``, ``log w_k = log H(s_k) + log N(y; 0, s_k A) - log r(s_k)``
    and the predictive is the mixture ``sum_k wbar_k N(mu*, s_k Sigma*)`` (a ``Predictive`` with
    ``log_weights``); ``mean_k w_k`` estimates the marginal likelihood. Proposals:

    - ``"posterior"`` (default): the defensive mixture ``(1 - defensive) IG(a, b) + defensive IG(2, 2 b / a)``
      of the inverse gamma :func:`posterior_inverse_gamma` fitted to the scale's conditional posterior (the
      exact posterior for an inverse-gamma prior) and a heavy-tailed inverse gamma with the same mode in
      ``log s`` and tail ``s^-3``. The fitted part stays healthy when the prior is far from the posterior,
      as it is for large ``n`` (the posterior of ``s`` narrows like ``1/sqrt(n)``) or a misplaced prior; the
      heavy part covers the large scales that the predictive density at an outlying test point rests on
      (with the fitted part alone, one test point 11 predictive scales out put the NLL on syn-t off by 0.02).
    - ``"prior"``: the prior itself, ``log w_k = log N(y; 0, s_k A)`` (the original paper's estimator). Its
      ESS collapses when the posterior sits in the prior's tail.
    - any distribution over ``s`` (drawn with :func:`probnets.priors.rsample`).

    The ESS is reported (``ess``) and an ``ImportanceSamplingWarning`` is issued when it is below
    ``ess_threshold`` of the draws.

    Args:
        prior: Distribution of ``s = sigma^2`` on the positive reals, e.g. ``BurrXII(2, 1)``,
            ``variance_prior(HalfCauchy(1))``, ``LogNormal(0, 1)``; scalar batch and event shape.
        kernel: A GPyTorch kernel (moved to ``dtype``); default :func:`default_kernel`.
        noise: Initial noise variance inside the mixture (positive).
        proposal: ``"posterior"``, ``"prior"`` or a distribution over ``s``.
        num_samples: Importance draws ``K`` of the final fit.
        defensive: Weight of the heavy-tailed part of the ``"posterior"`` proposal, in ``[0, 1)``.
        learn: Hyperparameters to fit (``"kernel"``, ``"noise"``) by stochastic empirical Bayes on the
            importance estimate of the marginal likelihood (empty: keep them).
        chunk_size: Draws per evaluation chunk of the importance sampler.
        ess_threshold: Fraction of ``K`` below which the ESS warning fires.
        dtype: Floating-point type of all computations.
    """

    def __init__(self, prior: torch.distributions.Distribution, kernel: gpytorch.kernels.Kernel | None = None, *,
                 noise: float = 0.1, proposal: str | torch.distributions.Distribution = "posterior",
                 num_samples: int = 10_000, defensive: float = 0.2, learn: Iterable[str] = (),
                 chunk_size: int = 65536, ess_threshold: float = 0.05, dtype: torch.dtype = torch.float64):
        super().__init__(kernel, noise=noise, learn=learn, dtype=dtype)
        self.prior = _check_scale_distribution(prior, "prior")
        if isinstance(proposal, str):
            if proposal not in ("posterior", "prior"):
                raise ValueError(f"proposal must be 'posterior', 'prior' or a distribution, got {proposal!r}")
        else:
            _check_scale_distribution(proposal, "proposal")
        self.proposal = proposal
        self.num_samples = check_positive_int(num_samples, "num_samples")
        if isinstance(defensive, bool) or not isinstance(defensive, (int, float)) or not 0 <= defensive < 1:
            raise ValueError(f"defensive must lie in [0, 1), got {defensive!r}")
        self.defensive = float(defensive)
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)) or not 0 <= ess_threshold < 1:
            raise ValueError(f"ess_threshold must lie in [0, 1), got {ess_threshold!r}")
        self.ess_threshold = ess_threshold
        self.importance = None

    def _proposal(self, quad: Tensor) -> tuple[Callable, Callable]:
        """``(sample_fn, log_prob_fn)`` of the proposal over ``s`` for the current data."""
        if self.proposal == "posterior":
            a, b = (v.to(self.dtype) for v in posterior_inverse_gamma(self.prior, self.num_data, quad))
            return _defensive_mixture(dist.InverseGamma(a, b), dist.InverseGamma(_HEAVY_SHAPE, _HEAVY_SHAPE * b / a),
                                      self.defensive)
        chosen = self.prior if self.proposal == "prior" else self.proposal
        return (lambda num, generator: rsample(chosen, (num,), generator=generator).to(self.dtype).detach(),
                lambda s: chosen.log_prob(s).to(self.dtype))

    def _importance(self, num_samples: int, generator: torch.Generator | None, ess_threshold: float):
        from inference.importance import importance_sample  # noqa: PLC0415 - inference imports probnets

        factor = self._factor()
        n = self.num_data

        def log_target(s: Tensor) -> Tensor:
            log_lik = -0.5 * (n * torch.log(2 * math.pi * s) + factor.logdet + factor.quad / s)
            return self.prior.log_prob(s).to(self.dtype) + log_lik

        return importance_sample(log_target, self._proposal(factor.quad.detach()), num_samples,
                                 generator=generator, chunk_size=self.chunk_size, ess_threshold=ess_threshold)

    def fit(self, x, y, *, generator: torch.Generator | None = None, num_steps: int = 200, lr: float = 0.05,
            num_fit_samples: int = 1024):
        """Condition on ``(x, y)``: fit the hyperparameters in ``learn``, then draw the final importance sample.

        Hyperparameters follow Adam on ``-(1/n) log mean_k w_k`` with a fresh proposal and ``num_fit_samples``
        fresh draws every step (the draws carry no gradient; the weights do through ``A``).

        Args:
            x: Training inputs, ``n x d``.
            y: Training targets, ``n`` or ``n x 1``.
            generator: Source of randomness of every draw.
            num_steps: Adam steps (ignored when ``learn`` is empty).
            lr: Adam learning rate.
            num_fit_samples: Importance draws per Adam step.

        Returns:
            ``self``; the weighted draws are in ``importance``.
        """
        self._set_data(x, y)
        num_steps = check_positive_int(num_steps, "num_steps", minimum=0)
        num_fit_samples = check_positive_int(num_fit_samples, "num_fit_samples")
        params = self._learnable_parameters()
        if params and num_steps:
            optimizer = torch.optim.Adam(params, lr=check_positive_float(lr, "lr"))
            for _ in range(num_steps):
                optimizer.zero_grad()
                loss = -self._importance(num_fit_samples, generator, 0.0).log_normalizer / self.num_data
                loss.backward()
                optimizer.step()
            self._check_fitted()
        with torch.no_grad():
            self.importance = self._importance(self.num_samples, generator, self.ess_threshold)
        return self

    def _require_importance(self):
        if self.importance is None:
            raise RuntimeError("ImportanceScaleMixture has no importance sample: call fit(x, y) first")
        return self.importance

    @property
    def ess(self) -> float:
        """Kish effective sample size of the final importance weights."""
        return self._require_importance().ess

    def loss(self) -> Tensor:
        """``-(1/n) log mean_k w_k``, the importance estimate of ``-(1/n) log p(y)`` from the final draws."""
        return -self._require_importance().log_normalizer / self.num_data

    def log_marginal_likelihood(self) -> float:
        """Importance estimate ``log mean_k w_k`` of ``log p(y)`` (from the final draws)."""
        return float(self._require_importance().log_normalizer)

    @torch.no_grad()
    def predictive(self, x) -> Predictive:
        """Mixture predictive at ``x`` (``t x d``): ``K`` draws ``N(mu*, s_k Sigma*)`` weighted by the importance
        weights (``NormalMarginal``; ``f`` is a stride-0 view, the scales are ``K x t x 1``)."""
        result = self._require_importance()
        x = self._test_inputs(x)
        mean, var = self._conditional(x, self._factor())
        s = result.samples
        scale = (s[:, None] * var[None, :]).sqrt()[..., None]
        f = mean[None, :, None].expand(s.shape[0], -1, -1)
        return Predictive(f, NormalMarginal(), {"scale": scale}, log_weights=result.log_weights)


# --------------------------------------------------------------------------------------------------
# Classification: sparse variational scale mixture (SVSP)


def inverse_gamma_kl(a: Tensor, b: Tensor, alpha: float | Tensor, beta: float | Tensor) -> Tensor:
    """``KL(InvGamma(a, b) || InvGamma(alpha, beta))`` (shapes ``a, alpha``, scales ``b, beta``), in closed form:
    ``(a - alpha) digamma(a) - lgamma(a) + lgamma(alpha) + alpha log(b / beta) + a (beta - b) / b``.

    Args:
        a, b: Parameters of the first distribution (tensors, broadcastable).
        alpha, beta: Parameters of the second.
    """
    alpha, beta = (torch.as_tensor(v, dtype=a.dtype, device=a.device) for v in (alpha, beta))
    return ((a - alpha) * torch.digamma(a) - torch.lgamma(a) + torch.lgamma(alpha)
            + alpha * torch.log(b / beta) + a * (beta - b) / b)


class SVSP(torch.nn.Module):
    """Sparse variational scale-mixture classifier (Lee et al. 2022, SVSP).

    Per class ``c`` a latent ``f_c ~ GP(0, s K)`` shares the scale ``s ~ InvGamma(alpha, beta)``; labels are
    ``Categorical(softmax(f))``. The variational family, with inducing inputs ``Z`` (``I x d``, learned):
    ``q(s) = InvGamma(a, b)`` and ``q(u_c | s) = N(m_c, s S_c)`` with ``S_c`` diagonal or full. Then
    ``f_c(x) | s ~ N(A m_c, s (A S_c A^T + K_xx - A K_Zx))`` with ``A = K_xZ K_ZZ^-1``, and

        -ELBO / N = -E_q[log softmax_y(f)] + KL / N,
        KL = 1/2 sum_c [log|K_ZZ| - log|S_c| - I + tr(K_ZZ^-1 S_c) + (a/b) m_c^T K_ZZ^-1 m_c]
             + KL(InvGamma(a, b) || InvGamma(alpha, beta)),

    where the bracket is ``E_q(s) KL(q(u_c | s) || p(u_c | s))`` (``E[1/s] = a / b``), so the KL is exact and
    non-negative. The expectation is by Monte Carlo: ``s = b / Gamma(a, 1)`` (implicitly reparameterised)
    shared by all points of a draw, and ``f`` per point from its marginal.

    Args:
        inducing_points: Initial inducing inputs ``Z``, ``I x d``.
        num_classes: Number of classes ``C >= 2``.
        kernel: A GPyTorch kernel (moved to ``dtype``); default :func:`default_kernel`.
        alpha, beta: Inverse-gamma prior of the scale (positive); ``q(s)`` starts there.
        covariance: ``"diag"`` or ``"full"`` ``S_c``.
        jitter: Added to the diagonal of ``K_ZZ``.
        dtype: Floating-point type of all computations.
    """

    def __init__(self, inducing_points, num_classes: int, kernel: gpytorch.kernels.Kernel | None = None, *,
                 alpha: float = 2.0, beta: float = 2.0, covariance: str = "diag", jitter: float = 1e-6,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        kernel = default_kernel(dtype) if kernel is None else kernel
        if not isinstance(kernel, gpytorch.kernels.Kernel):
            raise TypeError(f"kernel must be a gpytorch.kernels.Kernel, got {type(kernel).__name__}")
        z = check_finite(as_tensor(inducing_points, "inducing_points", dtype=dtype), "inducing_points")
        if z.dim() != 2 or z.shape[0] == 0:
            raise ValueError(f"inducing_points must have shape (I, d) with I >= 1, got {tuple(z.shape)}")
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        self.alpha = check_positive_float(alpha, "alpha")
        self.beta = check_positive_float(beta, "beta")
        self.jitter = check_positive_float(jitter, "jitter")
        self.covariance = covariance
        self.dtype = dtype
        self.likelihood = Categorical(self.num_classes)
        self.kernel = kernel.to(dtype)
        num_inducing = z.shape[0]
        self.inducing_points = torch.nn.Parameter(z.clone())
        self.q_mu = torch.nn.Parameter(torch.zeros(self.num_classes, num_inducing, dtype=dtype))
        if covariance == "diag":  # log of the variances S_c
            self.q_log_var = torch.nn.Parameter(torch.zeros(self.num_classes, num_inducing, dtype=dtype))
        else:  # lower Cholesky factor of S_c, with a log diagonal
            self.q_tril = torch.nn.Parameter(torch.zeros(self.num_classes, num_inducing, num_inducing, dtype=dtype))
        self.raw_a = torch.nn.Parameter(torch.tensor(self.alpha, dtype=dtype).log())
        self.raw_b = torch.nn.Parameter(torch.tensor(self.beta, dtype=dtype).log())

    @property
    def a(self) -> Tensor:
        """Shape of ``q(s) = InvGamma(a, b)``, detached."""
        return self.raw_a.detach().exp()

    @property
    def b(self) -> Tensor:
        """Scale of ``q(s) = InvGamma(a, b)``, detached."""
        return self.raw_b.detach().exp()

    def _q_sqrt(self) -> Tensor:
        """Cholesky factors ``L_c`` of ``S_c = L_c L_c^T``, ``C x I x I``."""
        if self.covariance == "diag":
            return torch.diag_embed((0.5 * self.q_log_var).exp())
        lower = self.q_tril.tril(-1)
        return lower + torch.diag_embed(self.q_tril.diagonal(dim1=-2, dim2=-1).exp())

    def _chol_zz(self) -> Tensor:
        z = self.inducing_points
        k_zz = self.kernel(z).to_dense() + self.jitter * torch.eye(z.shape[0], dtype=self.dtype)
        return psd_safe_cholesky(k_zz)

    def kl_divergence(self) -> Tensor:
        """``KL(q(u, s) || p(u, s))`` of the whole model (non-negative), 0-d."""
        chol_zz, q_sqrt = self._chol_zz(), self._q_sqrt()
        num_inducing = chol_zz.shape[0]
        logdet_k = 2 * chol_zz.diagonal().log().sum()
        logdet_s = 2 * q_sqrt.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # C
        k_inv_sqrt = torch.linalg.solve_triangular(chol_zz, q_sqrt, upper=False)  # L_K^-1 L_S: C x I x I
        trace = k_inv_sqrt.square().sum((-2, -1))
        k_inv_mu = torch.linalg.solve_triangular(chol_zz, self.q_mu.T, upper=False)  # I x C
        mahalanobis = k_inv_mu.square().sum(0)
        a, b = self.raw_a.exp(), self.raw_b.exp()
        gaussian = 0.5 * (logdet_k - logdet_s - num_inducing + trace + a / b * mahalanobis).sum()
        return gaussian + inverse_gamma_kl(a, b, self.alpha, self.beta)

    def _marginals(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``n x C`` and variance given ``s = 1`` (``n x C``) of ``f(x)``."""
        chol_zz = self._chol_zz()
        k_zx = self.kernel(self.inducing_points, x).to_dense()  # I x n
        v = torch.linalg.solve_triangular(chol_zz, k_zx, upper=False)  # L_K^-1 K_Zx
        proj = torch.linalg.solve_triangular(chol_zz.T, v, upper=True)  # K_ZZ^-1 K_Zx = A^T
        mean = (self.q_mu @ proj).T
        explained = torch.einsum("cij,in->cjn", self._q_sqrt(), proj).square().sum(1).T  # diag(A S_c A^T)
        residual = (self.kernel(x, diag=True) - v.square().sum(0)).clamp_min(0)  # round-off can go below 0
        return mean, explained + residual[:, None]

    def _sample_logits(self, x: Tensor, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Draws of ``f(x)``, ``S x n x C``, reparameterised."""
        mean, var = self._marginals(x)
        s = self.raw_b.exp() / torch._standard_gamma(self.raw_a.exp().expand(num_samples), generator=generator)
        eps = torch.randn((num_samples, *mean.shape), generator=generator, dtype=self.dtype)
        return mean + (s[:, None, None] * var).sqrt() * eps

    def loss(self, x: Tensor, y: Tensor, num_data: int, *, num_samples: int = 10,
             generator: torch.Generator | None = None) -> Tensor:
        """Monte Carlo ``-ELBO / N`` on a minibatch ``x`` (``B x d``), labels ``y`` (``B``) of ``num_data`` points."""
        logits = self._sample_logits(x, num_samples, generator)
        expected = self.likelihood.log_prob(logits, y, {}).mean()
        return -expected + self.kl_divergence() / num_data

    def fit(self, x, y, *, num_epochs: int = 100, batch_size: int = 100, lr: float = 0.01, num_samples: int = 10,
            generator: torch.Generator | None = None):
        """Adam on the Monte Carlo ``-ELBO / N`` over shuffled minibatches.

        Args:
            x: Inputs, ``N x d`` (the width of the inducing points).
            y: Integer labels in ``[0, C)``, ``N``.
            num_epochs: Passes over the data.
            batch_size: Minibatch size.
            lr: Adam learning rate.
            num_samples: Monte Carlo draws of ``(s, f)`` per step.
            generator: Source of randomness (shuffling and draws).

        Returns:
            ``self``.
        """
        x, y = self._check_data(x, y)
        num_epochs = check_positive_int(num_epochs, "num_epochs", minimum=0)
        batch_size = check_positive_int(batch_size, "batch_size")
        num_samples = check_positive_int(num_samples, "num_samples")
        optimizer = torch.optim.Adam(self.parameters(), lr=check_positive_float(lr, "lr"))
        n = x.shape[0]
        for _ in range(num_epochs):
            for rows in torch.randperm(n, generator=generator).split(batch_size):
                optimizer.zero_grad()
                self.loss(x[rows], y[rows], n, num_samples=num_samples, generator=generator).backward()
                optimizer.step()
        bad = [name for name, p in self.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise RuntimeError(f"fitting diverged: non-finite parameters {bad}; try a smaller lr")
        return self

    def _check_data(self, x, y) -> tuple[Tensor, Tensor]:
        x, y = validate_batch((x, y))
        x = x.to(self.dtype)
        if x.dim() != 2 or x.shape[1] != self.inducing_points.shape[1]:
            raise ValueError(f"x must have shape (n, {self.inducing_points.shape[1]}) like the inducing points, got "
                             f"{tuple(x.shape)}")
        return x, self.likelihood.prepare_targets(y)

    @torch.no_grad()
    def predictive(self, x, *, num_samples: int = 100, generator: torch.Generator | None = None) -> Predictive:
        """Predictive over ``num_samples`` draws of the logits at ``x`` (``n x d``), ``Categorical`` likelihood.

        Each draw shares one scale ``s`` across points and takes ``f`` from the per-point marginals, so the
        per-point predictive (probabilities, log-probabilities) is exact up to Monte Carlo error.
        """
        x = check_finite(as_tensor(x, "x", dtype=self.dtype), "x")
        if x.dim() != 2 or x.shape[1] != self.inducing_points.shape[1]:
            raise ValueError(f"x must have shape (n, {self.inducing_points.shape[1]}), got {tuple(x.shape)}")
        num_samples = check_positive_int(num_samples, "num_samples")
        return Predictive(self._sample_logits(x, num_samples, generator), self.likelihood)


# --------------------------------------------------------------------------------------------------
# Helpers


def _check_learn(learn: Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(learn, str):
        raise TypeError(f"learn must be a collection of names, got the string {learn!r}")
    learn = tuple(learn)
    unknown = [name for name in learn if name not in allowed]
    if unknown:
        raise ValueError(f"learn must name hyperparameters among {allowed}, got unknown {unknown}")
    return learn


def _check_scale_distribution(d, name: str) -> torch.distributions.Distribution:
    if not isinstance(d, torch.distributions.Distribution):
        raise TypeError(f"{name} must be a torch/pyro Distribution over the scale, got {type(d).__name__}")
    if d.support not in (constraints.positive, constraints.nonnegative):
        raise ValueError(f"{name} must be a distribution on the positive reals, got support {d.support}")
    if d.batch_shape != torch.Size() or d.event_shape != torch.Size():
        raise ValueError(f"{name} must be a scalar distribution, got batch shape {tuple(d.batch_shape)} and "
                         f"event shape {tuple(d.event_shape)}")
    return d


def _minimise(loss_fn: Callable[[], Tensor], params: list[torch.nn.Parameter], *, optimizer: str, num_steps: int,
              lr: float | None) -> None:
    """``num_steps`` iterations of L-BFGS (``optimizer="lbfgs"``) or Adam (``"adam"``) on ``loss_fn``.

    The parameters with the lowest loss evaluated are kept. When an evaluation fails (a non-finite loss, or a
    kernel matrix that is NaN or not positive definite after jitter) the optimiser stops there with a
    ``RuntimeWarning``, keeping those best parameters.
    """
    best_loss, best_params = math.inf, [p.detach().clone() for p in params]

    def evaluate() -> Tensor:
        nonlocal best_loss, best_params
        loss = loss_fn()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _FitDiverged(f"the loss is {value}")
        if value < best_loss:
            best_loss, best_params = value, [p.detach().clone() for p in params]
        return loss

    try:
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params, lr=1.0 if lr is None else check_positive_float(lr, "lr"),
                                    max_iter=num_steps, line_search_fn="strong_wolfe")

            def closure() -> Tensor:
                opt.zero_grad()
                loss = evaluate()
                loss.backward()
                return loss

            opt.step(closure)
        else:
            opt = torch.optim.Adam(params, lr=0.01 if lr is None else check_positive_float(lr, "lr"))
            for _ in range(num_steps):
                opt.zero_grad()
                evaluate().backward()
                opt.step()
    except (_FitDiverged, NanError, NotPSDError) as exc:
        warnings.warn(f"{optimizer} stopped early ({exc}); keeping the best hyperparameters found "
                      f"(loss {best_loss:.6g})", RuntimeWarning, stacklevel=3)
    with torch.no_grad():
        for p, value in zip(params, best_params):
            p.copy_(value)


class _FitDiverged(Exception):
    """A non-finite loss during fitting."""
