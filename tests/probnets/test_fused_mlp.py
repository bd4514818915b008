"""The fused numba log-density kernel agrees with the generic autograd path.

Kernels are compiled per (architecture, activation, dtype), so the cases below share a handful of
architectures to keep the (first, uncached) run short.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

from probnets import BNN, Bernoulli, Categorical, Gaussian
from probnets.model import LogDensity

from probnets.fused_mlp import FusedMLPLogDensity, codegen, density, helpers, supports

if not helpers.HAVE_NUMBA:  # pragma: no cover
    pytest.skip("numba is not installed", allow_module_level=True)

TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def make(d=3, widths=(5,), m=1, *, activation="tanh", learned=True, prior=None, n=37, dtype=torch.float64,
         temperature=0.7, seed=0, likelihood="gaussian"):
    """A BNN and its fused log density; ``m`` outputs (Gaussian) or classes (Categorical)."""
    torch.manual_seed(seed)
    x = torch.randn(n, d, dtype=dtype)
    if likelihood == "bernoulli":
        lik, y = Bernoulli(), (torch.rand(n) < 0.4).to(dtype)
    elif likelihood == "categorical":
        lik, y = Categorical(m), torch.randint(0, m, (n,))
    else:
        lik = Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)) if learned else Gaussian(noise_scale=0.4)
        y = torch.randn(n, m, dtype=dtype) if m > 1 else torch.randn(n, dtype=dtype)
    model = BNN(d, widths, m if likelihood == "gaussian" else 1, activation=activation, likelihood=lik, prior=prior)
    return model, model.logdensity((x, y), temperature=temperature)


def theta_for(model, shape, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    theta = model.init_theta(math.prod(shape), generator=g, dtype=dtype) * 1.7
    theta += 0.1 * torch.randn(theta.shape, generator=g, dtype=dtype)
    if getattr(model.likelihood, "learned", False):
        theta[:, -1] = -1.0 + 0.3 * torch.randn(theta.shape[0], generator=g, dtype=dtype)
    return theta.reshape(*shape, -1)


def assert_matches(ld, theta):
    assert isinstance(ld, FusedMLPLogDensity)
    value, grad = ld.value_and_grad(theta)
    ref_value, ref_grad = LogDensity.value_and_grad(ld, theta)  # autograd of the generic function
    tol = TOL[theta.dtype]
    assert value.shape == theta.shape[:-1] and grad.shape == theta.shape
    assert value.dtype == theta.dtype and grad.dtype == theta.dtype
    torch.testing.assert_close(value, ref_value, **tol)
    torch.testing.assert_close(grad, ref_grad, rtol=tol["rtol"], atol=tol["atol"] * ref_grad.abs().max().item())
    torch.testing.assert_close(ld(theta), ref_value, **tol)


# Kernels compiled by these tests (about a second each on first use, then cached on disk):
# 3 -> [5] -> 1 tanh in float32 and float64, 3 -> 2 in float64, and 5 -> [3, 5] -> 2 relu in float32 with
# tiny unrolling limits (the code paths of wide layers); the classification and GELU kernels below.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_hidden_layer_learned_noise(dtype):
    model, ld = make(dtype=dtype)
    assert_matches(ld, theta_for(model, (6,), dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_layer_normal_priors_fixed_noise_and_leading_dims(dtype):
    prior = {"layers.0.*": dist.Normal(0.1, 0.3), "*": dist.Normal(0.0, 1.0)}
    model, ld = make(learned=False, prior=prior, dtype=dtype, temperature=2.5)
    assert ld.analytic_prior is not None
    assert_matches(ld, theta_for(model, (2, 3), dtype))


def test_no_hidden_layer_two_outputs():
    model, ld = make(widths=(), m=2, learned=False)
    assert_matches(ld, theta_for(model, (5,), torch.float64))


def test_two_hidden_layers_two_outputs_relu_and_wide_layer_code_paths(monkeypatch):
    # Tiny unrolling/blocking limits make these small layers take the code paths of wide ones: blocked
    # forward and weight-gradient loops, a back-propagated error summed in blocks, an unfused output layer.
    monkeypatch.setattr(codegen, "UNROLL", 2)
    monkeypatch.setattr(codegen, "BLOCK", 2)
    monkeypatch.setattr(codegen, "FUSE_OUT", 1)
    model, ld = make(d=5, widths=(3, 5), m=2, activation="relu", dtype=torch.float32)
    assert_matches(ld, theta_for(model, (3,), torch.float32))
    assert_matches(ld, theta_for(model, (1,), torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("likelihood, m", [("bernoulli", 1), ("categorical", 4)])
def test_classification_likelihoods(likelihood, m, dtype):
    model, ld = make(m=m, likelihood=likelihood, dtype=dtype, temperature=1.3)
    assert ld.likelihood_kind == likelihood
    theta = theta_for(model, (5,), dtype)
    theta[0] *= 30.0  # saturated logits: softplus and log-sum-exp must not overflow
    assert_matches(ld, theta)


def test_gelu_two_hidden_layers_float32_kernel_float64_generic(monkeypatch):
    model, ld = make(widths=(5, 4), m=2, activation="gelu", learned=False, dtype=torch.float32)
    theta = theta_for(model, (4,), torch.float32)
    theta[0] *= 4.0  # pre-activations far in both tails
    assert_matches(ld, theta)
    assert ld.compiled_gradient(torch.float32) is not None and ld.compiled_gradient(torch.float64) is None
    monkeypatch.setattr(type(ld), "_run", None)  # float64 must not reach the kernel
    assert_matches(ld, theta.double())


def test_normal_cdf_and_density_approximation_is_accurate():
    import numba
    import numpy as np

    phi32 = numba.njit(lambda a: helpers.phi32(a))  # the helpers have no Python wrappers of their own

    x = torch.cat([torch.linspace(-12, 12, 40_001, dtype=torch.float64), torch.logspace(-30, 0, 1001,
                                                                                         dtype=torch.float64)])
    x32 = x.to(torch.float32)
    got = torch.tensor([phi32(np.float32(v)) for v in x32.tolist()], dtype=torch.float64)
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    ref_cdf, ref_pdf = normal.cdf(x32.double()), normal.log_prob(x32.double()).exp()
    assert float((got[:, 0] - ref_cdf).abs().max()) < 1.5e-7
    assert float((got[:, 1] - ref_pdf).abs().max()) < 3e-8  # float32 rounding of phi(0) = 0.399: 1.5e-8
    cdf, pdf = phi32(np.float32("nan"))
    assert math.isnan(cdf)  # (pdf need not be NaN: the kernel multiplies it by the NaN pre-activation)


def test_categorical_gelu_wide_layer_code_paths_and_data_blocks(monkeypatch):
    monkeypatch.setattr(codegen, "UNROLL", 2)
    monkeypatch.setattr(codegen, "BLOCK", 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(density, "_available_cpus", lambda: 2)
    model, ld = make(d=5, widths=(3, 5), m=3, activation="gelu", likelihood="categorical", n=200,
                     dtype=torch.float32)
    ld.parallel_threshold = 0
    assert len(ld._plan(2)[1]) > 2  # several data blocks per chain
    assert_matches(ld, theta_for(model, (2,), torch.float32))
    assert_matches(ld, theta_for(model, (7,), torch.float32))


def test_cauchy_prior_gradient_falls_back_to_autograd():
    prior = {"layers.1.*": dist.Cauchy(0.0, 0.5), "*": dist.Normal(0.0, 1.0)}
    model, ld = make(prior=prior, dtype=torch.float64)
    assert ld.analytic_prior is None
    assert_matches(ld, theta_for(model, (3,), torch.float64))


def test_non_lognormal_noise_prior_falls_back_to_autograd():
    torch.manual_seed(0)
    model = BNN(3, (5,), likelihood=Gaussian(noise_prior=dist.HalfNormal(1.0)))
    ld = model.logdensity((torch.randn(20, 3, dtype=torch.float64), torch.randn(20, dtype=torch.float64)))
    assert ld.analytic_prior is None
    assert_matches(ld, theta_for(model, (3,), torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_data_blocks_across_threads(dtype, monkeypatch):
    # Few chains and a zero threshold: chains and blocks of data points are spread over two threads.
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(density, "_available_cpus", lambda: 2)
    model, ld = make(n=200, dtype=dtype)
    ld.parallel_threshold = 0
    nthreads, blocks, _ = ld._plan(3)
    assert nthreads == 2 and len(blocks) > 2
    assert_matches(ld, theta_for(model, (3,), dtype))
    assert_matches(ld, theta_for(model, (8,), dtype))  # chains only


@pytest.mark.parametrize("dtype, activation", [(torch.float32, "tanh"), (torch.float64, "tanh"),
                                               (torch.float32, "gelu")])
def test_non_finite_theta_gives_non_finite_results_without_raising(dtype, activation):
    model, ld = make(dtype=dtype, activation=activation)
    theta = theta_for(model, (4,), dtype)
    theta[0, 2] = float("nan")  # a first-layer weight
    theta[1, -1] = float("nan")  # the noise parameter
    theta[2, 0] = float("inf")
    theta[3, -1] = -1e4  # sigma underflows: the likelihood overflows
    value, grad = ld.value_and_grad(theta)
    for c in range(4):
        assert not (torch.isfinite(value[c]) and torch.isfinite(grad[c]).all()), c
    assert not torch.isfinite(ld(theta)).any()


def test_tanh_approximations_are_accurate():
    x64 = torch.cat([torch.linspace(-25, 25, 200_001, dtype=torch.float64),
                     torch.logspace(-30, 1.5, 10_001, dtype=torch.float64)])
    ref = torch.tanh(x64)
    got64 = torch.tensor([helpers.tanh64.py_func(float(v)) for v in x64[::50]], dtype=torch.float64)
    torch.testing.assert_close(got64, ref[::50], rtol=5e-16, atol=0)
    x32 = x64.to(torch.float32)
    import numpy as np

    got32 = torch.tensor([float(helpers.tanh32.py_func(np.float32(v))) for v in x32[::50].tolist()])
    torch.testing.assert_close(got32.double(), torch.tanh(x32[::50].double()), rtol=4e-7, atol=0)
    for f, nan in ((helpers.tanh64.py_func, float("nan")), (helpers.tanh32.py_func, np.float32("nan"))):
        assert math.isnan(f(nan))
        assert f(float("inf")) == 1.0 and f(-float("inf")) == -1.0


def test_returned_tensors_are_not_reused():
    model, ld = make()
    theta = theta_for(model, (3,), torch.float64)
    value, grad = ld.value_and_grad(theta)
    saved = value.clone(), grad.clone()
    ld.value_and_grad(theta * 0.5)
    assert torch.equal(value, saved[0]) and torch.equal(grad, saved[1])


def test_differentiable_call_and_other_dtypes_use_the_generic_path():
    model, ld = make()
    theta = theta_for(model, (2,), torch.float64).requires_grad_(True)
    value = ld(theta)
    assert value.requires_grad  # autograd graph of the generic path
    (g,) = torch.autograd.grad(value.sum(), theta)
    torch.testing.assert_close(g, ld.value_and_grad(theta.detach())[1], rtol=1e-10, atol=1e-10)
    half = theta.detach().to(torch.bfloat16)
    value, grad = ld.value_and_grad(half)  # not a kernel dtype: autograd
    assert grad.dtype == torch.bfloat16 and torch.isfinite(value).all()


def test_supports(monkeypatch):
    assert supports(BNN(3, (5,), activation="relu", likelihood=Gaussian(noise_scale=1.0)))
    with monkeypatch.context() as mp:
        mp.setattr(helpers, "HAVE_NUMBA", False)  # numba missing: the generic path
        model = BNN(3, (5,))
        assert not supports(model)
        assert not isinstance(model.logdensity((torch.randn(4, 3), torch.randn(4))), FusedMLPLogDensity)
    assert supports(BNN(3, (5,), likelihood=Bernoulli()))
    assert supports(BNN(3, (5,), 1, likelihood=Categorical(3), activation="gelu"))
    assert not supports(BNN(3, (5,), activation="sigmoid"))
    assert not supports(BNN(3, (5,), activation=lambda t: t.tanh()))
    model = BNN(3, (5,), activation="silu", likelihood=Bernoulli())
    x, y = torch.randn(10, 3), (torch.rand(10) > 0.5).float()
    assert not isinstance(model.logdensity((x, y)), FusedMLPLogDensity)
