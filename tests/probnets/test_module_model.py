import pyro.distributions as dist
import pytest
import torch
from torch import nn

from probnets import BNN, Categorical, Gaussian, from_module
from tests_support import SmallConvNet, make_regression
from model_contract import ProbModelContract


def mlp(dtype):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).to(dtype)


class TestFullyStochasticModule(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(14, 3, dtype)
        return from_module(mlp(dtype), dist.Normal(0.0, 1.0)), x, y


class TestPartialBNN(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(14, 3, dtype)
        return from_module(mlp(dtype), {"2.*": dist.Normal(0.0, 1.0)}), x, y


class TestConvNetClassifier(ProbModelContract):
    def make_model(self, dtype):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(10, 1, 6, 6, generator=g, dtype=dtype)
        y = torch.randint(0, 4, (10,), generator=g)
        torch.manual_seed(0)
        net = SmallConvNet().to(dtype)
        return from_module(net, {"conv.*": dist.Normal(0.0, 1.0), "head.weight": dist.Normal(0.0, 1.0)},
                           likelihood=Categorical(4)), x, y


def test_partial_bnn_keeps_unmatched_parameters_deterministic():
    net = mlp(torch.float64)
    model = from_module(net, {"2.*": dist.Normal(0.0, 1.0)})
    assert model.spec.names == ("2.weight", "2.bias", "likelihood.log_noise_scale")
    assert set(model.deterministic_parameters()) == {"0.weight", "0.bias"}
    x, _ = make_regression(4, 3)
    theta = model.init_theta(2, dtype=torch.float64)
    before = model.predict_f(theta, x)
    with torch.no_grad():  # training the deterministic part changes every draw's prediction
        net[0].bias.add_(1.0)
    assert not torch.allclose(model.predict_f(theta, x), before)


def test_from_module_equals_bnn_with_the_same_weights():
    net = mlp(torch.float64)
    model = from_module(net, dist.Normal(0.0, 1.0), likelihood=Gaussian(noise_scale=0.5))
    bnn = BNN(3, [6], prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(noise_scale=0.5))
    theta = model.init_theta(3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x, y = make_regression(9, 3)
    # Same naming up to the "layers." prefix and index of the second Linear.
    assert [s for s in model.spec.shapes] == [s for s in bnn.spec.shapes]
    torch.testing.assert_close(model.predict_f(theta, x), bnn.predict_f(theta, x))
    torch.testing.assert_close(model.logdensity((x, y))(theta), bnn.logdensity((x, y))(theta))


def test_from_module_errors():
    with pytest.raises(TypeError, match="module"):
        from_module("not a module", dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="no parameter matches"):
        from_module(mlp(torch.float32), {"nothing.*": dist.Normal(0.0, 1.0)})
    with pytest.raises(ValueError, match="event shape"):
        from_module(mlp(torch.float32), dist.MultivariateNormal(torch.zeros(2), torch.eye(2)))
