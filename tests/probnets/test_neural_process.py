"""Neural processes: permutation invariance in the context, the Predictive contract over dtypes and context
sizes, a short meta-training run that learns and stays below the oracle GP, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from inference.amortized import train_amortized
from probnets import Predictive
from probnets.neural_process import CNP
from probnets.priors import GPTaskPrior


def test_context_permutation_invariance():
    torch.manual_seed(0)
    model = CNP(width=16).double()
    g = torch.Generator().manual_seed(1)
    cx, cy = torch.randn(2, 9, 1, generator=g, dtype=torch.float64), torch.randn(2, 9, 1, generator=g, dtype=torch.float64)
    x = torch.randn(2, 4, 1, generator=g, dtype=torch.float64)
    perm = torch.randperm(9, generator=g)
    for a, b in zip(model(cx, cy, x), model(cx[:, perm], cy[:, perm], x)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_context", [0, 1, 6])
def test_predictive_contract(dtype, num_context):
    torch.manual_seed(0)
    model = CNP(dim=2, width=16).to(dtype)
    g = torch.Generator().manual_seed(2)
    pred = model.predict(torch.randn(num_context, 2, generator=g, dtype=dtype),
                         torch.randn(num_context, generator=g, dtype=dtype), torch.randn(5, 2, generator=g, dtype=dtype))
    assert isinstance(pred, Predictive)
    assert pred.mean.shape == pred.variance.shape == (5, 1) and pred.mean.dtype == dtype
    assert bool((pred.variance >= model.min_scale**2 - 1e-6).all())
    assert pred.log_prob(torch.zeros(5, dtype=dtype)).shape == (5,)


def test_meta_training_learns_and_stays_below_the_oracle_gp():
    prior = GPTaskPrior("rbf")
    torch.manual_seed(0)
    model = CNP(width=64)
    held_out = prior.sample(500, num_context=10, num_target=20, generator=torch.Generator().manual_seed(99))

    def target_ll() -> torch.Tensor:
        with torch.no_grad():
            mean, scale = model(held_out.context_x, held_out.context_y, held_out.target_x)
            return torch.distributions.Normal(mean, scale).log_prob(held_out.target_y).mean((1, 2))

    before = target_ll()
    train_amortized(model, prior, num_steps=250, batch_size=16, lr=1e-3, progress=False)
    after = target_ll()
    _, oracle = prior.oracle_log_prob(held_out)
    gain, gap = after - before, oracle.double() - after.double()
    assert gain.mean() > 5 * gain.std() / math.sqrt(500)
    assert gap.mean() > 3.5 * gap.std() / math.sqrt(500)  # the exact GP with the true hyperparameters is better


def test_bad_input():
    model = CNP()
    x = torch.randn(3, 1)
    with pytest.raises(ValueError, match="context_x"):
        model.predict(torch.randn(3, 2), torch.zeros(3), x)
    with pytest.raises(ValueError, match="x must have shape"):
        model.predict(x, torch.zeros(3), x[:0])
    with pytest.raises(ValueError, match="NaN"):
        model.predict(x, torch.tensor([0.0, math.nan, 0.0]), x)
    with pytest.raises(TypeError, match="floating-point"):
        model.predict(x, torch.zeros(3, dtype=torch.long), x)
    with pytest.raises(ValueError, match="min_scale"):
        CNP(min_scale=1.5)
