"""Integrator physics, divergence handling, dual averaging and windows of the shared HMC parts."""

import math
from typing import NamedTuple

import pytest
import torch

import inference
from inference.mcmc import adaptation, chees, dual_averaging, hmc, integrators, mass_matrix, nuts, welford
from inference.mcmc.adaptation import build_schedule
from inference.mcmc.integrators import IntegratorState, velocity_verlet
from inference.mcmc.window_adaptation import window_adaptation
from inference.testing import GaussianTarget, correlated_gaussian_2d, ill_conditioned_gaussian
from probnets.model import LogDensity
from tests_support import z_scores


def start_state(target, metric, num_chains=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(num_chains, target.dim, generator=g, dtype=torch.float64)
    p = metric.sample_momentum(q.shape, g, q.dtype, q.device)
    value, grad = target.value_and_grad(q)
    return IntegratorState(q, p, value, grad)


def energy(state, metric):
    return -state.logdensity + metric.kinetic_energy(state.momentum)


def max_energy_error(integrator, target, metric, eps, duration=2.0):
    """Largest |H - H0| over chains along a trajectory of integration time ``duration``."""
    state = start_state(target, metric)
    h0 = energy(state, metric)
    step = integrator(target, metric)
    worst = torch.zeros(6, dtype=torch.float64)
    for _ in range(int(round(duration / eps))):
        state = step(state, torch.tensor(eps, dtype=torch.float64))
        worst = torch.maximum(worst, (energy(state, metric) - h0).abs())
    return float(worst.max())


def rotated_target_and_metric(dense):
    target = ill_conditioned_gaussian(5, condition_number=10.0, rotate=True)
    metric = mass_matrix.dense(torch.eye(5, dtype=torch.float64) * 0.5) if dense else \
        mass_matrix.diagonal(torch.full((5,), 0.5, dtype=torch.float64))
    return target, metric


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("integrator, order", [(velocity_verlet, 2), (integrators.mclachlan, 2),
                                               (integrators.yoshida, 4)])
def test_energy_error_shrinks_at_the_integrators_order(dense, integrator, order):
    target, metric = rotated_target_and_metric(dense)
    errors = [max_energy_error(integrator, target, metric, eps) for eps in (0.1, 0.05)]
    assert errors[0] < 0.05
    # O(eps^order): halving eps divides the error by ~2**order.
    assert 0.75 * 2**order < errors[0] / errors[1] < 1.25 * 2**order


def test_minimal_norm_integrator_beats_leapfrog_at_equal_cost():
    target, metric = rotated_target_and_metric(dense=False)
    # One two-stage step costs two leapfrog steps: compare at the same number of gradient evaluations.
    assert integrators.mclachlan.num_grad_evals == 2 * velocity_verlet.num_grad_evals
    leapfrog = max_energy_error(velocity_verlet, target, metric, 0.05)
    minimal_norm = max_energy_error(integrators.mclachlan, target, metric, 0.1)
    assert minimal_norm < leapfrog / 10


@pytest.mark.parametrize("integrator", integrators.INTEGRATORS.values(), ids=integrators.INTEGRATORS)
def test_integrator_is_reversible(integrator):
    target = correlated_gaussian_2d()
    metric = mass_matrix.diagonal(torch.tensor([1.0, 100.0], dtype=torch.float64))
    state = start_state(target, metric)
    step = integrator(target, metric)
    eps = torch.full((6,), 0.1, dtype=torch.float64)
    moved = state
    for _ in range(25):
        moved = step(moved, eps)
    back = moved._replace(momentum=-moved.momentum)
    for _ in range(25):
        back = step(back, eps)
    torch.testing.assert_close(back.position, state.position, rtol=0, atol=1e-10)
    torch.testing.assert_close(-back.momentum, state.momentum, rtol=0, atol=1e-10)


@pytest.mark.parametrize("integrator", integrators.INTEGRATORS.values(), ids=integrators.INTEGRATORS)
def test_negative_step_size_integrates_backwards(integrator):
    target = correlated_gaussian_2d()
    metric = mass_matrix.identity(2, dtype=torch.float64)
    state = start_state(target, metric)
    step = integrator(target, metric)
    eps = torch.tensor([0.1, -0.1, 0.1, -0.1, 0.1, -0.1], dtype=torch.float64)
    back = step(step(state, eps), -eps)
    torch.testing.assert_close(back.position, state.position, rtol=0, atol=1e-12)


class Quartic(LogDensity):
    """``-sum(x^4) / 4 - x^T A x / 2``: a non-Gaussian target whose gradient is nonlinear."""

    def __init__(self, dim=3):
        g = torch.Generator().manual_seed(1)
        a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        self.a = a @ a.T / dim
        super().__init__(lambda x: self.value_and_grad(x)[0], dim)

    def value_and_grad(self, theta):
        ax = theta @ self.a
        return -0.25 * (theta**4).sum(-1) - 0.5 * (theta * ax).sum(-1), -theta**3 - ax


@pytest.mark.parametrize("integrator", integrators.INTEGRATORS.values(), ids=integrators.INTEGRATORS)
def test_integrator_step_is_symplectic(integrator):
    # J^T Omega J = Omega for the Jacobian J of the map (q, p) -> (q', p'); this implies det J = 1.
    target = Quartic()
    metric = mass_matrix.dense(torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]], dtype=torch.float64))
    step = integrator(target, metric)
    eps = torch.tensor(0.3, dtype=torch.float64)

    def flow(z):
        q, p = z[None, :3], z[None, 3:]
        value, grad = target.value_and_grad(q)
        end = step(IntegratorState(q, p, value, grad), eps)
        return torch.cat([end.position[0], end.momentum[0]])

    z = torch.tensor([0.5, -1.0, 0.8, 0.3, 1.2, -0.7], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(flow, z)
    eye, zero = torch.eye(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    omega = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)])
    torch.testing.assert_close(jac.T @ omega @ jac, omega, rtol=0, atol=1e-12)
    assert not torch.allclose(jac, torch.eye(6, dtype=torch.float64))


