import pyro.distributions as dist
import pytest
import torch

from probnets import BNN, Bernoulli, Categorical, Gaussian, priors
from tests_support import make_regression
from model_contract import ProbModelContract


class TestBNNGaussianLearnedNoise(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(20, 3, dtype)
        return BNN(3, [8, 6], activation="tanh"), x, y


class TestBNNFixedNoiseRelu(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(15, 2, dtype)
        return BNN(2, [7], activation="relu", likelihood=Gaussian(noise_scale=0.3)), x, y


class TestBNNHeavyTailedPrior(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(12, 2, dtype)
        return BNN(2, [5], prior=priors.student_t(3.0, 1.0)), x, y


class TestBNNBernoulli(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(16, 2, dtype)
        return BNN(2, [5], likelihood=Bernoulli()), x, (y > 0).to(dtype)


class TestBNNCategorical(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(16, 2, dtype)
        labels = torch.bucketize(y, torch.tensor([-0.5, 0.5], dtype=dtype))
        return BNN(2, [5], out_features=3, likelihood=Categorical(3)), x, labels


def test_parameter_layout_matches_nn_linear():
    model = BNN(3, [4], out_features=2, likelihood=Gaussian(noise_scale=1.0))
    assert model.spec.names == ("layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias")
    assert model.spec.shapes[0] == (4, 3)
    theta = model.init_theta(1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)[0]
    p = model.spec.unflatten(theta)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(p["layers.0.weight"]); net[0].bias.copy_(p["layers.0.bias"])
        net[2].weight.copy_(p["layers.1.weight"]); net[2].bias.copy_(p["layers.1.bias"])
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(model.predict_f(theta, x), net(x))


def test_per_layer_prior_and_log_prior_value():
    model = BNN(2, [3], prior={"layers.0.*": dist.Normal(0.0, 0.5), "*": dist.Normal(0.0, 2.0)},
                likelihood=Gaussian(noise_scale=1.0))
    theta = torch.randn(4, model.spec.dim, dtype=torch.float64)
    p = model.spec.unflatten(theta)
    expected = sum(dist.Normal(0.0, 0.5 if k.startswith("layers.0") else 2.0).log_prob(v).flatten(1).sum(-1)
                   for k, v in p.items())
    torch.testing.assert_close(model.log_prior(theta), expected)


def test_fan_in_prior_scales_with_layer_width():
    model = BNN(16, [4], prior=priors.fan_in_normal(2.0), likelihood=Gaussian(noise_scale=1.0))
    assert float(model.priors["layers.0.weight"].scale) == pytest.approx(2.0 / 4.0)
    assert float(model.priors["layers.1.weight"].scale) == pytest.approx(2.0 / 2.0)


def test_learned_noise_prior_includes_jacobian():
    lik = Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0))
    u = torch.tensor([0.3, -1.2], dtype=torch.float64)
    expected = dist.LogNormal(-1.0, 1.0).log_prob(u.exp()) + u
    torch.testing.assert_close(lik.log_prior({Gaussian.PARAM: u}), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("prior", [dist.LogNormal(-1.0, 1.0), dist.HalfNormal(1.0)])
def test_noise_prior_is_finite_where_the_scale_underflows(prior, dtype):
    """A chain far in the left tail of log sigma gets a finite, very low log prior (a rejected proposal), not a
    support error from the prior's validation of exp(u) = 0 (the sampler used to stop there)."""
    lik = Gaussian(noise_prior=prior)
    u = torch.tensor([-120.0, -800.0], dtype=dtype)
    lp = lik.log_prior({Gaussian.PARAM: u})
    assert torch.isfinite(lp).all() and (lp < -100).all()
    if isinstance(prior, dist.LogNormal):  # exact: Normal(-1, 1) on log sigma
        torch.testing.assert_close(lp, dist.Normal(torch.tensor(-1.0, dtype=dtype), 1.0).log_prob(u))


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_features=0, widths=[3]), "in_features"),
    (dict(in_features=2, widths=[0]), r"widths\[0\]"),
    (dict(in_features=2, widths=[-4]), r"widths\[0\]"),
    (dict(in_features=2, widths=[3], activation="nope"), "activation"),
    (dict(in_features=2, widths=[3], out_features=0), "out_features"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BNN(**kwargs)


def test_bad_likelihood_settings():
    with pytest.raises(ValueError, match="noise_scale"):
        Gaussian(noise_scale=-1.0)
    with pytest.raises(ValueError, match="positive support"):
        Gaussian(noise_prior=dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="num_classes"):
        Categorical(1)


def test_wrong_input_dimensionality():
    model = BNN(3, [4])
    theta = model.init_theta(2)
    with pytest.raises(ValueError, match="x must have shape"):
        model.predict_f(theta, torch.randn(5, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        model.logdensity((torch.randn(5), torch.randn(5)))
