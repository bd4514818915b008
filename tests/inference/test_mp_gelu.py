"""Deterministic VI of moment-propagation networks (inference.vi.mp_gelu) and MomentPosterior."""

import math

import pytest
import torch

from inference import metrics
from inference.moment_posterior import MomentPosterior
from inference.vi import VI_METHODS, fit_vi
from inference.vi.mp_gelu import empirical_bayes_kl
from probnets.moment import MomentNetwork


def heteroscedastic_data(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g, dtype=dtype) * 4 - 2
    y = torch.sin(2 * x[:, 0]) + (0.05 + 0.2 * x[:, 0].abs()) * torch.randn(n, generator=g, dtype=dtype)
    return x, y


METHOD = {"gelu": "mp-gelu", "exact-gelu": "gelu-mp", "relu": "relu-mp"}


def network(activation="gelu", covariance="diagonal", widths=(16,), dtype=torch.float64, **kwargs):
    return MomentNetwork(1, widths, activation=activation, covariance=covariance, dtype=dtype,
                         generator=torch.Generator().manual_seed(0), **kwargs)


def test_methods_are_registered():
    assert {"mp-gelu", "gelu-mp", "relu-mp"} <= set(VI_METHODS)
    with pytest.raises(ValueError, match="fits networks of kind"):
        fit_vi(network("relu"), heteroscedastic_data(20, 0), method="mp-gelu", num_steps=1)
    with pytest.raises(TypeError, match="does not accept"):
        fit_vi(network(), heteroscedastic_data(20, 0), method="mp-gelu", num_samples=3)


def test_empirical_bayes_kl_is_the_kl_at_the_optimal_prior_variance():
    g = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    alpha, beta = 1.0, 10.0
    second = (log_var.exp() + mean**2).sum()
    v = (second + 2 * beta) / (30 + 2 * alpha + 2)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    exact = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, v.sqrt())).sum()
    torch.testing.assert_close(empirical_bayes_kl(mean, log_var, alpha, beta), exact)
    # v maximises -KL + log IG(v; alpha, beta): nearby variances do worse
    def objective(var):
        p = torch.distributions.Normal(0.0, var.sqrt())
        return -torch.distributions.kl_divergence(q, p).sum() - (alpha + 1) * var.log() - beta / var
    assert objective(v) > objective(v * 1.05) and objective(v) > objective(v / 1.05)


@pytest.mark.parametrize("activation, covariance", [("gelu", "diagonal"), ("exact-gelu", "diagonal"),
                                                     ("relu", "diagonal"), ("relu", "full")])
def test_one_pass_predictive_equals_monte_carlo_predictive(activation, covariance):
    """End to end: after training, the one-pass moments equal the MC moments of networks drawn from the same q
    (one hidden layer: exact for the latent mean and variance, 3.5 MCSE with 2 x 10^5 draws; the noise variance
    E[exp(s)] assumes s Gaussian and is held to 3%)."""
    data = heteroscedastic_data(200, 1)
    post = fit_vi(network(activation, covariance), data, method=METHOD[activation],
                  num_steps=150, batch_size=50, progress=False)
    x = torch.linspace(-2.5, 2.5, 7, dtype=torch.float64)[:, None]
    mean, latent, noise = post.moments(x)
    num = 200_000
    draws = post.network.sample_forward(x, num, generator=torch.Generator().manual_seed(1)).detach()
    ell, s = draws[..., 0], draws[..., 1]
    z_mean = (mean[:, 0] - ell.mean(0)) / (ell.std(0) / math.sqrt(num))
    sq = (ell - mean[:, 0]).square()
    z_var = (latent[:, 0] - sq.mean(0)) / (sq.std(0) / math.sqrt(num))
    assert float(z_mean.abs().max()) < 3.5 and float(z_var.abs().max()) < 3.5
    mc_noise = s.exp().mean(0)
    assert float(((noise[:, 0] - mc_noise) / mc_noise).abs().max()) < 0.03
    pred, mc_pred = post.predictive(x), post.predictive(x, num_samples=num, generator=torch.Generator().manual_seed(1))
    assert pred.num_draws == 1 and mc_pred.num_draws == num
    torch.testing.assert_close(pred.variance, latent + noise)
    assert float(((pred.variance - mc_pred.variance) / mc_pred.variance).abs().max()) < 0.03


@pytest.mark.parametrize("activation", [
    pytest.param("gelu", marks=pytest.mark.xfail(strict=True, reason=(
        "MP-GELU over-covers (97.3% for 90% intervals here): the stochastic gate's Bernoulli variance "
        "x^2 Phi(x) Phi(-x) at every unit is latent variance that more data does not remove; the deterministic "
        "GELU with exact moments (exact-gelu) covers 94.9%"))),
    "exact-gelu", "relu"])
