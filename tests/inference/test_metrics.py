"""Tests of inference.metrics against hand-computed values, direct reference implementations and
Monte Carlo estimates with explicit standard-error bounds."""

import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm

from inference import metrics
from inference.metrics import (accuracy, brier, calibration_curve, coverage, crps, ece, evaluate, nll,
                               rmse)
from probnets import BNN, Bernoulli, Categorical, Gaussian, Predictive

DT = torch.float64
LOG_NOISE = Gaussian.PARAM


# --------------------------------------------------------------------------------------------------
# Predictive builders


def gaussian_mixture(means, noise=1.0, weights=None) -> Predictive:
    """Mixture with fixed noise; ``means`` ``S x n`` (one output) or ``S x n x m``."""
    f = torch.as_tensor(means, dtype=DT)
    f = f.unsqueeze(-1) if f.dim() == 2 else f
    log_w = None if weights is None else torch.as_tensor(weights, dtype=DT).log()
    return Predictive(f, Gaussian(noise_scale=noise), log_weights=log_w)


def learned_noise_mixture(means, scales, weights=None) -> Predictive:
    """Mixture whose components have their own noise scales (a learned-noise posterior), ``S x n``."""
    f = torch.as_tensor(means, dtype=DT).unsqueeze(-1)
    phi = {LOG_NOISE: torch.as_tensor(scales, dtype=DT).log()}
    log_w = None if weights is None else torch.as_tensor(weights, dtype=DT).log()
    return Predictive(f, Gaussian(noise_prior=dist.LogNormal(0.0, 1.0)), phi, log_w)


def classifier(probs) -> Predictive:
    """Single-draw categorical predictive with exactly the class probabilities ``probs`` ``n x K``."""
    probs = torch.as_tensor(probs, dtype=DT)
    return Predictive(probs.log()[None], Categorical(probs.shape[-1]))


def bernoulli(p1) -> Predictive:
    p1 = torch.as_tensor(p1, dtype=DT)
    return Predictive(torch.logit(p1)[None, :, None], Bernoulli())


def bnn_regression(num_draws=20, n=6, seed=0) -> Predictive:
    g = torch.Generator().manual_seed(seed)
    model = BNN(2, [8])
    theta = model.init_theta(num_draws, generator=g, dtype=DT)
    theta[:, -1] += 0.5 * torch.randn(num_draws, generator=g, dtype=DT)  # spread the noise scales
    return model.predictive(theta, torch.randn(n, 2, generator=g, dtype=DT))


