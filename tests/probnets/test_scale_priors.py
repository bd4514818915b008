"""Scale priors (Burr XII, priors on sigma pushed to sigma^2) and generator-driven draws (priors.rsample)."""

import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from probnets.priors import BurrXII, rsample, variance_prior

DT = torch.float64


def t(*values):
    """A float64 tensor: 0-d for one value."""
    return torch.tensor(values[0] if len(values) == 1 else values, dtype=DT)


def test_burr_xii_matches_scipy():
    burr = BurrXII(t(2.0), 1.5, 0.7)
    x = t(1e-3, 0.1, 1.0, 3.0, 40.0)
    ref = stats.burr12(2.0, 1.5, scale=0.7)
    np.testing.assert_allclose(burr.log_prob(x).numpy(), ref.logpdf(x.numpy()), rtol=1e-12)
    np.testing.assert_allclose(burr.cdf(x).numpy(), ref.cdf(x.numpy()), rtol=1e-12)
    u = t(1e-9, 0.2, 0.5, 0.99)
    np.testing.assert_allclose(burr.icdf(u).numpy(), ref.ppf(u.numpy()), rtol=1e-10)
    assert float(burr.mean) == pytest.approx(ref.mean(), rel=1e-12)
    assert float(burr.variance) == pytest.approx(ref.var(), rel=1e-10)


def test_burr_xii_moments_are_infinite_beyond_c_times_d():
    assert math.isinf(float(BurrXII(t(2.0), 0.5).mean))  # c d = 1
    assert math.isinf(float(BurrXII(t(2.0), 0.8).variance))  # c d = 1.6 < 2
    assert math.isfinite(float(BurrXII(t(2.0), 0.8).mean))


def test_burr_xii_draws_follow_the_distribution_and_are_seeded():
    burr = BurrXII(t(2.0), 1.0)
    draws = rsample(burr, (20_000,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, rsample(burr, (20_000,), generator=torch.Generator().manual_seed(0)))
    pit = burr.cdf(draws)
    assert abs(float(pit.mean()) - 0.5) < 3.5 * math.sqrt(1 / 12 / 20_000)
    assert burr.expand((3,)).rsample((2,)).shape == (2, 3)


@pytest.mark.parametrize("name, args", [("c", (0.0, 1.0, 1.0)), ("d", (1.0, -1.0, 1.0)),
                                        ("scale", (1.0, 1.0, math.nan))])
def test_burr_xii_rejects_bad_parameters(name, args):
    with pytest.raises(ValueError, match=name):
        BurrXII(*args)


@pytest.mark.parametrize("d, cdf", [
    (dist.Normal(t(1.0), t(2.0)), stats.norm(1.0, 2.0).cdf),
    (dist.Gamma(t(0.7), t(2.0)), stats.gamma(0.7, scale=0.5).cdf),
    (dist.InverseGamma(t(3.0), t(2.0)), stats.invgamma(3.0, scale=2.0).cdf),
    (dist.LogNormal(t(0.5), t(0.3)), stats.lognorm(0.3, scale=math.exp(0.5)).cdf),
    (dist.HalfCauchy(t(2.0)), stats.halfcauchy(scale=2.0).cdf),
    (dist.Exponential(t(1.5)), stats.expon(scale=1 / 1.5).cdf),
])
def test_rsample_draws_each_family_through_the_generator(d, cdf):
    num = 20_000
    draws = rsample(d, (num,), generator=torch.Generator().manual_seed(3))
    assert draws.shape == (num,) and draws.dtype == DT
    assert torch.equal(draws, rsample(d, (num,), generator=torch.Generator().manual_seed(3)))
    pit = cdf(draws.numpy())
    assert abs(pit.mean() - 0.5) < 3.5 * math.sqrt(1 / 12 / num)
    assert abs((pit < 0.1).mean() - 0.1) < 3.5 * math.sqrt(0.09 / num)


def test_rsample_is_reparameterised_for_gamma():
    # d E[X] / d concentration = 1 / rate for X ~ Gamma(concentration, rate)
    concentration = t(2.5).requires_grad_(True)
    draws = rsample(dist.Gamma(concentration, t(2.0)), (50_000,), generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(draws.mean(), concentration)
    assert float(grad) == pytest.approx(0.5, abs=0.02)


def test_rsample_keeps_batch_shape_and_rejects_undrawable_distributions():
    assert rsample(dist.Normal(torch.zeros(3, dtype=DT), 1.0), (4,)).shape == (4, 3)
    assert rsample(dist.Normal(torch.zeros(3, dtype=DT), 1.0).to_event(1), (4,)).shape == (4, 3)
    with pytest.raises(TypeError, match="Beta"):
        rsample(dist.Beta(t(2.0), t(3.0)), (4,))


def test_variance_prior_pushes_a_prior_on_sigma_to_sigma_squared():
    prior = variance_prior(dist.HalfCauchy(t(2.0)))
    s = t(0.5, 4.0, 30.0)
    sigma = s.sqrt()
    expected = stats.halfcauchy(scale=2.0).logpdf(sigma.numpy()) - np.log(2 * sigma.numpy())
    np.testing.assert_allclose(prior.log_prob(s).numpy(), expected, rtol=1e-12)
    draws = rsample(prior, (20_000,), generator=torch.Generator().manual_seed(1))
    assert abs(float((draws.sqrt() < 2.0).to(DT).mean()) - 0.5) < 3.5 * math.sqrt(0.25 / 20_000)  # median of sigma is 2
    with pytest.raises(ValueError, match="positive support"):
        variance_prior(dist.Normal(0.0, 1.0))
    with pytest.raises(TypeError, match="scale_prior"):
        variance_prior(2.0)
