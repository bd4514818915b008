"""Smoke tests of benchmarks/sgmcmc.py (protocol H2): every runner takes one epoch from the same weights and returns
draws in probnets' flat layout; the target table says pass, fail or n/a."""

import pytest
import torch

from tests_support import load_script


@pytest.fixture(scope="module")
def h2():
    return load_script("benchmarks/sgmcmc.py")


@pytest.mark.parametrize("label", ["probnets SGLD", "posteriors SGLD (like-for-like)", "posteriors SGHMC (best)",
                                   "torch SGLD"])
def test_each_runner_returns_finite_draws_in_the_flat_layout(h2, label):
    pytest.importorskip("posteriors")
    config = next(c for c in h2.CONFIGS if c["label"] == label)
    x, y, _, _ = h2.digits_split(torch.float32)
    samples, wall, cpu, divergences = h2.RUNNERS[config["runner"]](config, 0, 1, 0, x[:256], y[:256])
    assert samples.reshape(-1, h2._model().spec.dim).shape == (1, h2._model().spec.dim)
    assert bool(torch.isfinite(samples).all()) and divergences == 0 and wall > 0 and cpu > 0


def test_cycles_end_with_the_run(h2):
    assert h2._cycle_epochs(50, 20) == 10
    assert 4 % h2._cycle_epochs(4, 2) == 0


def _row(label, time_per_epoch, nll, ece, ess_per_s=1.0):
    return dict(label=label, time_per_epoch=time_per_epoch, nll=nll, ece=ece, ess_per_s=ess_per_s)


def test_targets_pass_fail_and_missing(h2):
    summary = [_row("probnets SGLD", 1.0, 0.30, 0.02), _row("torch SGLD", 1.0, 0.31, 0.02),
               _row("posteriors SGLD (like-for-like)", 5.0, 0.31, 0.03),
               _row("probnets SGHMC", 2.0, 0.40, 0.02, ess_per_s=2.0),
               _row("posteriors SGHMC (like-for-like)", 4.0, 0.35, 0.02)]
    checks = {c["target"]: c["passed"] for c in h2.targets(summary)}
    assert checks["probnets SGLD time/epoch <= 1.15x torch SGLD"] is True
    assert checks["probnets SGLD >= 4x faster than posteriors"] is True
    assert checks["probnets SGLD NLL and ECE <= posteriors'"] is True
    assert checks["probnets SGHMC time/epoch <= 1.15x torch SGLD"] is False
    assert checks["probnets SGHMC >= 4x faster than posteriors"] is False
    assert checks["probnets SGHMC NLL and ECE <= posteriors'"] is False
    assert checks["structured SGHMC ESS/s >= 1.5x SGHMC at equal or better NLL"] is None
    summary.append(_row("probnets structured SGHMC", 2.0, 0.39, 0.02, ess_per_s=3.5))
    checks = {c["target"]: c["passed"] for c in h2.targets(summary)}
    assert checks["structured SGHMC ESS/s >= 1.5x SGHMC at equal or better NLL"] is True
