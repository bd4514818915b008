"""MaskedBNN: the ProbModel contract, the mask prior, masked forward passes and the conjugate noise conditional."""

import math

import pyro.distributions as dist
import pytest
import torch

from model_contract import ProbModelContract
from probnets import BNN, Bernoulli, Gaussian, LogDensity
from probnets.masked_bnn import MaskedBNN, mask_size_log_prior
from tests_support import make_regression


class TestMaskedBNNConjugateNoise(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(20, 3, dtype)
        return MaskedBNN(3, [8, 6], num_data=20, init_active=0.5), x, y


class TestMaskedBNNFixedNoiseNormalPrior(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(15, 2, dtype)
        return MaskedBNN(2, [7], num_data=15, weight_prior="normal", likelihood=Gaussian(noise_scale=0.3)), x, y


class TestMaskedBNNBernoulli(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(16, 2, dtype)
        return MaskedBNN(2, [5], num_data=16, activation="tanh", likelihood=Bernoulli()), x, (y > 0).to(dtype)


def test_mask_prior_is_normalised_and_its_size_marginal_is_exp_minus_penalty_s_squared():
    width, penalty = 12, 0.03
    sizes = torch.arange(width + 1, dtype=torch.float64)
    binomial = torch.tensor([math.comb(width, s) for s in range(width + 1)], dtype=torch.float64)
    size_marginal = binomial * mask_size_log_prior(sizes, width, penalty).exp()
    expected = torch.exp(-penalty * sizes**2)
    torch.testing.assert_close(size_marginal, expected / expected.sum(), rtol=1e-12, atol=0)


def test_log_prior_holds_the_mask_prior_at_the_paper_penalty():
    model = MaskedBNN(1, [6, 4], num_data=20, mask_lambda=0.1)
    assert model.mask_penalty == pytest.approx((0.1 * math.log(20)) ** 5)
    theta = model.init_theta(1, dtype=torch.float64)
    masks = model.masks(theta)
    before = model.log_prior(theta)
    masks[0][0, :] = 0.0
    masks[1][0, :2] = 1.0
    after = model.log_prior(theta)
    table0 = mask_size_log_prior(torch.arange(7.0, dtype=torch.float64), 6, model.mask_penalty)
    table1 = mask_size_log_prior(torch.arange(5.0, dtype=torch.float64), 4, model.mask_penalty)
    # init_active 0.9: 5 of 6 and 4 of 4 active before; 0 of 6 and 4 of 4 after.
    torch.testing.assert_close(after - before, table0[0:1] - table0[5:6] + table1[4:5] - table1[4:5])


def test_masked_forward_equals_a_bnn_with_the_masked_nodes_outgoing_weights_zeroed():
    x, _ = make_regression(9, 3)
    model = MaskedBNN(3, [5, 4], num_data=9, init_active=1.0)
    theta = model.init_theta(2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    masks = model.masks(theta)
    masks[0][:, [1, 3]] = 0.0
    masks[1][1, 2] = 0.0
    dense = BNN(3, [5, 4], activation="relu", likelihood=model.likelihood)
    weights = theta[:, : model.net_spec.dim].clone()
    params = model.net_spec.unflatten(weights)
    params["layers.1.weight"].mul_(masks[0].unsqueeze(-2))
    params["layers.2.weight"].mul_(masks[1].unsqueeze(-2))
    dense_theta = torch.cat([weights, theta[:, model.mask_slice.stop:]], -1)
    torch.testing.assert_close(model.predict_f(theta, x), dense.predict_f(dense_theta, x), rtol=1e-12, atol=1e-12)


def test_mask_gradient_is_the_likelihood_gradient():
    x, y = make_regression(10, 2)
    model = MaskedBNN(2, [6], num_data=10, likelihood=Gaussian(noise_scale=0.5))
    theta = model.init_theta(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad = model.logdensity((x, y)).value_and_grad(theta)[1][:, model.mask_slice]
    with torch.enable_grad():
        t = theta.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(model.log_likelihood(t, model.prepare_batch((x, y))).sum(), t)
    torch.testing.assert_close(grad, expected[:, model.mask_slice])


def test_noise_variance_conditional_is_the_exact_full_conditional():
    """The joint log density as a function of u = log sigma, with everything else fixed, is the log density
    of sigma^2 ~ InvGamma(1 + n/2, b + SSE/2) pushed to u (Jacobian log 2 + 2u), up to a constant."""
    x, y = make_regression(14, 2)
    model = MaskedBNN(2, [5], num_data=14, noise_rate=0.7)
    theta = model.init_theta(1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    batch = model.prepare_batch((x, y))
    conditional = model.noise_variance_conditional(theta, batch)
    assert conditional.concentration.item() == pytest.approx(1 + 14 / 2)
    sse = (batch[1] - model.predict_f(theta, x)).square().sum()
    assert conditional.rate.item() == pytest.approx(0.7 + sse.item() / 2)
    u = torch.tensor([-1.0, 0.3, 1.2], dtype=torch.float64)
    variance = torch.exp(2 * u)
    joint = model.logdensity((x, y))(model.with_noise_variance(theta.expand(3, -1), variance))
    exact = conditional.log_prob(variance) + math.log(2.0) + 2 * u
    torch.testing.assert_close(joint - joint[0], exact - exact[0])


def test_closed_form_noise_prior_equals_the_likelihood_prior():
    model = MaskedBNN(1, [3], num_data=5, noise_rate=2.5)
    u = torch.linspace(-2, 2, 7, dtype=torch.float64)
    torch.testing.assert_close(model._log_noise_prior(u),
                               model.likelihood.log_prior({Gaussian.PARAM: u}).to(torch.float64), rtol=1e-6, atol=1e-6)


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="widths"):
        MaskedBNN(1, [], num_data=5)
    with pytest.raises(ValueError, match="weight_prior"):
        MaskedBNN(1, [3], num_data=5, weight_prior="laplace")
    with pytest.raises(ValueError, match="likelihood"):
        MaskedBNN(1, [3], num_data=5, likelihood=Gaussian(noise_prior=dist.LogNormal(0.0, 1.0)))
    with pytest.raises(ValueError, match="init_active"):
        MaskedBNN(1, [3], num_data=5, init_active=1.5)
    with pytest.raises(ValueError, match="num_data"):
        MaskedBNN(1, [3], num_data=0)
    with pytest.raises(ValueError, match="mask_lambda"):
        MaskedBNN(1, [3], num_data=5, mask_lambda=-1.0)


@pytest.mark.parametrize("setting", ["conjugate_cauchy", "fixed_normal", "tempered"])
def test_hand_written_gradient_equals_autograd(setting):
    from probnets.masked_density import MaskedMLPLogDensity

    x, y = make_regression(12, 3)
    kwargs = {"fixed_normal": dict(weight_prior="normal", prior_scale=0.7, likelihood=Gaussian(noise_scale=0.4))}
    model = MaskedBNN(3, [6, 5], num_data=12, init_active=0.6, **kwargs.get(setting, {}))
    temperature = 2.5 if setting == "tempered" else 1.0
    fast = model.logdensity((x, y), temperature=temperature)
    assert isinstance(fast, MaskedMLPLogDensity)
    theta = model.init_theta(4, generator=torch.Generator().manual_seed(3), dtype=torch.float64).reshape(2, 2, -1)
    if model.conjugate_noise:
        theta[..., -1] = torch.tensor([[-0.5, 0.2], [0.0, 1.0]], dtype=torch.float64)
    generic = LogDensity(fast.fn, fast.dim)
    value, grad = fast.value_and_grad(theta)
    expected_value, expected_grad = generic.value_and_grad(theta)
    torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


def test_other_settings_use_autograd():
    from probnets.masked_density import MaskedMLPLogDensity

    x, y = make_regression(12, 3)
    for model in (MaskedBNN(3, [4], num_data=12, activation="tanh"),
                  MaskedBNN(3, [4], num_data=12, weight_prior=dist.StudentT(3.0, 0.0, 1.0)),
                  MaskedBNN(3, [4], num_data=12, likelihood=Bernoulli())):
        data = (x, (y > 0).double()) if isinstance(model.likelihood, Bernoulli) else (x, y)
        assert not isinstance(model.logdensity(data), MaskedMLPLogDensity)
