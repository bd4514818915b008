"""Adaptive tempered SMC (``method="smc"``): the log evidence of the conjugate Bayesian linear regression
against its closed form, for every move and for data annealing; the evidence of a bare Gaussian log density;
weighted posterior moments; NaN particles; resume across the bridge/likelihood segment boundary; clear errors.

Rule fixed before running: ``|log Z_hat - log Z| < 3 MCSE`` (the MCSE from the spread of the independent
populations' ``Z_r``), moments by the contract's weighted MCSE rule (``|z| < 3.5``).
"""

import math

import pytest
import torch
from sampler_contract import conjugate_regression, moment_violations

import inference
from inference.smc import tempered
from inference.smc.posterior import ParticlePosterior
from inference.testing import GaussianTarget
from probnets.model import LogDensity

EVIDENCE_BOUND = 3.0


def exact_log_evidence(data, noise=0.5, prior=2.0):
    """``y ~ N(0, noise^2 I + prior^2 X X^T)`` with ``X`` the design including the intercept column."""
    x, y = data
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    cov = noise**2 * torch.eye(x.shape[0], dtype=x.dtype) + prior**2 * design @ design.T
    return float(torch.distributions.MultivariateNormal(torch.zeros_like(y), cov).log_prob(y))


def smc(target, data=None, **settings):
    return inference.sample(target, data, method="smc", progress=False, check_convergence=False, **settings)


@pytest.mark.parametrize("options", [{}, {"move": "mala"}, {"move": "rwmh"},
                                     {"annealing": "data", "num_samples": 200, "num_warmup": 3}],
                         ids=["hmc", "mala", "rwmh", "data"])
def test_log_evidence_of_conjugate_regression_within_three_mcse(options):
    """Data annealing (more stages, per-datum gradients by autograd) runs smaller to keep the test short."""
    model, data, mean, cov = conjugate_regression()
    post = smc(model, data, **{"num_chains": 16, "num_samples": 300, "num_warmup": 5, "seed": 31, **options})
    exact = exact_log_evidence(data)
    error = (post.info["log_evidence"] - exact) / post.info["log_evidence_mcse"]
    assert abs(error) < EVIDENCE_BOUND, (post.info["log_evidence"], exact, post.info["log_evidence_mcse"])
    assert post.info["log_evidences"].shape == (16,) and post.info["num_stages"] == post.warmup_stats["ess"].shape[1]
    assert isinstance(post, ParticlePosterior) and post.log_weights.shape == post.samples.shape[:2]
    assert torch.allclose(post.log_weights.logsumexp(-1), torch.zeros(16, dtype=torch.float64))
    assert post.info["max_rhat"] < 1.05
    if options.get("annealing") == "data":  # the path ends after the last datum
        assert torch.all(post.warmup_stats["temperature"][:, -1] == 1)
        assert moment_violations(post.samples, mean, cov, 0.0, post.log_weights) == {}


def test_log_evidence_of_a_bare_gaussian_log_density():
    """``exp(-0.5 (theta - m)^T S^{-1} (theta - m))`` integrates to ``sqrt(det(2 pi S))``; the Gaussian reference
    is chosen wider than the target (with a narrower one the evidence is heavy-tailed, see ``paths``)."""
    mean = torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]], dtype=torch.float64)
    target = GaussianTarget(mean, cov)
    post = smc(target, dim=3, num_chains=16, num_samples=300, num_warmup=5, seed=32, reference_scale=3.0,
               dense_mass=True)
    exact = 0.5 * float(torch.logdet(2 * math.pi * cov))
    assert abs(post.info["log_evidence"] - exact) < EVIDENCE_BOUND * post.info["log_evidence_mcse"]
    assert moment_violations(post.samples, mean, cov, 0.0, post.log_weights) == {}
    assert post.warmup_stats["segment"].max() == 0  # a bare log density has one segment (no prior bridge)


