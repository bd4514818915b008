"""Static HMC jitters its number of steps by default, so a path length that resonates with the posterior
(here half a period of every coordinate: ``x -> -x``, so ``x**2`` never changes) still mixes.

Fixed before running: N(0, I_4), 4 chains x 400 draws, no warm-up (identity mass, step size pi/20, 20 steps:
integration time pi); pass rule |mean(x_d**2) - 1| / MCSE < 3.5 for every coordinate and R-hat of x**2 < 1.05
with the default jitter; without jitter the same run must show the resonance (R-hat of x**2 > 1.5).
"""

import math

import pytest
import torch

import inference
from inference import diagnostics
from inference.mcmc.hmc import jitter_num_steps

RESONANT = dict(method="hmc", num_chains=4, num_warmup=0, num_samples=400, step_size=math.pi / 20, num_steps=20,
                seed=3, progress=False, check_convergence=False)


def _standard_normal(theta):
    return -0.5 * (theta ** 2).sum(-1)


def test_resonant_path_length_mixes_with_the_default_jitter():
    post = inference.sample(_standard_normal, dim=4, **RESONANT)
    sq = post.samples ** 2
    estimate = sq.mean((0, 1))
    mcse = diagnostics.mcse_mean(sq)
    assert bool(((estimate - 1).abs() / mcse < 3.5).all()), (estimate, mcse)
    assert float(diagnostics.split_rhat(sq).max()) < 1.05


def test_without_jitter_the_same_path_length_resonates():
    post = inference.sample(_standard_normal, dim=4, jitter=0.0, **RESONANT)
    assert float(diagnostics.split_rhat(post.samples ** 2).max()) > 1.5
    assert bool((post.sample_stats["n_steps"] == 20).all())


def test_jittered_steps_are_uniform_on_the_interval_and_keep_the_mean():
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([jitter_num_steps(20, 0.5, g) for _ in range(4000)])
    assert int(draws.min()) == 10 and int(draws.max()) == 30
    counts = torch.bincount(draws, minlength=31)[10:].double()
    expected = 4000 / 21
    assert float(((counts - expected) ** 2 / expected).sum()) < 45.3  # chi-square, 20 dof, p = 0.001
    assert int(jitter_num_steps(1, 0.5, g)) == 1


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5"])
def test_jitter_must_be_in_zero_one(bad):
    with pytest.raises(ValueError, match="jitter must be a number in"):
        inference.sample(_standard_normal, dim=2, method="hmc", jitter=bad, progress=False)
