"""Resampling schemes: unbiased copy counts (MCSE bound), the low-variance guarantees, shapes and errors."""

import pytest
import torch

from inference.smc import resampling

SCHEMES = tuple(resampling.RESAMPLERS)


def counts(idx: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(*idx.shape[:-1], n, dtype=torch.float64).scatter_add_(-1, idx, torch.ones_like(idx, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_expected_copies_equal_num_times_weight(scheme, dtype):
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([0.05, 0.4, 0.15, 0.3, 0.1], dtype=dtype)
    reps = 4000
    idx = resampling.get(scheme)(w.expand(reps, 5), 7, generator=g)
    assert idx.shape == (reps, 7) and idx.dtype == torch.long
    c = counts(idx, 5)
    assert torch.all(c.sum(-1) == 7)
    mcse = c.std(0) / reps ** 0.5
    z = (c.mean(0) - 7 * w.double()) / mcse.clamp_min(1e-12)
    assert z.abs().max() < 3.5, z


@pytest.mark.parametrize("scheme", ["systematic", "residual"])
def test_each_particle_gets_at_least_floor_copies(scheme):
    g = torch.Generator().manual_seed(1)
    w = torch.distributions.Dirichlet(torch.ones(20, dtype=torch.float64)).sample((500,))
    c = counts(resampling.get(scheme)(w, generator=g), 20)
    assert torch.all(c >= torch.floor(20 * w))
    if scheme == "systematic":
        assert torch.all(c <= torch.ceil(20 * w))


def test_ess_and_normalise():
    assert resampling.effective_sample_size(torch.zeros(10)) == pytest.approx(10)
    lw = torch.tensor([0.0, -torch.inf, -torch.inf])
    assert resampling.effective_sample_size(lw) == pytest.approx(1)
    assert torch.equal(resampling.normalise(torch.tensor([0.0, float("nan")])), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="zero weight"):
        resampling.normalise(torch.full((2, 3), -torch.inf))


def test_errors():
    with pytest.raises(ValueError, match="resampling must be one of"):
        resampling.get("bootstrap")
    with pytest.raises(ValueError, match="N >= 1"):
        resampling.systematic(torch.ones(0))
    with pytest.raises(ValueError, match="num must be"):
        resampling.stratified(torch.ones(3), 0)