def bnn_classifier(num_classes=4, num_draws=10, n=500, seed=0) -> tuple[Predictive, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lik = Categorical(num_classes) if num_classes > 2 else Bernoulli()
    model = BNN(3, [16], num_classes, likelihood=lik)
    theta = 2.0 * model.init_theta(num_draws, generator=g, dtype=DT)
    theta += 0.3 * torch.randn(theta.shape, generator=g, dtype=DT)
    pred = model.predictive(theta, torch.randn(n, 3, generator=g, dtype=DT))
    return pred, torch.randint(0, num_classes, (n,), generator=g)


def independent_targets(pred: Predictive, seed: int) -> torch.Tensor:
    """One draw of ``y`` per point, independent across points (``Predictive.sample`` shares the mixture
    component across the points of a sample, which correlates them), ``n x m``."""
    g = torch.Generator().manual_seed(seed)
    n = pred.f.shape[1]
    component = torch.multinomial(pred.weights, n, replacement=True, generator=g)
    points = torch.arange(n)
    scale = pred.likelihood.scale({k: v[component] for k, v in pred.phi.items()})
    noise = torch.randn(pred.f.shape[1:], generator=g, dtype=pred.f.dtype)
    return pred.f[component, points] + torch.as_tensor(scale, dtype=pred.f.dtype).reshape(-1, 1) * noise


# --------------------------------------------------------------------------------------------------
# Reference implementations


def crps_by_quadrature(means, sds, weights, y) -> float:
    """``int (F(t) - 1[t >= y])^2 dt`` of a 1-D Gaussian mixture, by adaptive quadrature."""
    means, sds, weights = map(np.asarray, (means, sds, weights))

    def cdf(t):
        return float(np.sum(weights * norm.cdf((t - means) / sds)))

    lo = min(float(np.min(means - 15 * sds)), y)
    hi = max(float(np.max(means + 15 * sds)), y)
    below = quad(lambda t: cdf(t) ** 2, lo, y, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    above = quad(lambda t: (1 - cdf(t)) ** 2, y, hi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    return below + above


def single_gaussian_crps(mu, sd, y) -> float:
    z = (y - mu) / sd
    return sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def numpy_ece(probs: np.ndarray, labels: np.ndarray, num_bins: int) -> float:
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = (predicted == labels).astype(float)
    edges = np.linspace(0, 1, num_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return total / len(labels)


def binomial_bound(p: float, n: int) -> float:
    return 4 * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------------------------------
# RMSE and NLL


def test_rmse_of_uniform_and_weighted_mixture_means():
    means = [[1.0, 3.0], [3.0, 5.0]]
    y = torch.tensor([2.0, 6.0])
    assert rmse(gaussian_mixture(means), y) == pytest.approx(math.sqrt(2.0), abs=1e-14)
    # weights (1/4, 3/4): means (2.5, 4.5), errors (0.5, -1.5)
    assert rmse(gaussian_mixture(means, weights=[1.0, 3.0]), y) == pytest.approx(math.sqrt(1.25), abs=1e-14)


def test_rmse_multi_output_averages_per_output_rmse():
    means = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # S=1, n=2, m=2
    y = torch.tensor([[1.0, 1.0], [-1.0, 4.0]])
    # output 0: errors (1, 1) -> 1; output 1: errors (0, 3) -> sqrt(4.5)
    assert rmse(gaussian_mixture(means), y) == pytest.approx((1 + math.sqrt(4.5)) / 2, abs=1e-14)


def test_nll_of_two_component_mixture_by_hand():
    pred = gaussian_mixture([[-1.0, -1.0], [1.0, 1.0]], noise=1.0)
    y = np.array([0.0, 1.0])
    point0 = 0.5 * math.log(2 * math.pi) + 0.5  # both components give phi(1)
    point1 = -math.log(0.5 * (norm.pdf(2.0) + norm.pdf(0.0)))
    assert nll(pred, y) == pytest.approx((point0 + point1) / 2, abs=1e-13)


def test_nll_of_classifiers_by_hand():
    probs = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    assert nll(classifier(probs), [0, 1]) == pytest.approx(-(math.log(0.7) + math.log(0.1)) / 2, abs=1e-13)
    assert nll(bernoulli([0.8, 0.3]), [1, 1]) == pytest.approx(-(math.log(0.8) + math.log(0.3)) / 2, abs=1e-13)


def test_nll_standard_error_by_hand():
    pred = gaussian_mixture([[0.0, 0.0, 0.0]], noise=1.0)
    y = np.array([0.0, 1.0, 3.0])
    pointwise = 0.5 * math.log(2 * math.pi) + 0.5 * y**2
    assert metrics.nll_standard_error(pred, y) == pytest.approx(np.std(pointwise, ddof=1) / math.sqrt(3), abs=1e-13)
    probs = [[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]]
    pointwise = -np.log([0.7, 0.8, 0.5])
    assert metrics.nll_standard_error(classifier(probs), [0, 1, 1]) == pytest.approx(
        np.std(pointwise, ddof=1) / math.sqrt(3), abs=1e-13)
    with pytest.raises(ValueError, match="at least 2 points"):
        metrics.nll_standard_error(gaussian_mixture([[0.0]]), [0.0])


def test_nll_of_mixture_classifier_uses_mixture_probabilities():
    # two draws with probabilities 0.9 and 0.5 of class 1: the mixture gives 0.7, not exp(mean log p)
    pred = Predictive(torch.logit(torch.tensor([0.9, 0.5], dtype=DT))[:, None, None], Bernoulli())
    assert nll(pred, [1]) == pytest.approx(-math.log(0.7), abs=1e-13)


# --------------------------------------------------------------------------------------------------
# CRPS


@pytest.mark.parametrize("num_copies", [1, 7])
def test_crps_equals_single_gaussian_closed_form(num_copies):
    mu, sd = torch.tensor([0.3, -1.0, 2.0], dtype=DT), 0.7
    y = torch.tensor([0.0, 1.5, 2.0], dtype=DT)
    pred = gaussian_mixture(mu.expand(num_copies, -1), noise=sd)
    expected = np.mean([single_gaussian_crps(float(m), sd, float(t)) for m, t in zip(mu, y)])
    assert crps(pred, y) == pytest.approx(expected, abs=1e-14)


def test_crps_of_two_component_mixture_by_hand():
    # y = 0 under 0.5 N(-1, 1) + 0.5 N(1, 1): E|X - y| = E|N(1, 1)|;
    # E|X - X'| = 0.5 E|N(0, 2)| + 0.5 E|N(2, 2)|.
    pred = gaussian_mixture([[-1.0], [1.0]], noise=1.0)
    to_target = math.erf(1 / math.sqrt(2)) + math.sqrt(2 / math.pi) * math.exp(-0.5)
    between = 0.5 * (2 / math.sqrt(math.pi)) + 0.5 * (2 * math.erf(1.0) + 2 / math.sqrt(math.pi) * math.exp(-1.0))
    assert crps(pred, [0.0]) == pytest.approx(to_target - 0.5 * between, abs=1e-15)


def test_crps_of_weighted_mixture_with_per_component_noise_matches_quadrature():
    means = torch.tensor([[-1.0, 0.0, 4.0], [0.5, 0.2, 4.1], [2.0, -3.0, 3.9]], dtype=DT)
    scales, weights = [0.3, 1.2, 0.8], [0.5, 0.2, 0.3]
    y = [0.1, 5.0, 3.0]
    pred = learned_noise_mixture(means, scales, weights)
    expected = [crps_by_quadrature(means[:, i].numpy(), scales, weights, y[i]) for i in range(3)]
    per_point = metrics.gaussian_mixture_crps(pred, torch.tensor(y, dtype=DT)[:, None])
    np.testing.assert_allclose(per_point[:, 0].numpy(), expected, rtol=0, atol=1e-10)
    assert crps(pred, y) == pytest.approx(np.mean(expected), abs=1e-10)


def test_crps_agrees_with_monte_carlo_within_four_standard_errors():
    pred = bnn_regression(num_draws=20, n=6)
    g = torch.Generator().manual_seed(1)
    y = pred.sample(1, generator=g)[0]  # n x 1
    num = 200_000
    x, x_prime = pred.sample(num, generator=g), pred.sample(num, generator=g)
    terms = ((x - y).abs() - 0.5 * (x - x_prime).abs())[..., 0]  # num x n
    mc_mean, mc_se = terms.mean(0), terms.std(0) / math.sqrt(num)
    exact = metrics.gaussian_mixture_crps(pred, y)[:, 0]
    assert bool(((exact - mc_mean).abs() < 4 * mc_se).all()), (exact, mc_mean, mc_se)
    overall_se = terms.mean(1).std() / math.sqrt(num)
    assert abs(crps(pred, y) - float(mc_mean.mean())) < 4 * float(overall_se)


def test_crps_blocking_does_not_change_the_result(monkeypatch):
    pred = bnn_regression(num_draws=13, n=5)
    y = torch.zeros(5, dtype=DT)
    unblocked = crps(pred, y)
    monkeypatch.setattr(metrics, "_PAIR_BLOCK_ELEMENTS", 7)  # 1 point and 1 row per block
    assert crps(pred, y) == pytest.approx(unblocked, abs=1e-14)
    monkeypatch.setattr(metrics, "_PAIR_BLOCK_ELEMENTS", 40)  # 3 points, 3 rows per block
    assert crps(pred, y) == pytest.approx(unblocked, abs=1e-14)


def test_crps_subset_estimate_is_seeded_and_unbiased():
    pred = bnn_regression(num_draws=60, n=3)
    y = torch.tensor([0.0, 0.5, -0.5], dtype=DT)
    exact = crps(pred, y)
    assert crps(pred, y, max_pairwise=60) == exact
    assert crps(pred, y, max_pairwise=10, seed=3) == crps(pred, y, max_pairwise=10, seed=3)
    estimates = torch.tensor([crps(pred, y, max_pairwise=10, seed=s) for s in range(300)], dtype=DT)
    assert estimates.std() > 0
    assert abs(float(estimates.mean()) - exact) < 4 * float(estimates.std()) / math.sqrt(300)


def test_crps_subset_estimate_with_one_wild_draw_stays_near_the_exact_value():
    """One draw far off (a divergent SG-MCMC draw): the subset estimate must not explode when it misses it."""
    pred = bnn_regression(num_draws=400, n=3)
    pred.f[7] += 1e7
    y = torch.tensor([0.0, 0.5, -0.5], dtype=DT)
    exact = crps(pred, y)
    assert exact < 1e7 / 400  # the exact CRPS: the wild draw's terms cancel to O(1e7 / S^2)
    estimates = [crps(pred, y, max_pairwise=50, seed=s) for s in range(20)]
    assert max(abs(e - exact) for e in estimates) < 1e7 / 50 ** 2 + 1.0


class PointwiseNoise(Gaussian):
    """Gaussian noise whose scale differs per point and output: ``0.2 + 0.5 |f|``."""

    def distribution(self, f, phi):
        return dist.Normal(f, 0.2 + 0.5 * f.abs())


@pytest.mark.parametrize("block_elements", [2**19, 5])
def test_crps_with_pointwise_noise_scales_matches_quadrature(monkeypatch, block_elements):
    monkeypatch.setattr(metrics, "_PAIR_BLOCK_ELEMENTS", block_elements)
    g = torch.Generator().manual_seed(8)
    means, weights = torch.randn(4, 3, 2, generator=g, dtype=DT), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DT)
    y = torch.randn(3, 2, generator=g, dtype=DT)
    pred = Predictive(means, PointwiseNoise(noise_scale=1.0), log_weights=weights.log())
    per_point = metrics.gaussian_mixture_crps(pred, y)
    for i in range(3):
        for j in range(2):
            mu = means[:, i, j].numpy()
            expected = crps_by_quadrature(mu, 0.2 + 0.5 * np.abs(mu), weights.numpy(), float(y[i, j]))
            assert float(per_point[i, j]) == pytest.approx(expected, abs=1e-10)


def test_crps_of_non_gaussian_regression_likelihood_is_not_implemented():
    class Laplace(Gaussian):
        def distribution(self, f, phi):
            return dist.Laplace(f, self.noise_scale)

    pred = Predictive(torch.zeros(2, 3, 1, dtype=DT), Laplace(noise_scale=1.0))
    with pytest.raises(NotImplementedError, match="Gaussian"):
        crps(pred, torch.zeros(3))


# --------------------------------------------------------------------------------------------------
# Coverage and the regression calibration curve


def test_coverage_of_standard_normal_by_hand():
    pred = gaussian_mixture(torch.zeros(1, 4), noise=1.0)  # 90% interval: +-1.6449
    assert coverage(pred, [0.0, 1.6, 1.7, -2.0], level=0.9) == 0.5
    assert coverage(pred, [0.0, 1.6, 1.7, -2.0], level=0.95) == 0.75  # +-1.96


def test_coverage_of_correctly_specified_predictive_is_nominal():
    n = 4000
    pred = bnn_regression(num_draws=30, n=n, seed=2)
    y = independent_targets(pred, seed=5)
    observed = coverage(pred, y, level=0.9)
    assert abs(observed - 0.9) < binomial_bound(0.9, n)
    # the PIT shortcut agrees exactly with the bisection interval (checked on 400 points for speed)
    head = Predictive(pred.f[:, :400], pred.likelihood, pred.phi)
    lower, upper = head.interval(0.9)
    inside_interval = ((y[:400] >= lower) & (y[:400] <= upper)).to(DT).mean()
    assert coverage(head, y[:400], level=0.9) == float(inside_interval)


def test_regression_calibration_curve_is_nominal_and_monotone():
    n = 3000
    pred = bnn_regression(num_draws=25, n=n, seed=3)
    y = independent_targets(pred, seed=6)
    levels, observed = calibration_curve(pred, y)
    np.testing.assert_allclose(levels.numpy(), np.arange(1, 20) * 0.05, atol=1e-12)
    assert bool((observed.diff() >= 0).all())
    for level, obs in zip(levels.tolist(), observed.tolist()):
        assert abs(obs - level) < binomial_bound(level, n)
    assert float(observed[-1]) == coverage(pred, y, level=0.95)


def test_calibration_curve_of_overdispersed_predictive_lies_above_diagonal():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2000, generator=g, dtype=DT)
    _, observed = calibration_curve(gaussian_mixture(torch.zeros(1, 2000), noise=2.0), y, [0.5])
    expected = 2 * norm.cdf(2 * norm.ppf(0.75)) - 1  # |y| <= 2 * 0.674 for y ~ N(0, 1)
    assert abs(float(observed[0]) - expected) < binomial_bound(expected, 2000)


# --------------------------------------------------------------------------------------------------
# Classification


def test_accuracy_by_hand_including_bernoulli():
    probs = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]]
    assert accuracy(classifier(probs), [0, 1, 1]) == pytest.approx(2 / 3)
    assert accuracy(bernoulli([0.8, 0.3, 0.6]), [1, 1, 0]) == pytest.approx(1 / 3)


