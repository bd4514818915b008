"""The Feynman-Kac particle loop: an unbiased evidence estimate and weighted posterior moments against the
exact answers of a conjugate model (MCSE bounds over independent populations), NaN potentials as counted
zero-weight particles, the all-NaN error, and ESS-triggered resampling of NamedTuple particle states.
"""

import math

import pytest
import torch

from inference.smc import feynman_kac, moves
from probnets.model import LogDensity

Z = 3.5


Y = torch.tensor([0.8, 1.5, 0.3, 1.1, 2.0], dtype=torch.float64)
NOISE = 0.3


def sequential_gaussian(populations, num_particles, seed):
    """``theta ~ N(0, 1)``, ``y_k | theta ~ N(theta, s^2)``: one datum per step, with three random-walk MH moves
    on the current partial posterior before each reweighting (stratified resampling below ESS 0.9 P)."""
    g = torch.Generator().manual_seed(seed)
    s = NOISE

    def partial_posterior(k):
        return LogDensity(lambda t: -0.5 * t[..., 0] ** 2 - 0.5 * ((t - Y[:k]) ** 2).sum(-1) / s**2, 1)

    def log_potential(k):
        return lambda particles: (-0.5 * (particles.position[..., 0] - Y[k]) ** 2 / s**2
                                  - 0.5 * math.log(2 * math.pi * s**2))

    start = torch.randn(populations, num_particles, 1, generator=g, dtype=torch.float64)
    state = feynman_kac.init(moves.init(start, partial_posterior(0)))
    for k in range(Y.shape[0]):
        target = partial_posterior(k)

        def move(particles, generator, target=target):
            particles = moves.init(particles.position, target)
            for _ in range(3):
                particles, info = moves.random_walk_metropolis(particles, generator, target, s)
            return particles, info

        state, info = feynman_kac.step(state, g, log_potential=log_potential(k), move=None if k == 0 else move,
                                       resampling_scheme="stratified", threshold=0.9)
        assert info.reweight.ess.shape == (populations,) and info.resampled.dtype == torch.bool
    assert torch.allclose(state.log_weights.logsumexp(-1), torch.zeros(populations, dtype=torch.float64))
    return state


def test_evidence_is_unbiased_for_sequential_gaussian_data():
    """``mean_r Z_r`` over 400 populations of 50 particles matches the exact ``N(y; 0, s^2 I + 1 1^T)``."""
    n = Y.shape[0]
    cov = NOISE**2 * torch.eye(n, dtype=torch.float64) + 1.0
    exact = float(torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov).log_prob(Y))
    state = sequential_gaussian(400, 50, seed=0)
    ratio = torch.exp(state.log_evidence - exact)  # Z_r / Z, mean 1 when unbiased
    z = float((ratio.mean() - 1) / (ratio.std() / math.sqrt(ratio.shape[0])))
    assert abs(z) < Z, z


def test_weighted_particles_have_the_exact_posterior_moments():
    """Per-population weighted moments, MCSE across 10 populations of 2000 particles (the O(1/P) bias of
    self-normalised estimates is well below that MCSE at this P)."""
    state = sequential_gaussian(10, 2000, seed=1)
    v = 1 / (1 + Y.shape[0] / NOISE**2)
    m = v * float(Y.sum()) / NOISE**2
    w = state.log_weights.exp()
    theta = state.particles.position[..., 0]
    for name, estimate, truth in (("mean", (w * theta).sum(-1), m), ("var", (w * (theta - m) ** 2).sum(-1), v)):
        z = float((estimate.mean() - truth) / (estimate.std() / math.sqrt(estimate.shape[0])))
        assert abs(z) < Z, (name, z)


def test_nan_potentials_are_zero_weight_particles_and_counted():
    particles = torch.arange(6, dtype=torch.float64).reshape(1, 6, 1)
    state = feynman_kac.init(particles)
    potential = torch.tensor([[0.0, float("nan"), 0.0, float("inf"), -torch.inf, 0.0]], dtype=torch.float64)
    state, info = feynman_kac.reweight(state, potential)
    assert int(info.num_invalid) == 2
    assert torch.equal(state.log_weights.isinf(), torch.tensor([[False, True, False, True, True, False]]))
    assert float(info.log_evidence_increment) == pytest.approx(math.log(3 / 6))
    assert float(info.ess) == pytest.approx(3.0)
    state, resampled = feynman_kac.resample(state, torch.Generator().manual_seed(0), threshold=1.0)
    assert bool(resampled.all()) and set(state.particles.flatten().tolist()) <= {0.0, 2.0, 5.0}


def test_a_population_without_valid_particles_is_a_clear_error():
    state = feynman_kac.init(torch.zeros(3, 4, 2))
    potential = torch.zeros(3, 4)
    potential[1] = float("nan")
    with pytest.raises(ValueError, match=r"population\(s\) \[\[1\]\].*4 NaN"):
        feynman_kac.reweight(state, potential)


def test_resampling_follows_the_ess_threshold_and_gathers_every_field():
    g = torch.Generator().manual_seed(1)
    position = torch.arange(8, dtype=torch.float64).reshape(2, 4, 1)
    particles = moves.PositionState(position, position[..., 0] * 10)
    state = feynman_kac.init(particles)
    skewed = torch.tensor([[0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    state, _ = feynman_kac.reweight(state, skewed)
    never, resampled = feynman_kac.resample(state, g, threshold=0.0)
    assert not bool(resampled.any()) and never is state
    new, resampled = feynman_kac.resample(state, g, resampling_scheme="residual", threshold=0.9)
    assert resampled.tolist() == [False, True]
    assert torch.equal(new.particles.position[0], position[0])  # the balanced population is untouched
    assert torch.equal(new.particles.logdensity, new.particles.position[..., 0] * 10)  # fields stay aligned
    assert torch.allclose(new.log_weights[1], torch.full((4,), -math.log(4), dtype=torch.float64))
    with pytest.raises(ValueError, match="resampling must be one of"):
        feynman_kac.resample(state, g, resampling_scheme="bogus")
    with pytest.raises(ValueError, match="shape"):
        feynman_kac.reweight(state, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="P >= 1"):
        feynman_kac.init(torch.zeros(3))


def test_step_with_a_jitter_on_plain_tensor_particles():
    """Open-horizon SMC's use: tensor particles, an uncorrected OU jitter as the move, resampling every step."""
    g = torch.Generator().manual_seed(2)
    state = feynman_kac.init(torch.randn(3, 50, 2, generator=g, dtype=torch.float64))

    def jitter(particles, generator):
        return moves.ou_jitter(particles, generator, 0.1), None

    for _ in range(3):
        state, info = feynman_kac.step(state, g, log_potential=lambda p: -0.5 * (p - 1).square().sum(-1),
                                       move=jitter, threshold=1.0)
        assert info.move is None and bool(info.resampled.all())
    assert state.particles.shape == (3, 50, 2) and state.log_evidence.shape == (3,)
    assert torch.allclose(state.log_weights, torch.full((3, 50), -math.log(50), dtype=torch.float64))
