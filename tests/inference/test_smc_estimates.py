"""Estimates across weighted SMC populations: weighted means and quantiles, the log-evidence combination and its
MCSE, the cross-population R-hat (exact values on small hand-made populations, and R-hat near 1 for populations
drawn from one distribution against clearly above 1 for shifted ones)."""

import math

import pytest
import torch

from inference.smc import estimates
from inference.smc.posterior import weighted_quantiles


def test_weighted_means_and_quantiles():
    values = torch.tensor([[[0.0], [1.0], [2.0], [3.0]]], dtype=torch.float64)
    log_weights = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64))
    assert float(estimates.population_means(values, log_weights)) == pytest.approx(2.0)
    assert float(weighted_quantiles(values, log_weights, 0.5)) == 2.0
    assert float(weighted_quantiles(values, log_weights, 0.05)) == 0.0
    assert float(weighted_quantiles(values, log_weights, 0.95)) == 3.0
    zero = torch.tensor([[0.0, -torch.inf, 0.0, -torch.inf]], dtype=torch.float64)
    assert float(estimates.population_means(values, zero)) == pytest.approx(1.0)  # -inf weights drop out


def test_log_evidence_is_the_log_of_the_mean_evidence_with_its_delta_method_mcse():
    log_z = torch.log(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    value, mcse = estimates.log_evidence(log_z)
    assert value == pytest.approx(math.log(2.0))
    assert mcse == pytest.approx(float(torch.tensor([0.5, 1.0, 1.5]).std()) / math.sqrt(3))
    assert math.isnan(estimates.log_evidence(log_z[:1])[1])


def test_rhat_is_near_one_for_agreeing_populations_only():
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(8, 2000, 1, generator=g, dtype=torch.float64)
    uniform = torch.full((8, 2000), -math.log(2000), dtype=torch.float64)
    assert float(estimates.rhat(draws, uniform)) < 1.01
    shifted = draws + torch.arange(8, dtype=torch.float64).reshape(8, 1, 1) * 0.5
    assert float(estimates.rhat(shifted, uniform)) > 1.2
    assert float(estimates.total_ess(uniform)) == pytest.approx(16000)
    assert torch.isnan(estimates.mcse(torch.ones(1, 3))).all()