def test_brier_by_hand_including_two_class_bernoulli_form():
    # (0.3^2 + 0.2^2 + 0.1^2) and (0.7^2 + 0.2^2 + 0.9^2)
    expected = (0.14 + 1.34) / 2
    assert brier(classifier([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]), [0, 2]) == pytest.approx(expected, abs=1e-14)
    assert brier(bernoulli([0.8, 0.8]), [1, 0]) == pytest.approx((2 * 0.04 + 2 * 0.64) / 2, abs=1e-14)


def test_ece_is_zero_for_calibrated_and_the_gap_for_overconfident():
    labels = torch.tensor([0] * 8 + [1] * 2)
    calibrated = classifier(torch.tensor([[0.8, 0.2]], dtype=DT).expand(10, -1))  # 80% confident, 8/10 right
    assert ece(calibrated, labels) == pytest.approx(0.0, abs=1e-14)
    labels = torch.tensor([0] * 6 + [1] * 4)
    overconfident = classifier(torch.tensor([[0.9, 0.1]], dtype=DT).expand(10, -1))  # 90% confident, 6/10 right
    assert ece(overconfident, labels) == pytest.approx(0.3, abs=1e-14)


def test_ece_weights_bins_by_counts():
    # 4 points at confidence 0.95 with 2 right (gap 0.45); 6 at 0.55 with 3 right (gap 0.05)
    probs = [[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 6
    labels = [0, 0, 1, 1, 0, 0, 0, 1, 1, 1]
    assert ece(classifier(probs), labels) == pytest.approx((4 * 0.45 + 6 * 0.05) / 10, abs=1e-14)


@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("num_bins", [15, 7])
def test_ece_matches_direct_numpy_implementation(num_classes, num_bins):
    pred, labels = bnn_classifier(num_classes)
    expected = numpy_ece(pred.probs.numpy(), labels.numpy(), num_bins)
    assert expected > 0.01
    assert ece(pred, labels, num_bins=num_bins) == pytest.approx(expected, abs=1e-13)


def test_confidence_of_one_falls_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=DT)
    conf, acc, counts = calibration_curve(classifier(probs), [0, 1])
    assert counts[-1] == 1 and conf[-1] == 1.0 and acc[-1] == 1.0
    assert counts[7] == 1 and conf[7] == 0.5 and acc[7] == 0.0  # 0.5 in (7/15, 8/15]; tie -> class 0
    assert int(counts.sum()) == 2 and bool(torch.isnan(conf[0]))


def test_reliability_diagram_matches_numpy_bins():
    pred, labels = bnn_classifier(4)
    conf, acc, counts = calibration_curve(pred, labels)
    assert conf.shape == acc.shape == counts.shape == (15,)
    assert int(counts.sum()) == len(labels)
    p = pred.probs.numpy()
    top, correct = p.max(1), p.argmax(1) == labels.numpy()
    edges = np.linspace(0, 1, 16)
    for b in range(15):
        inside = (top > edges[b]) & (top <= edges[b + 1])
        assert counts[b] == inside.sum()
        if inside.any():
            assert float(conf[b]) == pytest.approx(top[inside].mean(), abs=1e-14)
            assert float(acc[b]) == pytest.approx(correct[inside].mean(), abs=1e-14)
    gaps = np.nan_to_num(np.abs(acc.numpy() - conf.numpy())) * counts.numpy()
    assert ece(pred, labels) == pytest.approx(gaps.sum() / len(labels), abs=1e-14)


# --------------------------------------------------------------------------------------------------
# evaluate and original units


def test_evaluate_regression_and_classification_keys_and_values():
    pred = bnn_regression(num_draws=10, n=50)
    y = pred.sample(1, generator=torch.Generator().manual_seed(0))[0, :, 0]
    result = evaluate(pred, y, level=0.8)
    assert result == {"rmse": rmse(pred, y), "nll": nll(pred, y), "crps": crps(pred, y),
                      "coverage_0.8": coverage(pred, y, 0.8)}
    assert all(isinstance(v, float) for v in result.values())
    cls, labels = bnn_classifier(3, n=100)
    assert evaluate(cls, labels) == {"accuracy": accuracy(cls, labels), "nll": nll(cls, labels),
                                     "ece": ece(cls, labels), "brier": brier(cls, labels)}


@pytest.mark.parametrize("learned", [False, True])
def test_y_scale_matches_recomputing_in_original_units(learned):
    scale, shift = 2.5, -3.0
    g = torch.Generator().manual_seed(4)
    means, noise = torch.randn(8, 30, generator=g, dtype=DT), 0.6
    y_std = torch.randn(30, generator=g, dtype=DT)
    if learned:
        scales = noise * torch.rand(8, generator=g, dtype=DT).add(0.5)
        standard = learned_noise_mixture(means, scales)
        original = learned_noise_mixture(scale * means + shift, scale * scales)
    else:
        standard = gaussian_mixture(means, noise)
        original = gaussian_mixture(scale * means + shift, scale * noise)
    y_orig = scale * y_std + shift
    in_std = evaluate(standard, y_std, y_scale=scale)
    in_orig = evaluate(original, y_orig)
    assert in_std.keys() == in_orig.keys()
    for key in in_std:
        assert in_std[key] == pytest.approx(in_orig[key], rel=1e-12, abs=1e-12), key
    assert nll(standard, y_std, y_scale=scale) == pytest.approx(nll(standard, y_std) + math.log(scale), abs=1e-12)


def test_per_output_y_scale_matches_original_units_density():
    g = torch.Generator().manual_seed(7)
    means, noise = torch.randn(5, 20, 2, generator=g, dtype=DT), 0.4
    y_std = torch.randn(20, 2, generator=g, dtype=DT)
    scale, shift = torch.tensor([2.0, 0.5], dtype=DT), torch.tensor([1.0, -4.0], dtype=DT)
    pred = gaussian_mixture(means, noise)
    y_orig, means_orig = scale * y_std + shift, scale * means + shift
    per_output_rmse = (means_orig.mean(0) - y_orig).pow(2).mean(0).sqrt()
    assert rmse(pred, y_std, y_scale=scale) == pytest.approx(float(per_output_rmse.mean()), abs=1e-12)
    log_density = torch.distributions.Normal(means_orig, scale * noise).log_prob(y_orig).sum(-1)
    expected_nll = -(torch.logsumexp(log_density, 0) - math.log(5)).mean()
    assert nll(pred, y_std, y_scale=scale) == pytest.approx(float(expected_nll), abs=1e-12)
    per_output_crps = metrics.gaussian_mixture_crps(pred, y_std).mean(0)
    assert crps(pred, y_std, y_scale=scale) == pytest.approx(float((per_output_crps * scale).mean()), abs=1e-14)


def test_float32_predictive_gives_python_floats():
    pred = Predictive(torch.randn(4, 6, 1), Gaussian(noise_scale=0.5))
    result = evaluate(pred, np.zeros(6, dtype=np.float32))
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())


