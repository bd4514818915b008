"""Scale mixtures of NNGPs: the CPU check on syn-t, closed forms against 1-D quadrature over the scale,
importance sampling against the closed form, SVSP classification, and bad input."""

import math
import warnings

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

import inference
from inference.importance import ImportanceSamplingWarning
from inference.metrics import accuracy, nll
from probnets.kernels.nngp import NNGPKernel
from probnets.likelihoods import NormalMarginal, StudentTMarginal
from probnets.priors import BurrXII, rsample, variance_prior
from probnets.scale_mixture import (SVSP, GaussianProcess, ImportanceScaleMixture, StudentTProcess, default_kernel,
                                    inverse_gamma_kl, posterior_inverse_gamma, student_t_process_log_marginal)
from conditioned_contract import ConditionedModelContract

DT = torch.float64


def syn_t():
    """The ``syn-t`` regression data of the paper's repository (yuneg11/Scale-Mixtures-of-NNGP,
    ``experiments/data.py``): 300 inputs evenly spaced on [-150, 150], targets a draw of the GP with kernel
    ``exp(-(x - x')^2 / 2)`` plus 0.8 x standard Cauchy noise (numpy ``RandomState(761)``); permuted with
    ``RandomState(10)``, split 240/30/30 (train/valid/test), standardised with the training statistics.

    Returns:
        ``(x_train, y_train, x_test, y_test, y_scale)``; ``y_scale`` converts NLLs to original units.
    """
    num = 300
    rng = np.random.RandomState(761)
    x = np.linspace(-num / 2, num / 2, num)[:, None]
    y = rng.multivariate_normal(np.zeros(num), np.exp(-0.5 * (x - x.T) ** 2)) + 0.8 * rng.standard_t(1, size=num)
    order = np.random.RandomState(10).permutation(num)
    x, y = x[order], y[order]
    train, test = slice(0, 240), slice(270, 300)
    x_mean, x_sd, y_mean, y_sd = x[train].mean(0), x[train].std(0), y[train].mean(), y[train].std()
    x, y = torch.from_numpy((x - x_mean) / x_sd), torch.from_numpy((y - y_mean) / y_sd)
    return x[train], y[train], x[test], y[test], float(y_sd)


@pytest.fixture(scope="module")
def data():
    return syn_t()


def nll_mcse(pred, y):
    """Delta-method Monte Carlo standard error of the NLL of a self-normalised importance mixture: the NLL
    is ``-(1/n) sum_i log sum_k wbar_k v_ik`` with ``v_ik`` the density of point ``i`` under draw ``k``;
    linearised it is a weighted mean of ``h_k = -(1/n) sum_i v_ik / p_i``, with variance
    ``sum_k wbar_k^2 (h_k - hbar)^2``."""
    v = pred.likelihood.log_prob(pred.f, y[:, None], pred.phi).exp()  # K x n
    w = pred.weights
    h = -(v / (w[:, None] * v).sum(0)).mean(1)
    return float((w * (h - (w * h).sum())).square().sum().sqrt())


def fixed(model_cls, *args, **kwargs):
    """A model with the CPU-check settings: ReLU NNGP depth 4, weight_var 2, bias_var 1, noise 0.1, nothing learned."""
    return model_cls(*args, kernel=default_kernel(), noise=0.1, learn=(), **kwargs)


def small_data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 3, 2, generator=g, dtype=DT)
    y = torch.sin(2 * x[:, 0]) + 0.3 * torch.randn(n + 3, generator=g, dtype=DT)
    return x[:n], y[:n], x[n:], y[n:]


def gram(model, x):
    with torch.no_grad():
        return model.kernel(x).to_dense() + model.noise * torch.eye(x.shape[0], dtype=DT)


# --------------------------------------------------------------------------------------------------
# The CPU check on syn-t (Lee et al. 2022; method notes, section 1)


