"""SMC moves: each Metropolis-corrected move leaves a Gaussian target invariant (MCSE bounds on the moments of
independent particles started at exact draws), the jitters have their exact closed-form laws, NaN proposals
are rejected and counted, and leading population dims and per-population parameters broadcast.

Rule fixed before running: every standardised error ``|estimate - truth| / MCSE < 3.5``; each particle is an
independent chain, so the i.i.d. MCSE over particles is exact.
"""

import math

import pytest
import torch

from inference.mcmc import mass_matrix as metrics
from inference.smc import moves
from inference.testing import GaussianTarget
from probnets.model import LogDensity

Z = 3.5
MEAN = torch.tensor([1.0, -2.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)


def exact_draws(shape, mean, cov, generator):
    z = torch.randn(*shape, mean.shape[0], generator=generator, dtype=torch.float64)
    return mean + z @ torch.linalg.cholesky(cov).T


def moment_z(x, mean, cov):
    """z-scores of the means and second central moments (about the true mean) of independent draws ``... x D``."""
    flat = x.reshape(-1, x.shape[-1])
    n = flat.shape[0]
    out = {}
    for i in range(mean.shape[0]):
        out[f"mean[{i}]"] = float((flat[:, i].mean() - mean[i]) / (flat[:, i].std() / math.sqrt(n)))
        for j in range(i, mean.shape[0]):
            q = (flat[:, i] - mean[i]) * (flat[:, j] - mean[j])
            out[f"cov[{i},{j}]"] = float((q.mean() - cov[i, j]) / (q.std() / math.sqrt(n)))
    return out


def run_move(name, target, start, generator, num_moves):
    """``num_moves`` moves of particles ``R x P x 2`` with one step size per population (``R x 1``)."""
    step = torch.tensor([[0.5], [0.7], [0.9], [1.1]], dtype=torch.float64)
    if name == "rwmh":
        state = moves.init(start, target)
        kernel = lambda s: moves.random_walk_metropolis(s, generator, target, step)  # noqa: E731
    else:
        state = moves.init_with_gradient(start, target)
        inverse = torch.diagonal(COV).expand(start.shape[0], 1, 2)  # one (diagonal) metric per population
        mass = metrics.diagonal(inverse)
        if name == "mala":
            kernel = lambda s: moves.mala(s, generator, target, step, mass)  # noqa: E731
        else:
            kernel = lambda s: moves.hmc(s, generator, target, step, 5, mass)  # noqa: E731
    accepted = torch.zeros(start.shape[:-1], dtype=torch.float64)
    for _ in range(num_moves):
        state, info = kernel(state)
        assert info.acceptance_rate.shape == start.shape[:-1]
        accepted += info.is_accepted
    return state, info, accepted / num_moves


@pytest.mark.parametrize("name", ["rwmh", "mala", "hmc"])
def test_move_leaves_gaussian_invariant(name):
    g = torch.Generator().manual_seed(10)
    target = GaussianTarget(MEAN, COV)
    start = exact_draws((4, 1000), MEAN, COV, g)
    state, info, acceptance = run_move(name, target, start, g, 10)
    assert state.position.shape == start.shape and state.logdensity.shape == start.shape[:-1]
    assert torch.allclose(state.logdensity, target(state.position))
    bad = {k: v for k, v in moment_z(state.position, MEAN, COV).items() if abs(v) >= Z}
    assert bad == {}
    # The move does move: acceptance well inside (0, 1) and the particles decorrelate from their start.
    assert 0.2 < float(acceptance.mean()) < 0.99
    corr = torch.corrcoef(torch.stack([start[..., 0].flatten(), state.position[..., 0].flatten()]))[0, 1]
    assert corr < 0.9
    if name != "rwmh":
        assert torch.allclose(state.logdensity_grad, target.value_and_grad(state.position)[1])
        assert int(info.num_grad_evals.max()) == (1 if name == "mala" else 5)


def test_pcn_leaves_gaussian_prior_times_likelihood_invariant():
    """Prior ``N(m0, diag(v0))`` times a Gaussian likelihood ``N(y; theta, s^2 I)``: a Gaussian posterior."""
    g = torch.Generator().manual_seed(11)
    m0, v0 = torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([1.0, 4.0], dtype=torch.float64)
    y, s2 = torch.tensor([1.5, 1.0], dtype=torch.float64), 0.5
    post_var = 1 / (1 / v0 + 1 / s2)
    post_mean = post_var * (m0 / v0 + y / s2)
    log_likelihood = LogDensity(lambda t: -0.5 * ((t - y) ** 2).sum(-1) / s2, 2)
    start = exact_draws((4, 1000), post_mean, torch.diag(post_var), g)
    state = moves.init(start, log_likelihood)
    rates = []
    for _ in range(10):
        state, info = moves.preconditioned_crank_nicolson(state, g, log_likelihood, 0.5, m0, v0)
        rates.append(info.acceptance_rate.mean())
    bad = {k: v for k, v in moment_z(state.position, post_mean, torch.diag(post_var)).items() if abs(v) >= Z}
    assert bad == {}
    assert 0.2 < float(torch.stack(rates).mean()) < 0.99
    assert torch.allclose(state.logdensity, log_likelihood(state.position))


def test_pcn_under_a_flat_likelihood_accepts_everything():
    g = torch.Generator().manual_seed(12)
    flat = LogDensity(lambda t: t.new_zeros(t.shape[:-1]), 3)
    state = moves.init(torch.randn(50, 3, generator=g, dtype=torch.float64), flat)
    _, info = moves.preconditioned_crank_nicolson(state, g, flat, 1.0, 0.0, 2.0)
    assert bool(info.is_accepted.all()) and torch.all(info.acceptance_rate == 1)


def test_ou_jitter_preserves_its_gaussian_and_has_the_exact_autocorrelation():
    g = torch.Generator().manual_seed(13)
    m0, v0, dt = torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([1.0, 4.0], dtype=torch.float64), 0.8
    x0 = exact_draws((8000,), m0, torch.diag(v0), g)
    x = x0
    for _ in range(5):
        x = moves.ou_jitter(x, g, dt, m0, v0)
    bad = {k: v for k, v in moment_z(x, m0, torch.diag(v0)).items() if abs(v) >= Z}
    assert bad == {}
    x1 = moves.ou_jitter(x0, g, dt, m0, v0)
    for i in range(2):
        rho = math.exp(-dt / (2 * float(v0[i])))
        corr = float(torch.corrcoef(torch.stack([x0[:, i], x1[:, i]]))[0, 1])
        assert abs(corr - rho) < Z * (1 - rho**2) / math.sqrt(x0.shape[0])


def test_random_walk_jitter_adds_exactly_its_variance():
    g = torch.Generator().manual_seed(14)
    scale = torch.tensor([1.0, 0.5], dtype=torch.float64)
    x = exact_draws((2, 4000), MEAN, COV, g)
    for _ in range(4):
        x = moves.random_walk_jitter(x, g, 0.3, scale)
    grown = COV + torch.diag(4 * (0.3 * scale) ** 2)
    bad = {k: v for k, v in moment_z(x, MEAN, grown).items() if abs(v) >= Z}
    assert bad == {}


class NaNBeyondTwo(GaussianTarget):
    """Standard normal whose log density and gradient are NaN where the first coordinate exceeds 2."""

    def __init__(self):
        super().__init__(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))

    def _value(self, theta):
        value = super()._value(theta)
        return torch.where(theta[..., 0] > 2.0, torch.nan, value)

    def value_and_grad(self, theta):
        value, grad = super().value_and_grad(theta)
        outside = theta[..., 0] > 2.0
        return torch.where(outside, torch.nan, value), torch.where(outside[..., None], torch.nan, grad)


