"""The engine's optimisation loop: convergence, skipped non-finite steps, checkpoint and bit-identical resume,
clear errors for bad options; and its progress bar."""

from __future__ import annotations

import math

import pytest
import torch

from inference.minibatch import Minibatches
from inference.optim import minimize, supplied_gradient
from inference.progress import ProgressBar

TARGET = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
SCALES = torch.tensor([1.0, 3.0, 0.3], dtype=torch.float64)


def quadratic(theta):
    return lambda: ((theta - TARGET).square() * SCALES).sum()


@pytest.mark.parametrize("method,steps,lr", [("adam", 2000, 0.05), ("adamw", 2000, 0.05), ("lbfgs", 50, None)])
def test_converges_on_a_quadratic(method, steps, lr):
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    result = minimize(quadratic(theta), [theta], method=method, num_steps=steps, lr=lr)
    torch.testing.assert_close(theta.detach(), TARGET, atol=1e-4, rtol=0)
    assert result.skipped_steps == 0 and result.resumed_from == 0
    assert result.losses[-1] < result.losses[0]


def test_warmup_cosine_schedule_and_clipping_converge():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    minimize(quadratic(theta), [theta], method="adamw", num_steps=3000, lr=0.05, warmup_fraction=0.1, grad_clip=1.0)
    torch.testing.assert_close(theta.detach(), TARGET, atol=1e-3, rtol=0)


def test_non_finite_loss_or_gradient_is_counted_and_skipped():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    calls = []

    def loss():
        calls.append(theta.detach().clone())
        value = quadratic(theta)()
        if len(calls) == 3:
            return value * math.nan
        if len(calls) == 4:  # a finite loss whose gradient is infinite
            return value + (theta[0] - theta[0].detach()) * math.inf
        return value

    with pytest.warns(RuntimeWarning, match="2 of 6 steps were skipped"):
        result = minimize(loss, [theta], method="adam", num_steps=6, lr=0.1)
    assert result.skipped_steps == 2
    assert torch.equal(calls[2], calls[3]) and torch.equal(calls[3], calls[4])  # parameters unchanged
    assert bool(result.losses[2:4].isnan().all()) and bool(result.losses[[0, 1, 4, 5]].isfinite().all())
    assert bool(torch.isfinite(theta).all())


def test_lbfgs_stops_at_a_non_finite_evaluation_with_the_best_parameters():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    evaluations = []

    def loss():
        value = quadratic(theta)()
        evaluations.append(float(value.detach()))
        return value * math.nan if len(evaluations) == 4 else value

    with pytest.warns(RuntimeWarning, match="stopped early"):
        result = minimize(loss, [theta], method="lbfgs", num_steps=50)
    assert result.skipped_steps == 1
    assert float(quadratic(theta)().detach()) == min(evaluations[:3])


def test_keep_best_returns_the_lowest_loss_evaluated():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    values = []

    def loss():
        values.append(float(quadratic(theta)().detach()))
        return quadratic(theta)()

    minimize(loss, [theta], method="adam", num_steps=30, lr=2.0, keep_best=True)  # lr far too large: oscillates
    assert float(quadratic(theta)().detach()) == min(values)


def test_supplied_gradient_equals_autograd():
    autograd_theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    minimize(quadratic(autograd_theta), [autograd_theta], method="adam", num_steps=50, lr=0.1)
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def loss():
        with torch.no_grad():
            grad = 2 * (theta - TARGET) * SCALES
        return supplied_gradient(quadratic(theta)().detach(), theta, grad)

    minimize(loss, [theta], method="adam", num_steps=50, lr=0.1)
    torch.testing.assert_close(theta.detach(), autograd_theta.detach(), atol=1e-12, rtol=0)


