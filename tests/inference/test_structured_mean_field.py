"""Structured SG-MCMC samples the mean-field (CAVI) solution and mixes faster (Alexos, Boyd and Mandt 2022).

Target ``N(0, [[1, 0.9], [0.9, 1]])`` with groups ``{x1}``, ``{x2}``: the mean-field solution is
``N(0, diag(1 / Lambda_kk)) = N(0, 0.19 I)``, no correlation; SGLD samples the posterior itself (variances 1,
correlation 0.9); the dropout variant's live probability ``p`` moves monotonically from the first to the second.

Exact references, fixed before any run. With an infinitely long history of independent draws, structured SGLD at
step ``h`` is the linear recursion ``x1' = x1 - h (L11 x1 + L12 x2_hist) + sqrt(2 h) xi``, whose stationary
variance is ``v_h = 2 / (2 L11 - h (L11**2 + L12**2))`` (0.1995 at ``h = 0.01``; 0.19 as ``h -> 0``). A finite
history adds the fluctuation of its mean: ``x1`` follows ``0.9`` times the mean of ``x2``'s buffer and vice
versa, a slow mode (contraction ``0.81`` per buffer length, the CAVI fixed-point iteration) whose excess variance
shrinks like ``autocorrelation time / buffer span``. Measured at the setting below (a buffer spanning 4000 steps,
chains started at the mean with no plain warm-up, as Alexos et al. start from a MAP estimate): variance +2% over ``v_h``, correlation
0.02; at a span of 1000 steps (stationary) +15% and 0.13. Declared allowance: 5% of ``v_h`` on variances and
0.05 on the correlation, on top of ``3.5`` Monte Carlo standard errors. The spec's ``0.19 +- 0.02`` is checked as
well. Chains are vectorised (512) to reach the sample size in a few thousand steps.
"""

import math

import pytest
import torch

import inference
from inference import diagnostics
from inference.testing import correlated_gaussian_2d

Z_BOUND = 3.5
TARGET = correlated_gaussian_2d(0.9, (1.0, 1.0))
STEP = 0.01
COMMON = dict(dim=2, step_size=STEP, thin=10, seed=1, progress=False, check_convergence=False)
STRUCTURED = dict(num_chains=512, num_warmup=4000, num_samples=6000, num_groups=2, history_length=1000,
                  history_thin=4, plain_warmup=0)
SGLD = dict(num_chains=512, num_warmup=2000, num_samples=6000)
#: Dropout variant: 4 passes, a buffer spanning 2000 steps; only the ordering in ``p`` is tested.
DROPOUT = dict(num_chains=256, num_warmup=2000, num_samples=2000, num_groups=2, num_passes=4, history_length=500,
               history_thin=4, plain_warmup=0)
FINITE_HISTORY_BIAS = 0.05
CORRELATION_BIAS = 0.05


def _run(method, **settings):
    init = torch.zeros(settings["num_chains"], 2, dtype=torch.float64)
    return inference.sample(TARGET, method=method, init=init, **COMMON, **settings).samples


@pytest.fixture(scope="module")
def structured():
    return _run("structured-sgld", **STRUCTURED)


@pytest.fixture(scope="module")
def sgld():
    return _run("sgld", **SGLD)


def _moments(draws):
    """Per-coordinate second moments, the correlation, and their Monte Carlo standard errors."""
    square = draws.square()
    variance = square.mean((0, 1))
    variance_se = torch.stack([diagnostics.mcse_mean(square[..., i]) for i in range(2)])
    scale = variance.prod().sqrt()
    correlation = (draws[..., 0] * draws[..., 1]).mean() / scale
    correlation_se = diagnostics.mcse_mean(draws[..., 0] * draws[..., 1]) / scale
    return variance, variance_se, float(correlation), float(correlation_se)


def _autocorrelation_time(draws):
    """Iterations per effective draw of each coordinate (bulk ESS), in sampler steps."""
    return torch.tensor([draws.shape[0] * draws.shape[1] * COMMON["thin"] / float(diagnostics.ess_bulk(draws[..., i]))
                         for i in range(2)])


def _stationary_variance(step):
    """``v_h`` of the module docstring."""
    precision = TARGET.precision
    return float(2 / (2 * precision[0, 0] - step * (precision[0, 0] ** 2 + precision[0, 1] ** 2)))


def test_structured_sgld_samples_the_mean_field_solution(structured):
    variance, variance_se, correlation, correlation_se = _moments(structured)
    reference = _stationary_variance(STEP)
    assert reference == pytest.approx(0.1995, abs=5e-4)
    for i in range(2):
        assert abs(float(variance[i]) - 0.19) < 0.02, variance
        allowed = Z_BOUND * float(variance_se[i]) + FINITE_HISTORY_BIAS * reference
        assert abs(float(variance[i]) - reference) < allowed, (variance, variance_se)
        mean = structured[..., i]
        assert abs(float(mean.mean())) < Z_BOUND * float(diagnostics.mcse_mean(mean))
    assert abs(correlation) < Z_BOUND * correlation_se + CORRELATION_BIAS, (correlation, correlation_se)


def test_sgld_samples_the_correlated_posterior(sgld):
    """The comparison point: SGLD's exact stationary law at this step is within 1% of the posterior."""
    variance, variance_se, correlation, correlation_se = _moments(sgld)
    for i in range(2):
        assert abs(float(variance[i]) - 1.0) < Z_BOUND * float(variance_se[i]) + 0.01, variance
    assert abs(correlation - 0.9) < Z_BOUND * correlation_se + 0.01, correlation


def test_structured_chains_mix_faster_than_sgld(structured, sgld):
    """SGLD's slow direction (precision eigenvalue 1 / 1.9) decorrelates in ~``1 / (h * 0.53)`` = 190 steps;
    each structured group only feels its conditional precision 5.26 (~19 steps), plus the history's slow mode.
    Measured autocorrelation times: ~110 against ~450 steps."""
    assert (_autocorrelation_time(structured) < _autocorrelation_time(sgld) / 2).all()


def test_dropout_live_probability_interpolates_monotonically(structured, sgld):
    """Variances and correlation increase strictly with ``p`` from the plain structured chain (mean field) to
    SGLD (``p = 1`` is SGLD): every step apart by more than ``3.5`` combined standard errors."""
    runs = [_moments(structured)]
    runs += [_moments(_run("structured-sgld", live_probability=p, **DROPOUT)) for p in (0.2, 0.5, 0.8)]
    runs.append(_moments(sgld))
    for (v_low, se_low, c_low, cse_low), (v_high, se_high, c_high, cse_high) in zip(runs, runs[1:]):
        assert ((v_high - v_low) > Z_BOUND * (se_low**2 + se_high**2).sqrt()).all(), (v_low, v_high)
        assert c_high - c_low > Z_BOUND * math.hypot(cse_low, cse_high), (c_low, c_high)
