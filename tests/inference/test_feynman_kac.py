"""The Feynman-Kac particle loop: an unbiased evidence estimate against the exact marginal likelihood of a
conjugate model (MCSE bound over independent populations), NaN potentials as counted zero-weight particles,
the all-NaN error, and ESS-triggered resampling of NamedTuple particle states.
"""

import math

import pytest
import torch

from inference.smc import feynman_kac, moves
from probnets.model import LogDensity

Z = 3.5


def test_evidence_is_unbiased_for_sequential_gaussian_data():
    """``theta ~ N(0, 1)``, ``y_k | theta ~ N(theta, 1)``, one datum per step with random-walk MH moves on the
    current partial posterior: ``mean_r Z_r`` matches the exact ``N(y; 0, I + 1 1^T)`` within its MCSE."""
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0.8, 1.5, 0.3, 1.1, 2.0], dtype=torch.float64)
    n = y.shape[0]
    cov = torch.eye(n, dtype=torch.float64) + 1.0
    exact = float(torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov).log_prob(y))

    def partial_posterior(k):
        return LogDensity(lambda t: -0.5 * t[..., 0] ** 2 - 0.5 * ((t - y[:k]) ** 2).sum(-1), 1)

    def log_potential(k):
        return lambda particles: -0.5 * (particles.position[..., 0] - y[k]) ** 2 - 0.5 * math.log(2 * math.pi)

    populations, num_particles = 400, 50
    start = torch.randn(populations, num_particles, 1, generator=g, dtype=torch.float64)
    state = feynman_kac.init(moves.init(start, partial_posterior(0)))
    for k in range(n):
        target = partial_posterior(k)

        def move(particles, generator, target=target):
            particles = moves.init(particles.position, target)
            for _ in range(3):
                particles, info = moves.random_walk_metropolis(particles, generator, target, 0.8)
            return particles, info

        state, info = feynman_kac.step(state, g, log_potential=log_potential(k), move=None if k == 0 else move,
                                       resampling_scheme="stratified", threshold=0.5)
        assert info.reweight.ess.shape == (populations,) and info.resampled.dtype == torch.bool
    assert torch.allclose(state.log_weights.logsumexp(-1), torch.zeros(populations, dtype=torch.float64))
    ratio = torch.exp(state.log_evidence - exact)  # Z_r / Z, mean 1 when unbiased
    z = float((ratio.mean() - 1) / (ratio.std() / math.sqrt(populations)))
    assert abs(z) < Z, z


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
    new, resampled = feynman_kac.resample(state, g, resampling_scheme="residual", threshold=0.5)
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
