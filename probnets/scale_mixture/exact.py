"""The Gaussian algebra every regression scale mixture shares: data, kernel, noise, the factor of ``A`` and the
conditional predictive given the scale.

For regression the observation noise sits inside the mixture, ``y | s ~ N(0, s A)`` with ``A = K_DD + noise I``,
so everything about the scale ``s`` goes through two numbers of the data, ``n`` and ``q = y^T A^-1 y``:

    p(y | s)     = N(y; 0, s A)                    the conditional posterior of s is  H(s) s^(-n/2) e^(-q/(2s))
    y* | s, D    ~ N(mu*, s Sigma*),   mu* = K_*D A^-1 y,   Sigma* = k_** + noise - K_*D A^-1 K_D*
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import NamedTuple

import gpytorch
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor

from probnets.conditioned import ConditionedModel, FitSettings
from probnets.kernels.nngp import NNGPKernel
from probnets.validation import as_tensor, check_finite, check_positive_float, validate_batch


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


class ExactScaleMixture(torch.nn.Module, ConditionedModel):
    """Data, kernel, noise, the factor of ``A`` and the conditional predictive shared by regression models.

    Fitting (``inference.fit``) conditions on ``(x, y)`` and fits the hyperparameters in ``learn`` by empirical
    Bayes: L-BFGS (strong Wolfe line search, ``lr = 1``) or Adam (``lr = 0.01``) for 100 steps on :meth:`loss`
    by default, keeping the hyperparameters with the lowest loss evaluated; a failed factorisation of ``A``
    ends the fit with a warning at those.
    """

    LEARNABLE: tuple[str, ...] = ("kernel", "noise")
    fit_settings = FitSettings("lbfgs", lr={"lbfgs": 1.0, "adam": 0.01}, num_steps=100, keep_best=True,
                               stop_on=(NanError, NotPSDError))
    divergence_hint = "try fewer steps, a smaller lr, or optimizer='adam'"

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
        self._require_conditioned()
        return self.train_x.shape[0]

    def condition(self, x, y) -> ExactScaleMixture:
        """Store the training data: inputs ``n x d``, targets ``n`` or ``n x 1`` (in the model's dtype)."""
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
        return self

    @property
    def is_conditioned(self) -> bool:
        return self.train_x is not None

    def _test_inputs(self, x) -> Tensor:
        self._require_conditioned()
        x = check_finite(as_tensor(x, "x", dtype=self.dtype), "x")
        if x.dim() != 2 or x.shape[1] != self.train_x.shape[1]:
            raise ValueError(f"x must have shape (n, {self.train_x.shape[1]}) like the training inputs, got "
                             f"{tuple(x.shape)}")
        return x

    def fit_parameters(self) -> list[torch.nn.Parameter]:
        """The hyperparameters named in ``learn``."""
        params = []
        if "kernel" in self.learn:
            params += [p for p in self.kernel.parameters() if p.requires_grad]
        params += [getattr(self, f"raw_{name}") for name in self.learn if name != "kernel"]
        return params

    def _factor(self) -> _Factor:
        self._require_conditioned()
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

    def fit_loss(self, rows: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """:meth:`loss` on all the training data (full batch; deterministic, ``generator`` is unused)."""
        return self.loss()

    @abstractmethod
    def loss(self) -> Tensor:
        """Negative log marginal likelihood per datum, ``-(1/n) log p(y)``."""

    def log_marginal_likelihood(self) -> float:
        """``log p(y)`` of the training data at the current hyperparameters."""
        with torch.no_grad():
            return float(-self.num_data * self.loss())


def _check_learn(learn: Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(learn, str):
        raise TypeError(f"learn must be a collection of names, got the string {learn!r}")
    learn = tuple(learn)
    unknown = [name for name in learn if name not in allowed]
    if unknown:
        raise ValueError(f"learn must name hyperparameters among {allowed}, got unknown {unknown}")
    return learn
