"""The compiled NUTS transition (``inference.mcmc.nuts_compiled``) against the torch kernel, and its runs.

Both kernels consume the same random numbers, so one transition from the same state must build the same
trajectory: equal step counts, depths and flags, and the same chosen point up to rounding. The posterior
moments of the compiled path are checked against the exact posterior by the sampler contract's conjugate
regression, whose BNN has a compiled gradient (asserted here).
"""

import pytest
import torch
import torch.distributions as dist
from sampler_contract import conjugate_regression, moment_violations

import inference
from inference.mcmc import mass_matrix, nuts, nuts_compiled
from inference.mcmc.hmc import init
from inference.sample import CountingLogDensity
from probnets import BNN
from probnets.fused_mlp import supports

pytestmark = pytest.mark.skipif(not supports(conjugate_regression()[0]), reason="needs numba")


class _Interrupt(Exception):
    pass


def _tanh_bnn():
    """A 3-8-1 tanh BNN with learned noise on 30 points, float32 (the H1 set-up in small)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 3, generator=g)
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(30, generator=g)
    model = BNN(3, [8], activation="tanh")  # default likelihood: noise scale ~ LogNormal(-1, 1)
    return model, (x, y)


def _categorical_bnn():
    """A 3-6-3 GELU BNN with a Categorical likelihood on 40 points, float32."""
    from probnets import Categorical

    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 3, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return BNN(3, [6], activation="gelu", likelihood=Categorical(3)), (x, y)


def _linear():
    model, data, _, _ = conjugate_regression()
    return model, data


def _no_compiled(logdensity):
    """``logdensity`` without its compiled gradient: the torch kernel's view of the same density."""

    class Plain(type(logdensity)):
        def compiled_gradient(self, dtype):
            return None

    plain = object.__new__(Plain)
    plain.__dict__.update(logdensity.__dict__)
    return plain


@pytest.mark.parametrize("make", [_linear, _tanh_bnn, _categorical_bnn])
@pytest.mark.parametrize("integrator", ["velocity_verlet", "mclachlan"])
def test_compiled_transition_equals_the_torch_transition(make, integrator):
    model, data = make()
    logdensity = model.logdensity(data)
    dtype = data[0].dtype
    assert logdensity.compiled_gradient(dtype) is not None
    g = torch.Generator().manual_seed(3)
    state = init(model.init_theta(3, generator=g, dtype=dtype), logdensity)
    metric = mass_matrix.diagonal(0.5 + torch.rand(3, logdensity.dim, generator=g, dtype=dtype))
    step_size = torch.tensor([0.01, 0.03, 0.08], dtype=dtype)
    kernel = nuts.build_kernel(8, integrator=integrator)
    counter = CountingLogDensity(logdensity)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for seed in range(4):
        compiled, info = kernel(state, torch.Generator().manual_seed(seed), counter, step_size, metric)
        reference, ref_info = kernel(state, torch.Generator().manual_seed(seed), _no_compiled(logdensity),
                                     step_size, metric)
        for name in ("num_integration_steps", "num_grad_evals", "tree_depth", "reached_max_tree_depth",
                     "is_divergent"):
            assert torch.equal(getattr(info, name), getattr(ref_info, name)), name
        for a, b in zip(compiled, reference):
            torch.testing.assert_close(a, b, **tol)
        torch.testing.assert_close(info.acceptance_rate, ref_info.acceptance_rate, **tol)
        torch.testing.assert_close(info.energy, ref_info.energy, **tol)
        state = compiled
    # every gradient the compiled kernel evaluates is counted, none through value_and_grad
    assert counter.grad_evals > 0


def test_huge_step_size_gives_counted_divergences_and_keeps_the_state():
    model, data = _linear()
    logdensity = model.logdensity(data)
    state = init(model.init_theta(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64), logdensity)
    metric = mass_matrix.identity(logdensity.dim, dtype=torch.float64)
    new, info = nuts.build_kernel()(state, torch.Generator().manual_seed(0), logdensity,
                                    torch.tensor(1e3, dtype=torch.float64), metric)
    assert info.is_divergent.all() and torch.equal(info.num_integration_steps, torch.ones(4, dtype=torch.long))
    assert torch.equal(new.position, state.position)