def test_the_prior_bridge_is_not_part_of_the_evidence():
    """A ``ProbModel`` is reached through a Gaussian-reference -> prior bridge whose normaliser is known (1):
    ``log_evidences`` sum the likelihood segment's increments only."""
    model, data, _, _ = conjugate_regression()
    post = smc(model, data, num_chains=4, num_samples=100, num_warmup=3, seed=33)
    segment, increment = post.warmup_stats["segment"], post.warmup_stats["log_evidence_increment"]
    assert segment[:, 0].eq(0).all() and segment[:, -1].eq(1).all()
    assert torch.allclose(post.info["log_evidences"], (increment * (segment == 1)).sum(1))


class NaNBeyond(LogDensity):
    """A standard normal log density that is NaN where ``theta[0] > bound``."""

    def __init__(self, bound):
        self.bound = bound
        super().__init__(lambda t: -0.5 * t.square().sum(-1), 2)

    def value_and_grad(self, theta):
        outside = theta[..., 0] > self.bound
        value = torch.where(outside, torch.nan, -0.5 * theta.square().sum(-1))
        return value, torch.where(outside[..., None], torch.nan, -theta)


def test_nan_particles_get_zero_weight_are_counted_and_reported():
    post = smc(NaNBeyond(0.5), init=torch.zeros(4, 2, dtype=torch.float64), num_chains=4, num_samples=200,
               num_warmup=3, seed=34)
    assert int(post.warmup_stats["num_nan"].sum()) > 0
    assert int(post.warmup_stats["diverging"].sum()) >= int(post.warmup_stats["num_nan"].sum())
    alive = post.log_weights > -torch.inf
    assert (post.samples[..., 0][alive] <= 0.5).all() and torch.isfinite(post.sample_stats["lp"][alive]).all()
    assert any("NaN" in message for message in post.warnings())


class OnlyAtOrigin(LogDensity):
    """Finite only at the origin (where ``inference.sample`` checks the start), NaN everywhere else."""

    def __init__(self):
        super().__init__(lambda t: t.sum(-1), 2)

    def value_and_grad(self, theta):
        at_origin = (theta == 0).all(-1)
        return torch.where(at_origin, 0.0, torch.nan), torch.where(at_origin[..., None], 0.0, torch.nan)


def test_a_target_that_is_nan_everywhere_is_a_clear_error():
    with pytest.raises(ValueError, match="every particle of population.*zero weight"):
        smc(OnlyAtOrigin(), init=torch.zeros(2, 2, dtype=torch.float64), num_chains=2, num_samples=20,
            num_warmup=1, seed=35)


def test_resume_across_the_segment_boundary_is_bit_identical(tmp_path):
    """A ``ProbModel`` run (bridge then likelihood, data annealing) interrupted after the bridge resumes from
    its checkpoint to the same particles, weights, evidence and stage statistics."""
    model, data, _, _ = conjugate_regression()
    settings = dict(num_chains=3, num_samples=60, num_warmup=2, seed=36, annealing="data", checkpoint_every=3)
    log_likelihood, calls = model.log_likelihood, []

    class Interrupt(Exception):
        pass

    def interrupting(theta, batch, limit=None):
        calls.append(1)
        if limit is not None and len(calls) > limit:
            raise Interrupt
        return log_likelihood(theta, batch)

    model.log_likelihood = interrupting
    uninterrupted = smc(model, data, **settings)
    limit, calls[:] = 2 * len(calls) // 3, []
    model.log_likelihood = lambda theta, batch: interrupting(theta, batch, limit)
    path = tmp_path / "smc.ckpt"
    with pytest.raises(Interrupt):
        smc(model, data, checkpoint=path, **settings)
    assert path.exists()
    model.log_likelihood = log_likelihood
    resumed = smc(model, data, checkpoint=path, **settings)
    assert torch.equal(resumed.samples, uninterrupted.samples)
    assert torch.equal(resumed.log_weights, uninterrupted.log_weights)
    assert resumed.info["log_evidence"] == uninterrupted.info["log_evidence"]
    for name, value in uninterrupted.warmup_stats.items():
        assert torch.equal(resumed.warmup_stats[name], value), name
    with pytest.raises(ValueError, match="different run configuration"):
        smc(model, data, checkpoint=path, **dict(settings, num_samples=61))


