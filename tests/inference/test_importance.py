"""Self-normalised importance sampling against closed forms, with Monte Carlo error bounds."""

import math
import warnings

import pyro.distributions as dist
import pytest
import torch

from inference.diagnostics import ConvergenceWarning
from inference.importance import ImportanceSamples, ImportanceSamplingWarning, importance_sample

DT = torch.float64


def gaussian_target(mean=1.0, sd=0.5, log_z=2.0):
    """Unnormalised N(mean, sd^2) whose normalising constant is exp(log_z)."""
    def log_target(x):
        return log_z - 0.5 * ((x - mean) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))
    return log_target


def proposal(loc=0.0, scale=2.0):
    return dist.Normal(torch.tensor(loc, dtype=DT), torch.tensor(scale, dtype=DT))


def test_normaliser_and_self_normalised_mean_agree_with_the_closed_form():
    num = 100_000
    result = importance_sample(gaussian_target(), proposal(), num, generator=torch.Generator().manual_seed(0))
    assert isinstance(result, ImportanceSamples)
    assert result.samples.shape == (num,) and result.log_weights.shape == (num,)
    w = result.log_weights.exp()
    se_z = float(w.std() / math.sqrt(num))
    assert abs(float(result.log_normalizer.exp()) - math.exp(2.0)) < 3.5 * se_z
    mean = float((result.weights * result.samples).sum())
    # delta-method standard error of the ratio estimator
    se_mean = float(((result.weights * (result.samples - mean)) ** 2).sum().sqrt())
    assert abs(mean - 1.0) < 3.5 * se_mean
    assert result.ess == pytest.approx(float(1 / result.weights.square().sum()))
    assert 1 <= result.ess <= num


def test_draws_are_seeded_vectorised_and_chunked():
    calls = []

    def log_target(x):
        calls.append(x.shape[0])
        return gaussian_target()(x)

    first = importance_sample(log_target, proposal(), 1000, generator=torch.Generator().manual_seed(4), chunk_size=300)
    assert calls == [300, 300, 300, 100]
    second = importance_sample(gaussian_target(), proposal(), 1000, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.samples, second.samples)
    torch.testing.assert_close(first.log_weights, second.log_weights, rtol=0, atol=0)


def test_vector_valued_draws_and_a_callable_proposal():
    def sample(num, generator):
        return torch.randn(num, 3, generator=generator, dtype=DT)

    def log_prob(x):
        return dist.Normal(torch.zeros(3, dtype=DT), 1.0).log_prob(x).sum(-1)

    def log_target(x):  # the same density: all weights equal
        return -0.5 * x.square().sum(-1) - 1.5 * math.log(2 * math.pi)

    result = importance_sample(log_target, (sample, log_prob), 500, generator=torch.Generator().manual_seed(0))
    assert result.samples.shape == (500, 3)
    assert result.ess == pytest.approx(500)
    assert float(result.log_normalizer) == pytest.approx(0.0, abs=1e-12)
    batch = dist.Normal(torch.zeros(3, dtype=DT), 1.0)  # log_prob summed over the batch dimension
    assert importance_sample(log_target, batch, 500).ess == pytest.approx(500)


def test_log_normalizer_carries_the_gradient_of_the_target():
    # target exp(-theta x^2 / 2): log Z = log sqrt(2 pi / theta), d log Z / d theta = -1 / (2 theta)
    theta = torch.tensor(2.0, dtype=DT, requires_grad=True)
    num = 50_000
    result = importance_sample(lambda x: -0.5 * theta * x**2, proposal(0.0, 1.0), num,
                               generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad(result.log_normalizer, theta)
    terms = -0.5 * result.samples**2
    se = float(((result.weights.detach() * (terms - (result.weights.detach() * terms).sum())) ** 2).sum().sqrt())
    assert abs(float(grad) + 0.25) < 3.5 * se


def test_warns_when_the_ess_collapses():
    narrow_far = proposal(-3.0, 0.3)
    with pytest.warns(ImportanceSamplingWarning, match=r"ESS is .* of 2000 draws"):
        result = importance_sample(gaussian_target(), narrow_far, 2000, generator=torch.Generator().manual_seed(0))
    assert result.ess < 0.05 * 2000
    assert issubclass(ImportanceSamplingWarning, ConvergenceWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importance_sample(gaussian_target(), proposal(), 2000, generator=torch.Generator().manual_seed(0))
        importance_sample(gaussian_target(), narrow_far, 2000, ess_threshold=0.0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"chunk_size": 0}, ValueError, "chunk_size"),
    ({"ess_threshold": 1.0}, ValueError, "ess_threshold"),
    ({"proposal": "normal"}, TypeError, "proposal"),
    ({"log_target": 3.0}, TypeError, "log_target"),
    ({"log_target": lambda x: torch.full_like(x, math.nan)}, ValueError, "NaN"),
    ({"log_target": lambda x: torch.full_like(x, -math.inf)}, ValueError, "no draw has positive weight"),
    ({"log_target": lambda x: x[:, None]}, ValueError, "log_target must return one value per draw"),
    ({"proposal": (lambda num, g: torch.zeros(num + 1), lambda x: x)}, ValueError, "draws along the first"),
])
def test_bad_input_raises_naming_the_argument(kwargs, error, match):
    args = {"log_target": gaussian_target(), "proposal": proposal(), "num_samples": 10, **kwargs}
    with pytest.raises(error, match=match):
        importance_sample(args.pop("log_target"), args.pop("proposal"), args.pop("num_samples"), **args)
