"""StudentTPosterior: its draws (from base samples and iid) follow the joint multivariate t."""

import math

import pytest
import torch
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.distributions import MultivariateNormal
from scipy.stats import t as scipy_t

from surrogates.student_t_posterior import StudentTPosterior

CONCENTRATION, RATE = 2.5, 1.5          # df = 5
MEAN = torch.tensor([[1.0, -2.0]], dtype=torch.float64)                         # batch 1 x q 2
SIGMA = torch.tensor([[[1.0, 0.6], [0.6, 2.0]]], dtype=torch.float64)
NUM = 4096


def _posterior() -> StudentTPosterior:
    return StudentTPosterior.from_unit_scale(MEAN, SIGMA, CONCENTRATION, RATE)


def _draws(kind: str) -> torch.Tensor:
    post = _posterior()
    torch.manual_seed(0)
    if kind == "base_samples":
        return SobolQMCNormalSampler(torch.Size([NUM]), seed=0)(post)
    return post.rsample(torch.Size([NUM]))


@pytest.mark.parametrize("kind", ["base_samples", "iid"])
def test_draws_follow_the_joint_student_t(kind):
    draws = _draws(kind).squeeze(-1)                     # NUM x 1 x 2
    assert draws.shape == (NUM, 1, 2)
    df = 2 * CONCENTRATION
    # each point and a contrast of both: t with df 5 and scale sqrt(a^T Sigma a * rate / concentration)
    for a in (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, -1.0])):
        a = a.to(torch.float64)
        scale = math.sqrt(float(a @ SIGMA[0] @ a) * RATE / CONCENTRATION)
        u = ((draws[:, 0] - MEAN[0]) @ a) / scale
        for p in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99):
            frac = float((u <= scipy_t.ppf(p, df)).double().mean())
            assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / NUM), (kind, a.tolist(), p, frac)


def test_moments_are_the_t_moments():
    post = _posterior()
    df = 2 * CONCENTRATION
    torch.testing.assert_close(post.mean.squeeze(-1), MEAN)
    torch.testing.assert_close(post.variance.squeeze(-1), torch.diagonal(SIGMA, dim1=-2, dim2=-1) * RATE / CONCENTRATION
                               * df / (df - 2))


def test_base_sample_draws_are_deterministic_and_differentiable():
    mean = MEAN.clone().requires_grad_(True)
    post = StudentTPosterior(MultivariateNormal(mean, SIGMA), CONCENTRATION, RATE)
    sampler = SobolQMCNormalSampler(torch.Size([64]), seed=1)
    first = sampler(post)
    torch.testing.assert_close(first, sampler(post))
    first.sum().backward()
    torch.testing.assert_close(mean.grad, torch.full_like(mean, 64.0))


def test_concentration_must_exceed_one():
    with pytest.raises(ValueError, match="concentration must be > 1"):
        StudentTPosterior(MultivariateNormal(MEAN, SIGMA), 1.0, RATE)
