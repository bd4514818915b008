import pyro.distributions as dist
import pytest
import torch

from model_contract import ProbModelContract
from probnets import Categorical, Gaussian
from probnets.module_model import ModuleModel
from probnets.partial_bnn import PartialBNN, paper_mlp, partial_mlp
from tests_support import SmallConvNet, make_regression


class TestPaperUCIArchitecture(ProbModelContract):
    def make_model(self, dtype):
        x, y = make_regression(14, 3, dtype)
        return paper_mlp("uci", 3, generator=torch.Generator().manual_seed(0), dtype=dtype), x, y


class TestConvStochasticFirstLayer(ProbModelContract):
    """The MNIST set-up of the paper: the first convolution stochastic, the rest deterministic."""

    def make_model(self, dtype):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(10, 1, 6, 6, generator=g, dtype=dtype)
        y = torch.randint(0, 4, (10,), generator=g)
        torch.manual_seed(0)
        return PartialBNN(SmallConvNet().to(dtype), 0, likelihood=Categorical(4)), x, y


def test_paper_architectures_have_the_papers_sizes():
    uci = paper_mlp("uci", 8)
    assert uci.spec.names == ("4.weight", "4.bias") and uci.spec.dim == 105
    moons = paper_mlp("moons", 2)
    assert moons.spec.dim == 105 and moons.likelihood.task == "classification" and moons.num_latent == 1
    assert sum(p.numel() for p in moons.psi_parameters()) == 2 * 100 + 100 + 100 * 20 + 20 + 5 + 1
    assert paper_mlp("synthetic", 1).spec.dim == 20 * 10 + 10


def test_layer_index_equals_pattern_and_negative_indices_count_from_the_end():
    net = partial_mlp((3, 5, 4, 2), 1).module
    by_index = PartialBNN(net, 1)
    by_pattern = PartialBNN(net, "2.*")
    assert by_index.spec.names == by_pattern.spec.names == ("2.weight", "2.bias")
    assert PartialBNN(net, -1).spec.names == ("4.weight", "4.bias")
    assert PartialBNN(net, [0, -1]).spec.names == ("0.weight", "0.bias", "4.weight", "4.bias")


def test_shared_prefix_gives_the_same_outputs_and_gradients_as_per_draw_evaluation():
    model = partial_mlp((3, 6, 5, 2), 1, activation="tanh", generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    assert model._split is not None
    x, _ = make_regression(7, 3)
    theta = model.init_theta(4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fast = model.predict_f(theta, x)
    slow = ModuleModel.predict_f(model, theta, x)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    psi = model.psi_parameters()
    g_fast = torch.autograd.grad(fast.square().sum(), psi)
    g_slow = torch.autograd.grad(slow.square().sum(), psi)
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_psi_state_round_trip_and_prior():
    model = paper_mlp("uci", 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = model.state_dict()
    assert "4.weight" not in state and "0.weight" in state
    x, _ = make_regression(5, 3)
    theta = model.init_theta(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = model.predict_f(theta, x).detach()
    with torch.no_grad():
        model.module[0].weight.add_(1.0)
    assert not torch.allclose(model.predict_f(theta, x), before)
    model.load_state_dict(state)
    torch.testing.assert_close(model.predict_f(theta, x).detach(), before)
    mean, var = model.prior_moments()
    assert mean.shape == var.shape == (105,) and bool((mean == 0).all()) and bool((var == 1).all())
    draws = model.init_theta(4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert abs(float(draws.std()) - 1.0) < 0.01  # prior draws (4.2e5 values)
    with pytest.raises(ValueError, match="entries"):
        model.load_state_dict({"0.weight": state["0.weight"]})


def test_errors_name_the_argument():
    net = partial_mlp((3, 5, 2), 0).module
    with pytest.raises(ValueError, match="out of range"):
        PartialBNN(net, 5)
    with pytest.raises(TypeError, match="not a mix"):
        PartialBNN(net, ["0.*", 1])
    with pytest.raises(ValueError, match="every parameter"):
        PartialBNN(net, "*")
    with pytest.raises(ValueError, match="likelihood"):
        PartialBNN(net, 0, likelihood=Gaussian(noise_prior=dist.LogNormal(0.0, 1.0)))
    with pytest.raises(ValueError, match="no parameter matches"):
        PartialBNN(net, "nothing.*")
    with pytest.raises(ValueError, match="problem"):
        paper_mlp("mnist", 3)
    with pytest.raises(ValueError, match="not Normal"):
        PartialBNN(net, 0, prior=dist.Laplace(0.0, 1.0)).prior_moments()
    with pytest.raises(ValueError, match="sizes"):
        partial_mlp((3, 2), 0)
