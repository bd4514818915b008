"""The contract every registered sampler keeps (``inference.registry``).

A sampler's test class inherits ``SamplerContract``, names its ``method`` and sizes the runs; the suite then
checks it against analytic posteriors with Monte Carlo standard-error bounds (a correlated 2-D Gaussian and a
conjugate Bayesian linear regression), determinism, checkpoint + interruption + bit-identical resume, that a
NaN log density or gradient is a counted divergence and never a NaN draw, ArviZ ``sample_stats`` names, and
clear errors for bad options and data. ``tests/inference/test_sampler_contracts.py`` fails when a registered
sampler has no contract class.

Statistical rule, fixed before any run: every statistic's ``|estimate - truth| / MCSE < 3.5`` (false-alarm
rate of a correct sampler well below 1% per test); for weighted draws (SMC) the MCSE is the spread of the
per-population estimates across independent populations; samplers without a Metropolis correction declare the
relative bias of second moments they are allowed (``variance_bias``), measured and stated in their class.

Samplers whose chains target an approximation declare it. Structured SG-MCMC samples the mean-field (CAVI)
approximation over its parameter groups: its class runs the posterior checks with options under which it is
exact (one group) and declares ``mean_field`` settings (one group per coordinate), under which the correlated
Gaussian's draws must match the mean-field moments ``N(mean, diag(1 / Lambda_kk))`` instead.
"""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch

import inference
from inference import diagnostics, registry
from inference.testing import GaussianTarget, correlated_gaussian_2d
from probnets import BNN, Gaussian

Z_BOUND = 3.5
#: ``sample_stats`` names with an ArviZ meaning (ArviZ schema plus PyMC's ``reached_max_tree_depth``).
ARVIZ_STATS = {"lp", "acceptance_rate", "step_size", "step_size_nom", "tree_depth", "n_steps", "diverging", "energy",
               "energy_error", "max_energy_error", "int_time", "inv_metric", "reached_max_tree_depth"}


def conjugate_regression(dtype=torch.float64):
    """40 points of ``y = x w + b + N(0, 0.5^2)`` under ``N(0, 2^2)`` priors: the model, data and the exact
    posterior mean ``4`` and covariance ``4 x 4`` of ``(w, b)``."""
    noise, prior = 0.5, 2.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=dtype)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=dtype) + 0.3 + noise * torch.randn(40, generator=g, dtype=dtype)
    design = torch.cat([x, torch.ones(40, 1, dtype=dtype)], 1)
    cov = torch.linalg.inv(design.T @ design / noise**2 + torch.eye(4, dtype=dtype) / prior**2)
    mean = cov @ design.T @ y / noise**2
    model = BNN(3, [], prior=dist.Normal(0.0, prior), likelihood=Gaussian(noise_scale=noise))
    return model, (x, y), mean, cov


def moment_violations(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, variance_bias: float,
                      log_weights: torch.Tensor | None = None) -> dict:
    """The statistics (means, second central moments and co-moments) that break the MCSE rule.

    Weighted draws (``log_weights`` ``C x S``: SMC populations of particles) are estimated per population and
    their MCSE is the spread across the ``C`` independent populations (particles of one population are
    correlated through resampling)."""
    if log_weights is not None:
        return _weighted_moment_violations(draws, mean, cov, variance_bias, log_weights)
    centred = draws - mean
    bad = {}
    for i in range(mean.shape[0]):
        z = float((draws[..., i].mean() - mean[i]) / diagnostics.mcse_mean(draws[..., i]))
        if abs(z) >= Z_BOUND:
            bad[f"mean[{i}]"] = z
        for j in range(i, mean.shape[0]):
            q = centred[..., i] * centred[..., j]
            allowed = Z_BOUND * diagnostics.mcse_mean(q) + variance_bias * (cov[i, i] * cov[j, j]).sqrt()
            if abs(float(q.mean() - cov[i, j])) >= float(allowed):
                bad[f"cov[{i},{j}]"] = (float(q.mean()), float(cov[i, j]))
    return bad


def _weighted_moment_violations(draws, mean, cov, variance_bias, log_weights) -> dict:
    w = torch.softmax(log_weights.double(), -1).unsqueeze(-1)
    per_population = lambda x: (w * x).sum(1)  # noqa: E731  (C x S x D -> C x D)
    num = draws.shape[0]
    means, centred = per_population(draws), draws - mean
    bad = {}
    for i in range(mean.shape[0]):
        z = float((means[:, i].mean() - mean[i]) / (means[:, i].std() / num**0.5))
        if abs(z) >= Z_BOUND:
            bad[f"mean[{i}]"] = z
        for j in range(i, mean.shape[0]):
            q = per_population((centred[..., i] * centred[..., j]).unsqueeze(-1))[:, 0]
            allowed = Z_BOUND * q.std() / num**0.5 + variance_bias * (cov[i, i] * cov[j, j]).sqrt()
            if abs(float(q.mean() - cov[i, j])) >= float(allowed):
                bad[f"cov[{i},{j}]"] = (float(q.mean()), float(cov[i, j]))
    return bad


