"""Sparse variational scale-mixture classification (SVSP, Lee et al. 2022)."""

from __future__ import annotations

import gpytorch
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from probnets.conditioned import ConditionedModel, FitSettings
from probnets.likelihoods import Categorical
from probnets.predictive import Predictive
from probnets.scale_mixture.exact import default_kernel
from probnets.validation import as_tensor, check_finite, check_positive_float, check_positive_int, validate_batch


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


class SVSP(torch.nn.Module, ConditionedModel):
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

    Fitting (``inference.fit(model, (x, y), generator=g)``) runs Adam (``lr = 0.01``) on the Monte Carlo
    ``-ELBO / N`` over shuffled minibatches of 100 points for 100 epochs by default, with ``num_samples = 10``
    draws of ``(s, f)`` per step; ``generator`` drives the shuffling and the draws.

    Args:
        inducing_points: Initial inducing inputs ``Z``, ``I x d``.
        num_classes: Number of classes ``C >= 2``.
        kernel: A GPyTorch kernel (moved to ``dtype``); default :func:`default_kernel`.
        alpha, beta: Inverse-gamma prior of the scale (positive); ``q(s)`` starts there.
        covariance: ``"diag"`` or ``"full"`` ``S_c``.
        jitter: Added to the diagonal of ``K_ZZ``.
        dtype: Floating-point type of all computations.
    """

    fit_settings = FitSettings("adam", lr={"adam": 0.01}, num_epochs=100, batch_size=100)
    divergence_hint = "try a smaller lr"

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
        self.train_x: Tensor | None = None
        self.train_y: Tensor | None = None

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

    def condition(self, x, y) -> SVSP:
        """Store the training data: inputs ``N x d`` (the width of the inducing points), labels in ``[0, C)``,
        ``N``."""
        self.train_x, self.train_y = self._check_data(x, y)
        return self

    @property
    def is_conditioned(self) -> bool:
        return self.train_x is not None

    def fit_loss(self, rows: Tensor | None, *, generator: torch.Generator | None = None,
                 num_samples: int = 10) -> Tensor:
        """:meth:`loss` on the minibatch ``rows`` of the training data with ``num_samples`` Monte Carlo draws of
        ``(s, f)``."""
        x, y = (self.train_x, self.train_y) if rows is None else (self.train_x[rows], self.train_y[rows])
        num_samples = check_positive_int(num_samples, "num_samples")
        return self.loss(x, y, self.train_x.shape[0], num_samples=num_samples, generator=generator)

    def _check_data(self, x, y) -> tuple[Tensor, Tensor]:
        x, y = validate_batch((x, y))
        x = x.to(self.dtype)
        if x.dim() != 2 or x.shape[1] != self.inducing_points.shape[1]:
            raise ValueError(f"x must have shape (n, {self.inducing_points.shape[1]}) like the inducing points, got "
                             f"{tuple(x.shape)}")
        return x, self.likelihood.prepare_targets(y)

    @torch.no_grad()
    def predict(self, x, *, num_samples: int = 100, generator: torch.Generator | None = None) -> Predictive:
        """Predictive over ``num_samples`` draws of the logits at ``x`` (``n x d``), ``Categorical`` likelihood.

        Each draw shares one scale ``s`` across points and takes ``f`` from the per-point marginals, so the
        per-point predictive (probabilities, log-probabilities) is exact up to Monte Carlo error.
        """
        x = check_finite(as_tensor(x, "x", dtype=self.dtype), "x")
        if x.dim() != 2 or x.shape[1] != self.inducing_points.shape[1]:
            raise ValueError(f"x must have shape (n, {self.inducing_points.shape[1]}), got {tuple(x.shape)}")
        num_samples = check_positive_int(num_samples, "num_samples")
        return Predictive(self._sample_logits(x, num_samples, generator), self.likelihood)
