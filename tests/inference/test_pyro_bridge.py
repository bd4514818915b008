"""Sampling a Pyro model with our NUTS agrees with Pyro's own NUTS (MCSE-based comparison)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC
from pyro.infer import NUTS as PyroNUTS

import inference
from inference import diagnostics
from inference import from_pyro


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("obs", dist.Normal(mu, sigma), obs=y)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return 1.5 + 2.0 * torch.randn(30, generator=g, dtype=torch.float64)


def test_from_pyro_matches_pyro_nuts(data):
    target = from_pyro(model, data)
    assert target.spec.names == ("mu", "sigma")
    ours = inference.sample(target, method="nuts", num_chains=4, num_warmup=200, num_samples=300, seed=3,
                            dtype=torch.float64, progress=False)
    ours_draws = ours.params()
    assert bool((ours_draws["sigma"] > 0).all())  # constrained back to the support

    pyro.set_rng_seed(4)
    mcmc = MCMC(PyroNUTS(model), num_samples=600, warmup_steps=200, num_chains=1, disable_progbar=True)
    mcmc.run(data)
    theirs = mcmc.get_samples(group_by_chain=True)

    for site in ("mu", "sigma"):
        a, b = ours_draws[site], theirs[site].to(torch.float64)
        for stat in (lambda x: x, lambda x: (x - x.mean()) ** 2):
            qa, qb = stat(a), stat(b)
            se = (diagnostics.mcse_mean(qa) ** 2 + diagnostics.mcse_mean(qb) ** 2).sqrt()
            z = (qa.mean() - qb.mean()) / se
            assert abs(float(z)) < 3.5, (site, float(z))


def test_from_pyro_requires_latent_sites():
    def observed_only(y):
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="no latent"):
        from_pyro(observed_only, torch.zeros(3))


def test_pyro_target_batches_over_chains(data):
    target = from_pyro(model, data)
    theta = target.init_theta(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    value, grad = target.value_and_grad(theta)
    assert value.shape == (5,) and grad.shape == (5, 2)
    single = torch.stack([target(t) for t in theta])
    torch.testing.assert_close(value, single)
