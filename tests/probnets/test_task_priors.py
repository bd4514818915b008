"""Task priors: shapes and sizes, seeding, the sampled covariance against the kernel (Monte Carlo standard
errors), the oracle GP's predictive log densities against a direct computation, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from probnets.priors import BNNTaskPrior, GPTaskPrior, TaskBatch

KERNEL_FORMULAS = {  # r = |x - x'|, l = 0.4, s = 0.7, p = 0.3
    "rbf": lambda r: 0.49 * math.exp(-0.5 * (r / 0.4) ** 2),
    "matern52": lambda r: 0.49 * (1 + math.sqrt(5) * r / 0.4 + 5 * r**2 / (3 * 0.16)) * math.exp(-math.sqrt(5) * r / 0.4),
    "periodic": lambda r: 0.49 * math.exp(-2 * math.sin(math.pi * r / 0.3) ** 2 / 0.16),
}


def _prior(kernel: str, **kwargs) -> GPTaskPrior:
    return GPTaskPrior(kernel, lengthscale=0.4, scale=0.7, noise=0.05, period=0.3, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel", ["rbf", "matern52", "periodic"])
def test_shapes_sizes_and_dtypes(kernel, dtype):
    prior = GPTaskPrior(kernel)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        batch = prior.sample(8, generator=g, dtype=dtype)
        assert isinstance(batch, TaskBatch)
        n = batch.x.shape[1]
        assert batch.x.shape == (8, n, 1) and batch.y.shape == (8, n, 1)
        assert batch.x.dtype == batch.y.dtype == dtype
        assert 3 <= batch.num_context <= 47 and 3 <= n - batch.num_context <= 50 - batch.num_context
        assert bool((batch.x >= -2).all() and (batch.x <= 2).all())
        assert all(v.shape == (8,) for v in batch.params.values())
        assert batch.context_x.shape[1] == batch.num_context and batch.target_y.shape[1] == n - batch.num_context
    fixed = prior.sample(3, num_context=0, num_target=7, generator=g)
    assert fixed.x.shape == (3, 7, 1) and fixed.num_context == 0
    hyper = fixed.params
    assert bool((hyper["lengthscale"] >= 0.1).all() and (hyper["lengthscale"] <= 0.6).all())


def test_seeding_reproduces_and_differs():
    prior = GPTaskPrior("matern52", dim=2)
    a = prior.sample(4, generator=torch.Generator().manual_seed(5))
    b = prior.sample(4, generator=torch.Generator().manual_seed(5))
    c = prior.sample(4, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.num_context == b.num_context
    assert not (a.y.shape == c.y.shape and torch.equal(a.y, c.y))


@pytest.mark.parametrize("kernel", ["rbf", "matern52", "periodic"])
def test_sampled_covariance_matches_the_kernel(kernel):
    """E[y_0 y_1] = k(x_0, x_1) and E[y_0^2] = s^2 + noise^2 over 20,000 tasks, within 3.5 standard errors."""
    prior = _prior(kernel)
    batch = prior.sample(20_000, num_context=2, num_target=0, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)
    x, y = batch.x[..., 0], batch.y[..., 0]
    for r in (0.05, 0.3, 1.0):
        assert prior.covariance(torch.zeros(1, 1, 1, dtype=torch.float64), torch.full((1, 1, 1), r, dtype=torch.float64),
                                {k: v[:1] for k, v in batch.params.items()}).item() == pytest.approx(KERNEL_FORMULAS[kernel](r))
    expected_cross = torch.tensor([KERNEL_FORMULAS[kernel](abs(a - b)) for a, b in x.tolist()], dtype=torch.float64)
    for values, target in ((y[:, 0] * y[:, 1], expected_cross), (y[:, 0] ** 2, torch.full_like(expected_cross, 0.49 + 0.0025))):
        residual = values - target
        assert abs(residual.mean().item()) / (residual.std().item() / math.sqrt(len(residual))) < 3.5


def test_oracle_log_prob_matches_a_direct_gaussian_conditional():
    prior = GPTaskPrior("rbf")
    batch = prior.sample(3, num_context=5, num_target=4, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64)
    context, target = prior.oracle_log_prob(batch)
    assert context.shape == target.shape == (3,)
    for b in range(3):
        x, y = batch.x[b, :, 0], batch.y[b, :, 0]
        ls, s, noise = (batch.params[k][b].item() for k in ("lengthscale", "scale", "noise"))
        k = s**2 * torch.exp(-0.5 * (x[:, None] - x[None]) ** 2 / ls**2)
        noise_var = noise**2 + 1e-6 * s**2
        kc = k[:5, :5] + noise_var * torch.eye(5, dtype=torch.float64)
        mean = k[:, :5] @ torch.linalg.solve(kc, y[:5])
        var = s**2 + noise_var - (k[:, :5] * torch.linalg.solve(kc, k[:5, :]).T).sum(-1)
        logp = torch.distributions.Normal(mean, var.sqrt()).log_prob(y)
        assert context[b].item() == pytest.approx(logp[:5].mean().item(), rel=1e-9)
        assert target[b].item() == pytest.approx(logp[5:].mean().item(), rel=1e-9)
    empty = prior.sample(2, num_context=0, num_target=3, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64)
    context, target = prior.oracle_log_prob(empty)
    assert bool(context.isnan().all())
    sd = (empty.params["scale"] ** 2 * (1 + 1e-6) + empty.params["noise"] ** 2).sqrt()
    expected = torch.distributions.Normal(0.0, sd[:, None]).log_prob(empty.y[..., 0]).mean(1)
    torch.testing.assert_close(target, expected)


def test_hyperpriors_and_t_noise():
    prior = GPTaskPrior("rbf", lengthscale=torch.distributions.Gamma(torch.tensor(3.0), torch.tensor(6.0)),
                        t_noise=(0.0, 0.15))
    batch = prior.sample(2000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ls = batch.params["lengthscale"]
    assert abs(ls.mean().item() - 0.5) < 3.5 * ls.std().item() / math.sqrt(2000)  # Gamma(3, 6) has mean 0.5
    assert bool((batch.params["t_scale"] <= 0.15).all())
    with pytest.raises(ValueError, match="Student-t noise"):
        prior.oracle_log_prob(batch)


def test_bnn_task_prior():
    prior = BNNTaskPrior((16, 16), noise=(0.01, 0.1), dim=3)
    a = prior.sample(5, generator=torch.Generator().manual_seed(0))
    b = prior.sample(5, generator=torch.Generator().manual_seed(0))
    assert a.x.shape[-1] == 3 and a.y.shape[:2] == a.x.shape[:2]
    assert torch.equal(a.y, b.y)
    assert bool((a.params["noise"] >= 0.01).all() and (a.params["noise"] <= 0.1).all())


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel="cosine"), "kernel"),
    (dict(lengthscale=-1.0), "lengthscale"),
    (dict(scale=(1.0, 0.5)), "scale"),
    (dict(noise=float("nan")), "noise"),
    (dict(num_context=(5, 2)), "num_context"),
    (dict(num_context=(3, 48), max_points=50), "exceeds max_points"),
    (dict(x_range=(1.0, -1.0)), "x_range"),
    (dict(t_noise=(0.2, 0.1)), "t_noise"),
    (dict(dim=0), "dim"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTaskPrior(**kwargs)


def test_bad_sample_arguments():
    prior = GPTaskPrior()
    with pytest.raises(ValueError, match="batch_size"):
        prior.sample(0)
    with pytest.raises(ValueError, match="at least one point"):
        prior.sample(2, num_context=0, num_target=0)
    with pytest.raises(ValueError, match="activation"):
        BNNTaskPrior(activation="sigmoid")