def test_minibatches_are_fresh_permutations_per_epoch():
    batches = Minibatches(10, 4, torch.Generator().manual_seed(0))
    assert batches.num_batches == 3
    epoch = torch.cat([batches.next() for _ in range(3)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert torch.equal(epoch, torch.randperm(10, generator=torch.Generator().manual_seed(0)))


def _noisy_run(method, checkpoint, num_steps, stop_after=None):
    """A stochastic minibatch least-squares fit with a stateful sampler (Adam, AdamW) or Rosenbrock's function
    (L-BFGS), interrupted by a KeyboardInterrupt at the ``stop_after + 1``-th evaluation."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = x @ TARGET + 0.1 * torch.randn(30, generator=g, dtype=torch.float64)
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    generator = torch.Generator().manual_seed(1)
    batches = Minibatches(30, 8, generator)
    calls = 0

    def loss():
        nonlocal calls
        calls += 1
        if stop_after is not None and calls > stop_after:
            raise KeyboardInterrupt
        if method == "lbfgs":  # deterministic: Rosenbrock's function, many iterations from 0
            return (100 * (theta[1:] - theta[:-1].square()).square() + (1 - theta[:-1]).square()).sum()
        rows = batches.next()
        jitter = 1e-3 * torch.randn(len(rows), generator=generator, dtype=torch.float64)
        return (x[rows] @ theta - y[rows] + jitter).square().mean()

    options = dict(method=method, num_steps=num_steps, lr=0.05 if method != "lbfgs" else None,
                   checkpoint=checkpoint, checkpoint_every=4, generator=generator, state={"batches": batches})
    if method == "adamw":
        options.update(warmup_fraction=0.2, weight_decay=0.01, grad_clip=1.0)
    return minimize(loss, [theta], **options), theta.detach()


@pytest.mark.parametrize("method", ["adam", "adamw", "lbfgs"])
def test_checkpoint_and_resume_is_bit_identical(tmp_path, method):
    num_steps = 20 if method != "lbfgs" else 40
    reference, theta_ref = _noisy_run(method, tmp_path / "straight.pt", num_steps)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _noisy_run(method, path, num_steps, stop_after=10)
    assert path.exists()
    resumed, theta = _noisy_run(method, path, num_steps)
    assert resumed.resumed_from > 0
    assert torch.equal(theta, theta_ref)
    assert torch.equal(resumed.losses.nan_to_num(-1.0), reference.losses.nan_to_num(-1.0))


def test_checkpoint_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    _noisy_run("adam", path, 8)
    with pytest.raises(ValueError, match="settings"):
        _noisy_run("adam", path, 9)


def test_bad_options_give_clear_errors():
    theta = torch.zeros(3, requires_grad=True)
    loss = quadratic(theta)
    cases = [
        (dict(method="sgd"), ValueError, "method"),
        (dict(num_steps=-1), ValueError, "num_steps"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(method="lbfgs", grad_clip=1.0), ValueError, "grad_clip"),
        (dict(method="lbfgs", warmup_fraction=0.1), ValueError, "warmup_fraction"),
        (dict(weight_decay=0.1), ValueError, "weight_decay"),
        (dict(method="adamw", warmup_fraction=1.0), ValueError, "warmup_fraction"),
        (dict(grad_clip=-1.0), ValueError, "grad_clip"),
        (dict(betas=(0.9, 1.0)), ValueError, "betas"),
        (dict(checkpoint_every=0), ValueError, "checkpoint_every"),
        (dict(state={"model": object()}), TypeError, "state"),
    ]
    for options, error, match in cases:
        with pytest.raises(error, match=match):
            minimize(loss, [theta], **{"num_steps": 1, **options})
    with pytest.raises(TypeError, match="params"):
        minimize(loss, [torch.zeros(3)], num_steps=1)
    with pytest.raises(ValueError, match="params"):
        minimize(loss, [], num_steps=1)
    with pytest.raises(TypeError, match="loss_fn"):
        minimize(None, [theta], num_steps=1)


def test_progress_bar_shows_live_statistics_and_can_be_disabled(capsys):
    with ProgressBar(3, description="toy", enabled=True) as bar:
        assert bar.postfix_due
        bar.update(loss=1.5, skipped=0)
        assert not bar.postfix_due  # shown for the next refresh interval
        bar.update(2)
    assert "toy" in capsys.readouterr().err
    with ProgressBar(3, enabled=False) as off:
        off.update(loss=1.0)
        assert not off.postfix_due
    assert capsys.readouterr().err == ""
