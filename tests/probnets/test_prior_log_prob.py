"""``probnets.priors.log_prob``: the closed-form Normal path equals torch's ``log_prob`` (validated and masked),
non-finite entries give NaN; a BNN with one shared prior evaluates it over the flat weights with the same value."""

import pyro.distributions as dist
import pytest
import torch

from probnets import BNN
from probnets.priors import parameters

PRIORS = [dist.Normal(0.0, 1.0), torch.distributions.Normal(1.0, 0.3),
          dist.Normal(torch.zeros(3), torch.tensor([0.5, 1.0, 2.0]))]


def _reference(prior, value, event_dims):
    finite = torch.isfinite(value)
    lp = prior.log_prob(torch.where(finite, value, torch.zeros_like(value)))
    lp = torch.where(finite, lp, torch.full_like(lp, float("nan")))
    return lp.sum(tuple(range(-event_dims, 0))) if event_dims else lp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("event_dims", [0, 1, 2])
@pytest.mark.parametrize("prior", PRIORS, ids=["pyro", "torch", "per-element"])
def test_normal_fast_path_matches_torch_and_gives_nan_for_non_finite(prior, event_dims, dtype):
    value = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)
    value[0, 0, 0], value[1, 1, 1], value[2, 0, 2] = float("inf"), float("nan"), -float("inf")
    got, expected = parameters.log_prob(prior, value, event_dims), _reference(prior, value, event_dims)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    finite = torch.isfinite(expected)
    torch.testing.assert_close(got[finite], expected[finite], rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    assert bool(got[~finite].isnan().all()) and bool((~finite).any())


def test_shared_prior_is_evaluated_flat_with_the_per_tensor_value():
    shared = BNN(3, [4, 5], prior=dist.Normal(0.0, 0.7))
    per_tensor = BNN(3, [4, 5], prior={"*": lambda name, shape: dist.Normal(0.0, 0.7)})
    assert shared._shared_prior is not None and per_tensor._shared_prior is None
    theta = shared.init_theta(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(shared.log_prior(theta), per_tensor.log_prior(theta), rtol=1e-12, atol=0)