def test_integrators_are_selected_by_name():
    assert integrators.resolve("mclachlan") is integrators.mclachlan
    assert integrators.resolve(integrators.yoshida) is integrators.yoshida
    assert [i.num_grad_evals for i in integrators.INTEGRATORS.values()] == [1, 2, 3]
    for bad in ("leapfrog4", None):
        with pytest.raises(ValueError, match="integrator must be one of .*velocity_verlet.*mclachlan"):
            integrators.resolve(bad)
    with pytest.raises(ValueError, match="integrator"):
        nuts.build_kernel(integrator="rk4")
    with pytest.raises(ValueError, match="integrator"):
        hmc.build_kernel(integrator="rk4")


def test_chees_takes_an_integrator_and_counts_its_gradient_evaluations():
    target = correlated_gaussian_2d()
    g = torch.Generator().manual_seed(0)
    algorithm = chees.chees(target, 20, integrator="mclachlan")
    state = algorithm.init(torch.randn(4, 2, generator=g, dtype=torch.float64))
    for _ in range(25):
        state, info = algorithm.step(state, None, g)
        assert bool((info["n_steps"] % 2 == 0).all()) and bool((info["n_steps"] >= 2).all())
    with pytest.raises(ValueError, match="integrator must be one of"):
        chees.chees(target, 20, integrator="leapfrog")
    with pytest.raises(ValueError, match="integrator must be one of"):
        window_adaptation(nuts.build_kernel(), target, 20, integrator="leapfrog")


def run_chains(algorithm, num_chains, dim, num_warmup, num_samples, seed):
    """Draws ``C x N x D`` after warm-up of an adapted ``Algorithm``, and the number of divergences."""
    g = torch.Generator().manual_seed(seed)
    state = algorithm.init(torch.randn(num_chains, dim, generator=g, dtype=torch.float64))
    draws, divergences = [], 0
    for i in range(num_warmup + num_samples):
        state, info = algorithm.step(state, None, g)
        if i >= num_warmup:
            draws.append(state.chain.position)
            divergences += int(info["diverging"].sum())
    return torch.stack(draws, 1), divergences


def static_hmc_kernel(num_steps, integrator):
    base = hmc.build_kernel(integrator=integrator)

    def kernel(state, generator, logdensity, step_size, metric):
        return base(state, generator, logdensity, step_size, metric, num_steps)

    return kernel


