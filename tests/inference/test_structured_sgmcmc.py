"""Structured SG-MCMC (``inference.sgmcmc.structured``): the parameter groups, the history ring buffers and
their memory cap, one vectorised log-density call per step, ``K = 1`` = SG-MCMC bit for bit, option errors.
The mean-field stationary law and the faster mixing are in ``test_structured_mean_field.py``; the contract
suite (``test_sampler_contracts.py``) covers determinism, resume, divergences and the posterior checks at K = 1.
"""

import pyro.distributions as dist
import pytest
import torch

import inference
from inference.sgmcmc import groups, history
from inference.sgmcmc.sgld import sgld
from inference.sgmcmc.structured import StructuredLogDensity, _Step, structured_sgld
from inference.testing import correlated_gaussian_2d
from probnets import BNN, Gaussian
from probnets.spec import ParamSpec

SPEC = ParamSpec.from_shapes({"layers.0.weight": (3, 2), "layers.0.bias": (3,), "layers.1.weight": (1, 3),
                              "layers.1.bias": (1,), "likelihood.log_noise_scale": ()})


def test_layer_groups_follow_the_spec_names():
    ids = groups.by_layer(SPEC)
    assert ids.tolist() == [0] * 9 + [1] * 4 + [2]


def test_neuron_groups_are_output_units_with_their_bias():
    """Row ``j`` of a ``Linear`` weight (``out x in``) and bias ``j`` form one group; a scalar is its own."""
    ids = groups.by_neuron(SPEC)
    assert ids.tolist() == [0, 0, 1, 1, 2, 2, 0, 1, 2, 3, 3, 3, 3, 4]


def test_conv_kernel_neuron_groups_are_output_channels():
    spec = ParamSpec.from_shapes({"conv.weight": (2, 1, 3, 3), "conv.bias": (2,)})
    assert groups.by_neuron(spec).tolist() == [0] * 9 + [1] * 9 + [0, 1]


def test_permuted_groups_are_balanced_and_random_groups_are_compact():
    generator = torch.Generator().manual_seed(0)
    ids = groups.permuted(103, 4, generator)
    assert sorted(torch.bincount(ids).tolist()) == [25, 26, 26, 26]
    assert not torch.equal(ids, torch.arange(103) % 4)  # permuted, not contiguous round robin
    ids = groups.random(5, 50, generator)
    assert set(ids.tolist()) == set(range(int(ids.max()) + 1))  # empty groups dropped


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups="layer", num_groups=3, spec=SPEC), "num_groups is set by groups='layer'"),
    (dict(groups="neuron", num_groups=None, spec=None), "needs the parameter layout"),
    (dict(groups="blocks", num_groups=None, spec=SPEC), "groups must be one of"),
    (dict(groups="permuted", num_groups=15, spec=SPEC), r"num_groups \(15\) exceeds"),
    (dict(groups="permuted", num_groups=0, spec=SPEC), "num_groups"),
    (dict(groups=torch.zeros(3, dtype=torch.long), num_groups=None, spec=SPEC), "one integer id per coordinate"),
    (dict(groups=torch.zeros(14), num_groups=None, spec=SPEC), "one integer id per coordinate")])
def test_bad_groups_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        groups.resolve(kwargs["groups"], kwargs["num_groups"], 14, kwargs["spec"], seed=0)


def test_explicit_group_ids_are_relabelled():
    assert groups.resolve(torch.tensor([7, 3, 7, 9]), None, 4, None, seed=0).tolist() == [1, 0, 1, 2]


def test_ring_buffer_starts_at_the_initial_position_thins_and_overwrites_the_oldest():
    buffer = history.init(torch.tensor([[0.0, 0.5], [10.0, 10.5]]), length=3, max_bytes=10**6)
    assert torch.equal(buffer.draws, torch.tensor([[[0.0, 0.5]] * 3, [[10.0, 10.5]] * 3]))
    for step in range(1, 9):  # thin 2: iterates 2, 4, 6, 8 are stored; 8 overwrites 2
        buffer = history.push(buffer, torch.tensor([[step, step + 0.5], [10 + step, 10.5 + step]]), thin=2)
    assert int(buffer.count) == 4 and int(buffer.iteration) == 8
    assert buffer.draws[0, :, 0].tolist() == [8.0, 4.0, 6.0]
    picked = history.draw(buffer, torch.tensor([[[0, 1], [2, 0]], [[1, 1], [0, 2]]]))
    assert picked.tolist() == [[[8.0, 4.5], [16.0, 18.5]], [[4.0, 4.5], [18.0, 16.5]]]


