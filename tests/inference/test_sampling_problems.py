"""Problems R-hat and ESS do not show are never silent: one chain, a chain stuck on divergences (which ChEES's
step-size adaptation, fed by the other chains, hides), NUTS at its maximum tree depth, warm-up divergences."""

import warnings

import pytest
import torch

import inference
from inference import sampling_problems
from inference.diagnostics import SINGLE_CHAIN_WARNING, ConvergenceWarning
from inference.posterior import SamplePosterior


def _stiff_beyond_three(theta):
    """N(0, I) with a wall of curvature 2e4 beyond theta[0] = 3: a chain that starts behind it diverges on
    every trajectory at the step size that suits the others."""
    return -0.5 * (theta ** 2).sum(-1) - 1e4 * torch.relu(theta[..., 0] - 3) ** 2


def test_a_chain_stuck_on_divergences_is_reported_not_averaged_away():
    init = torch.zeros(8, 2, dtype=torch.float64)
    init[:, 1] = torch.linspace(-1, 1, 8, dtype=torch.float64)
    init[5, 0] = 10.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        post = inference.sample(_stiff_beyond_three, init=init, method="chees", num_warmup=100, num_samples=60,
                                progress=False)
    assert sampling_problems.stuck_chains(post) == [5]
    stuck = [str(w.message) for w in caught if "chains are stuck" in str(w.message)]
    assert len(stuck) == 1 and "5 (" in stuck[0]
    assert bool((post.samples[5, :, 0] > 3).all())  # it never left the wall
    assert float(post.sample_stats["step_size"][0, -1]) > 0.1  # the others set a step size that suits them


def _posterior(diverging, warmup_diverging=None, **stats):
    chains, draws = diverging.shape
    return SamplePosterior(samples=torch.randn(chains, draws, 1, generator=torch.Generator().manual_seed(0)),
                           sample_stats={"diverging": diverging, **stats},
                           warmup_stats={} if warmup_diverging is None else {"diverging": warmup_diverging},
                           info={"max_tree_depth": 4})


def test_the_stuck_rule_is_more_than_half_of_a_chains_iterations():
    diverging = torch.zeros(3, 10, dtype=torch.bool)
    diverging[0, :5] = True  # half: not stuck
    diverging[2, :6] = True  # most: stuck
    assert sampling_problems.stuck_chains(_posterior(diverging)) == [2]


def test_warmup_divergences_are_counted_beside_those_after_it():
    post = _posterior(torch.zeros(2, 10, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool))
    assert sampling_problems.divergence_counts(post) == {"warmup": 10, "sampling": 0}
    assert any("10 divergent transitions during warm-up" in w and "0 after it" in w for w in post.warnings())
    few = _posterior(torch.zeros(2, 10, dtype=torch.bool), torch.zeros(2, 50, dtype=torch.bool))
    few.warmup_stats["diverging"][0, :3] = True  # 3% of warm-up, none after: normal step-size adaptation
    assert sampling_problems.divergence_counts(few)["warmup"] == 3
    assert not any("during warm-up" in w for w in few.warnings())


def test_nuts_at_its_maximum_depth_on_most_iterations_warns():
    reached = torch.zeros(2, 10, dtype=torch.bool)
    reached[:, :6] = True
    post = _posterior(torch.zeros(2, 10, dtype=torch.bool), reached_max_tree_depth=reached)
    assert any("maximum tree depth (4) on 60%" in w for w in post.warnings())
    reached[:, 5] = False  # half: no warning
    assert not any("tree depth" in w for w in post.warnings())


def test_one_chain_says_convergence_cannot_be_checked():
    with pytest.warns(ConvergenceWarning, match="Only 1 chain: R-hat is undefined"):
        inference.sample(lambda t: -0.5 * (t ** 2).sum(-1), dim=2, method="nuts", num_chains=1, num_warmup=50,
                         num_samples=50, progress=False)
    assert SINGLE_CHAIN_WARNING not in _posterior(torch.zeros(2, 10, dtype=torch.bool)).warnings()


def test_nuts_with_a_tiny_tree_warns_through_sample():
    with pytest.warns(ConvergenceWarning, match="maximum tree depth"):
        inference.sample(lambda t: -0.5 * (t ** 2).sum(-1) / 100, dim=5, method="nuts", num_chains=2,
                         num_warmup=50, num_samples=50, progress=False, max_tree_depth=1)
