"""Moment propagation (probnets.moment): every rule's output moments against 10^6-draw Monte Carlo.

Pass rule, fixed before running: ``|analytic - MC| <= 3.5 MCSE`` (the MC standard error of the mean, resp. of the
sample variance as a mean of squared deviations), plus a floor of ``tol * scale`` for the deterministic part
(``1e-9`` in float64, ``1e-5`` in float32, ``scale`` = the input's magnitude, so that moments of order 1e-200
in the far tails, which MC sees as exact zeros, compare equal). Wherever MC resolves a moment to better than
1%, 3.5 MCSE is the tighter bound; the tests also assert that the grid's central cells are resolved to 1%.
"""

import functools
import math

import pytest
import torch

from probnets.moment import (MomentNetwork, Moments, draw_log_likelihood, exact_gelu_moments, expected_log_likelihood,
                             gaussian_predictive, gelu_moments, linear_moments, predictive_moments, relu_covariance,
                             relu_moments)
from probnets.moment.network import MomentActivation

NUM_MC = 10**6
DTYPES = (torch.float32, torch.float64)
FLOOR = {torch.float32: 1e-5, torch.float64: 1e-9}
MEANS = (-30.0, -3.0, -0.5, 0.0, 0.3, 2.0, 30.0)
VARIANCES = (1e-8, 1e-2, 1.0, 100.0, 1e4)
RULES = {"gelu": gelu_moments, "exact-gelu": exact_gelu_moments, "relu": relu_moments}


def mc_moments(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample mean and variance over dim 0 and their MC standard errors."""
    mean = y.mean(0)
    sq = (y - mean).square()
    var = sq.mean(0)
    n = y.shape[0]
    return mean, var, y.std(0) / math.sqrt(n), sq.std(0) / math.sqrt(n)


def assert_moment(analytic, mc, mcse, scale, dtype, what):
    tol = 3.5 * mcse + FLOOR[dtype] * scale
    err = (analytic.double() - mc).abs()
    bad = err > tol
    assert not bool(bad.any()), (f"{what}: analytic {analytic.double()[bad].tolist()} vs MC {mc[bad].tolist()} "
                                 f"(tolerance {tol[bad].tolist()})")


def grid(dtype):
    """The grid's cells, float32-representable so that both dtypes share one MC reference."""
    mu, var = torch.meshgrid(torch.tensor(MEANS), torch.tensor(VARIANCES), indexing="ij")
    return mu.reshape(-1).to(dtype), var.reshape(-1).to(dtype)


@functools.lru_cache(maxsize=None)
def grid_reference(activation):
    z = torch.randn(NUM_MC, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu, var = grid(torch.float32)
    return [weighted_reference(float(m), float(v), z, activation) for m, v in zip(mu, var)]


def cdf(x):
    """Phi, accurate in the left tail (torch.special.ndtr is 0 below -8.3)."""
    return 0.5 * torch.special.erfc(-x / math.sqrt(2))


def _weighted_draws(mu, var, z, shift):
    """Draws of ``N(shift, var)`` and their importance weights for ``N(mu, var)``."""
    x = shift + math.sqrt(var) * z
    return x, (((x - shift).square() - (x - mu).square()) / (2 * var)).exp()


def weighted_reference(mu, var, z, activation):
    """MC mean and variance of the activation of ``N(mu, var)`` with their MCSEs, from ``E[y | x]`` and
    ``E[y^2 | x]`` (for MP-GELU the gate is averaged out: ``x Phi(x)``, ``x^2 Phi(x)``). Deep in the left tail the
    draws come from the same normal shifted to where the integrand peaks (``x ~ N(mu_q, var)`` with ``mu_q = 0``
    for ReLU, ``mu / (1 + var)`` for MP-GELU; for the exact GELU ``mu / (1 + var)`` for the mean and
    ``mu / (1 + 2 var)`` for the second moment), weighted by ``p / q``; plain MC would see no non-zero draw
    there."""
    sd = math.sqrt(var)
    tail = mu / math.sqrt(1 + var) < -2 if activation != "relu" else mu < -2 * sd
    if activation == "relu":
        shifts = (0.0, 0.0) if tail else (mu, mu)
    elif activation == "gelu":
        shifts = (mu / (1 + var),) * 2 if tail else (mu, mu)
    else:
        shifts = (mu / (1 + var), mu / (1 + 2 * var)) if tail else (mu, mu)
    (x1, w1), (x2, w2) = (_weighted_draws(mu, var, z, shift) for shift in shifts)
    if activation == "relu":
        g1, g2 = w1 * x1.clamp_min(0), w2 * x2.clamp_min(0).square()
    elif activation == "gelu":
        g1, g2 = w1 * x1 * cdf(x1), w2 * x2.square() * cdf(x2)
    else:
        g1, g2 = w1 * x1 * cdf(x1), w2 * (x2 * cdf(x2)).square()
    mean, second = g1.mean(), g2.mean()
    n = math.sqrt(x1.shape[0])
    if shifts[0] == shifts[1]:  # one set of draws: the delta-method error of second - mean^2
        se_var = (g2 - 2 * mean * g1).std() / n
    else:  # two proposals from the same z: bound the error of the difference by the sum of the two
        se_var = g2.std() / n + 2 * mean.abs() * g1.std() / n
    return mean, second - mean.square(), g1.std() / n, se_var


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["gelu", "exact-gelu", "relu"])
def test_activation_moments_match_monte_carlo(activation, dtype):
    mu, var = grid(dtype)
    mean, variance = RULES[activation](mu, var)
    assert mean.dtype == variance.dtype == dtype and bool(torch.isfinite(mean).all() & torch.isfinite(variance).all())
    resolved = 0
    for j in range(mu.shape[0]):  # one cell at a time: 10^6 draws each
        m, v, se_m, se_v = grid_reference(activation)[j]
        scale = abs(float(mu[j])) + float(var[j]) ** 0.5
        assert_moment(mean[j:j + 1], m[None], se_m[None], scale, dtype, f"{activation} mean at ({mu[j]}, {var[j]})")
        assert_moment(variance[j:j + 1], v[None], se_v[None], scale**2, dtype,
                      f"{activation} variance at ({mu[j]}, {var[j]})")
        resolved += int(3.5 * se_m < 0.01 * m.abs() and 3.5 * se_v < 0.01 * v)
    assert resolved >= 25  # the bound is at least as tight as 1% on most cells


def test_gelu_gate_draws_match():
    """The stochastic gate itself (not averaged out): x u with u ~ Bernoulli(Phi(x)), plain MC."""
    g = torch.Generator().manual_seed(6)
    mu, var = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64), torch.tensor([0.5, 0.5, 4.0], dtype=torch.float64)
    x = mu + var.sqrt() * torch.randn(NUM_MC, 3, generator=g, dtype=torch.float64)
    y = MomentActivation("gelu").sample_forward(x, g)
    m, v, se_m, se_v = mc_moments(y)
    mean, variance = gelu_moments(mu, var)
    assert_moment(mean, m, se_m, 1.0, torch.float64, "gated GELU mean")
    assert_moment(variance, v, se_v, 1.0, torch.float64, "gated GELU variance")