@pytest.mark.parametrize("kind", ["hmc", "nuts"])
def test_samplers_with_the_minimal_norm_integrator_sample_a_gaussian(kind):
    target = correlated_gaussian_2d(0.9, (1.0, 10.0))
    kernel = static_hmc_kernel(8, "mclachlan") if kind == "hmc" else nuts.build_kernel(integrator="mclachlan")
    algorithm = window_adaptation(kernel, target, 500, integrator="mclachlan")
    draws, divergences = run_chains(algorithm, 4, 2, 500, 1000, seed=21)
    z = z_scores(draws, target.mean, target.cov.diagonal(), [0, 1])
    assert all(abs(v) < 3.5 for v in z.values()), z
    assert divergences == 0


def test_minimal_norm_steps_count_gradient_evaluations():
    target = correlated_gaussian_2d()
    metric = mass_matrix.identity(2, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    state = hmc.init(torch.randn(3, 2, generator=g, dtype=torch.float64), target)
    for kernel in (static_hmc_kernel(5, "mclachlan"), nuts.build_kernel(integrator="mclachlan")):
        _, info = kernel(state, g, target, 0.1, metric)
        torch.testing.assert_close(info.num_grad_evals, 2 * info.num_integration_steps, rtol=0, atol=0)


class MALAState(NamedTuple):
    position: torch.Tensor
    logdensity: torch.Tensor
    logdensity_grad: torch.Tensor


class MALAInfo(NamedTuple):
    acceptance_rate: torch.Tensor
    is_divergent: torch.Tensor
    num_grad_evals: torch.Tensor


def mala_init(position, logdensity):
    return MALAState(position, *logdensity.value_and_grad(position))


def mala_kernel(state, generator, logdensity, step_size, metric):
    """Preconditioned Metropolis-adjusted Langevin: ``x' ~ N(x + eps^2/2 M^-1 grad, eps^2 M^-1)``, diagonal
    ``M^-1``; the Metropolis-Hastings ratio uses the proposal densities both ways."""
    eps = step_size.unsqueeze(-1)

    def mean(start):
        return start.position + 0.5 * eps**2 * metric.inverse * start.logdensity_grad

    def log_proposal(to, start):  # up to a constant shared by both directions
        return -0.5 * ((to.position - mean(start)) ** 2 / metric.inverse).sum(-1) / step_size**2

    noise = torch.randn(state.position.shape, generator=generator, dtype=state.position.dtype)
    proposed = mala_init(mean(state) + eps * metric.inverse.sqrt() * noise, logdensity)
    log_ratio = proposed.logdensity - state.logdensity + log_proposal(state, proposed) - log_proposal(proposed, state)
    divergent = ~torch.isfinite(log_ratio)
    log_ratio = torch.where(divergent, -torch.inf, log_ratio)
    accepted = torch.log(torch.rand(log_ratio.shape, generator=generator, dtype=log_ratio.dtype)) < log_ratio
    new_state = MALAState(*(torch.where(accepted[:, None] if new.dim() == 2 else accepted, new, old)
                            for new, old in zip(proposed, state)))
    return new_state, MALAInfo(log_ratio.clamp_max(0).exp(), divergent, torch.ones_like(accepted, dtype=torch.long))


def test_window_adaptation_wraps_a_kernel_that_is_not_hmc():
    target = correlated_gaussian_2d(0.9, (1.0, 10.0))
    algorithm = window_adaptation(mala_kernel, target, 1000, init=mala_init, target_accept=0.57)
    draws, divergences = run_chains(algorithm, 4, 2, 1000, 4000, seed=22)
    z = z_scores(draws, target.mean, target.cov.diagonal(), [0, 1])
    assert all(abs(v) < 3.5 for v in z.values()), z
    assert divergences == 0


class RandomWalkState(NamedTuple):
    position: torch.Tensor
    logdensity: torch.Tensor


class AcceptanceInfo(NamedTuple):
    acceptance_rate: torch.Tensor


def test_window_adaptation_of_a_kernel_whose_state_has_no_gradient():
    """Random-walk Metropolis with proposal ``N(x, eps^2 M^-1)``: its state caches no gradient, so the
    step-size heuristic evaluates one; the mass matrix still adapts to the target's variances."""
    target = correlated_gaussian_2d(0.0, (1.0, 10.0))

    def init(position, logdensity):
        return RandomWalkState(position, logdensity(position))

    def kernel(state, generator, logdensity, step_size, metric):
        noise = torch.randn(state.position.shape, generator=generator, dtype=state.position.dtype)
        proposed = init(state.position + step_size.unsqueeze(-1) * metric.inverse.sqrt() * noise, logdensity)
        log_ratio = proposed.logdensity - state.logdensity
        accepted = torch.log(torch.rand(log_ratio.shape, generator=generator, dtype=log_ratio.dtype)) < log_ratio
        new_state = RandomWalkState(torch.where(accepted[:, None], proposed.position, state.position),
                                    torch.where(accepted, proposed.logdensity, state.logdensity))
        return new_state, AcceptanceInfo(log_ratio.clamp_max(0).exp())

    algorithm = window_adaptation(kernel, target, 1000, init=init, target_accept=0.3)
    g = torch.Generator().manual_seed(23)
    state = algorithm.init(torch.randn(4, 2, generator=g, dtype=torch.float64))
    accept = []
    for i in range(1500):
        state, info = algorithm.step(state, None, g)
        assert set(info) == {"lp", "acceptance_rate", "step_size"}
        if i >= 1000:
            accept.append(info["acceptance_rate"])
    ratio = state.adaptation.mass_matrix.inverse / target.cov.diagonal()
    assert bool(((ratio > 0.5) & (ratio < 2.0)).all()), ratio
    assert 0.2 < float(torch.stack(accept).mean()) < 0.4


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


@pytest.mark.parametrize("pooled, dense", [(False, False), (True, False), (True, True)])
def test_end_of_window_step_adopts_the_estimate_and_restarts_the_step_size(pooled, dense):
    schedule = adaptation.WindowSchedule(slow=(False, True, True, True), window_end=(False, False, False, True))
    shape = (3,) if pooled else (4, 3)
    state = adaptation.init(torch.full(() if pooled else (4,), 0.1, dtype=torch.float64), shape, dense=dense)
    restarts = []

    def heuristic(chain, metric, step_size, generator):
        restarts.append((metric, step_size))
        return torch.full_like(step_size, 0.05)

    g = torch.Generator().manual_seed(0)
    xs = torch.randn(4, 4, 3, generator=g, dtype=torch.float64)
    for i, x in enumerate(xs):
        state = adaptation.update_step_size(state, torch.full_like(state.step_size, 0.9), target=0.8)
        state = adaptation.update_mass_matrix(state, schedule, i, hmc.HMCState(x, None, None), g, heuristic)
    fed = xs[1:].reshape(-1, 3) if pooled else xs[1:]
    expected = welford.init(torch.Size(shape), dense=dense, dtype=torch.float64)
    expected = welford.update_many(expected, fed) if pooled else \
        welford.update(welford.update(welford.update(expected, fed[0]), fed[1]), fed[2])
    torch.testing.assert_close(state.mass_matrix.inverse, welford.regularized_covariance(expected))
    assert float(state.welford.count) == 0 and state.mass_matrix.dense == dense
    assert len(restarts) == 1 and restarts[0][0] is state.mass_matrix
    assert bool((state.step_size == 0.05).all()) and float(state.dual_averaging.count.max()) == 0
    final = adaptation.finalize(state)
    torch.testing.assert_close(final.step_size, state.dual_averaging.log_step_size_avg.exp())


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


def test_chees_cap_bounds_the_steps_not_the_adaptation():
    """A step cap that binds only in the tail of the jitter leaves the adapted trajectory near the uncapped one
    (the cap used to clamp the adapted length to cap x the current step size: 1.6 steps per draw against 9.3 on
    this correlated Gaussian), and no iteration takes more than the cap."""
    cov = torch.tensor([[1.0, 0.9995], [0.9995, 1.0]], dtype=torch.float64)
    precision = torch.linalg.inv(cov)

    def steps(cap):
        post = inference.sample(lambda t: -0.5 * ((t @ precision) * t).sum(-1), dim=2, method="chees", num_chains=4,
                                num_warmup=60, num_samples=60, max_leapfrog_steps=cap, seed=0, progress=False,
                                check_convergence=False, init=torch.zeros(4, 2, dtype=torch.float64))
        return post.sample_stats["n_steps"].double()

    free, capped = steps(1000), steps(16)
    assert capped.max() <= 16 < free.max()
    assert capped.mean() >= 0.8 * free.mean()
