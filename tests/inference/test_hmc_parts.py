"""Integrator physics, divergence handling, dual averaging and windows of the shared HMC parts."""

import math

import pytest
import torch

import inference
from inference.mcmc import dual_averaging, hmc, mass_matrix, nuts, welford
from inference.mcmc.integrators import IntegratorState, velocity_verlet
from inference.mcmc.window_adaptation import build_schedule
from inference.testing import GaussianTarget, correlated_gaussian_2d, ill_conditioned_gaussian
from probnets.model import LogDensity


def start_state(target, metric, num_chains=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(num_chains, target.dim, generator=g, dtype=torch.float64)
    p = metric.sample_momentum(q.shape, g, q.dtype, q.device)
    value, grad = target.value_and_grad(q)
    return IntegratorState(q, p, value, grad)


def energy(state, metric):
    return -state.logdensity + metric.kinetic_energy(state.momentum)


@pytest.mark.parametrize("dense", [False, True])
def test_energy_error_is_second_order_in_step_size(dense):
    target = ill_conditioned_gaussian(5, condition_number=10.0, rotate=True)
    metric = mass_matrix.dense(torch.eye(5, dtype=torch.float64) * 0.5) if dense else \
        mass_matrix.diagonal(torch.full((5,), 0.5, dtype=torch.float64))
    errors = []
    for eps in (0.1, 0.05):
        state = start_state(target, metric)
        h0 = energy(state, metric)
        step = velocity_verlet(target, metric)
        worst = torch.zeros(6, dtype=torch.float64)
        for _ in range(int(round(2.0 / eps))):
            state = step(state, torch.tensor(eps, dtype=torch.float64))
            worst = torch.maximum(worst, (energy(state, metric) - h0).abs())
        errors.append(float(worst.max()))
    assert errors[0] < 0.05
    assert 3.0 < errors[0] / errors[1] < 5.0  # O(eps^2): halving eps divides the error by ~4


def test_integrator_is_reversible():
    target = correlated_gaussian_2d()
    metric = mass_matrix.diagonal(torch.tensor([1.0, 100.0], dtype=torch.float64))
    state = start_state(target, metric)
    step = velocity_verlet(target, metric)
    eps = torch.full((6,), 0.1, dtype=torch.float64)
    moved = state
    for _ in range(25):
        moved = step(moved, eps)
    back = moved._replace(momentum=-moved.momentum)
    for _ in range(25):
        back = step(back, eps)
    torch.testing.assert_close(back.position, state.position, rtol=0, atol=1e-10)
    torch.testing.assert_close(-back.momentum, state.momentum, rtol=0, atol=1e-10)


def test_negative_step_size_integrates_backwards():
    target = correlated_gaussian_2d()
    metric = mass_matrix.identity(2, dtype=torch.float64)
    state = start_state(target, metric)
    step = velocity_verlet(target, metric)
    eps = torch.tensor([0.1, -0.1, 0.1, -0.1, 0.1, -0.1], dtype=torch.float64)
    back = step(step(state, eps), -eps)
    torch.testing.assert_close(back.position, state.position, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["hmc", "nuts"])
def test_huge_step_size_makes_every_transition_a_rejected_divergence(kind):
    target = correlated_gaussian_2d()
    metric = mass_matrix.identity(2, dtype=torch.float64)
    algorithm = (hmc.hmc(target, 1e3, metric, 10) if kind == "hmc" else nuts.nuts(target, 1e3, metric))
    g = torch.Generator().manual_seed(0)
    state = algorithm.init(torch.randn(5, 2, generator=g, dtype=torch.float64))
    start = state.position.clone()
    for _ in range(20):
        state, info = algorithm.step(state, None, g)
        assert bool(info.is_divergent.all())
        torch.testing.assert_close(state.position, start, rtol=0, atol=0)


class Cliff(LogDensity):
    """Standard normal that returns NaN beyond x0 > 1: numerical trouble inside the sampler."""

    def __init__(self):
        super().__init__(self._value, 2)

    def _value(self, theta):
        lp = -0.5 * (theta**2).sum(-1)
        return torch.where(theta[..., 0] > 1.0, torch.full_like(lp, float("nan")), lp)

    def value_and_grad(self, theta):
        return self._value(theta), torch.where(theta[..., :1] > 1.0, torch.full_like(theta, float("nan")), -theta)


@pytest.mark.parametrize("method", ["hmc", "nuts", "chees"])
def test_nan_log_density_is_a_counted_divergence_not_an_exception(method):
    init = torch.zeros(4, 2, dtype=torch.float64) - 0.5
    post = inference.sample(Cliff(), init=init, method=method, num_chains=4, num_warmup=100, num_samples=200,
                            seed=1, progress=False, **({"num_steps": 8} if method == "hmc" else {}))
    assert post.num_divergences > 0
    assert torch.isfinite(post.samples).all()
    assert bool((post.samples[..., 0] <= 1.0).all())


def test_dual_averaging_reaches_the_target_on_a_known_response():
    # acceptance(eps) = exp(-eps): the target 0.8 is reached at eps = -log(0.8).
    state = dual_averaging.init(torch.tensor(1.0, dtype=torch.float64))
    for _ in range(2000):
        state = dual_averaging.update(state, torch.exp(-state.log_step_size.exp()), target=0.8)
    assert math.isclose(float(state.log_step_size_avg.exp()), -math.log(0.8), rel_tol=0.02)


def test_welford_matches_batch_estimates():
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(200, 3, 4, generator=g, dtype=torch.float64)
    diag = welford.init(torch.Size((3, 4)), dtype=torch.float64)
    dense = welford.init(torch.Size((3, 4)), dense=True, dtype=torch.float64)
    for x in xs:
        diag, dense = welford.update(diag, x), welford.update(dense, x)
    torch.testing.assert_close(diag.m2 / 199, xs.var(0))
    torch.testing.assert_close(dense.m2[0] / 199, torch.cov(xs[:, 0].T))
    pooled = welford.init(torch.Size((4,)), dense=True, dtype=torch.float64)
    for chunk in xs[:, 0].split(37):
        pooled = welford.update_many(pooled, chunk)
    torch.testing.assert_close(pooled.m2 / 199, torch.cov(xs[:, 0].T))


def test_stan_window_schedule():
    s = build_schedule(1000)
    ends = [i for i, e in enumerate(s.window_end) if e]
    assert ends == [99, 149, 249, 449, 949]  # 75 + 25, 50, 100, 200, then stretched to 1000 - 50
    assert not any(s.slow[:75]) and all(s.slow[75:950]) and not any(s.slow[950:])
    short = build_schedule(100)
    assert sum(short.slow) == 75 and short.window_end[89]
    assert not any(build_schedule(10).slow)


def test_mass_matrix_momentum_distribution():
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    metric = mass_matrix.dense(torch.linalg.inv(cov))  # inverse mass = cov^-1 => momenta ~ N(0, cov)
    p = metric.sample_momentum(torch.Size((200000, 2)), torch.Generator().manual_seed(0), torch.float64, "cpu")
    torch.testing.assert_close(torch.cov(p.T), cov, rtol=0.02, atol=0.02)
    torch.testing.assert_close(metric.kinetic_energy(p).mean(), torch.tensor(1.0, dtype=torch.float64), rtol=0.01, atol=0)


def test_same_seed_same_draws_different_seed_different_draws():
    target = correlated_gaussian_2d()
    runs = [inference.sample(target, dim=2, method=m, num_chains=4, num_warmup=50, num_samples=30, seed=s,
                             progress=False).samples for m in ("nuts", "chees") for s in (7, 7, 8)]
    for i in (0, 3):
        assert torch.equal(runs[i], runs[i + 1])
        assert not torch.equal(runs[i], runs[i + 2])


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_chains=0), "num_chains"),
    (dict(num_samples=0), "num_samples"),
    (dict(num_warmup=-1), "num_warmup"),
    (dict(step_size=0.0), "step_size"),
    (dict(step_size=-0.1), "step_size"),
    (dict(target_accept=1.5), "target_accept"),
    (dict(method="mala"), "method"),
    (dict(method="hmc", num_steps=0), "num_steps"),
    (dict(method="hmc", trajectory_length=-1.0), "trajectory_length"),
    (dict(method="nuts", max_tree_depth=0), "max_tree_depth"),
    (dict(method="chees", num_chains=1), "at least 2 chains"),
])
def test_bad_sampler_arguments(kwargs, match):
    target = GaussianTarget(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=match):
        inference.sample(target, dim=2, progress=False, **{"num_warmup": 10, "num_samples": 10, **kwargs})


