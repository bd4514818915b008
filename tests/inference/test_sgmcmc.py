"""The SG-MCMC family's own checks (``inference.sgmcmc``): the noise convention and posterior temperature, the
step-size schedules and the cyclical sampling-phase bookkeeping, the pSGLD preconditioner, the guard and the
option errors. The contract suite (``test_sampler_contracts.py``) covers the rest.

Statistical rule, fixed before any run: ``|estimate - truth| < 3.5`` standard errors, computed from per-chain
estimates of independent chains started at exact draws; the step sizes are small enough that the known
discretisation bias of SGLD on a standard normal (relative ``h / 2``) stays below half a standard error.
"""

import math

import pytest
import torch

import inference
from inference.sgmcmc import preconditioner, psgld, sgld
from inference.sgmcmc.guard import finite_step, keep_where
from inference.sgmcmc.schedules import Constant, CyclicalCosine, PolynomialDecay
from inference.testing import GaussianTarget
from sampler_contract import conjugate_regression, moment_violations

STANDARD_NORMAL = GaussianTarget(torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
Z_BOUND = 3.5


def _stationary_second_moment(method, temperature, num_chains=2000, **options):
    """Mean of ``theta**2`` and its standard error over independent chains started at ``N(0, T)`` draws."""
    init = math.sqrt(temperature) * torch.randn(num_chains, 1, generator=torch.Generator().manual_seed(0),
                                                dtype=torch.float64)
    post = inference.sample(STANDARD_NORMAL, init=init, method=method, num_chains=num_chains, seed=1,
                            posterior_temperature=temperature, progress=False, check_convergence=False, **options)
    assert post.num_divergences == 0
    per_chain = post.samples[..., 0].square().mean(1)
    return float(per_chain.mean()), float(per_chain.std() / math.sqrt(num_chains))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sgld_noise_convention_samples_the_target_at_temperature_one(temperature):
    """Drift ``h * grad log p`` with noise variance ``2 h T``: the stationary variance of a standard normal is
    ``T``: 1 at ``T = 1``, and 1/2 at ``T = 1/2`` (the reference code's convention, noise variance ``h``)."""
    m2, se = _stationary_second_moment("sgld", temperature, num_warmup=0, num_samples=4000, thin=200,
                                       step_size=0.005)
    assert abs(m2 - temperature) < Z_BOUND * se, (m2, se)


@pytest.mark.parametrize("method, options", [
    ("sgld", dict(step_size=0.005)), ("psgld", dict(step_size=0.005)), ("sghmc", dict(step_size=0.05))])
@pytest.mark.parametrize("temperature", [0.25, 2.0])
def test_posterior_temperature_scales_the_stationary_variance(method, options, temperature):
    m2, se = _stationary_second_moment(method, temperature, num_warmup=500, num_samples=4000, thin=200, **options)
    assert abs(m2 - temperature) < Z_BOUND * se, (m2, se)


def test_temperature_one_half_is_the_reference_update_bit_for_bit():
    """The reference code's step ``theta + h * grad + sqrt(h) * N(0, 1)`` is our step at ``T = 1/2``."""
    theta = torch.randn(5, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    state = sgld.init(theta, STANDARD_NORMAL)
    ours, _ = sgld.build_kernel()(state, torch.Generator().manual_seed(3), STANDARD_NORMAL, 0.01, 0.5)
    noise = torch.randn(theta.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(ours.position, theta + 0.01 * (-theta) + math.sqrt(0.01) * noise)


@pytest.mark.parametrize("likelihood_temperature, posterior_temperature", [(1.0, 2.0), (2.0, 0.5)])
def test_posterior_temperature_tempers_the_whole_target_on_top_of_likelihood_tempering(likelihood_temperature,
                                                                                        posterior_temperature):
    """``sample(temperature=T_lik, posterior_temperature=T)`` samples ``[p(theta) p(D | theta)**(1 / T_lik)]**(1 / T)``:
    in the conjugate regression, precision ``(X'X / (s**2 T_lik) + I / 4) / T``. Bounds and the allowed 10% bias
    as in the contract (``TestSGLD``'s regression settings)."""
    model, (x, y), _, _ = conjugate_regression()
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    precision = design.T @ design / (0.25 * likelihood_temperature) + torch.eye(4, dtype=x.dtype) / 4
    mean = torch.linalg.solve(precision, design.T @ y / (0.25 * likelihood_temperature))
    cov = posterior_temperature * torch.linalg.inv(precision)
    post = inference.sample(model, (x, y), method="sgld", num_chains=64, num_warmup=300, num_samples=2000, thin=5,
                            step_size=5e-4, seed=31, temperature=likelihood_temperature,
                            posterior_temperature=posterior_temperature, progress=False, check_convergence=False)
    assert moment_violations(post.samples, mean, cov, variance_bias=0.1) == {}


def test_cyclical_cosine_values_and_phases():
    """Zhang et al.'s ``a_k = a_0 / 2 (cos(pi mod(k - 1, L) / L) + 1)`` with ``k = t + 1``; sampling where
    ``mod(k - 1, L) / L >= beta``."""
    schedule = CyclicalCosine(step_size=0.4, cycle_length=10, exploration=0.8)
    for t in range(30):
        assert schedule(t) == pytest.approx(0.2 * (math.cos(math.pi * (t % 10) / 10) + 1), abs=1e-15)
        assert schedule.is_sampling(t) == (t % 10 >= 8)
    assert schedule(0) == schedule(10) == 0.4 and schedule(5) == pytest.approx(0.2)
    assert schedule.sampling_iterations == 2
    assert CyclicalCosine(0.4, 10, exploration=0.0).sampling_iterations == 10


def test_polynomial_decay_and_constant_values():
    schedule = PolynomialDecay(step_size=0.1, power=0.5, steps=100.0)
    assert schedule(0) == 0.1 and schedule(300) == pytest.approx(0.05)
    assert Constant(0.3)(12345) == 0.3 and Constant(0.3).is_sampling(7)


def test_cyclical_draws_are_kept_only_in_the_sampling_phase():
    """Cycles of 10 iterations sample at ``t mod 10 in {8, 9}``; after a warm-up of one cycle, 30 iterations
    keep 6 draws, and ``thin=2`` keeps the last of every two sampling iterations (t = 19, 29, 39)."""
    settings = dict(init=torch.zeros(3, 1, dtype=torch.float64), num_chains=3, num_warmup=10, num_samples=30,
                    seed=4, step_size=0.1, cycle_length=10, exploration=0.8, progress=False,
                    check_convergence=False)
    every = inference.sample(STANDARD_NORMAL, method="csgld", thin=1, **settings)
    schedule = CyclicalCosine(0.1, 10, 0.8)
    kept = [18, 19, 28, 29, 38, 39]
    assert every.samples.shape == (3, 6, 1)
    assert torch.equal(every.sample_stats["step_size"][0],
                       torch.tensor([schedule(t) for t in kept], dtype=torch.float64))
    thinned = inference.sample(STANDARD_NORMAL, method="csgld", thin=2, **settings)
    assert torch.equal(thinned.samples, every.samples[:, 1::2])


def test_a_run_without_a_sampling_iteration_is_refused():
    with pytest.raises(ValueError, match="sampling phase"):
        inference.sample(STANDARD_NORMAL, init=torch.zeros(2, 1, dtype=torch.float64), method="csgld",
                         num_chains=2, num_warmup=0, num_samples=5, thin=1, cycle_length=10, progress=False)
    with pytest.raises(ValueError, match="no sampling iteration"):
        CyclicalCosine(0.1, cycle_length=4, exploration=0.9)


def test_rmsprop_update_and_inverse_mass():
    """``V`` averages the squared gradients over chains and steps (2 chains here)."""
    grad = torch.tensor([[2.0, -4.0], [0.0, 2.0]], dtype=torch.float64)
    state = preconditioner.init(grad)
    assert torch.equal(state.square_avg, torch.tensor([[2.0, 10.0]], dtype=torch.float64))
    state = preconditioner.update(state, torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64), alpha=0.9)
    expected = torch.tensor([[0.9 * 2.0 + 0.1 * 2.0, 0.9 * 10.0 + 0.1 * 5.0]], dtype=torch.float64)
    assert torch.allclose(state.square_avg, expected)
    assert torch.allclose(preconditioner.inverse_mass(state, eps=1e-5), 1 / (1e-5 + expected.sqrt()))


def test_psgld_preconditioner_adapts_to_the_gradient_scale_during_warm_up_then_freezes():
    """On ``N(0, diag(1, 100**2))`` the squared gradient averages ``1 / sigma**2``: the adapted ``V`` (an average
    over 256 chains and ~100 correlated steps) is within 25% of it; after warm-up ``V`` is fixed."""
    target = GaussianTarget(torch.zeros(2, dtype=torch.float64), torch.diag(torch.tensor([1.0, 1e4],
                                                                                         dtype=torch.float64)))
    generator = torch.Generator().manual_seed(5)
    algorithm = psgld.psgld(target, 300, step_size=0.05)
    state = algorithm.init(torch.randn(256, 2, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 100.0]))
    for _ in range(300):
        state, _ = algorithm.step(state, None, generator)
    adapted = state.rmsprop.square_avg.clone()
    assert torch.allclose(adapted, torch.tensor([[1.0, 1e-4]], dtype=torch.float64), rtol=0.25)
    for _ in range(20):
        state, info = algorithm.step(state, None, generator)
    assert torch.equal(state.rmsprop.square_avg, adapted) and not info["diverging"].any()


def test_guard_rejects_any_non_finite_part_per_chain():
    position = torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [0.0, 1.0], [0.0, 1.0]])
    value = torch.tensor([0.0, 0.0, float("-inf"), 0.0])
    grad = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [float("inf"), 0.0]])
    ok = finite_step(position, value, grad)
    assert ok.tolist() == [True, False, False, False]
    assert torch.equal(keep_where(ok, position, torch.zeros(4, 2)), torch.tensor([[0.0, 1.0]] + [[0.0, 0.0]] * 3))
    assert torch.equal(keep_where(ok, value, torch.ones(4)), torch.tensor([0.0, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize("method, options, error, message", [
    ("sgld", dict(posterior_temperature=0.0), ValueError, "posterior_temperature"),
    ("sgld", dict(step_size=-1.0), ValueError, "step_size"),
    ("sgld", dict(step_size="big"), TypeError, "step_size"),
    ("psgld", dict(alpha=1.0), ValueError, "alpha"),
    ("psgld", dict(eps=0.0), ValueError, "eps"),
    ("csgld", dict(cycle_length=0), ValueError, "cycle_length"),
    ("csgld", dict(exploration=1.0), ValueError, "exploration"),
    ("csghmc", dict(friction=0.0), ValueError, "friction"),
    ("sghmc", dict(posterior_temperature=float("nan")), ValueError, "posterior_temperature")])
def test_bad_options_are_named(method, options, error, message):
    with pytest.raises(error, match=message):
        inference.sample(STANDARD_NORMAL, init=torch.zeros(2, 1, dtype=torch.float64), method=method, num_chains=2,
                         num_warmup=0, num_samples=10, progress=False, **options)
