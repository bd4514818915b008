"""Exactness of the birth/death mask moves (inference.mcmc.mask_moves) against enumerable targets.

Every test starts its chains exactly in the target (draws from the known distribution), runs only mask moves
and compares the chains' final states, independent draws of the move's stationary law if the acceptance is
exact, with the target by a chi-square test. Pass rule, fixed before running: p-value > 0.001 (bins with an
expected count below 5 merged). Dropping the proposal correction ``q_rev / q_fwd`` from the acceptance, or
computing the reverse death weights at the current instead of the proposed state, fails them (checked).
"""

import itertools
import math

import pytest
import torch
from inference.mcmc import mask_moves
from probnets import Gaussian
from probnets.masked_bnn import MaskedBNN
from tests_support import chi_square_pvalue

P_MIN = 1e-3


def _run_moves(model, data, theta, num_moves, generator, max_flips=3):
    logdensity = model.logdensity(data)
    state = (theta, *logdensity.value_and_grad(theta))
    accepted = 0.0
    for _ in range(num_moves):
        state, info = mask_moves.birth_death_move(*state, logdensity, model.mask_slice, generator, max_flips)
        accepted += float(info.acceptance_rate.mean())
        assert not bool(info.is_nonfinite.any())
    return state[0], accepted / num_moves


def _toy_data(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 8 * torch.rand(n, 1, generator=g, dtype=torch.float64) - 4
    return x, x[:, 0] ** 3 / 10 + torch.randn(n, generator=g, dtype=torch.float64)


def test_constant_likelihood_mask_sizes_follow_the_prior_count_marginal():
    """Zero output weights make the likelihood constant in the masks, so the mask chain targets the mask prior,
    under which each layer's size s has probability proportional to exp(-(lambda log n)^5 s^2) (the C(p, s) of
    the prior cancels the number of masks of size s). One layer (moves pooling two layers are checked by the
    enumeration test below)."""
    num_chains, num_moves, widths = 1000, 100, (30,)
    x, y = _toy_data()
    model = MaskedBNN(1, widths, num_data=20, mask_lambda=0.1, likelihood=Gaussian(noise_scale=1.0))
    g = torch.Generator().manual_seed(0)
    theta = model.init_theta(num_chains, generator=g, dtype=torch.float64)
    model.net_spec.unflatten(theta[:, : model.net_spec.dim])[f"layers.{len(widths)}.weight"].zero_()
    marginals = []
    for mask, width in zip(model.masks(theta), widths):
        sizes = torch.arange(width + 1, dtype=torch.float64)
        marginal = torch.exp(-model.mask_penalty * sizes**2)
        marginal = marginal / marginal.sum()
        s = torch.multinomial(marginal, num_chains, replacement=True, generator=g)
        ranks = torch.rand(num_chains, width, generator=g, dtype=torch.float64).argsort(-1).argsort(-1)
        mask.copy_((ranks < s.unsqueeze(-1)).to(torch.float64))
        marginals.append(marginal)
    final, acceptance = _run_moves(model, (x, y), theta, num_moves, g)
    for mask, width, marginal in zip(model.masks(final), widths, marginals):
        counts = torch.bincount(mask.sum(-1).long(), minlength=width + 1)
        assert chi_square_pvalue(counts, marginal) > P_MIN
    assert 0.2 < acceptance < 1.0


def test_masks_given_weights_follow_the_enumerated_conditional_posterior():
    """A 1 -> 4 -> 3 -> 1 tanh network with fixed weights: all 2^7 masks enumerated give the exact conditional
    posterior of the masks; the gradient-informed death weights are far from uniform here."""
    num_chains, num_moves = 2000, 50
    x, y = _toy_data()
    model = MaskedBNN(1, [4, 3], num_data=20, activation="tanh", likelihood=Gaussian(noise_scale=3.0))
    g = torch.Generator().manual_seed(0)
    theta = model.init_theta(1, generator=g, dtype=torch.float64)
    theta[:, : model.net_spec.dim] *= 3
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=7)), dtype=torch.float64)
    every = theta.expand(len(codes), -1).clone()
    every[:, model.mask_slice] = codes
    exact = torch.softmax(model.logdensity((x, y))(every), 0)
    start = torch.multinomial(exact, num_chains, replacement=True, generator=g)
    final, acceptance = _run_moves(model, (x, y), every[start], num_moves, g)
    index = (final[:, model.mask_slice] * 2.0 ** torch.arange(6, -1, -1, dtype=torch.float64)).sum(-1).long()
    counts = torch.bincount(index, minlength=len(codes))
    assert chi_square_pvalue(counts, exact) > P_MIN
    assert 0.05 < acceptance < 1.0


def test_set_probability_sums_orderings_of_sequential_draws():
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    chosen = torch.tensor([[2, 0, 3]])
    total = 10.0
    expected_pair = 3 / total * 1 / (total - 3) + 1 / total * 3 / (total - 1)
    log_q = mask_moves.set_log_probability(weights.log(), chosen, torch.tensor([2]))
    assert float(log_q.exp()) == pytest.approx(expected_pair, rel=1e-12)
    triple = sum(math.prod(weights[0, list(o)].tolist()) / (total * (total - weights[0, o[0]].item())
                 * (total - weights[0, o[0]].item() - weights[0, o[1]].item()))
                 for o in itertools.permutations([2, 0, 3]))
    log_q3 = mask_moves.set_log_probability(weights.log(), chosen, torch.tensor([3]))
    assert float(log_q3.exp()) == pytest.approx(triple, rel=1e-12)
    # The probabilities of all sets of one size add up to one.
    all_pairs = torch.tensor(list(itertools.combinations(range(4), 2)))
    pairs = mask_moves.set_log_probability(weights.log().expand(len(all_pairs), -1), all_pairs,
                                           torch.full((len(all_pairs),), 2))
    assert float(pairs.exp().sum()) == pytest.approx(1.0, rel=1e-12)


def test_impossible_moves_are_rejected_and_leave_the_chain_in_place():
    """A layer of 2 nodes: births with all nodes active and deaths with none active are impossible."""
    x, y = _toy_data(8)
    model = MaskedBNN(1, [2], num_data=8, likelihood=Gaussian(noise_scale=1.0))
    theta = model.init_theta(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta[:32, model.mask_slice] = 1.0
    theta[32:, model.mask_slice] = 0.0
    logdensity = model.logdensity((x, y))
    g = torch.Generator().manual_seed(1)
    (new, value, _), info = mask_moves.birth_death_move(theta, *logdensity.value_and_grad(theta), logdensity,
                                                        model.mask_slice, g, 3)
    moved = (new != theta).any(-1)
    assert bool((info.acceptance_rate[~info.is_accepted & moved] == 0).all())
    assert bool((moved == info.is_accepted).all())
    torch.testing.assert_close(value, logdensity(new))
