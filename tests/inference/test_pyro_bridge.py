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


def logistic(x, y):
    b = pyro.sample("b", dist.Normal(torch.zeros(x.shape[1], dtype=x.dtype), 1.0).to_event(1))
    c = pyro.sample("c", dist.Normal(torch.tensor(0.0, dtype=x.dtype), 1.0))
    s = pyro.sample("s", dist.HalfNormal(torch.tensor(1.0, dtype=x.dtype)))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=((x * b).sum(-1) + c) * s), obs=y)


def logistic_matmul(x, y):
    """The same model written with ``x @ b``, which does not broadcast over a leftmost chain dimension."""
    b = pyro.sample("b", dist.Normal(torch.zeros(x.shape[1], dtype=x.dtype), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=x @ b), obs=y)


def _logistic_data():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    return x, torch.bernoulli(torch.sigmoid(x.sum(-1)), generator=g)


def test_a_broadcasting_model_evaluates_every_chain_in_one_plated_run(data):
    """The outer-plate path equals Pyro's own potential, chain by chain, with the transforms' Jacobians (a
    HalfNormal site), an event site and a data plate; and a scalar-only model (no plates) as well."""
    for target in (from_pyro(logistic, *_logistic_data()), from_pyro(model, data)):
        theta = target.init_theta(6, generator=torch.Generator().manual_seed(3))
        value, grad = target.value_and_grad(theta)
        assert target.batching == "plate"
        tol = dict(rtol=1e-12, atol=1e-10) if theta.dtype == torch.float64 else dict(rtol=1e-6, atol=1e-5)
        expected = torch.stack([-target.potential_fn(target.spec.unflatten(t)) for t in theta])
        torch.testing.assert_close(value, expected.detach(), **tol)
        single = torch.stack([LogDensityOfOne(target).value_and_grad(t[None])[1][0] for t in theta])
        torch.testing.assert_close(grad, single, **tol)


class LogDensityOfOne:
    """Pyro's potential of one chain, differentiated by autograd."""

    def __init__(self, target):
        self.target = target

    def value_and_grad(self, theta):
        theta = theta.detach().requires_grad_(True)
        value = -self.target.potential_fn(self.target.spec.unflatten(theta[0]))
        return value.detach(), torch.autograd.grad(value, theta)[0]


def test_a_model_that_does_not_broadcast_falls_back_to_the_loop_and_says_why():
    target = from_pyro(logistic_matmul, *_logistic_data())
    theta = target.init_theta(4, generator=torch.Generator().manual_seed(3))
    with pytest.warns(UserWarning, match="chain by chain.*plate: RuntimeError"):
        value = target(theta)
    assert target.batching == "loop"
    expected = torch.stack([-target.potential_fn(target.spec.unflatten(t)) for t in theta])
    torch.testing.assert_close(value, expected)


def test_plated_nuts_posterior_matches_the_loop():
    """Same seed, same sampler: the plated and the chain-by-chain evaluations give the same draws (to float
    round-off over a short run)."""
    settings = dict(method="nuts", num_chains=4, num_warmup=30, num_samples=20, seed=1, progress=False,
                    check_convergence=False)
    plated = inference.sample(from_pyro(logistic, *_logistic_data()), **settings)
    assert plated.info["batching"] == "plate"
    looped_target = from_pyro(logistic, *_logistic_data())
    looped_target.batching, looped_target._batched = "loop", None
    looped = inference.sample(looped_target, **settings)
    torch.testing.assert_close(plated.samples, looped.samples, rtol=1e-6, atol=1e-6)


def test_a_compiled_pyro_model_keeps_the_plated_evaluation():
    """compile=True settles the batching eagerly before tracing (the check compares values, which a trace
    cannot), so the compiled graph holds the one plated run; it equals the eager gradient."""
    from probnets.compiled import CompiledLogDensity

    target = from_pyro(logistic, *_logistic_data())
    compiled = CompiledLogDensity(target)
    theta = target.init_theta(4, generator=torch.Generator().manual_seed(5))
    value, grad = compiled.value_and_grad(theta)
    assert compiled.fallback_reason is None and target.batching == "plate"
    ref_value, ref_grad = target.value_and_grad(theta)
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad, ref_grad)
