"""The masked-BNN Gibbs sampler (inference.mcmc.masked_gibbs): determinism, bit-identical resume after an
interruption, its statistics, predictions with each draw's masks, and argument checks. The exactness of the
mask moves is tested in test_mask_moves.py; the noise conditional in tests/probnets/test_masked_bnn.py; the
cubic toy in test_masked_gibbs_toy.py."""

import pytest
import torch

import inference
from probnets import Gaussian
from probnets.masked_bnn import MaskedBNN
from probnets.model import LogDensity
from tests_support import chi_square_pvalue, make_regression

SHORT = dict(num_chains=3, num_warmup=8, num_samples=12, thin=2, num_steps=5, num_mask_updates=3, progress=False,
             check_convergence=False)


def _model_and_data(likelihood=None):
    x, y = make_regression(15, 2)
    return MaskedBNN(2, [6, 4], num_data=15, likelihood=likelihood), (x, y)


class _Interrupt(Exception):
    pass


class _Interrupting(LogDensity):
    def __init__(self, inner: LogDensity, limit: int):
        super().__init__(inner.fn, inner.dim)
        self.inner, self.limit, self.calls = inner, limit, 0

    def value_and_grad(self, theta):
        self.calls += 1
        if self.calls > self.limit:
            raise _Interrupt
        return self.inner.value_and_grad(theta)


def test_same_seed_same_draws_and_interrupted_run_resumes_bit_identically(tmp_path, monkeypatch):
    model, data = _model_and_data()
    first = inference.sample_masked(model, data, seed=3, **SHORT)
    second = inference.sample_masked(model, data, seed=3, **SHORT)
    torch.testing.assert_close(first.samples, second.samples, rtol=0, atol=0)
    other = inference.sample_masked(model, data, seed=4, **SHORT)
    assert not torch.equal(first.samples, other.samples)

    path = tmp_path / "run.pt"
    logdensity = model.logdensity
    monkeypatch.setattr(model, "logdensity", lambda batch: _Interrupting(logdensity(batch), 150))
    with pytest.raises(_Interrupt):  # past the first checkpoints, before the end
        inference.sample_masked(model, data, seed=3, checkpoint=path, checkpoint_every=5, **SHORT)
    assert path.exists()
    monkeypatch.setattr(model, "logdensity", logdensity)
    resumed = inference.sample_masked(model, data, seed=3, checkpoint=path, checkpoint_every=5, **SHORT)
    torch.testing.assert_close(resumed.samples, first.samples, rtol=0, atol=0)
    for name, value in first.sample_stats.items():
        torch.testing.assert_close(resumed.sample_stats[name], value, rtol=0, atol=0)


def test_statistics_names_masks_and_noise():
    model, data = _model_and_data()
    post = inference.sample_masked(model, data, seed=0, **SHORT)
    assert post.samples.shape == (3, 6, model.spec.dim)
    expected = {"lp", "acceptance_rate", "step_size", "n_steps", "diverging", "energy", "mask_acceptance_rate",
                "mask_nonfinite", "active_fraction_0", "active_fraction_1"}
    assert set(post.sample_stats) == expected
    assert set(post.warmup_stats) == expected and post.warmup_stats["lp"].shape == (3, 8)
    masks = post.samples[..., model.mask_slice]
    assert bool(((masks == 0) | (masks == 1)).all())
    torch.testing.assert_close(post.sample_stats["active_fraction_0"], masks[..., :6].mean(-1))
    torch.testing.assert_close(post.sample_stats["active_fraction_1"], masks[..., 6:].mean(-1))
    torch.testing.assert_close(post.sample_stats["lp"], model.logdensity(data)(post.samples))
    assert bool((post.sample_stats["n_steps"] == 5).all())
    assert post.info["method"] == "masked_gibbs" and post.info["grad_evals"] > 0
    idata = post.to_arviz(model, data)
    assert idata.posterior["masks.1"].shape == (3, 6, 4) and "active_fraction_1" in idata.sample_stats
    # The masks move, and the noise scale is redrawn every iteration.
    assert bool((masks[:, 1:] != masks[:, :-1]).any())
    noise = post.samples[..., -1]
    assert bool((noise[:, 1:] != noise[:, :-1]).all())


def test_fixed_noise_keeps_the_noise_and_has_no_noise_parameter():
    model, data = _model_and_data(Gaussian(noise_scale=0.5))
    post = inference.sample_masked(model, data, seed=1, **SHORT)
    assert model.spec.dim == model.mask_slice.stop
    assert torch.isfinite(post.samples).all()


