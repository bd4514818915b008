"""Task priors: batched, seeded draws of whole regression data sets for amortized models (neural processes,
PFNs) to learn from.

A task is a random function ``f`` (a GP draw or a random network), inputs ``x`` and noisy outputs ``y``; the
first ``num_context`` points of each task are its context, the rest its targets. Every task in a batch has the
same number of points (sizes are drawn once per batch), so a batch is three dense tensors.

Sizes follow the neural-process benchmark protocol by default (Lee et al. 2023, NPF library): ``num_context ~
U{3..47}`` and ``num_target ~ U{3..50 - num_context}``, inputs ``x ~ U(-2, 2)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor

from probnets.priors.parameters import rsample
from probnets.validation import check_positive_int

KERNELS = ("rbf", "matern52", "periodic")
JITTER = 1e-6  # relative to the output variance, part of every GP task's covariance (and of the oracle)


class TaskBatch(NamedTuple):
    """A batch of ``B`` tasks with ``N`` points each.

    Attributes:
        x: Inputs, ``B x N x d``.
        y: Outputs, ``B x N x 1``.
        num_context: The first ``num_context`` points of every task are its context, the rest its targets.
        params: Per-task hyperparameters that generated the tasks, each of shape ``B``.
    """

    x: Tensor
    y: Tensor
    num_context: int
    params: dict[str, Tensor]

    @property
    def context_x(self) -> Tensor:
        return self.x[:, :self.num_context]

    @property
    def context_y(self) -> Tensor:
        return self.y[:, :self.num_context]

    @property
    def target_x(self) -> Tensor:
        return self.x[:, self.num_context:]

    @property
    def target_y(self) -> Tensor:
        return self.y[:, self.num_context:]


def _check_range(value, name: str, *, minimum: int = 0) -> tuple[int, int]:
    """An int ``n`` -> ``(n, n)``; a pair -> itself, checked."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, tuple) or len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                                for v in value)
            or not minimum <= value[0] <= value[1]):
        raise ValueError(f"{name} must be an integer >= {minimum} or a pair (low, high) of them with "
                         f"low <= high, got {value!r}")
    return value


def _randint(bounds: tuple[int, int], generator: torch.Generator | None) -> int:
    return int(torch.randint(bounds[0], bounds[1] + 1, (1,), generator=generator))


class Hyperparameter:
    """A positive hyperparameter that is fixed (a float), uniform on ``(low, high)`` (a pair), or drawn from a
    torch distribution (through :func:`~probnets.priors.rsample`, so a generator controls it)."""

    def __init__(self, spec, name: str):
        self.name = name
        if isinstance(spec, torch.distributions.Distribution):
            if spec.batch_shape != torch.Size() or spec.event_shape != torch.Size():
                raise ValueError(f"{name} must be a scalar distribution, got batch shape {tuple(spec.batch_shape)}")
            self.spec = spec
        elif isinstance(spec, tuple):
            if len(spec) != 2 or not all(isinstance(v, (int, float)) for v in spec) or not 0 < spec[0] <= spec[1]:
                raise ValueError(f"{name} must be a positive number, a pair 0 < low <= high or a distribution, "
                                 f"got {spec!r}")
            self.spec = (float(spec[0]), float(spec[1]))
        elif isinstance(spec, (int, float)) and not isinstance(spec, bool) and spec > 0 and math.isfinite(spec):
            self.spec = float(spec)
        else:
            raise ValueError(f"{name} must be a positive number, a pair 0 < low <= high or a distribution, "
                             f"got {spec!r}")

    def sample(self, batch_size: int, generator: torch.Generator | None, dtype: torch.dtype, device) -> Tensor:
        if isinstance(self.spec, float):
            return torch.full((batch_size,), self.spec, dtype=dtype, device=device)
        if isinstance(self.spec, tuple):
            low, high = self.spec
            u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
            return (low + (high - low) * u).to(dtype=dtype, device=device)
        return rsample(self.spec, (batch_size,), generator=generator).to(dtype=dtype, device=device)


