"""Bayesian linear regression with known noise: sampled posterior moments match the closed form."""

import pyro.distributions as dist
import pytest
import torch

import inference
from inference import diagnostics
from probnets import BNN, Gaussian

NOISE, PRIOR = 0.5, 2.0


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 + NOISE * torch.randn(40, generator=g, dtype=torch.float64)
    design = torch.cat([x, torch.ones(40, 1, dtype=torch.float64)], 1)  # theta = (weights, bias)
    precision = design.T @ design / NOISE**2 + torch.eye(4, dtype=torch.float64) / PRIOR**2
    cov = torch.linalg.inv(precision)
    mean = cov @ design.T @ y / NOISE**2
    model = BNN(3, [], prior=dist.Normal(0.0, PRIOR), likelihood=Gaussian(noise_scale=NOISE))
    return model, x, y, mean, cov


@pytest.mark.parametrize("method, kwargs", [
    ("nuts", dict(num_chains=4, num_warmup=400, num_samples=600)),
    ("chees", dict(num_chains=32, num_warmup=300, num_samples=150)),
])
def test_posterior_mean_and_covariance_match_closed_form(problem, method, kwargs):
    model, x, y, mean, cov = problem
    post = inference.sample(model, (x, y), method=method, seed=21, progress=False, **kwargs)
    draws = post.samples
    centred = draws - mean
    z = {}
    for i in range(4):
        z[f"mean{i}"] = (draws[..., i].mean() - mean[i]) / diagnostics.mcse_mean(draws[..., i])
        for j in range(i, 4):
            q = centred[..., i] * centred[..., j]
            z[f"cov{i}{j}"] = (q.mean() - cov[i, j]) / diagnostics.mcse_mean(q)
    # 14 statistics: a |z| < 3.5 bound per statistic keeps the false-alarm rate of a correct sampler < 1%.
    assert all(abs(float(v)) < 3.5 for v in z.values()), {k: round(float(v), 2) for k, v in z.items()}
    assert post.num_divergences == 0