def test_predictive_uses_each_draws_masks(tmp_path):
    model, (x, y) = _model_and_data()
    post = inference.sample_masked(model, (x, y), seed=2, **SHORT)
    pred = post.predictive(model, x)
    draws = post.flat_samples()
    manual = model.predict_f(draws, x).mean(0)
    torch.testing.assert_close(pred.mean, manual)
    all_active = draws.clone()
    all_active[:, model.mask_slice] = 1.0
    assert not torch.allclose(model.predict_f(all_active, x).mean(0), manual)
    post.save(tmp_path / "posterior.pt")
    loaded = inference.SamplePosterior.load(tmp_path / "posterior.pt")
    torch.testing.assert_close(loaded.predictive(model, x).mean, pred.mean, rtol=0, atol=0)


def test_bad_arguments_raise_naming_them():
    model, data = _model_and_data()
    with pytest.raises(TypeError, match="MaskedBNN"):
        inference.sample_masked(object(), data, **SHORT)
    for name, value in [("num_steps", 0), ("num_mask_updates", -1), ("max_flips", 0), ("target_accept", 1.5),
                        ("step_size", -0.1)]:
        with pytest.raises(ValueError, match=name):
            inference.sample_masked(model, data, **{**SHORT, name: value})
    init = model.init_theta(3, dtype=torch.float64)
    init[0, model.mask_slice.start] = 0.5
    with pytest.raises(ValueError, match="mask"):
        inference.sample_masked(model, data, init=init, **SHORT)
    x, y = data
    with pytest.raises(ValueError, match="rows"):
        inference.sample_masked(model, (x[:-1], y), **SHORT)


def test_whole_sweep_keeps_the_joint_distribution_when_the_likelihood_is_flat():
    """One datum and sigma^2 ~ InvGamma(1, b) with b = 1e6: the likelihood is flat in weights and masks (it
    varies by ~1e-5) and the joint posterior is the prior with sigma^2 ~ InvGamma(1.5, b). Chains started in it
    and run with a fixed step size (no adaptation) must stay in it after 40 sweeps: their final states are
    independent draws. Pass rules (fixed before running): mask-size chi-square p > 0.001; |z| < 3.5 for the
    mean and mean square of the N(0, 1) weights and for the mean of the precision ~ Gamma(1.5, b). A wrong
    noise conditional (shape 1 + n instead of 1 + n/2) fails it (checked, z = 20); a stale cached log density
    (not refreshed after the noise draw, or before the mask moves) only rescales acceptances by factors that
    do not depend on the proposal here and went undetected at this size."""
    num_chains, num_sweeps, b, width = 2000, 40, 1e6, 12
    x, y = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    model = MaskedBNN(1, [width], num_data=20, weight_prior="normal", noise_rate=b)
    g = torch.Generator().manual_seed(0)
    init = model.init_theta(num_chains, dtype=torch.float64)
    init[:, : model.net_spec.dim] = torch.randn(num_chains, model.net_spec.dim, generator=g, dtype=torch.float64)
    sizes = torch.arange(width + 1, dtype=torch.float64)
    marginal = torch.exp(-model.mask_penalty * sizes**2)
    marginal = marginal / marginal.sum()
    s = torch.multinomial(marginal, num_chains, replacement=True, generator=g)
    ranks = torch.rand(num_chains, width, generator=g, dtype=torch.float64).argsort(-1).argsort(-1)
    init[:, model.mask_slice] = (ranks < s.unsqueeze(-1)).to(torch.float64)
    precision = torch._standard_gamma(torch.full((num_chains,), 1.5, dtype=torch.float64), generator=g) / b
    init[:, -1] = -0.5 * precision.log()

    post = inference.sample_masked(model, (x, y), init=init, num_chains=num_chains, num_warmup=0,
                                   num_samples=num_sweeps, thin=num_sweeps, num_steps=5, step_size=0.5,
                                   num_mask_updates=3, seed=1, progress=False, check_convergence=False)
    final = post.samples[:, -1]
    counts = torch.bincount(final[:, model.mask_slice].sum(-1).long(), minlength=width + 1)
    assert chi_square_pvalue(counts, marginal) > 1e-3
    weights = final[:, : model.net_spec.dim]
    n = weights.numel()
    assert abs(float(weights.mean()) / (1 / n) ** 0.5) < 3.5
    assert abs(float(weights.square().mean() - 1) / (2 / n) ** 0.5) < 3.5
    final_precision = torch.exp(-2 * final[:, -1])
    assert abs(float(final_precision.mean() - 1.5 / b) / (1.5**0.5 / b / num_chains**0.5)) < 3.5
    assert 0.3 < float(post.sample_stats["acceptance_rate"].mean()) < 1.0