def test_history_memory_is_capped_and_reported():
    """``C x length x D x itemsize`` bytes: 8 x 1000 x 2 x 8 = 128000."""
    target = correlated_gaussian_2d()
    settings = dict(dim=2, num_chains=8, num_warmup=5, num_samples=10, method="structured-sgld", num_groups=2,
                    progress=False, check_convergence=False)
    post = inference.sample(target, history_length=1000, **settings)
    assert post.info["history_bytes"] == 8 * 1000 * 2 * 8 == history.nbytes(8, 1000, 2, torch.float64)
    assert post.info["num_groups"] == 2
    with pytest.raises(ValueError, match="max_history_bytes=100000"):
        inference.sample(target, history_length=1000, max_history_bytes=100_000, **settings)


def test_one_group_is_sgmcmc_bit_for_bit():
    target = correlated_gaussian_2d()
    settings = dict(dim=2, num_chains=4, num_warmup=20, num_samples=30, seed=3, step_size=0.05, progress=False,
                    check_convergence=False)
    for base in ("sgld", "psgld", "sghmc"):
        plain = inference.sample(target, method=base, **settings)
        one = inference.sample(target, method=f"structured-{base}", num_groups=1, **settings)
        assert torch.equal(one.samples, plain.samples), base
        assert one.info["grad_evals"] == plain.info["grad_evals"]


class _CountingGaussian(type(correlated_gaussian_2d())):
    """The contract's Gaussian, recording the shape of every ``value_and_grad`` call."""

    def __init__(self):
        base = correlated_gaussian_2d()
        super().__init__(base.mean, base.cov)
        self.shapes = []

    def value_and_grad(self, theta):
        self.shapes.append(tuple(theta.shape))
        return super().value_and_grad(theta)


@pytest.mark.parametrize("options, rows", [(dict(num_groups=2), 1 + 2), (dict(live_probability=0.5, num_passes=5),
                                                                          1 + 5)])
def test_each_step_is_one_vectorised_call_over_all_passes(options, rows):
    """Plain: the current position and K = 2 mixed vectors; dropout: the current position and L = 5."""
    target = _CountingGaussian()
    algorithm = structured_sgld(target, 0, step_size=0.05, history_length=10, **options)
    generator = torch.Generator().manual_seed(0)
    state = algorithm.init(torch.zeros(6, 2, dtype=torch.float64))
    target.shapes.clear()
    for _ in range(4):
        state, _ = algorithm.step(state, None, generator)
    assert target.shapes == [(rows * 6, 2)] * 4


def test_stored_entries_are_constants_and_only_live_groups_move():
    """With the history a point mass at ``(1, -1)``, the plain gradient of group ``x1`` is that of
    ``(x1, -1)`` and of ``x2`` that of ``(1, x2)``, whatever the other coordinate's current value."""
    target = correlated_gaussian_2d(0.9, (1.0, 1.0))
    buffer = history.init(torch.tensor([[1.0, -1.0]], dtype=torch.float64), length=4, max_bytes=10**6)
    structured = StructuredLogDensity(target, torch.tensor([0, 1]), None, None)
    bound = structured.at(_Step(None, buffer, torch.Generator().manual_seed(0)))
    theta = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    value, grad = bound.value_and_grad(theta)
    _, grad_first = target.value_and_grad(torch.tensor([[0.3, -1.0]], dtype=torch.float64))
    _, grad_second = target.value_and_grad(torch.tensor([[1.0, 0.7]], dtype=torch.float64))
    assert torch.allclose(grad, torch.tensor([[grad_first[0, 0], grad_second[0, 1]]]))
    assert torch.allclose(value, target(theta))


def test_layer_groups_on_a_bnn_with_minibatches_and_epochs():
    """``groups="layer"`` reads the model's spec; ``epochs=3`` with batches of 10 of 40 rows runs 12 iterations."""
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = x.sum(-1)
    model = BNN(2, [4], prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(noise_scale=0.5))
    post = inference.sample(model, (x, y), method="structured-sghmc", groups="layer", num_chains=3, num_warmup=5,
                            epochs=3, thin=2, batch_size=10, progress=False, check_convergence=False)
    assert post.info["num_groups"] == 2 and post.info["num_samples"] == 12 and post.info["epochs"] == 3
    assert post.samples.shape == (3, 6, model.spec.dim) and torch.isfinite(post.samples).all()