class _Interrupt(Exception):
    pass


class InterruptingLikelihood:
    """Installed as ``model.log_likelihood``: counts the calls and raises ``_Interrupt`` after ``limit`` of them
    (an interrupted run); ``restart(limit)`` starts a new count, ``remove()`` puts the model's own method back."""

    def __init__(self, model):
        self.model, self.original, self.calls, self.limit = model, model.log_likelihood, 0, None
        model.log_likelihood = self

    def __call__(self, theta, batch):
        self.calls += 1
        if self.limit is not None and self.calls > self.limit:
            raise _Interrupt
        return self.original(theta, batch)

    def restart(self, limit: int | None = None) -> None:
        self.calls, self.limit = 0, limit

    def remove(self) -> None:
        self.model.log_likelihood = self.original


class _InterruptingGaussian(GaussianTarget):
    """The contract's Gaussian, raising after ``limit`` gradient calls (an interrupted run)."""

    def __init__(self, limit: int | None = None):
        base = correlated_gaussian_2d()
        super().__init__(base.mean, base.cov)
        self.limit, self.calls = limit, 0

    def value_and_grad(self, theta):
        self.calls += 1
        if self.limit is not None and self.calls > self.limit:
            raise _Interrupt
        return super().value_and_grad(theta)


class _NaNBeyondTwo(GaussianTarget):
    """A standard 2-D normal whose log density and gradient are NaN where the first coordinate exceeds 2."""

    def __init__(self):
        super().__init__(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))

    def value_and_grad(self, theta):
        value, grad = super().value_and_grad(theta)
        outside = theta[..., 0] > 2.0
        return torch.where(outside, torch.nan, value), torch.where(outside[..., None], torch.nan, grad)