def test_syn_t_student_t_process_beats_the_gaussian_process(data):
    x, y, x_test, y_test, y_scale = data
    gp = inference.fit(fixed(GaussianProcess), (x, y))
    tp = inference.fit(fixed(StudentTProcess, alpha=1.0, beta=1.0), (x, y))
    gp_nll = nll(gp.predict(x_test), y_test, y_scale=y_scale)
    tp_nll = nll(tp.predict(x_test), y_test, y_scale=y_scale)
    assert gp_nll == pytest.approx(5.950, abs=5e-4)
    assert tp_nll == pytest.approx(5.514, abs=5e-4)
    assert tp_nll < gp_nll


def test_syn_t_importance_sampling_with_the_prior_reproduces_the_student_t_process(data):
    """The notes' figure: 2e5 prior draws reproduce the closed form to 0.001 (the estimate's Monte Carlo
    standard error is 7.6e-4 here, so 0.001 is 1.3 standard errors; the first seed, 0, is used)."""
    x, y, x_test, y_test, y_scale = data
    tp = inference.fit(fixed(StudentTProcess, alpha=1.0, beta=1.0), (x, y))
    prior = dist.InverseGamma(torch.tensor(1.0, dtype=DT), torch.tensor(1.0, dtype=DT))
    model = fixed(ImportanceScaleMixture, prior, proposal="prior", num_samples=200_000)
    with pytest.warns(ImportanceSamplingWarning):  # ESS ~ 6000 of 2e5 is below 5%, yet plenty here
        inference.fit(model, (x, y), generator=torch.Generator().manual_seed(0))
    assert model.ess > 3000
    pred = model.predict(x_test)
    assert pred.num_draws == 200_000 and isinstance(pred.likelihood, NormalMarginal)
    error = nll(pred, y_test, y_scale=y_scale) - nll(tp.predict(x_test), y_test, y_scale=y_scale)
    assert abs(error) < 3.5 * nll_mcse(pred, y_test)
    assert abs(error) < 1e-3
    assert model.log_marginal_likelihood() == pytest.approx(tp.log_marginal_likelihood(), abs=0.05)


def test_syn_t_ess_collapse_is_detected_and_the_posterior_proposal_gets_it_right(data):
    """(alpha, beta) = (4, 1): the prior sits far below the scale's posterior. The posterior proposal's NLL
    has a Monte Carlo standard error of 4.5e-4 with 2e5 draws (another test checks other seeds)."""
    x, y, x_test, y_test, y_scale = data
    exact = nll(inference.fit(fixed(StudentTProcess, alpha=4.0, beta=1.0), (x, y)).predict(x_test), y_test,
                y_scale=y_scale)
    assert exact == pytest.approx(5.547, abs=5e-4)
    prior = dist.InverseGamma(torch.tensor(4.0, dtype=DT), torch.tensor(1.0, dtype=DT))
    naive = fixed(ImportanceScaleMixture, prior, proposal="prior", num_samples=20_000)
    with pytest.warns(ImportanceSamplingWarning, match="ESS"):
        inference.fit(naive, (x, y), generator=torch.Generator().manual_seed(0))
    assert naive.ess < 10
    assert abs(nll(naive.predict(x_test), y_test, y_scale=y_scale) - exact) > 0.05
    better = fixed(ImportanceScaleMixture, prior, num_samples=200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImportanceSamplingWarning)
        inference.fit(better, (x, y), generator=torch.Generator().manual_seed(0))
    assert better.ess > 0.5 * 200_000
    pred = better.predict(x_test)
    error = nll(pred, y_test, y_scale=y_scale) - exact
    assert abs(error) < 3.5 * nll_mcse(pred, y_test)
    assert abs(error) < 1e-3


# --------------------------------------------------------------------------------------------------
# Closed forms against quadrature over the scale


def log_integral_over_scale(log_integrand):
    """``log int_0^inf exp(log_integrand(s)) ds`` (``log_integrand`` vectorised over numpy arrays) by the
    trapezoidal rule in ``t = log s`` on 24 units around the peak: the integrand is smooth and decays
    like a Gaussian or faster there, where the rule converges exponentially."""
    coarse = np.linspace(-20, 20, 4001)
    peak = coarse[np.argmax(log_integrand(np.exp(coarse)) + coarse)]
    t = np.linspace(peak - 12, peak + 12, 24_001)
    values = log_integrand(np.exp(t)) + t
    shift = values.max()
    return math.log(np.trapezoid(np.exp(values - shift), t)) + shift