@pytest.mark.parametrize("options, error, message", [
    (dict(live_probability=0.0), ValueError, "live_probability"),
    (dict(live_probability=1.5), ValueError, "live_probability"),
    (dict(num_passes=4), ValueError, "num_passes is for the dropout variant"),
    (dict(live_probability=0.5, num_passes=0), ValueError, "num_passes"),
    (dict(history_length=0), ValueError, "history_length"),
    (dict(history_thin=0), ValueError, "history_thin"),
    (dict(max_history_bytes=0), ValueError, "max_history_bytes"),
    (dict(groups="layer"), ValueError, "needs the parameter layout")])
def test_bad_options_are_named(options, error, message):
    with pytest.raises(error, match=message):
        inference.sample(correlated_gaussian_2d(), dim=2, method="structured-sgld", num_chains=2, num_warmup=0,
                         num_samples=5, progress=False, **options)


def test_the_history_holds_the_chains_latest_iterates():
    """After a run with ``history_length=3`` and ``history_thin=2``, the buffer holds the positions of the last
    three even iterations (draws kept at every iteration here)."""
    post = inference.sample(correlated_gaussian_2d(), dim=2, method="structured-sgld", num_chains=3, num_warmup=0,
                            num_samples=11, thin=1, step_size=0.05, history_length=3, history_thin=2, progress=False,
                            check_convergence=False)
    stored = post.final_state.history.draws  # C x 3 x D, slot = (count - 1) % 3 written last
    latest = post.samples[:, [5, 7, 9]]  # iterations 6, 8, 10 (counted from 1)
    assert int(post.final_state.history.count) == 5
    assert torch.equal(stored[:, [2, 0, 1]], latest)


def test_dropout_gradient_is_unbiased():
    """With the history a point mass at ``theta`` itself, every pass evaluates ``theta``: the dropout estimate is
    ``(live passes / (p L))`` times the gradient, whose mean over 20000 chains is the gradient within 3.5
    standard errors (relative standard error ``sqrt((1 - p) / (p L C))``)."""
    target = correlated_gaussian_2d(0.9, (1.0, 1.0))
    num_chains, p, passes = 20000, 0.3, 4
    theta = torch.tensor([[0.5, -1.0]], dtype=torch.float64).expand(num_chains, 2)
    buffer = history.init(theta, length=2, max_bytes=10**9)
    structured = StructuredLogDensity(target, torch.tensor([0, 1]), p, passes)
    _, grad = structured.at(_Step(None, buffer, torch.Generator().manual_seed(0))).value_and_grad(theta)
    _, exact = target.value_and_grad(theta[:1])
    ratio = grad / exact
    standard_error = ((1 - p) / (p * passes * num_chains)) ** 0.5
    assert ((ratio.mean(0) - 1).abs() < 3.5 * standard_error).all(), ratio.mean(0)
    levels = torch.arange(passes + 1, dtype=torch.float64) / (p * passes)  # 0 .. L live passes
    assert (ratio[..., None] - levels).abs().min(-1).values.max() < 1e-9


def test_plain_warmup_steps_are_the_base_samplers_then_the_history_is_the_position_reached():
    """``plain_warmup=3``: three SGLD steps bit for bit (one row per chain), the history refilled with the position
    after the third, then structured steps (the position and K = 2 mixed vectors per chain)."""
    target = _CountingGaussian()
    algorithm = structured_sgld(target, 10, step_size=0.05, num_groups=2, history_length=5, plain_warmup=3)
    plain = sgld(correlated_gaussian_2d(), 10, step_size=0.05)
    start = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    state, reference = algorithm.init(start), plain.init(start)
    generator, reference_generator = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    target.shapes.clear()
    for _ in range(3):
        state, _ = algorithm.step(state, None, generator)
        reference, _ = plain.step(reference, None, reference_generator)
        assert torch.equal(state.position, reference.position)
    assert torch.equal(state.history.draws, state.position[:, None].expand(6, 5, 2))
    assert int(state.history.count) == 0
    state, _ = algorithm.step(state, None, generator)
    assert target.shapes == [(6, 2)] * 3 + [(18, 2)]
    assert int(state.history.count) == 1


def test_plain_warmup_defaults_to_half_the_warmup_and_is_validated():
    target = correlated_gaussian_2d()
    algorithm = structured_sgld(target, 9, num_groups=2, history_length=3)
    state = algorithm.init(torch.zeros(2, 2, dtype=torch.float64))
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        state, _ = algorithm.step(state, None, generator)
    assert torch.equal(state.history.draws, state.position[:, None].expand(2, 3, 2))  # refilled after step 4 = 9 // 2
    with pytest.raises(ValueError, match="plain_warmup"):
        structured_sgld(target, 9, plain_warmup=-1)