class SamplerContract:
    """Mixin for a registered sampler's tests.

    Attributes:
        method: The registered name.
        gaussian: ``inference.sample`` settings for the correlated Gaussian ``N(0, [[1, 9], [9, 100]])``.
        regression: Settings for the conjugate linear regression (``conjugate_regression``).
        minibatch_regression: Settings for the regression on minibatches (minibatch samplers only).
        variance_bias: Allowed relative bias of second moments (0 for Metropolis-corrected samplers).
        short: Settings of the short runs (determinism, resume, divergences).
        mean_field: Settings under which the sampler targets the mean-field approximation with one group per
            coordinate (``None``: the sampler targets the posterior, and the check is skipped); chains start at
            the mean unless they give ``init``.
        mean_field_scales: Standard deviations of the correlated Gaussian (correlation 0.9) of that check.
        mean_field_bias: Allowed relative bias of its second moments (and correlation), declared like
            ``variance_bias``.
    """

    method: str
    gaussian: dict
    regression: dict
    minibatch_regression: dict | None = None
    variance_bias: float = 0.0
    short: dict = {"num_chains": 4, "num_warmup": 30, "num_samples": 40, "thin": 1}
    mean_field: dict | None = None
    mean_field_scales: tuple[float, float] = (1.0, 10.0)
    mean_field_bias: float = 0.0

    def _sample(self, target, data=None, **settings):
        return inference.sample(target, data, method=self.method, progress=False, check_convergence=False,
                                **({"dim": 2} if data is None and "init" not in settings else {}), **settings)

    def test_is_registered(self):
        assert registry.get(self.method).name == self.method

    def test_correlated_gaussian_moments_within_mcse(self):
        target = correlated_gaussian_2d(0.9, (1.0, 10.0))
        post = self._sample(target, seed=11, **self.gaussian)
        assert moment_violations(post.samples, target.mean, target.cov, self.variance_bias, post.log_weights) == {}
        assert post.num_divergences == 0

    def test_mean_field_moments_within_mcse(self):
        """Declared mean-field samplers: one group per coordinate gives ``diag(1 / diag(precision))`` and no
        correlation (here ``1 - 0.9**2 = 0.19`` times each squared scale). The chains start at the mean, as
        Alexos et al. start from a MAP estimate, unless the settings give ``init``."""
        if self.mean_field is None:
            pytest.skip(f"{self.method} targets the posterior itself")
        target = correlated_gaussian_2d(0.9, self.mean_field_scales)
        settings = {"init": torch.zeros(self.mean_field["num_chains"], 2, dtype=torch.float64), **self.mean_field}
        post = self._sample(target, seed=13, **settings)
        cov = torch.diag(1 / torch.diagonal(target.precision))
        assert moment_violations(post.samples, target.mean, cov, self.mean_field_bias) == {}
        assert post.num_divergences == 0

    def test_conjugate_linear_regression_within_mcse(self):
        model, data, mean, cov = conjugate_regression()
        post = self._sample(model, data, seed=21, **self.regression)
        assert moment_violations(post.samples, mean, cov, self.variance_bias, post.log_weights) == {}
        assert post.num_divergences == 0

    def test_minibatch_linear_regression_within_mcse(self):
        if self.minibatch_regression is None:
            assert not registry.get(self.method).minibatch, "a minibatch sampler must test minibatches"
            pytest.skip(f"{self.method} is a full-batch sampler")
        model, data, mean, cov = conjugate_regression()
        post = self._sample(model, data, seed=22, **self.minibatch_regression)
        assert moment_violations(post.samples, mean, cov, self.variance_bias, post.log_weights) == {}

    def test_same_seed_gives_identical_draws_and_another_seed_does_not(self):
        target = correlated_gaussian_2d()
        first, again = (self._sample(target, seed=3, **self.short) for _ in range(2))
        assert torch.equal(first.samples, again.samples)
        for name, value in first.sample_stats.items():
            assert torch.equal(again.sample_stats[name], value), name
        assert not torch.equal(first.samples, self._sample(target, seed=4, **self.short).samples)

    def test_interrupted_run_resumes_bit_identically(self, tmp_path):
        path = tmp_path / "run.ckpt"
        settings = dict(self.short, seed=5, checkpoint_every=7)
        counting = _InterruptingGaussian()
        uninterrupted = self._sample(counting, **settings)
        with pytest.raises(_Interrupt):  # stopped about two thirds through, past several checkpoints
            self._sample(_InterruptingGaussian(2 * counting.calls // 3), checkpoint=path, **settings)
        assert path.exists()
        resumed = self._sample(_InterruptingGaussian(), checkpoint=path, **settings)
        assert torch.equal(resumed.samples, uninterrupted.samples)
        for stats in ("sample_stats", "warmup_stats"):
            for name, value in getattr(uninterrupted, stats).items():
                assert torch.equal(getattr(resumed, stats)[name], value), (stats, name)

    def test_interrupted_minibatch_run_resumes_bit_identically(self, tmp_path):
        """The minibatch order is part of the checkpoint: a resumed run sees the same batches."""
        if self.minibatch_regression is None:
            pytest.skip(f"{self.method} is a full-batch sampler")
        path = tmp_path / "run.ckpt"
        model, data, _, _ = conjugate_regression()
        likelihood = InterruptingLikelihood(model)
        settings = dict(self.short, seed=8, checkpoint_every=7, batch_size=10)
        uninterrupted = self._sample(model, data, **settings)
        likelihood.restart(2 * likelihood.calls // 3)
        with pytest.raises(_Interrupt):
            self._sample(model, data, checkpoint=path, **settings)
        likelihood.remove()
        resumed = self._sample(model, data, checkpoint=path, **settings)
        assert torch.equal(resumed.samples, uninterrupted.samples)

    def test_non_finite_density_is_a_counted_divergence(self):
        init = torch.full((self.short["num_chains"], 2), 1.9, dtype=torch.float64)
        post = self._sample(_NaNBeyondTwo(), init=init, seed=6, **dict(self.short, num_chains=init.shape[0]))
        # Weighted samplers (SMC) may keep zero-weight particles where the density is NaN; none may carry weight.
        alive = torch.ones_like(post.samples[..., 0], dtype=torch.bool) if post.log_weights is None else \
            post.log_weights > -torch.inf
        assert torch.isfinite(post.samples).all() and (post.samples[..., 0][alive] <= 2.0).all()
        diverging = post.sample_stats["diverging"].sum() + post.warmup_stats["diverging"].sum()
        assert int(diverging) > 0

    def test_sample_stats_have_arviz_names(self):
        post = self._sample(correlated_gaussian_2d(), seed=7, **self.short)
        assert "diverging" in post.sample_stats and set(post.sample_stats) <= ARVIZ_STATS
        for value in post.sample_stats.values():
            assert value.shape == post.samples.shape[:2]
        idata = post.to_arviz()
        weights = {"log_weight"} if post.log_weights is not None else set()  # weighted (SMC) posteriors export theirs
        assert set(idata.sample_stats.data_vars) == set(post.sample_stats) | weights

    def test_unknown_option_is_named(self):
        with pytest.raises(TypeError, match="no_such_option"):
            self._sample(correlated_gaussian_2d(), no_such_option=1, **self.short)

    @pytest.mark.parametrize("setting, message", [
        ({"num_chains": 0}, "num_chains"), ({"num_samples": 0}, "num_samples"), ({"thin": 0}, "thin"),
        ({"num_warmup": -1}, "num_warmup"), ({"init": torch.zeros(3, 5)}, "init")])
    def test_bad_settings_are_named(self, setting, message):
        with pytest.raises(ValueError, match=message):
            self._sample(correlated_gaussian_2d(), **dict(self.short, **setting))

    @pytest.mark.parametrize("corrupt, message", [
        (lambda x, y: (x.masked_fill(x > 1.5, float("nan")), y), "x contains"),
        (lambda x, y: (x, y[:-1]), "same number of rows"),
        (lambda x, y: (x[:0], y[:0]), "zero rows")])
    def test_bad_data_is_named(self, corrupt, message):
        model, data, _, _ = conjugate_regression()
        with pytest.raises(ValueError, match=message):
            self._sample(model, corrupt(*data), **self.short)