class TaskPrior(ABC):
    """Base class: input box, sizes, and the batched draw; subclasses draw the outputs.

    Args:
        dim: Input dimension ``d``.
        x_range: Inputs are uniform on ``x_range^d``.
        num_context: Context size, an integer or an inclusive range ``(low, high)`` drawn per batch.
        max_points: Largest total number of points per task.
        min_target: Smallest number of targets; ``num_target ~ U{min_target..max_points - num_context}``.
        fill_targets: Instead, ``num_target = max_points - num_context`` (every task has ``max_points`` points,
            as in PFN training).
    """

    def __init__(self, *, dim: int, x_range: tuple[float, float], num_context, max_points: int, min_target: int,
                 fill_targets: bool = False):
        self.dim = check_positive_int(dim, "dim")
        if (not isinstance(x_range, tuple) or len(x_range) != 2
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in x_range)
                or not x_range[0] < x_range[1]):
            raise ValueError(f"x_range must be a pair (low, high) of finite numbers with low < high, got {x_range!r}")
        self.x_range = (float(x_range[0]), float(x_range[1]))
        self.num_context = _check_range(num_context, "num_context")
        self.max_points = check_positive_int(max_points, "max_points")
        self.min_target = check_positive_int(min_target, "min_target", minimum=0)
        self.fill_targets = bool(fill_targets)
        if self.num_context[1] + self.min_target > self.max_points:
            raise ValueError(f"num_context ({self.num_context[1]} at most) plus min_target ({self.min_target}) "
                             f"exceeds max_points ({self.max_points})")

    def sample(self, batch_size: int, *, num_context: int | None = None, num_target: int | None = None,
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> TaskBatch:
        """Draw ``batch_size`` tasks.

        Args:
            batch_size: ``B``.
            num_context: Context size for this batch (drawn from the prior's range when ``None``).
            num_target: Target size (``U{min_target..max_points - num_context}`` when ``None``).
            generator: Source of every random choice (sizes, hyperparameters, inputs, functions, noise).
            dtype, device: Of the returned tensors (the draws themselves are made in float64 on ``device``).

        Returns:
            A :class:`TaskBatch` with ``N = num_context + num_target`` points per task.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        if num_context is None:
            num_context = _randint(self.num_context, generator)
        num_context = check_positive_int(num_context, "num_context", minimum=0)
        if num_target is None and self.fill_targets:
            num_target = max(self.min_target, self.max_points - num_context)
        elif num_target is None:
            num_target = _randint((self.min_target, max(self.min_target, self.max_points - num_context)), generator)
        num_target = check_positive_int(num_target, "num_target", minimum=0)
        if num_context + num_target == 0:
            raise ValueError("a task needs at least one point (num_context + num_target >= 1)")
        num_points = num_context + num_target
        low, high = self.x_range
        u = torch.rand(batch_size, num_points, self.dim, generator=generator, dtype=torch.float64)
        x = (low + (high - low) * u).to(device)
        y, params = self._outputs(x, generator)
        params = {name: value.to(dtype) for name, value in params.items()}
        return TaskBatch(x.to(dtype), y.to(dtype), num_context, params)

    @abstractmethod
    def _outputs(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, dict[str, Tensor]]:
        """Outputs ``B x N x 1`` at float64 inputs ``x`` and the per-task hyperparameters."""


def _student_t(df: float, shape: torch.Size, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    """Standard Student-t draws ``z / sqrt(chi2_df / df)`` through ``generator``."""
    z = torch.randn(shape, generator=generator, dtype=dtype)
    chi2 = 2 * rsample(torch.distributions.Gamma(torch.tensor(df / 2, dtype=dtype), 1.0), shape, generator=generator)
    return z / (chi2 / df).sqrt()


class GPTaskPrior(TaskPrior):
    """Functions drawn from a GP with an RBF, Matern-5/2 or periodic kernel, plus noise.

    Kernels (``r = |x - x'|``, scale ``s``, lengthscale ``l``, period ``p``): RBF ``s^2 exp(-r^2 / (2 l^2))``;
    Matern-5/2 ``s^2 (1 + sqrt5 r / l + 5 r^2 / (3 l^2)) exp(-sqrt5 r / l)``; periodic
    ``s^2 exp(-2 sin^2(pi r / p) / l^2)`` (for ``d > 1``, ``r`` is the Euclidean distance).

    Args:
        kernel: ``"rbf"``, ``"matern52"`` or ``"periodic"``.
        lengthscale, scale, period: Hyperparameters: a float (fixed), a pair ``(low, high)`` (uniform per task)
            or a scalar torch distribution (a hyperprior). ``scale`` is the output standard deviation.
        noise: Standard deviation of the Gaussian observation noise (same forms).
        t_noise: ``None``, or the range ``(low, high)`` of ``gamma`` for additional heavy-tailed noise
            ``gamma * StudentT(2.1)`` (the "t-noise" tasks), ``gamma`` uniform per task.
        dim, x_range, num_context, max_points, min_target, fill_targets: See :class:`TaskPrior`.

    The defaults are the neural-process GP benchmark (1-D, ``l ~ U(0.1, 0.6)``, ``s ~ U(0.1, 1)``, noise 0.02,
    ``p ~ U(0.1, 0.5)``).
    """

    def __init__(self, kernel: str = "rbf", *, lengthscale=(0.1, 0.6), scale=(0.1, 1.0), noise=0.02,
                 period=(0.1, 0.5), t_noise: tuple[float, float] | None = None, dim: int = 1,
                 x_range: tuple[float, float] = (-2.0, 2.0), num_context=(3, 47), max_points: int = 50,
                 min_target: int = 3, fill_targets: bool = False):
        super().__init__(dim=dim, x_range=x_range, num_context=num_context, max_points=max_points,
                         min_target=min_target, fill_targets=fill_targets)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.hypers = {"lengthscale": Hyperparameter(lengthscale, "lengthscale"),
                       "scale": Hyperparameter(scale, "scale"), "noise": Hyperparameter(noise, "noise")}
        if kernel == "periodic":
            self.hypers["period"] = Hyperparameter(period, "period")
        if t_noise is not None:
            if (not isinstance(t_noise, tuple) or len(t_noise) != 2
                    or not all(isinstance(v, (int, float)) for v in t_noise) or not 0 <= t_noise[0] <= t_noise[1]):
                raise ValueError(f"t_noise must be None or a pair 0 <= low <= high, got {t_noise!r}")
        self.t_noise = t_noise

    def covariance(self, x1: Tensor, x2: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Kernel matrices ``B x N x M`` between ``x1`` (``B x N x d``) and ``x2`` (``B x M x d``), without noise."""
        r = torch.cdist(x1, x2)
        length = params["lengthscale"].to(x1.dtype)[:, None, None]
        variance = params["scale"].to(x1.dtype)[:, None, None] ** 2
        if self.kernel == "rbf":
            return variance * torch.exp(-0.5 * (r / length) ** 2)
        if self.kernel == "matern52":
            z = math.sqrt(5) * r / length
            return variance * (1 + z + z**2 / 3) * torch.exp(-z)
        period = params["period"].to(x1.dtype)[:, None, None]
        return variance * torch.exp(-2 * torch.sin(math.pi * r / period) ** 2 / length**2)

    def noise_covariance(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``K(x, x) + (noise^2 + jitter s^2) I``, ``B x N x N``."""
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        noise_var = params["noise"].to(x.dtype) ** 2 + JITTER * params["scale"].to(x.dtype) ** 2
        return self.covariance(x, x, params) + noise_var[:, None, None] * eye

    def _outputs(self, x, generator):
        batch = x.shape[0]
        params = {name: h.sample(batch, generator, torch.float64, x.device) for name, h in self.hypers.items()}
        chol = torch.linalg.cholesky(self.noise_covariance(x, params))
        eps = torch.randn(x.shape[:2] + (1,), generator=generator, dtype=x.dtype).to(x.device)
        y = chol @ eps
        if self.t_noise is not None:
            low, high = self.t_noise
            gamma = low + (high - low) * torch.rand(batch, generator=generator, dtype=x.dtype).to(x.device)
            y = y + gamma[:, None, None] * _student_t(2.1, y.shape, generator, x.dtype).to(x.device)
            params["t_scale"] = gamma
        return y, params

    def oracle_log_prob(self, batch: TaskBatch) -> tuple[Tensor, Tensor]:
        """Per-point predictive log densities of the exact GP with the tasks' true hyperparameters.

        Each point's predictive is conditioned on the whole context (as a neural process's is), and the
        log densities are averaged over the context points and over the target points of each task.

        Returns:
            ``(context, target)``, each ``B`` (NaN for an empty set).

        Raises:
            ValueError: For tasks with Student-t noise (no closed form).
        """
        if self.t_noise is not None:
            raise ValueError("oracle_log_prob needs Gaussian noise; these tasks have Student-t noise")
        x, y = batch.x.double(), batch.y.double()
        params = {name: value.double() for name, value in batch.params.items()}
        noise_var = (params["noise"] ** 2 + JITTER * params["scale"] ** 2)[:, None]
        n = batch.num_context
        prior_var = self.covariance(x[:, :1], x[:, :1], params)[:, 0, 0, None] + noise_var  # stationary kernels
        if n == 0:
            mean, var = torch.zeros_like(y[..., 0]), prior_var.expand(-1, x.shape[1])
        else:
            chol = torch.linalg.cholesky(self.noise_covariance(x[:, :n], params))
            cross = self.covariance(x, x[:, :n], params)  # B x N x n
            mean = (cross @ torch.cholesky_solve(y[:, :n], chol))[..., 0]
            half = torch.linalg.solve_triangular(chol, cross.transpose(1, 2), upper=False)
            var = prior_var - half.square().sum(1)
        log_density = torch.distributions.Normal(mean, var.clamp_min(1e-12).sqrt()).log_prob(y[..., 0])
        return log_density[:, :n].mean(1), log_density[:, n:].mean(1)


class BNNTaskPrior(TaskPrior):
    """Functions drawn from random fully connected networks, plus Gaussian noise.

    Weights are ``Normal(0, weight_scale^2 / fan_in)`` and biases ``Normal(0, bias_scale^2)``, fresh per task.

    Args:
        widths: Hidden widths.
        activation: ``"tanh"`` or ``"relu"``.
        weight_scale, bias_scale: Prior scales (floats).
        noise: Observation noise standard deviation: a float, a pair (uniform per task) or a distribution.
        dim, x_range, num_context, max_points, min_target, fill_targets: See :class:`TaskPrior`.
    """

    def __init__(self, widths=(32, 32), *, activation: str = "tanh", weight_scale: float = 1.5,
                 bias_scale: float = 0.5, noise=0.02, dim: int = 1, x_range: tuple[float, float] = (-2.0, 2.0),
                 num_context=(3, 47), max_points: int = 50, min_target: int = 3, fill_targets: bool = False):
        super().__init__(dim=dim, x_range=x_range, num_context=num_context, max_points=max_points,
                         min_target=min_target, fill_targets=fill_targets)
        self.widths = tuple(check_positive_int(w, "widths") for w in widths)
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.activation = torch.tanh if activation == "tanh" else torch.relu
        for value, name in ((weight_scale, "weight_scale"), (bias_scale, "bias_scale")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.weight_scale, self.bias_scale = float(weight_scale), float(bias_scale)
        self.noise = Hyperparameter(noise, "noise")

    def _outputs(self, x, generator):
        batch = x.shape[0]
        h = x
        for width in self.widths + (1,):
            fan_in = h.shape[-1]
            w = torch.randn(batch, fan_in, width, generator=generator, dtype=x.dtype).to(x.device)
            b = torch.randn(batch, 1, width, generator=generator, dtype=x.dtype).to(x.device)
            h_next = h @ (w * self.weight_scale / math.sqrt(fan_in)) + b * self.bias_scale
            h = self.activation(h_next) if width != 1 else h_next
        noise = self.noise.sample(batch, generator, x.dtype, x.device)
        eps = torch.randn(h.shape, generator=generator, dtype=x.dtype).to(x.device)
        return h + noise[:, None, None] * eps, {"noise": noise}
