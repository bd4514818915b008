"""The linear-Gaussian partial BNN with closed forms, shared by the partial-BNN SMC tests.

Model: ``y_i = psi x_i + phi z_i + eps_i`` with ``phi ~ N(0, 1)`` (stochastic) and ``eps_i ~ N(0, xi)``; ``psi`` is
deterministic. Then ``y ~ N(psi x, xi I + z z^T)`` (evidence, GLS maximum likelihood, analytic gradient) and
``phi | y`` is Gaussian. With a random-walk jitter of variance ``q`` before every minibatch the Feynman-Kac model is a
linear-Gaussian state-space model, whose evidence and filtering moments the Kalman filter gives exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from probnets import Gaussian
from probnets.partial_bnn import PartialBNN

XI = 0.25  # noise variance


class LinearPBNN(nn.Module):
    """``f([x, z]) = psi x + phi z``."""

    def __init__(self, psi: float = 0.0):
        super().__init__()
        self.psi = nn.Parameter(torch.tensor(psi, dtype=torch.float64))
        self.phi = nn.Parameter(torch.tensor(0.0, dtype=torch.float64))

    def forward(self, inputs):
        return self.psi * inputs[:, 0] + self.phi * inputs[:, 1]


def linear_model(psi: float = 0.0) -> PartialBNN:
    return PartialBNN(LinearPBNN(psi), "phi", likelihood=Gaussian(noise_scale=math.sqrt(XI)))


def linear_data(n: int, seed: int = 0, psi: float = 1.5, phi: float = 0.7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    y = psi * x + phi * z + math.sqrt(XI) * torch.randn(n, generator=g, dtype=torch.float64)
    return torch.stack([x, z], -1), y


def exact(inputs, y, psi):
    """log p(y; psi), d/dpsi log p(y; psi), psi_MLE (GLS) and its standard error, posterior mean/var of phi."""
    x, z = inputs[:, 0], inputs[:, 1]
    cov = XI * torch.eye(len(y), dtype=torch.float64) + torch.outer(z, z)
    r = y - psi * x
    log_p = torch.distributions.MultivariateNormal(psi * x, cov).log_prob(y)
    cx, cr = torch.linalg.solve(cov, x), torch.linalg.solve(cov, r)
    psi_mle = float(cx @ y / (cx @ x))
    precision = 1 + float(z @ z) / XI
    return {"log_p": float(log_p), "grad": float(x @ cr), "psi_mle": psi_mle, "psi_se": float(1 / (cx @ x)) ** 0.5,
            "post_mean": float(z @ r) / XI / precision, "post_var": 1 / precision}


def kalman(inputs, y, batches, psis, q):
    """Exact log evidence and final filtering mean/variance of the random-walk Feynman-Kac model over ``batches``
    (row indices), ``psis`` the psi used at each step."""
    mean, var, log_z = 0.0, 1.0, 0.0
    for rows, psi in zip(batches, psis):
        var = var + q
        x, z, yb = inputs[rows, 0], inputs[rows, 1], y[rows]
        cov = XI * torch.eye(len(rows), dtype=torch.float64) + var * torch.outer(z, z)
        log_z += float(torch.distributions.MultivariateNormal(psi * x + mean * z, cov).log_prob(yb))
        precision = 1 / var + float(z @ z) / XI
        mean = (mean / var + float(z @ (yb - psi * x)) / XI) / precision
        var = 1 / precision
    return log_z, mean, var


def batch_rows(n, batch_size, steps):
    rows = torch.arange(n)
    return [rows[(k * batch_size) % n:(k * batch_size) % n + batch_size] for k in range(steps)]