def test_calibration_sanity(activation):
    """A trained network on heteroscedastic data: central 90% intervals cover 80-97% of 1000 test points,
    its intervals widen with the noise, and it beats the constant predictive by far in NLL."""
    x, y = heteroscedastic_data(400, 2)
    post = fit_vi(network(activation, widths=(32,)), (x, y), method=METHOD[activation],
                  num_steps=1200, batch_size=100, progress=False)
    assert post.info["skipped_steps"] == 0
    x_test, y_test = heteroscedastic_data(1000, 3)
    pred = post.predictive(x_test)
    scores = metrics.evaluate(pred, y_test, level=0.9)
    assert 0.8 <= scores["coverage_0.9"] <= 0.97
    constant = -torch.distributions.Normal(y.mean(), y.std()).log_prob(y_test).mean()
    assert scores["nll"] < float(constant) - 0.3
    sd = pred.stddev[:, 0]
    assert float(sd[x_test[:, 0].abs() > 1.5].mean()) > 1.5 * float(sd[x_test[:, 0].abs() < 0.5].mean())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_checkpoint_resume_is_bit_identical(tmp_path, dtype):
    data = heteroscedastic_data(60, 4, dtype)
    options = dict(method="mp-gelu", num_steps=40, batch_size=16, progress=False, checkpoint_every=15)
    full = fit_vi(network(dtype=dtype), data, **options)
    net = network(dtype=dtype)
    forward, calls = net.forward, []

    def killed_at_step_20(x):  # the run dies mid-way, after its checkpoint at step 15
        calls.append(1)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return forward(x)

    net.forward = killed_at_step_20
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit_vi(net, data, checkpoint=path, **options)
    resumed = fit_vi(network(dtype=dtype), data, checkpoint=path, **options)
    assert resumed.info["resumed_from"] == 15
    for a, b in zip(full.network.parameters(), resumed.network.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(full.info["losses"], resumed.info["losses"])


def test_non_finite_steps_are_skipped_and_counted():
    # exp(-log noise) overflows: every loss is infinite, every step is skipped, the parameters stay finite
    net = network(init_log_noise=-1000.0)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.warns(RuntimeWarning):
        post = fit_vi(net, heteroscedastic_data(30, 5), method="mp-gelu", num_steps=5, progress=False)
    assert post.info["skipped_steps"] == 5 and bool(torch.isnan(post.info["losses"]).all())
    for a, b in zip(before, net.parameters()):
        assert torch.equal(a, b)


def test_save_load_and_sample(tmp_path):
    post = fit_vi(network(), heteroscedastic_data(30, 6), method="mp-gelu", num_steps=5, progress=False)
    post.save(tmp_path / "new_folder" / "post.pt")  # parent folders are created
    loaded = MomentPosterior.load(tmp_path / "new_folder" / "post.pt")
    x = torch.randn(4, 1, dtype=torch.float64)
    for a, b in zip(post.moments(x), loaded.moments(x)):
        torch.testing.assert_close(a, b)
    assert loaded.info["method"] == "mp-gelu" and loaded.info["skipped_steps"] == 0
    seed = torch.Generator().manual_seed(0)
    torch.testing.assert_close(loaded.sample((3,), generator=seed),
                               post.sample((3,), generator=torch.Generator().manual_seed(0)))


def spread_posterior(activation="gelu", dtype=torch.float64) -> MomentPosterior:
    """An unfitted posterior whose factors have spread means and variances between 0.05 and 5 (so that a scale
    mistaken for a variance, or a misplaced coordinate, shows)."""
    net = network(activation, widths=(4,), dtype=dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for linear in net.linears:
            for log_var in (linear.weight_log_variance, linear.bias_log_variance):
                log_var.copy_(torch.empty_like(log_var).uniform_(math.log(0.05), math.log(5.0), generator=g))
            for mean in (linear.weight_mean, linear.bias_mean):
                mean.copy_(torch.empty_like(mean).uniform_(-2.0, 2.0, generator=g))
    return MomentPosterior(net)


def test_sample_has_the_mean_and_variance_of_q():
    """z-tests of the draws' mean and variance against q's factors, with their Monte Carlo standard errors (18
    coordinates x 2 statistics; |z| < 4 bounds the largest of 36 standard normals at about 0.2%)."""
    post = spread_posterior()
    num = 20_000
    theta = post.sample((num,), generator=torch.Generator().manual_seed(2))
    mean, variance = (t.detach() for t in post.network.variational_parameters())
    centred_sq = (theta - mean).square()
    z_mean = (theta.mean(0) - mean) / (variance / num).sqrt()
    z_var = (centred_sq.mean(0) - variance) / (centred_sq.std(0) / math.sqrt(num))
    assert float(z_mean.abs().max()) < 4.0 and float(z_var.abs().max()) < 4.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_shapes_and_determinism(dtype):
    post = spread_posterior(dtype=dtype)
    dim = post.spec.dim
    for shape in [(), (1,), (5,), (2, 3), (0,)]:
        theta = post.sample(shape, generator=torch.Generator().manual_seed(3))
        assert theta.shape == (*shape, dim) and theta.dtype == dtype
        torch.testing.assert_close(theta, post.sample(shape, generator=torch.Generator().manual_seed(3)), rtol=0,
                                   atol=0)
        q = post.to_gaussian_posterior()
        torch.testing.assert_close(theta, q.sample(shape, generator=torch.Generator().manual_seed(3)), rtol=0, atol=0)


def test_to_gaussian_posterior_is_q():
    post = spread_posterior()
    q = post.to_gaussian_posterior()
    mean, variance = post.network.variational_parameters()
    assert q.mean.shape == (1, post.spec.dim) and q.spec == post.spec and q.info["method"] == "mp-gelu"
    torch.testing.assert_close(q.mean[0], mean)
    torch.testing.assert_close(q.variance[0], variance)


@pytest.mark.parametrize("activation", ["exact-gelu", "relu"])
def test_to_arviz_log_likelihood_and_netcdf(activation, tmp_path):
    """The exported draws are the named weights, and each draw's log-likelihood is that of the plain network
    with those weights (recomputed here layer by layer); the export survives a NetCDF round trip."""
    az = pytest.importorskip("arviz")
    post = spread_posterior(activation)
    x, y = heteroscedastic_data(12, 7)
    idata = post.to_arviz((x, y), num_draws=30, generator=torch.Generator().manual_seed(4), chunk_size=7)
    assert set(idata.groups()) >= {"posterior", "log_likelihood", "observed_data"}
    assert set(idata.posterior.data_vars) == set(post.spec.names)
    assert idata.posterior["layers.0.weight"].shape == (1, 30, 1, 4)
    assert idata.posterior["layers.1.bias"].shape == (1, 30, 2)
    assert idata.log_likelihood["y"].shape == (1, 30, 12) and idata.observed_data["y"].shape == (12, 1)
    assert idata.attrs["method"] == METHOD[activation]
    w0, b0, w1, b1 = (torch.as_tensor(idata.posterior[f"layers.{i}.{k}"].values[0])
                      for i in (0, 1) for k in ("weight", "bias"))
    hidden = x @ w0 + b0.unsqueeze(1)
    hidden = torch.relu(hidden) if activation == "relu" else torch.nn.functional.gelu(hidden)
    out = hidden @ w1 + b1.unsqueeze(1)
    reference = torch.distributions.Normal(out[..., 0], (0.5 * out[..., 1]).exp()).log_prob(y)
    torch.testing.assert_close(torch.as_tensor(idata.log_likelihood["y"].values[0]), reference)
    path = tmp_path / "q.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    for name in post.spec.names:
        assert (back.posterior[name].values == idata.posterior[name].values).all()
    assert (back.log_likelihood["y"].values == idata.log_likelihood["y"].values).all()
    assert set(post.to_arviz(num_draws=5).groups()) == {"posterior"}


def test_to_arviz_mp_gelu_draws_gates():
    """MP-GELU's log-likelihood entries score weights and gates together: reproducible from the generator, and
    not those of the deterministic GELU network at the same weights."""
    post = spread_posterior("gelu")
    data = heteroscedastic_data(12, 7)
    first = post.to_arviz(data, num_draws=10, generator=torch.Generator().manual_seed(5))
    again = post.to_arviz(data, num_draws=10, generator=torch.Generator().manual_seed(5))
    assert (first.log_likelihood["y"].values == again.log_likelihood["y"].values).all()
    gelu = spread_posterior("exact-gelu").to_arviz(data, num_draws=10, generator=torch.Generator().manual_seed(5))
    assert (first.posterior["layers.0.weight"].values == gelu.posterior["layers.0.weight"].values).all()
    assert (first.log_likelihood["y"].values != gelu.log_likelihood["y"].values).any()


def test_to_arviz_bad_input():
    post = spread_posterior()
    with pytest.raises(ValueError, match="num_draws"):
        post.to_arviz(num_draws=0)
    with pytest.raises(ValueError, match="chunk_size"):
        post.to_arviz(heteroscedastic_data(5, 0), chunk_size=0)
    with pytest.raises(ValueError, match=r"y must have shape \(n,\) or \(n, 1\)"):
        post.to_arviz((torch.zeros(5, 1), torch.zeros(5, 2)))


@pytest.mark.parametrize("bad, match, error", [
    ((torch.zeros(5, 2), torch.zeros(5)), r"x must have shape \(n, 1\)", ValueError),
    ((torch.zeros(5, 1), torch.zeros(4)), "same number of rows", ValueError),
    ((torch.full((5, 1), float("nan")), torch.zeros(5)), "x contains", ValueError),
    ((torch.zeros(5, 1), torch.zeros(5, 2)), r"y must have shape \(n,\) or \(n, 1\)", ValueError),
    ((torch.zeros(5, 1), torch.zeros(5, dtype=torch.long)), "y must be floating point", TypeError),
])
def test_bad_data(bad, match, error):
    with pytest.raises(error, match=match):
        fit_vi(network(), bad, method="mp-gelu", num_steps=1, progress=False)


def test_bad_options():
    data = heteroscedastic_data(10, 0)
    with pytest.raises(ValueError, match="kl_weight"):
        fit_vi(network(), data, method="mp-gelu", num_steps=1, kl_weight=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        fit_vi(network(), data, method="mp-gelu", num_steps=0)
    with pytest.raises(TypeError, match="MomentNetwork"):
        fit_vi(torch.nn.Linear(1, 1), data, method="mp-gelu")