def test_bad_init():
    target = GaussianTarget(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="init"):
        inference.sample(target, init=torch.zeros(3, 5, dtype=torch.float64), num_chains=3, progress=False)
    with pytest.raises(ValueError, match="init"):
        inference.sample(target, init=torch.full((2, 2), float("nan")), num_chains=2, progress=False)
    with pytest.raises(ValueError, match="not finite at the initial point"):
        inference.sample(Cliff(), init=torch.full((2, 2), 2.0, dtype=torch.float64), num_chains=2, progress=False)


@pytest.mark.parametrize("mutate, match", [
    (lambda x, y: (x, torch.cat([y[:-1], torch.tensor([float("nan")], dtype=y.dtype)])), "y contains"),
    (lambda x, y: (x, torch.cat([y[:-1], torch.tensor([float("inf")], dtype=y.dtype)])), "y contains"),
    (lambda x, y: (torch.where(x > 1.5, float("inf"), x), y), "x contains"),
    (lambda x, y: (x, y[:-2]), "same number of rows"),
    (lambda x, y: (x[:0], y[:0]), "zero rows"),
    (lambda x, y: (x[:, :2], y), r"x must have shape \(n, 3\)"),
    (lambda x, y: (x[:, 0], y), r"x must have shape \(n, d\)"),
])
def test_bad_data_is_rejected_before_sampling(mutate, match):
    from probnets import BNN
    from tests_support import make_regression

    x, y = make_regression(20, 3)
    with pytest.raises(ValueError, match=match):
        inference.sample(BNN(3, [4]), mutate(x, y), num_chains=2, num_warmup=5, num_samples=5, progress=False)