@pytest.mark.parametrize("name", ["rwmh", "mala", "hmc", "pcn"])
def test_nan_proposals_are_rejected_and_counted(name):
    g = torch.Generator().manual_seed(15)
    target = NaNBeyondTwo()
    start = torch.full((2, 30, 2), 1.9, dtype=torch.float64)
    state = (moves.init if name in ("rwmh", "pcn") else moves.init_with_gradient)(start, target)
    divergent = 0
    for _ in range(10):
        if name == "rwmh":
            state, info = moves.random_walk_metropolis(state, g, target, 1.0)
        elif name == "pcn":
            state, info = moves.preconditioned_crank_nicolson(state, g, target, 1.0)
        elif name == "mala":
            state, info = moves.mala(state, g, target, 1.0)
        else:
            state, info = moves.hmc(state, g, target, 0.5, 4)
        divergent += int(info.is_divergent.sum())
        assert torch.isfinite(state.position).all() and (state.position[..., 0] <= 2.0).all()
        assert torch.isfinite(state.logdensity).all()
    assert divergent > 0


def test_shared_and_per_particle_parameters_broadcast():
    g = torch.Generator().manual_seed(16)
    target = GaussianTarget(MEAN, COV)
    start = exact_draws((3, 5), MEAN, COV, g)
    state = moves.init_with_gradient(start, target)
    for mass in (None, metrics.diagonal(torch.ones(2, dtype=torch.float64)),
                 metrics.dense(COV), metrics.diagonal(torch.ones(3, 5, 2, dtype=torch.float64))):
        new, info = moves.hmc(state, g, target, torch.full((3, 5), 0.3, dtype=torch.float64), 3, mass)
        assert new.position.shape == (3, 5, 2) and info.is_accepted.shape == (3, 5)
    assert moves.random_walk_jitter(start, g, torch.ones(3, 1, dtype=torch.float64)).shape == (3, 5, 2)
    assert torch.equal(moves.ou_jitter(start, g, 0.0, MEAN, 1.0), start)