def log_gaussian_marginal(y, a):
    """``s -> log N(y; 0, s A)``, vectorised over ``s``."""
    n = y.shape[0]
    quad = float(y @ np.linalg.solve(a, y))
    logdet = np.linalg.slogdet(a)[1]
    return lambda s: -0.5 * (n * np.log(2 * math.pi * s) + logdet + quad / s)


def test_student_t_marginal_likelihood_equals_the_integral_over_the_scale():
    x, y, _, _ = small_data(n=6)
    model = inference.fit(StudentTProcess(alpha=1.7, beta=0.6, noise=0.2, learn=()), (x, y))
    log_lik = log_gaussian_marginal(y.numpy(), gram(model, x).numpy())
    prior = stats.invgamma(1.7, scale=0.6)
    expected = log_integral_over_scale(lambda s: log_lik(s) + prior.logpdf(s))
    assert model.log_marginal_likelihood() == pytest.approx(expected, abs=1e-8)
    mvt = stats.multivariate_t(np.zeros(6), 0.6 / 1.7 * gram(model, x).numpy(), df=2 * 1.7)
    assert model.log_marginal_likelihood() == pytest.approx(mvt.logpdf(y.numpy()), abs=1e-9)


def test_student_t_predictive_is_the_scipy_t():
    x, y, x_test, y_test = small_data(n=10)
    model = inference.fit(StudentTProcess(alpha=2.5, beta=1.5, noise=0.1, learn=()), (x, y))
    pred = model.predict(x_test)
    assert isinstance(pred.likelihood, StudentTMarginal)
    mean, var = conditional(model, x, y, x_test)
    s2 = (2 * 1.5 + y.numpy() @ np.linalg.solve(gram(model, x).numpy(), y.numpy())) / (2 * 2.5 + 10)
    expected = stats.t(2 * 2.5 + 10, mean, np.sqrt(s2 * var)).logpdf(y_test.numpy())
    np.testing.assert_allclose(pred.log_prob(y_test).numpy(), expected, rtol=1e-10)
    post = model.scale_posterior()
    assert float(post.concentration) == pytest.approx(2.5 + 5)


def test_gaussian_process_uses_the_ml_ii_scale():
    x, y, x_test, y_test = small_data(n=10)
    model = inference.fit(GaussianProcess(noise=0.3, learn=()), (x, y))
    a = gram(model, x).numpy()
    s = y.numpy() @ np.linalg.solve(a, y.numpy()) / 10
    assert float(model.scale) == pytest.approx(s, rel=1e-12)
    expected = stats.multivariate_normal(np.zeros(10), s * a).logpdf(y.numpy())
    assert model.log_marginal_likelihood() == pytest.approx(expected, abs=1e-9)
    pred = model.predict(x_test)
    assert pred.num_draws == 1 and bool((pred.phi["scale"] > 0).all())


@pytest.mark.parametrize("prior", [
    BurrXII(torch.tensor(2.0, dtype=DT), 1.0),
    variance_prior(dist.HalfCauchy(torch.tensor(1.0, dtype=DT))),
    dist.LogNormal(torch.tensor(0.0, dtype=DT), torch.tensor(1.0, dtype=DT)),
], ids=["burr12", "half-cauchy-sigma", "log-normal"])
@pytest.mark.parametrize("proposal", ["posterior", "prior"])
def test_importance_predictive_matches_quadrature_for_any_prior(prior, proposal):
    x, y, x_test, y_test = small_data(n=12)
    model = inference.fit(ImportanceScaleMixture(prior, noise=0.1, proposal=proposal, num_samples=20_000), (x, y),
                          generator=torch.Generator().manual_seed(5))
    log_lik = log_gaussian_marginal(y.numpy(), gram(model, x).numpy())

    def log_prior(s):
        return prior.log_prob(torch.from_numpy(s)).numpy()

    log_evidence = log_integral_over_scale(lambda s: log_lik(s) + log_prior(s))
    w = model.importance.log_weights.exp()
    se_log_evidence = float(w.std() / w.mean()) / math.sqrt(w.numel())
    assert abs(model.log_marginal_likelihood() - log_evidence) < 3.5 * se_log_evidence + 1e-9
    mean, var = conditional(model, x, y, x_test)
    pred = model.predict(x_test)
    log_prob = pred.log_prob(y_test).numpy()
    for i in range(3):
        density = stats.norm(mean[i], np.sqrt(model.importance.samples.numpy() * var[i])).pdf(y_test[i].item())
        estimate = float((pred.weights.numpy() * density).sum())
        se_log = math.sqrt(float((pred.weights.numpy() ** 2 * (density - estimate) ** 2).sum())) / estimate
        point = lambda s, i=i: stats.norm(mean[i], np.sqrt(s * var[i])).logpdf(y_test[i].item())  # noqa: E731
        log_density = log_integral_over_scale(lambda s: log_lik(s) + log_prior(s) + point(s)) - log_evidence
        assert abs(log_prob[i] - log_density) < 3.5 * se_log + 1e-9, (i, log_prob[i], log_density, se_log)