# --------------------------------------------------------------------------------------------------
# Input validation


@pytest.mark.parametrize("metric", [rmse, nll, crps, coverage, calibration_curve])
def test_regression_targets_are_validated(metric):
    pred = gaussian_mixture(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\by\b.*\(4\)"):
        metric(pred, torch.zeros(3))
    with pytest.raises(ValueError, match=r"\by\b.*NaN"):
        metric(pred, torch.tensor([0.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"\by\b"):
        metric(pred, torch.zeros(4, 2))


@pytest.mark.parametrize("metric", [accuracy, nll, ece, brier, calibration_curve])
def test_class_targets_are_validated(metric):
    pred = classifier(torch.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"\by\b.*\(4\)"):
        metric(pred, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\by\b.*NaN"):
        metric(pred, torch.tensor([0.0, float("nan"), 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\by\b"):
        metric(pred, torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("metric", [rmse, crps, coverage])
def test_regression_metric_on_classifier_is_rejected(metric):
    with pytest.raises(ValueError, match="regression predictives only"):
        metric(classifier([[0.5, 0.5]]), [0])


@pytest.mark.parametrize("metric", [accuracy, ece, brier])
def test_classification_metric_on_regression_is_rejected(metric):
    with pytest.raises(ValueError, match="classification predictives only"):
        metric(gaussian_mixture([[0.0]]), [0.0])


def test_bad_arguments_are_rejected():
    reg, cls = gaussian_mixture([[0.0, 1.0]]), classifier([[0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(ValueError, match="level"):
        coverage(reg, [0.0, 1.0], level=1.0)
    with pytest.raises(ValueError, match="levels"):
        calibration_curve(reg, [0.0, 1.0], [0.5, 1.5])
    with pytest.raises(ValueError, match="y_scale"):
        rmse(reg, [0.0, 1.0], y_scale=-1.0)
    with pytest.raises(ValueError, match="y_scale"):
        rmse(reg, [0.0, 1.0], y_scale=[1.0, 2.0])
    with pytest.raises(ValueError, match="y_scale"):
        evaluate(cls, [0, 1], y_scale=2.0)
    with pytest.raises(ValueError, match="num_bins"):
        ece(cls, [0, 1], num_bins=0)
    for metric in (rmse, nll, accuracy, calibration_curve, evaluate):
        with pytest.raises(TypeError, match="pred"):
            metric(torch.zeros(3), [0.0, 1.0, 2.0])
