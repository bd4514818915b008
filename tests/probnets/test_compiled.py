"""The compiled log-density gradient (probnets.compiled) agrees with eager autograd, or falls back with a warning.

Every model is compiled once (module fixture; inductor compiles for seconds), at C = 3 chains in float64.
"""

from __future__ import annotations

import warnings

import pyro.distributions as dist
import pytest
import torch

from probnets import BNN, Bernoulli, Categorical, Gaussian, from_module
from probnets.compiled import CompileFallbackWarning, CompiledLogDensity
from probnets.model import ProbModel
from tests_support import SmallConvNet, make_regression

C = 3


def _case(name: str):
    g = torch.Generator().manual_seed(0)
    x, y = make_regression(23, 3)
    if name == "gaussian-tanh":
        model = BNN(3, [6], activation="tanh", likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    elif name == "bernoulli-relu":
        model, y = BNN(3, [5, 4], activation="relu", likelihood=Bernoulli()), (y > 0).double()
    elif name == "categorical-gelu":
        model, y = BNN(3, [6], 3, activation="gelu", likelihood=Categorical(3)), torch.randint(0, 3, (23,), generator=g)
    else:  # a from_module conv net, partially stochastic
        x, y = torch.randn(10, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (10,), generator=g)
        torch.manual_seed(0)
        model = from_module(SmallConvNet().to(torch.float64),
                            {"conv.*": dist.Normal(0.0, 1.0), "head.weight": dist.Normal(0.0, 1.0)},
                            likelihood=Categorical(4))
    return model, (x, y)


def _theta(model, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    theta = model.init_theta(C, generator=g, dtype=torch.float64)
    return theta + 0.3 * torch.randn(theta.shape, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module", params=["gaussian-tanh", "bernoulli-relu", "categorical-gelu", "conv-categorical"])
def compiled(request):
    model, batch = _case(request.param)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        # ProbModel's own logdensity: the Gaussian tanh BNN would otherwise take the fused numba kernel
        logdensity = ProbModel.logdensity(model, batch, temperature=0.8, compile=True)
        logdensity.value_and_grad(_theta(model, 1))  # compiles and checks against eager
    eager = ProbModel.logdensity(model, batch, temperature=0.8)
    return model, logdensity, eager


def test_compiled_value_and_gradient_equal_eager(compiled):
    model, logdensity, eager = compiled
    assert isinstance(logdensity, CompiledLogDensity) and logdensity.fallback_reason is None
    assert logdensity.compile_seconds > 0
    theta = _theta(model, 2)  # not the point of the first-use check
    value, grad = logdensity.value_and_grad(theta)
    ref_value, ref_grad = eager.value_and_grad(theta)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-10)
    assert not torch.equal(grad, _theta(model, 1))  # a real gradient, not an echo of the input


def test_fewer_chains_reuse_the_compiled_graph(compiled):
    model, logdensity, eager = compiled
    theta = _theta(model, 3)[:2]
    value, grad = logdensity.value_and_grad(theta)
    ref_value, ref_grad = eager.value_and_grad(theta)
    assert value.shape == (2,) and grad.shape == (2, model.spec.dim)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-10)
    assert len(logdensity._compiled) == 1


def test_nan_theta_propagates_as_nan(compiled):
    model, logdensity, eager = compiled
    theta = _theta(model, 4)
    theta[1, 0] = float("nan")
    value, grad = logdensity.value_and_grad(theta)
    assert torch.isnan(value[1]) and torch.isnan(grad[1]).any()
    ref_value, ref_grad = eager.value_and_grad(theta)
    torch.testing.assert_close(value[[0, 2]], ref_value[[0, 2]], rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(grad[[0, 2]], ref_grad[[0, 2]], rtol=1e-10, atol=1e-10)


def _branchy_activation(h: torch.Tensor) -> torch.Tensor:
    """Python control flow on tensor values: cannot be traced into a graph."""
    return torch.tanh(h) if bool((h > 0).any()) else h


def test_model_that_cannot_compile_falls_back_with_one_clear_warning():
    x, y = make_regression(11, 3)
    model = BNN(3, [4], activation=_branchy_activation, likelihood=Gaussian(noise_scale=0.5))
    logdensity = model.logdensity((x, y), compile=True)
    eager = ProbModel.logdensity(model, (x, y))
    theta = _theta(model, 5)
    with pytest.warns(CompileFallbackWarning, match=r"could not compile BNN\(3 -> \[4\].*data-dependent"):
        value, grad = logdensity.value_and_grad(theta)
    assert "data-dependent" in logdensity.fallback_reason
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)  # only once per shape
        value2, grad2 = logdensity.value_and_grad(theta)
    ref_value, ref_grad = eager.value_and_grad(theta)
    for got in ((value, grad), (value2, grad2)):
        torch.testing.assert_close(got[0], ref_value, rtol=0, atol=0)
        torch.testing.assert_close(got[1], ref_grad, rtol=0, atol=0)


def test_compile_argument_is_checked():
    x, y = make_regression(5, 3)
    with pytest.raises(TypeError, match="compile"):
        BNN(3, [4]).logdensity((x, y), compile="yes")
    with pytest.raises(TypeError, match="base"):
        CompiledLogDensity(lambda t: t.sum(-1))
    with pytest.raises(ValueError, match="mode must be one of"):
        CompiledLogDensity(BNN(3, [4]).logdensity((x, y)), mode="reduce-overhead")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_prior_log_prob_is_traceable(dtype):
    from torch.fx.experimental.proxy_tensor import make_fx

    from probnets.priors import parameters

    prior = dist.Normal(torch.tensor(0.5, dtype=dtype), torch.tensor(0.3, dtype=dtype))
    value = torch.randn(4, 7, dtype=dtype, generator=torch.Generator().manual_seed(0))
    graph = make_fx(lambda v: parameters.log_prob(prior, v, 1))(value)
    torch.testing.assert_close(graph(value), parameters.log_prob(prior, value, 1), rtol=0, atol=0)