def conditional(model, x, y, x_test):
    """``mu*`` and ``Sigma*`` (noise included) in numpy."""
    a = gram(model, x).numpy()
    with torch.no_grad():
        k_sd = model.kernel(x_test, x).to_dense().numpy()
        k_ss = model.kernel(x_test, diag=True).numpy()
    mean = k_sd @ np.linalg.solve(a, y.numpy())
    var = k_ss + float(model.noise) - np.einsum("ij,ji->i", k_sd, np.linalg.solve(a, k_sd.T))
    return mean, var


def test_posterior_inverse_gamma_is_exact_for_the_inverse_gamma_prior():
    prior = dist.InverseGamma(torch.tensor(3.0, dtype=DT), torch.tensor(0.5, dtype=DT))
    a, b = posterior_inverse_gamma(prior, 40, torch.tensor(31.0, dtype=DT))
    assert float(a) == pytest.approx(3.0 + 20, rel=1e-10)
    assert float(b) == pytest.approx(0.5 + 15.5, rel=1e-10)


def test_exact_proposal_gives_equal_weights_and_the_exact_evidence():
    x, y, _, _ = small_data(n=12)
    prior = dist.InverseGamma(torch.tensor(2.0, dtype=DT), torch.tensor(1.0, dtype=DT))
    model = inference.fit(ImportanceScaleMixture(prior, noise=0.1, defensive=0.0, num_samples=500), (x, y))
    tp = inference.fit(StudentTProcess(alpha=2.0, beta=1.0, noise=0.1, learn=()), (x, y))
    assert model.ess == pytest.approx(500, rel=1e-9)
    assert model.log_marginal_likelihood() == pytest.approx(tp.log_marginal_likelihood(), abs=1e-9)


def test_importance_draws_are_seeded():
    x, y, x_test, _ = small_data()
    prior = BurrXII(torch.tensor(2.0, dtype=DT), 1.0)
    first = inference.fit(ImportanceScaleMixture(prior, num_samples=300), (x, y),
                          generator=torch.Generator().manual_seed(1))
    second = inference.fit(ImportanceScaleMixture(prior, num_samples=300), (x, y),
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(first.importance.samples, second.importance.samples)
    assert torch.equal(first.predict(x_test).log_weights, second.predict(x_test).log_weights)


# --------------------------------------------------------------------------------------------------
# Empirical Bayes


def test_empirical_bayes_raises_the_marginal_likelihood():
    x, y, x_test, _ = small_data(n=25)
    for model, optimizer in ((GaussianProcess(), "lbfgs"), (StudentTProcess(), "lbfgs"), (StudentTProcess(), "adam")):
        before = inference.fit(model, (x, y), num_steps=0).log_marginal_likelihood()
        after = inference.fit(model, (x, y), num_steps=15, optimizer=optimizer,
                              lr=0.05 if optimizer == "adam" else None)
        assert after.log_marginal_likelihood() > before + 1e-3, (type(model).__name__, optimizer)
        assert bool(torch.isfinite(model.predict(x_test).mean).all())
    assert float(model.alpha) > 0 and float(model.beta) > 0
    prior = BurrXII(torch.tensor(2.0, dtype=DT), 1.0)
    initial = inference.fit(ImportanceScaleMixture(prior, num_samples=2000), (x, y),
                            generator=torch.Generator().manual_seed(0))
    fitted = inference.fit(ImportanceScaleMixture(prior, num_samples=2000, learn=("kernel", "noise")), (x, y),
                           generator=torch.Generator().manual_seed(0), num_steps=15, lr=0.1, num_fit_samples=256)
    assert fitted.log_marginal_likelihood() > initial.log_marginal_likelihood() + 1e-3
    assert float(fitted.noise) != pytest.approx(0.1)


def test_float32_agrees_with_float64():
    x, y, x_test, y_test = small_data()
    single = inference.fit(GaussianProcess(learn=(), dtype=torch.float32), (x, y)).predict(x_test)
    double = inference.fit(GaussianProcess(learn=()), (x, y)).predict(x_test)
    assert single.f.dtype == torch.float32
    assert nll(single, y_test) == pytest.approx(nll(double, y_test), abs=1e-3)


# --------------------------------------------------------------------------------------------------
# SVSP classification


def blobs(n, generator):
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype=DT)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return centres[labels] + torch.randn(n, 2, generator=generator, dtype=DT), labels