def test_non_finite_gradient_is_a_divergence_not_an_exception():
    model, data = _tanh_bnn()
    logdensity = model.logdensity(data)
    theta = model.init_theta(2, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    state = init(theta, logdensity)
    state = state._replace(logdensity_grad=torch.full_like(state.logdensity_grad, torch.inf))
    metric = mass_matrix.identity(logdensity.dim, dtype=torch.float32)
    new, info = nuts.build_kernel()(state, torch.Generator().manual_seed(0), logdensity, torch.tensor(0.01),
                                    metric)
    assert info.is_divergent.all() and torch.equal(new.position, theta)


def test_interrupted_compiled_run_resumes_bit_identically(tmp_path, monkeypatch):
    model, data = _tanh_bnn()
    settings = dict(method="nuts", num_chains=2, num_warmup=30, num_samples=20, seed=5, checkpoint_every=7,
                    progress=False, check_convergence=False)
    calls = [0, None]
    transition = nuts_compiled.transition

    def counted(*args):
        calls[0] += 1
        if calls[1] is not None and calls[0] > calls[1]:
            raise _Interrupt
        return transition(*args)

    monkeypatch.setattr(nuts_compiled, "transition", counted)
    uninterrupted = inference.sample(model, data, **settings)
    total = calls[0]
    assert total == 50  # every transition went through the compiled kernel
    calls[:] = [0, 2 * total // 3]
    with pytest.raises(_Interrupt):
        inference.sample(model, data, checkpoint=tmp_path / "run.ckpt", **settings)
    calls[:] = [0, None]
    resumed = inference.sample(model, data, checkpoint=tmp_path / "run.ckpt", **settings)
    assert calls[0] < total
    assert torch.equal(resumed.samples, uninterrupted.samples)
    for stats in ("sample_stats", "warmup_stats"):
        for name, value in getattr(uninterrupted, stats).items():
            assert torch.equal(getattr(resumed, stats)[name], value), (stats, name)
    assert resumed.info["grad_evals"] > 0


def test_float32_conjugate_regression_within_mcse():
    """The contract's regression runs in float64; the H1 set-up runs the compiled kernel in float32."""
    model, data, mean, cov = conjugate_regression(torch.float32)
    assert model.logdensity(data).compiled_gradient(torch.float32) is not None
    post = inference.sample(model, data, method="nuts", num_chains=4, num_warmup=400, num_samples=600, seed=23,
                            progress=False, check_convergence=False)
    assert post.samples.dtype == torch.float32
    assert moment_violations(post.samples.double(), mean.double(), cov.double(), 0.0) == {}
    assert post.num_divergences == 0


def test_contract_regression_runs_the_compiled_kernel():
    """The sampler contract's MCSE test on the conjugate regression covers the compiled kernel."""
    model, data = _linear()
    assert model.logdensity(data).compiled_gradient(torch.float64) is not None


def test_non_normal_prior_has_no_compiled_gradient():
    model = BNN(3, [4], prior=dist.Laplace(0.0, 1.0))
    x, y = torch.randn(10, 3), torch.randn(10)
    assert model.logdensity((x, y)).compiled_gradient(torch.float32) is None


def test_compiled_option_must_be_a_bool():
    model, data = _linear()
    with pytest.raises(TypeError, match="compiled"):
        inference.sample(model, data, method="nuts", compiled="yes", num_warmup=5, num_samples=5, progress=False)


def test_torch_kernel_is_used_when_compiled_is_off(monkeypatch):
    model, data = _linear()

    def fail(*args):
        raise AssertionError("compiled kernel called")

    monkeypatch.setattr(nuts_compiled, "transition", fail)
    post = inference.sample(model, data, method="nuts", compiled=False, num_chains=2, num_warmup=20,
                            num_samples=10, progress=False, check_convergence=False)
    assert torch.isfinite(post.samples).all()
