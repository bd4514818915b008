"""Scale mixtures in closed form: the Gaussian process at the ML-II scale and the Student-t process."""

from __future__ import annotations

import math
from collections.abc import Iterable

import gpytorch
import pyro.distributions as dist
import torch
from torch import Tensor

from probnets.likelihoods import NormalMarginal, StudentTMarginal, lgamma_difference
from probnets.predictive import Predictive
from probnets.scale_mixture.exact import ExactScaleMixture
from probnets.validation import check_positive_float


class GaussianProcess(ExactScaleMixture):
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
    def predict(self, x, *, generator: torch.Generator | None = None) -> Predictive:
        """Gaussian predictive at ``x`` (``t x d``): one draw, ``NormalMarginal`` with scale ``sqrt(s Sigma*)``
        (deterministic: ``generator`` is unused)."""
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


class StudentTProcess(ExactScaleMixture):
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
    def predict(self, x, *, generator: torch.Generator | None = None) -> Predictive:
        """Student-t predictive at ``x`` (``t x d``): one draw, ``StudentTMarginal`` with ``df = 2 alpha + n``
        (deterministic: ``generator`` is unused)."""
        x = self._test_inputs(x)
        factor = self._factor()
        mean, var = self._conditional(x, factor)
        n = self.num_data
        s2 = (2 * self.beta + factor.quad) / (2 * self.alpha + n)
        phi = {"scale": (s2 * var).sqrt()[None, :, None], "df": (2 * self.alpha + n).reshape(1)}
        return Predictive(mean[None, :, None], StudentTMarginal(), phi)