def test_svsp_learns_a_held_out_toy_problem():
    g = torch.Generator().manual_seed(0)
    x, y = blobs(60, g)
    x_test, y_test = blobs(300, g)
    model = inference.fit(SVSP(x[:8], 3, NNGPKernel(depth=2, weight_var=2.0, bias_var=1.0)), (x, y), num_epochs=30,
                          batch_size=60, lr=0.05, num_samples=8, generator=torch.Generator().manual_seed(1))
    pred = model.predict(x_test, num_samples=64, generator=torch.Generator().manual_seed(2))
    assert pred.f.shape == (64, 300, 3)
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(300, dtype=DT))
    assert accuracy(pred, y_test) > 0.8  # chance is 1/3
    assert nll(pred, y_test) < math.log(3) - 0.4


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_svsp_kl_is_non_negative_and_zero_at_the_prior(covariance):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 2, generator=g, dtype=DT)
    model = SVSP(z, 3, covariance=covariance, alpha=2.0, beta=3.0)
    with torch.no_grad():
        model.q_mu.copy_(torch.randn(3, 6, generator=g, dtype=DT))
        model.raw_a.fill_(0.3)
        if covariance == "diag":
            model.q_log_var.copy_(torch.randn(3, 6, generator=g, dtype=DT))
        else:
            model.q_tril.copy_(0.5 * torch.randn(3, 6, 6, generator=g, dtype=DT))
        assert float(model.kl_divergence()) > 0
        if covariance == "full":  # q(u | s) = p(u | s), q(s) = p(s)
            chol = torch.linalg.cholesky(model.kernel(z).to_dense() + model.jitter * torch.eye(6, dtype=DT))
            model.q_tril.copy_(chol.tril(-1) + torch.diag_embed(chol.diagonal().log()))
            model.q_mu.zero_()
            model.raw_a.fill_(math.log(2.0))
            assert float(model.kl_divergence()) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("a, b, alpha, beta", [(3.0, 2.0, 2.0, 2.0), (1.5, 0.4, 4.0, 1.0), (10.0, 9.0, 2.0, 0.5)])
