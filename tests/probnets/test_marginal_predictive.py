"""Predictive mixtures of closed-form per-point predictives (NormalMarginal, StudentTMarginal) against scipy."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from inference.metrics import coverage, nll
from probnets import Predictive
from probnets.likelihoods import NormalMarginal, StudentTMarginal

DT = torch.float64


def mixture(kind: str, num_draws=3, n=4, m=1, df=(3.0, 5.0, 8.0), weights=(0.2, 0.5, 0.3), seed=0) -> Predictive:
    """A weighted mixture with per-draw, per-point locations and scales."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(num_draws, n, m, generator=g, dtype=DT)
    scale = 0.3 + torch.rand(num_draws, n, m, generator=g, dtype=DT)
    log_w = torch.tensor(weights[:num_draws], dtype=DT).log()
    if kind == "normal":
        return Predictive(f, NormalMarginal(), {"scale": scale}, log_w)
    return Predictive(f, StudentTMarginal(), {"scale": scale, "df": torch.tensor(df[:num_draws], dtype=DT)}, log_w)


def scipy_components(pred: Predictive):
    f, scale = pred.f.numpy(), pred.phi["scale"].numpy()
    if isinstance(pred.likelihood, NormalMarginal):
        return stats.norm(f, scale)
    return stats.t(pred.phi["df"].numpy()[:, None, None], f, scale)