def test_gelu_values_from_the_notes():
    mean, variance = gelu_moments(torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    torch.testing.assert_close(mean, torch.tensor(0.33708, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(variance + mean**2, torch.tensor(0.43111, dtype=torch.float64), atol=1e-5, rtol=0)


def test_exact_gelu_value_from_the_notes():
    """The notes' E[(x Phi(x))^2] = 0.366 at N(0.3, 0.5), here to 30-digit quadrature (0.366166379205545)."""
    mean, variance = exact_gelu_moments(torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    torch.testing.assert_close(mean, torch.tensor(0.337079650709489, dtype=torch.float64), atol=1e-13, rtol=0)
    torch.testing.assert_close(variance + mean**2, torch.tensor(0.366166379205545, dtype=torch.float64), atol=1e-13,
                               rtol=0)


# (mean, variance): deep left tail (down to 1e-200), tiny and huge variances, the GELU's minimum near -0.75
TAIL_CELLS = [(-30.0, 0.01), (-30.0, 1.0), (-30.0, 100.0), (-300.0, 100.0), (-12.0, 1.0), (-8.0, 0.01), (-3.0, 1e-5),
              (-0.75, 1e-8), (-0.75, 3e-6), (0.0, 1e4), (5.0, 1e-3), (1e3, 1e4)]


@functools.lru_cache(maxsize=None)
def quadrature_gelu_moments(mu, var):
    """Mean and variance of ``x Phi(x)``, ``x ~ N(mu, var)``, by 40-digit adaptive quadrature on intervals of one
    width around each place where an integrand can peak: ``mu`` (width ``sd``), and in the left tail, where
    ``Phi(x)^k`` acts like ``exp(-k x^2 / 2)``, ``mu / (1 + k var)`` (width ``sd / sqrt(1 + k var)``), k = 1, 2."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    mu, var = mpmath.mpf(mu), mpmath.mpf(var)
    sd = mpmath.sqrt(var)
    peaks = {mu / (1 + k * var): sd / mpmath.sqrt(1 + k * var) for k in (0, 1, 2)}
    edges = [-mpmath.inf] + sorted({p + k * w for p, w in peaks.items() for k in range(-8, 9)}) + [mpmath.inf]

    def moment(power):
        return mpmath.quad(lambda x: (x * mpmath.ncdf(x)) ** power * mpmath.npdf(x, mu, sd), edges)

    first = moment(1)
    return float(first), float(moment(2) - first**2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_gelu_matches_quadrature_in_the_tails(dtype):
    """Where 10^6 draws cannot resolve the moments (the MC grid's tail cells pass by its floor): relative error
    below 1e-5 against quadrature (the worst case is just above the switch to the Taylor expansion at the GELU's
    minimum, where E[y^2] - E[y]^2 keeps 11 of 16 digits), for values the dtype represents as normal numbers."""
    mu = torch.tensor([c[0] for c in TAIL_CELLS], dtype=torch.float32)  # float32 cells: one reference for both
    var = torch.tensor([c[1] for c in TAIL_CELLS], dtype=torch.float32)
    mean, variance = exact_gelu_moments(mu.to(dtype), var.to(dtype))
    tiny = torch.finfo(dtype).tiny
    for j, (m, v) in enumerate(zip(mu.tolist(), var.tolist())):
        ref_mean, ref_var = quadrature_gelu_moments(m, v)
        for got, ref, what in ((mean[j], ref_mean, "mean"), (variance[j], ref_var, "variance")):
            if abs(ref) < 1e3 * tiny:
                assert abs(float(got)) < 1e4 * tiny, (what, m, v, float(got), ref)
            else:
                assert abs(float(got) - ref) <= 1e-5 * abs(ref), (what, m, v, float(got), ref)


def test_exact_gelu_gradients():
    """Autograd against finite differences (mean 0 included, where the rule reflects), and continuity across
    the switch to the Taylor expansion at variance 1e-6."""
    mu = torch.tensor([-3.0, -0.75, 0.0, 0.3, 2.0, -12.0], dtype=torch.float64, requires_grad=True)
    var = torch.tensor([1.0, 1e-2, 0.5, 2e-5, 4.0, 1.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(exact_gelu_moments, (mu, var))
    means = torch.linspace(-3, 3, 25, dtype=torch.float64)
    below = exact_gelu_moments(means, torch.full_like(means, 1e-6 * (1 - 1e-9)))[1]
    above = exact_gelu_moments(means, torch.full_like(means, 1e-6 * (1 + 1e-9)))[1]
    assert float(((below - above) / above).abs().max()) < 1e-4


def test_limits_are_exact():
    x = torch.tensor([-2.0, 0.0, 1.5], dtype=torch.float64)
    zero = torch.zeros_like(x)
    mean, variance = relu_moments(x, zero)
    torch.testing.assert_close(mean, x.clamp_min(0))
    torch.testing.assert_close(variance, zero)
    mean, variance = exact_gelu_moments(x, zero)
    torch.testing.assert_close(mean, x * torch.special.ndtr(x))
    torch.testing.assert_close(variance, zero)
    mean, variance = gelu_moments(x, zero)  # a deterministic input: the GELU, with the gate's Bernoulli variance
    cdf = torch.special.ndtr(x)
    torch.testing.assert_close(mean, x * cdf)
    torch.testing.assert_close(variance, x**2 * cdf * (1 - cdf))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("full", [False, True])
def test_linear_moments_match_monte_carlo(dtype, full):
    g = torch.Generator().manual_seed(1)
    d, k = 3, 2
    mean = torch.tensor([[0.5, -2.0, 10.0]], dtype=torch.float64)
    root = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = root @ root.T * torch.tensor([1e-4, 1.0, 100.0], dtype=torch.float64).sqrt().outer(
        torch.tensor([1e-4, 1.0, 100.0], dtype=torch.float64).sqrt()) + 1e-6 * torch.eye(d, dtype=torch.float64)
    weight_mean = torch.randn(d, k, generator=g, dtype=torch.float64)
    weight_var = torch.rand(d, k, generator=g, dtype=torch.float64) * 0.5
    bias_mean, bias_var = torch.tensor([1.0, -1.0], dtype=torch.float64), torch.tensor([0.1, 2.0], dtype=torch.float64)
    params = [t.to(dtype) for t in (mean, cov[None] if full else cov.diagonal()[None], weight_mean, weight_var, bias_mean,
                                    bias_var)]
    out_mean, out_var = linear_moments(*params)
    assert out_mean.shape == (1, k) and out_var.shape == ((1, k, k) if full else (1, k))
    mean, cov, weight_mean, weight_var, bias_mean, bias_var = [p.double() for p in params]
    cov = cov[0] if full else torch.diag(cov[0])
    x = mean + torch.randn(NUM_MC, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    w = weight_mean + weight_var.sqrt() * torch.randn(NUM_MC, d, k, generator=g, dtype=torch.float64)
    y = torch.einsum("sd,sdk->sk", x, w) + bias_mean + bias_var.sqrt() * torch.randn(NUM_MC, k, generator=g,
                                                                                      dtype=torch.float64)
    m, v, se_m, se_v = mc_moments(y)
    scale = float(mean.abs().max() + cov.diagonal().max().sqrt()) * float(weight_mean.abs().max() + 1)
    assert_moment(out_mean[0], m, se_m, scale, dtype, "linear mean")
    assert_moment(torch.diagonal(out_var, dim1=-2, dim2=-1)[0] if full else out_var[0], v, se_v, scale**2, dtype,
                  "linear variance")
    if full:
        centred = y - m
        prod = centred[:, 0] * centred[:, 1]
        assert_moment(out_var[0, 0, 1:], prod.mean()[None], prod.std()[None] / math.sqrt(NUM_MC), scale**2, dtype,
                      "linear covariance")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_moments_shortcuts_equal_the_general_forms(dtype):
    """A deterministic input (``variance=None``) is a zero variance; ``full_output`` from a diagonal input is the
    full rule on ``diag(variance)``."""
    g = torch.Generator().manual_seed(2)
    mean, variance = torch.randn(4, 3, generator=g, dtype=dtype), torch.rand(4, 3, generator=g, dtype=dtype)
    weights = (torch.randn(3, 2, generator=g, dtype=dtype), torch.rand(3, 2, generator=g, dtype=dtype),
               torch.randn(2, generator=g, dtype=dtype), torch.rand(2, generator=g, dtype=dtype))
    for full_output in (False, True):
        for got, want in zip(linear_moments(mean, None, *weights, full_output=full_output),
                             linear_moments(mean, torch.zeros_like(mean), *weights, full_output=full_output)):
            torch.testing.assert_close(got, want)
    for got, want in zip(linear_moments(mean, variance, *weights, full_output=True),
                         linear_moments(mean, torch.diag_embed(variance), *weights)):
        torch.testing.assert_close(got, want)


def test_cdf_and_survival_keep_both_tails():
    from probnets.moment.functional import _cdf, _cdf_and_survival

    t = torch.tensor([-40.0, -8.5, -1.0, 0.0, 1e-3, 2.0, 8.5, 40.0], dtype=torch.float64)
    cdf, survival = _cdf_and_survival(t)
    torch.testing.assert_close(cdf, _cdf(t), rtol=1e-15, atol=0)
    torch.testing.assert_close(survival, _cdf(-t), rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_full_covariance(dtype):
    """Diagonal exact (3.5 MCSE); off-diagonal: Wu et al.'s closed form is an approximation of the bivariate
    integral, held to 0.005 sd_i sd_j (plus 3.5 MCSE; its error here is at most 0.0022) over correlations from
    -0.95 to 0.95 and means from -2 to 2 standard deviations."""
    g = torch.Generator().manual_seed(2)
    mean = torch.tensor([[-2.0, 0.0, 0.5, 2.0], [1.0, -1.0, 0.0, 3.0]], dtype=torch.float64) * 3.0
    sds = torch.tensor([3.0, 0.1, 1.0, 3.0], dtype=torch.float64)
    corr = torch.tensor([[1.0, 0.95, -0.5, 0.2], [0.95, 1.0, -0.3, 0.0], [-0.5, -0.3, 1.0, -0.95 * 0.5],
                         [0.2, 0.0, -0.475, 1.0]], dtype=torch.float64)
    cov = (corr * sds.outer(sds)).expand(2, 4, 4)
    out_mean, out_cov = relu_covariance(mean.to(dtype), cov.to(dtype))
    assert out_mean.dtype == out_cov.dtype == dtype
    torch.testing.assert_close(out_cov, out_cov.transpose(-2, -1))
    chol = torch.linalg.cholesky(cov[0])
    for row in range(2):
        y = (mean[row] + torch.randn(NUM_MC, 4, generator=g, dtype=torch.float64) @ chol.T).clamp_min(0)
        m, v, se_m, se_v = mc_moments(y)
        assert_moment(out_mean[row], m, se_m, 6.0, dtype, "relu mean")
        assert_moment(torch.diagonal(out_cov[row]), v, se_v, 36.0, dtype, "relu variance")
        centred = y - m
        prods = centred[:, :, None] * centred[:, None, :]
        mc_cov, se_cov = prods.mean(0), prods.std(0) / math.sqrt(NUM_MC)
        err = (out_cov[row].double() - mc_cov).abs()
        assert bool((err <= 0.005 * sds.outer(sds) + 3.5 * se_cov).all()), (err / sds.outer(sds)).max()


def test_relu_full_covariance_diagonal_input_matches_diagonal_rule():
    mean = torch.tensor([[0.3, -1.0]], dtype=torch.float64)
    var = torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    full_mean, full_cov = relu_covariance(mean, torch.diag_embed(var))
    diag_mean, diag_var = relu_moments(mean, var)
    torch.testing.assert_close(full_mean, diag_mean)
    torch.testing.assert_close(full_cov, torch.diag_embed(diag_var))


@pytest.mark.parametrize("dtype", DTYPES)
def test_heteroscedastic_output_matches_monte_carlo(dtype):
    g = torch.Generator().manual_seed(3)
    mean = torch.tensor([[0.5, -1.0], [2.0, 1.0], [-3.0, -4.0]], dtype=torch.float64)
    cov = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[1e-6, 0.0], [0.0, 1e-6]], [[2.0, -0.5], [-0.5, 0.4]]],
                       dtype=torch.float64)
    y = torch.tensor([[0.2], [2.5], [-1.0]], dtype=torch.float64)
    moments = Moments(mean.to(dtype), cov.to(dtype))
    ell = expected_log_likelihood(moments, y.to(dtype))
    pred_mean, latent_var, noise_var = predictive_moments(moments)
    assert ell.shape == (3,) and pred_mean.shape == latent_var.shape == noise_var.shape == (3, 1)
    z = mean + torch.einsum("nij,snj->sni", torch.linalg.cholesky(cov),
                            torch.randn(NUM_MC, 3, 2, generator=g, dtype=torch.float64))
    ell_mc = torch.distributions.Normal(z[..., 0], (0.5 * z[..., 1]).exp()).log_prob(y[:, 0])
    draws = z[..., 0] + (0.5 * z[..., 1]).exp() * torch.randn(NUM_MC, 3, generator=g, dtype=torch.float64)
    m, _, se_m, _ = mc_moments(ell_mc)
    assert_moment(ell, m, se_m, 10.0, dtype, "expected log-likelihood")
    m, v, se_m, se_v = mc_moments(draws)
    assert_moment(pred_mean[:, 0], m, se_m, 5.0, dtype, "predictive mean")
    assert_moment((latent_var + noise_var)[:, 0], v, se_v, 5.0, dtype, "predictive variance")
    pred = gaussian_predictive(pred_mean, latent_var + noise_var)
    torch.testing.assert_close(pred.mean, pred_mean)
    torch.testing.assert_close(pred.variance, latent_var + noise_var)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation, covariance", [("gelu", "diagonal"), ("exact-gelu", "diagonal"),
                                                     ("relu", "diagonal"), ("relu", "full")])
def test_one_hidden_layer_network_is_exact(activation, covariance, dtype):
    """Through one hidden layer, the output mean, variances and the mean/log-variance covariance are exact
    (checked against 2.5 x 10^5 networks drawn from q, gates included)."""
    g = torch.Generator().manual_seed(4)
    net = MomentNetwork(2, (8,), activation=activation, covariance=covariance, init_variance=0.3, dtype=dtype,
                        generator=g)
    x = torch.tensor([[0.5, -1.0], [3.0, 2.0], [0.0, 0.0]], dtype=dtype)
    out = net(x)
    assert out.mean.shape == (3, 2) and out.variance.shape == (3, 2, 2) and out.mean.dtype == dtype
    net64 = net.double()
    draws = net64.sample_forward(x.double(), NUM_MC // 4, generator=g).detach()  # S x n x 2
    m, v, se_m, se_v = mc_moments(draws)
    assert_moment(out.mean, m, se_m, 3.0, dtype, "network mean")
    assert_moment(torch.diagonal(out.variance, dim1=-2, dim2=-1), v, se_v, 3.0, dtype, "network variance")
    centred = draws - m
    prod = centred[..., 0] * centred[..., 1]
    assert_moment(out.variance[:, 0, 1], prod.mean(0), prod.std(0) / math.sqrt(NUM_MC // 4), 3.0, dtype,
                  "network covariance")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["gelu", "exact-gelu", "relu"])
def test_networks_at_weight_draws_have_the_exact_moments(activation, dtype):
    """``forward_draws`` at 2.5 x 10^5 weight draws from q (MP-GELU gates drawn inside) reproduces the exact
    one-hidden-layer output moments, so it reads the flat weights in spec order; ``draw_log_likelihood`` is the
    Gaussian log density of those outputs."""
    g = torch.Generator().manual_seed(6)
    net = MomentNetwork(2, (8,), activation=activation, init_variance=0.3, dtype=dtype, generator=g)
    x = torch.tensor([[0.5, -1.0], [3.0, 2.0], [0.0, 0.0]], dtype=dtype)
    out = net(x)
    mean, variance = (t.detach() for t in net.variational_parameters())
    theta = mean + variance.sqrt() * torch.randn(NUM_MC // 4, mean.shape[0], generator=g, dtype=dtype)
    few = net.forward_draws(theta[:5], x, generator=g)
    assert few.shape == (5, 3, 2) and few.dtype == dtype
    draws = net.double().forward_draws(theta.double(), x.double(), generator=g).detach()
    m, v, se_m, se_v = mc_moments(draws)
    assert_moment(out.mean, m, se_m, 3.0, dtype, "network mean")
    assert_moment(torch.diagonal(out.variance, dim1=-2, dim2=-1), v, se_v, 3.0, dtype, "network variance")
    y = torch.tensor([[0.2], [2.5], [-1.0]], dtype=torch.float64)
    reference = torch.distributions.Normal(draws[:100, :, 0], (0.5 * draws[:100, :, 1]).exp()).log_prob(y[:, 0])
    torch.testing.assert_close(draw_log_likelihood(draws[:100], y), reference)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation, covariance", [("gelu", "diagonal"), ("exact-gelu", "diagonal"),
                                                     ("relu", "diagonal"), ("relu", "full")])
def test_stable_for_extreme_inputs(activation, covariance, dtype):
    net = MomentNetwork(2, (16, 16), activation=activation, covariance=covariance, dtype=dtype,
                        generator=torch.Generator().manual_seed(5))
    x = torch.tensor([[1e4, -1e4], [0.0, 0.0], [-300.0, 1e-30]], dtype=dtype)
    out = net(x)
    assert bool(torch.isfinite(out.mean).all() & torch.isfinite(out.variance).all())
    assert bool(torch.isfinite(expected_log_likelihood(out, torch.zeros(3, 1, dtype=dtype))[1]))
    (out.mean.sum() + out.variance.sum()).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in net.parameters())
    for rule in RULES.values():
        m, v = rule(torch.tensor([1e30, -1e30, 0.0], dtype=dtype), torch.tensor([1e-30, 1e30, 1e30], dtype=dtype))
        assert bool(torch.isfinite(m).all() & torch.isfinite(v).all() & (v >= 0).all())


def test_bad_input():
    with pytest.raises(ValueError, match="activation must be one of"):
        MomentActivation("tanh")
    with pytest.raises(ValueError, match="covariance='full' needs activation='relu'"):
        MomentActivation("gelu", "full")
    with pytest.raises(ValueError, match="covariance must be one of"):
        MomentNetwork(2, activation="relu", covariance="block")
    net = MomentNetwork(2)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        net(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="x must be floating point"):
        net(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="widths"):
        MomentNetwork(2, (0,))
    dim = net.spec.dim
    with pytest.raises(ValueError, match=rf"theta must have shape \(S, {dim}\)"):
        net.forward_draws(torch.zeros(dim), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=rf"theta must have shape \(\.\.\., {dim}\)"):
        net.forward_draws(torch.zeros(4, dim - 1), torch.zeros(3, 2))