def test_inverse_gamma_kl_matches_monte_carlo(a, b, alpha, beta):
    q = dist.InverseGamma(torch.tensor(a, dtype=DT), torch.tensor(b, dtype=DT))
    p = dist.InverseGamma(torch.tensor(alpha, dtype=DT), torch.tensor(beta, dtype=DT))
    s = rsample(q, (200_000,), generator=torch.Generator().manual_seed(0))
    terms = q.log_prob(s) - p.log_prob(s)
    exact = float(inverse_gamma_kl(torch.tensor(a, dtype=DT), torch.tensor(b, dtype=DT), alpha, beta))
    assert exact >= 0
    assert abs(float(terms.mean()) - exact) < 3.5 * float(terms.std()) / math.sqrt(terms.numel())


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("mutate, match", [
    (lambda x, y: (x.masked_fill(torch.zeros_like(x, dtype=torch.bool).index_fill(0, torch.tensor([2]), True),
                                 math.nan), y), "x contains"),
    (lambda x, y: (x, y.index_fill(0, torch.tensor([0]), math.nan)), "y contains"),
    (lambda x, y: (x, y[:-1]), "same number of rows"),
    (lambda x, y: (x[:, 0], y), "x must have shape"),
    (lambda x, y: (x, torch.stack([y, y], 1)), "y must have shape"),
])
@pytest.mark.parametrize("model_cls", [GaussianProcess, StudentTProcess])
def test_bad_data_raises_value_error(model_cls, mutate, match):
    x, y, _, _ = small_data()
    with pytest.raises(ValueError, match=match):
        inference.fit(model_cls(learn=()), mutate(x, y))