@pytest.mark.parametrize("kind", ["normal", "student"])
def test_log_prob_and_cdf_match_scipy_mixture(kind):
    pred = mixture(kind)
    y = torch.tensor([-1.0, 0.2, 2.5, 7.0], dtype=DT)
    comps, w = scipy_components(pred), pred.weights.numpy()
    expected = logsumexp(comps.logpdf(y.numpy()[None, :, None])[..., 0] + np.log(w)[:, None], axis=0)
    np.testing.assert_allclose(pred.log_prob(y).numpy(), expected, rtol=1e-12)
    expected_cdf = np.tensordot(w, comps.cdf(y.numpy()[None, :, None]), axes=(0, 0))
    np.testing.assert_allclose(pred.cdf(y).numpy(), expected_cdf, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", ["normal", "student"])
def test_quantile_inverts_cdf(kind):
    pred = mixture(kind, m=2)
    q = torch.tensor([0.01, 0.3, 0.5, 0.95], dtype=DT)
    quantiles = pred.quantile(q, chunk_size=3)  # chunks slice the per-point scales
    assert quantiles.shape == (4, 4, 2)
    for k in range(4):
        np.testing.assert_allclose(pred.cdf(quantiles[k]).numpy(), float(q[k]), atol=1e-8)


def test_single_student_t_quantiles_and_interval_match_scipy():
    pred = mixture("student", num_draws=1, weights=(1.0,), df=(2.5,))
    comps = scipy_components(pred)
    np.testing.assert_allclose(pred.quantile([0.05, 0.9])[1].numpy(), comps.ppf(0.9)[0], rtol=1e-6)
    lower, upper = pred.interval(0.8)
    np.testing.assert_allclose(lower.numpy(), comps.ppf(0.1)[0], rtol=1e-6)
    np.testing.assert_allclose(upper.numpy(), comps.ppf(0.9)[0], rtol=1e-6)


@pytest.mark.parametrize("kind", ["normal", "student"])
def test_variance_is_the_law_of_total_variance(kind):
    pred = mixture(kind)
    w, f, scale = pred.weights[:, None, None], pred.f, pred.phi["scale"]
    if kind == "normal":
        component_var = scale**2
    else:
        df = pred.phi["df"][:, None, None]
        component_var = scale**2 * df / (df - 2)
    mean = (w * f).sum(0)
    expected = (w * (component_var + f**2)).sum(0) - mean**2
    torch.testing.assert_close(pred.mean, mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(pred.variance, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pred.variance.numpy(), scipy_mixture_variance(pred), rtol=1e-10)


def scipy_mixture_variance(pred):
    comps, w = scipy_components(pred), pred.weights.numpy()[:, None, None]
    mean = (w * comps.mean()).sum(0)
    return (w * (comps.var() + comps.mean() ** 2)).sum(0) - mean**2


def test_student_t_moments_need_enough_degrees_of_freedom():
    cauchy = mixture("student", df=(1.0, 5.0, 8.0))
    with pytest.raises(ValueError, match="mean is undefined"):
        cauchy.mean
    with pytest.raises(ValueError, match="is undefined"):
        cauchy.variance
    heavy = mixture("student", df=(1.5, 5.0, 8.0))
    assert bool(torch.isfinite(heavy.mean).all())
    assert bool(torch.isinf(heavy.variance).all())
    # quantiles, cdf and log_prob need no moments
    assert bool(torch.isfinite(cauchy.quantile(0.9)).all())
    assert bool(torch.isfinite(cauchy.log_prob(torch.zeros(4))).all())


def test_zero_weight_draws_do_not_poison_the_moments():
    pred = mixture("student", df=(1.5, 5.0, 8.0))
    pruned = Predictive(pred.f, pred.likelihood, pred.phi, torch.tensor([-math.inf, 0.0, 0.0], dtype=DT))
    assert bool(torch.isfinite(pruned.variance).all())
    only_last_two = Predictive(pred.f[1:], pred.likelihood, {k: v[1:] for k, v in pred.phi.items()})
    torch.testing.assert_close(pruned.variance, only_last_two.variance)


def test_student_t_sampling_is_seeded_and_follows_the_mixture():
    pred = mixture("student", n=2, df=(3.0, 5.0, 8.0))
    draws = pred.sample(20_000, generator=torch.Generator().manual_seed(1))
    again = pred.sample(20_000, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (20_000, 2, 1)
    assert torch.equal(draws, again)
    # the mixture CDF of the draws (PIT) is uniform: check its mean and one tail fraction
    pit = np.tensordot(pred.weights.numpy(), scipy_components(pred).cdf(draws.numpy()[:, None]), axes=(0, 1))
    num = pit.size
    assert abs(float(pit.mean()) - 0.5) < 3.5 * math.sqrt(1 / 12 / num)
    assert abs(float((pit < 0.1).mean()) - 0.1) < 3.5 * math.sqrt(0.09 / num)


def test_normal_marginal_sampling_uses_per_point_scales():
    f = torch.zeros(1, 2, 1, dtype=DT)
    pred = Predictive(f, NormalMarginal(), {"scale": torch.tensor([[[1.0], [10.0]]], dtype=DT)})
    draws = pred.sample(4000, generator=torch.Generator().manual_seed(0))[..., 0]
    sd = draws.std(0)
    assert abs(float(sd[0]) - 1.0) < 0.06 and abs(float(sd[1]) - 10.0) < 0.6


def test_metrics_accept_marginal_predictives():
    pred = mixture("student", n=4)
    y = torch.tensor([-1.0, 0.2, 2.5, 7.0], dtype=DT)
    assert nll(pred, y) == pytest.approx(float(-pred.log_prob(y).mean()))
    assert 0 <= coverage(pred, y, 0.9) <= 1


@pytest.mark.parametrize("phi, match", [
    ({}, r"phi\['scale'\] must have shape"),
    ({"scale": torch.ones(3, 4, dtype=DT)}, r"phi\['scale'\] must have shape"),
    ({"scale": -torch.ones(3, 4, 1, dtype=DT)}, r"phi\['scale'\] must be positive"),
    ({"scale": torch.full((3, 4, 1), math.nan, dtype=DT)}, r"phi\['scale'\] must be positive"),
    ({"scale": torch.ones(3, 5, 1, dtype=DT)}, "per-point entries"),
])
def test_normal_marginal_rejects_bad_scales(phi, match):
    with pytest.raises(ValueError, match=match):
        Predictive(torch.zeros(3, 4, 1, dtype=DT), NormalMarginal(), phi)


@pytest.mark.parametrize("df, match", [
    (None, r"phi\['df'\] must have shape"),
    (torch.ones(2, dtype=DT), "one entry per draw"),
    (torch.tensor([1.0, 0.0, 2.0], dtype=DT), r"phi\['df'\] must be positive"),
])
def test_student_t_marginal_rejects_bad_degrees_of_freedom(df, match):
    phi = {"scale": torch.ones(3, 4, 1, dtype=DT)}
    if df is not None:
        phi["df"] = df
    with pytest.raises(ValueError, match=match):
        Predictive(torch.zeros(3, 4, 1, dtype=DT), StudentTMarginal(), phi)


@pytest.mark.parametrize("df", [0.7, 3.0, 40.0, 1e6])
def test_student_t_log_prob_matches_scipy(df):
    from probnets.likelihoods import StudentTWithCDF

    d = StudentTWithCDF(torch.tensor(df, dtype=DT), torch.tensor(0.3, dtype=DT), torch.tensor(1.7, dtype=DT))
    x = torch.tensor([-5.0, 0.0, 2.0, 40.0], dtype=DT)
    np.testing.assert_allclose(d.log_prob(x).numpy(), stats.t(df, 0.3, 1.7).logpdf(x.numpy()), rtol=1e-12)


def test_student_t_with_huge_degrees_of_freedom_is_the_normal():
    """torch's Student-t log density cancels two lgamma terms of size df log df; ours stays exact."""
    from probnets.likelihoods import StudentTWithCDF

    x = torch.tensor([-5.0, 0.0, 2.0], dtype=DT)
    for df in (1e20, 1e118):
        d = StudentTWithCDF(torch.tensor(df, dtype=DT), torch.tensor(0.3, dtype=DT), torch.tensor(1.7, dtype=DT))
        np.testing.assert_allclose(d.log_prob(x).numpy(), stats.norm(0.3, 1.7).logpdf(x.numpy()), rtol=1e-13)
        np.testing.assert_allclose(d.cdf(x).numpy(), stats.norm(0.3, 1.7).cdf(x.numpy()), rtol=1e-12)


def test_lgamma_difference_is_accurate_on_both_branches():
    import mpmath  # a dependency of torch (through sympy)

    from probnets.likelihoods import lgamma_difference

    z = torch.tensor([0.3, 9.99, 10.0, 12.5, 1e3, 1e8, 1e15], dtype=DT)
    with mpmath.workdps(50):
        for h in (0.5, 120.0):
            exact = [float(mpmath.loggamma(mpmath.mpf(float(v)) + h) - mpmath.loggamma(float(v))) for v in z]
            np.testing.assert_allclose(lgamma_difference(z, h).numpy(), exact, rtol=1e-12, atol=1e-10)