@pytest.mark.parametrize("option, message", [
    ({"move": "gibbs"}, "move must be one of"), ({"target_ess": 1.5}, "target_ess"),
    ({"target_accept": 0.0}, "target_accept"), ({"resampling": "bogus"}, "resampling must be one of"),
    ({"resample_threshold": 2.0}, "resample_threshold"), ({"annealing": "bogus"}, "annealing"),
    ({"reference_scale": -1.0}, "reference_scale"), ({"num_steps": 0}, "num_steps"),
    ({"move": "rwmh", "dense_mass": True}, "dense_mass"), ({"thin": 2}, "thin"),
    ({"annealing": "data"}, "ProbModel")])
def test_bad_options_are_named(option, message):
    with pytest.raises(ValueError, match=message):
        smc(GaussianTarget(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)), dim=2,
            num_chains=2, num_samples=10, num_warmup=1, **option)


def test_a_schedule_that_cannot_reach_the_target_is_a_clear_error():
    model, data, _, _ = conjugate_regression()
    with pytest.raises(RuntimeError, match="max_stages=2"):
        smc(model, data, num_chains=2, num_samples=20, num_warmup=1, max_stages=2)


def test_next_temperature_keeps_the_conditional_ess():
    g = torch.Generator().manual_seed(0)
    terms = 20 * torch.randn(3, 500, 1, generator=g, dtype=torch.float64)
    log_weights = torch.full((3, 500), -math.log(500), dtype=torch.float64)
    start = torch.tensor([0.0, 0.5, 0.999], dtype=torch.float64)
    new = tempered.next_temperature(log_weights, terms, start, 0.5)
    assert torch.all(new > start) and new[2] == 1.0
    increment = (new - start)[:2, None] * terms[:2, :, 0]
    # Conditional ESS of uniform weights: (sum G)^2 / (P sum G^2).
    cess = torch.exp(2 * increment.logsumexp(-1) - (2 * increment).logsumexp(-1) - math.log(500))
    assert torch.allclose(cess, torch.full((2,), 0.5, dtype=torch.float64), atol=1e-6)


def test_posterior_summary_save_and_progress_bar(tmp_path, capsys):
    model, data, mean, _ = conjugate_regression()
    post = inference.sample(model, data, method="smc", num_chains=4, num_samples=200, num_warmup=3, seed=37,
                            progress=True, check_convergence=False)
    printed = capsys.readouterr()
    assert "smc" in printed.err and "mcse_mean" in printed.out  # progress bar and the weighted summary
    table = post.summary()
    assert [row["name"] for row in table][:1] == ["layers.0.weight[0,0]"]
    assert abs(table.row("layers.0.bias[0]")["mean"] - float(mean[3])) < 0.05
    post.save(tmp_path / "post.pt")
    loaded = inference.SamplePosterior.load(tmp_path / "post.pt")
    assert type(loaded) is type(post)  # the weighted summary, not the unweighted base one, after a reload
    assert loaded.summary().row("layers.0.bias[0]")["mean"] == table.row("layers.0.bias[0]")["mean"]
    assert torch.equal(loaded.log_weights, post.log_weights)
    idata = loaded.to_arviz()
    assert (idata.sample_stats["log_weight"].values == post.log_weights.numpy()).all()
    assert loaded.info["log_evidence"] == post.info["log_evidence"]


def test_a_dominated_evidence_is_reported_not_trusted():
    """When one population's Z dominates, the delta-method MCSE is at most 1 whatever the error: the spread of
    the populations' log Z is kept in ``info`` and a spread above 1 is a warning."""
    from inference.smc.posterior import MAX_LOG_EVIDENCE_SPREAD, ParticlePosterior

    samples = torch.zeros(3, 4, 1, dtype=torch.float64)
    log_z = torch.tensor([0.0, -6.0, -9.0], dtype=torch.float64)
    post = ParticlePosterior(samples, {"diverging": torch.zeros(3, 4, dtype=torch.bool)},
                             log_weights=torch.zeros(3, 4, dtype=torch.float64),
                             info={"log_evidence_spread": float(log_z.std())})
    assert float(log_z.std()) > MAX_LOG_EVIDENCE_SPREAD
    assert any("log evidence estimates spread" in w for w in post.warnings())
    _, mcse = inference.smc.estimates.log_evidence(log_z)
    assert mcse <= 1.0