@pytest.mark.parametrize("build, match", [
    (lambda: StudentTProcess(alpha=0.0), "alpha"),
    (lambda: StudentTProcess(beta=-1.0), "beta"),
    (lambda: StudentTProcess(noise=0.0), "noise"),
    (lambda: GaussianProcess(noise=math.nan), "noise"),
    (lambda: GaussianProcess(learn=("alpha",)), "learn"),
    (lambda: ImportanceScaleMixture(dist.Normal(0.0, 1.0)), "prior"),
    (lambda: ImportanceScaleMixture(BurrXII(2.0, 1.0), proposal="uniform"), "proposal"),
    (lambda: ImportanceScaleMixture(BurrXII(2.0, 1.0), num_samples=0), "num_samples"),
    (lambda: ImportanceScaleMixture(BurrXII(2.0, 1.0), defensive=1.0), "defensive"),
    (lambda: ImportanceScaleMixture(BurrXII(2.0, 1.0), noise=-0.1), "noise"),
    (lambda: SVSP(torch.zeros(3, 2), 3, alpha=0.0), "alpha"),
    (lambda: SVSP(torch.zeros(3, 2), 1), "num_classes"),
    (lambda: SVSP(torch.zeros(3, 2), 3, covariance="low-rank"), "covariance"),
    (lambda: SVSP(torch.full((3, 2), math.nan), 3), "inducing_points"),
])
def test_bad_hyperparameters_raise_value_error_naming_them(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_misuse_raises_clear_errors():
    x, y, x_test, _ = small_data()
    with pytest.raises(TypeError, match="kernel"):
        GaussianProcess(kernel="relu")
    with pytest.raises(RuntimeError, match="call fit"):
        StudentTProcess().predict(x_test)
    with pytest.raises(RuntimeError, match="call fit"):
        ImportanceScaleMixture(BurrXII(2.0, 1.0)).predict(x_test)
    with pytest.raises(ValueError, match="optimizer"):
        inference.fit(StudentTProcess(), (x, y), optimizer="sgd")
    model = inference.fit(StudentTProcess(learn=()), (x, y))
    with pytest.raises(ValueError, match="x must have shape"):
        model.predict(x_test[:, :1])
    with pytest.raises(ValueError, match="x contains"):
        model.predict(torch.full((2, 2), math.nan, dtype=DT))
    svsp = SVSP(x[:4], 2)
    with pytest.raises(ValueError, match="class labels"):
        inference.fit(svsp, (x, torch.full((x.shape[0],), 5)), num_epochs=1)
    with pytest.raises(ValueError, match="x must have shape"):
        svsp.predict(x[:, :1])


def test_student_t_log_marginal_function_matches_the_model():
    x, y, _, _ = small_data()
    model = inference.fit(StudentTProcess(alpha=3.0, beta=2.0, learn=()), (x, y))
    a = gram(model, x)
    quad = y @ torch.linalg.solve(a, y)
    value = student_t_process_log_marginal(quad, torch.logdet(a), 12, torch.tensor(3.0, dtype=DT),
                                           torch.tensor(2.0, dtype=DT))
    assert float(value) == pytest.approx(model.log_marginal_likelihood(), abs=1e-10)


@pytest.mark.parametrize("seed", range(1, 6))
def test_syn_t_posterior_proposal_agrees_within_its_standard_error_for_other_seeds(data, seed):
    """The fast check's seed is not special: for other seeds the posterior proposal's NLL lies within 3.5
    Monte Carlo standard errors (about 4.5e-4 each) of the closed form."""
    x, y, x_test, y_test, y_scale = data
    exact = nll(inference.fit(fixed(StudentTProcess, alpha=4.0, beta=1.0), (x, y)).predict(x_test), y_test,
                y_scale=y_scale)
    prior = dist.InverseGamma(torch.tensor(4.0, dtype=DT), torch.tensor(1.0, dtype=DT))
    model = inference.fit(fixed(ImportanceScaleMixture, prior, num_samples=200_000), (x, y),
                          generator=torch.Generator().manual_seed(seed))
    pred = model.predict(x_test)
    assert abs(nll(pred, y_test, y_scale=y_scale) - exact) < 3.5 * nll_mcse(pred, y_test)


class FailingKernel(NNGPKernel):
    """An NNGP kernel whose output turns NaN from its ``fail_after``-th evaluation on."""

    def __init__(self, fail_after):
        super().__init__(depth=2, weight_var=2.0, bias_var=1.0)
        self.calls, self.fail_after = 0, fail_after

    def forward(self, x1, x2, diag=False, **params):
        self.calls += 1
        k = super().forward(x1, x2, diag=diag, **params)
        return k * math.nan if self.calls >= self.fail_after else k


def test_fitting_stops_with_a_warning_and_keeps_the_best_hyperparameters():
    x, y, _, _ = small_data()
    kernel = FailingKernel(fail_after=math.inf)
    model = StudentTProcess(kernel)
    before = inference.fit(model, (x, y), num_steps=0).log_marginal_likelihood()
    kernel.calls, kernel.fail_after = 0, 6
    with pytest.warns(RuntimeWarning, match="stopped early"):
        inference.fit(model, (x, y), num_steps=20, optimizer="adam", lr=0.05)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    kernel.fail_after = math.inf
    assert model.log_marginal_likelihood() > before


# --------------------------------------------------------------------------------------------------
# The conditioned-model contract


def contract_data(dtype):
    x, y, x_test, _ = small_data()
    return x.to(dtype), y.to(dtype), x_test.to(dtype)


def contract_kernel():
    return NNGPKernel(depth=2, weight_var=2.0, bias_var=1.0)


class TestGaussianProcessContract(ConditionedModelContract):
    fit_options = {"num_steps": 3}

    def make_model(self, dtype):
        return GaussianProcess(contract_kernel(), dtype=dtype), *contract_data(dtype)


class TestStudentTProcessContract(ConditionedModelContract):
    fit_options = {"num_steps": 3, "optimizer": "adam"}

    def make_model(self, dtype):
        return StudentTProcess(contract_kernel(), dtype=dtype), *contract_data(dtype)


class TestImportanceScaleMixtureContract(ConditionedModelContract):
    fit_options = {"num_steps": 2, "num_fit_samples": 64}
    dtypes = (torch.float64,)

    def make_model(self, dtype):
        prior = BurrXII(torch.tensor(2.0, dtype=dtype), 1.0)
        return (ImportanceScaleMixture(prior, contract_kernel(), num_samples=200, learn=("noise",), dtype=dtype),
                *contract_data(dtype))

    def restore(self, restored, fitted, x, y):
        restored.condition(x, y)
        restored.importance = fitted.importance  # the weighted draws are the fit's, not parameters


class TestSVSPContract(ConditionedModelContract):
    fit_options = {"num_epochs": 2, "batch_size": 8, "num_samples": 4}
    predicts_before_fit = True

    def make_model(self, dtype):
        x, y = blobs(20, torch.Generator().manual_seed(0))
        return SVSP(x[:4], 3, contract_kernel(), dtype=dtype), x.to(dtype), y, x[:5].to(dtype)

    def predict(self, model, x_test, seed=1):
        return model.predict(x_test, num_samples=8, generator=torch.Generator().manual_seed(seed))
