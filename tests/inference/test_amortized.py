"""The meta-training loop: learning, the schedule, skipped non-finite steps, checkpoint and bit-identical
resume, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from inference.amortized import train_amortized
from inference.optim import warmup_cosine
from probnets.priors import GPTaskPrior


class ContextMeanModel(nn.Module):
    """Predicts every target as ``a * mean(context y) + b`` with a learned log noise: a tiny amortized model
    whose loss has randomness (a random subset of the targets) to exercise the generator."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(1, 1)
        self.log_sd = nn.Parameter(torch.zeros(()))
        self.calls = 0
        self.interrupt_at = None
        self.nan_at = ()

    def loss(self, batch, generator=None):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        pooled = batch.context_y.mean(1)  # B x 1
        mean = self.net(pooled).unsqueeze(1)
        keep = torch.rand(batch.target_y.shape[1], generator=generator) < 0.8
        nll = -torch.distributions.Normal(mean, self.log_sd.exp()).log_prob(batch.target_y)[:, keep].mean()
        return nll * math.nan if self.calls in self.nan_at else nll


PRIOR = GPTaskPrior("rbf", lengthscale=1.0, num_context=(5, 10), max_points=20)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_training_lowers_the_loss():
    model = ContextMeanModel()
    result = train_amortized(model, PRIOR, num_steps=150, batch_size=32, lr=0.05, progress=False)
    assert result.losses.shape == (150,) and result.skipped_steps == 0 and result.resumed_from == 0
    assert result.losses[-30:].mean() < result.losses[:30].mean() - 0.2


def test_schedule_warms_up_then_decays_to_zero():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_resumed_run_is_bit_identical(tmp_path):
    settings = dict(num_steps=20, batch_size=8, lr=0.01, seed=3, progress=False)
    torch.manual_seed(0)
    straight = ContextMeanModel()
    reference = train_amortized(straight, PRIOR, **settings)

    torch.manual_seed(0)
    killed = ContextMeanModel()
    killed.interrupt_at = 14  # dies during step 14, after the checkpoint at step 10
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train_amortized(killed, PRIOR, checkpoint=path, checkpoint_every=5, **settings)
    torch.manual_seed(123)  # a fresh process: different global RNG state and initial weights
    resumed_model = ContextMeanModel()
    resumed = train_amortized(resumed_model, PRIOR, checkpoint=path, checkpoint_every=5, **settings)
    assert resumed.resumed_from == 10
    assert all(torch.equal(a, b) for a, b in zip(_params(straight), _params(resumed_model)))
    assert torch.equal(reference.losses, resumed.losses)
    with pytest.raises(ValueError, match="settings"):
        train_amortized(ContextMeanModel(), PRIOR, checkpoint=path, **dict(settings, lr=0.02))


def test_non_finite_steps_are_skipped_and_counted():
    model = ContextMeanModel()
    model.nan_at = (3, 4)
    result = train_amortized(model, PRIOR, num_steps=6, batch_size=4, progress=False)
    assert result.skipped_steps == 2
    assert bool(result.losses[2:4].isnan().all()) and bool(result.losses[[0, 1, 4, 5]].isfinite().all())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_input():
    model = ContextMeanModel()
    with pytest.raises(TypeError, match="model"):
        train_amortized(nn.Linear(1, 1), PRIOR, num_steps=1, batch_size=1)
    with pytest.raises(TypeError, match="task_prior"):
        train_amortized(model, object(), num_steps=1, batch_size=1)
    with pytest.raises(ValueError, match="num_steps"):
        train_amortized(model, PRIOR, num_steps=0, batch_size=1)
    with pytest.raises(ValueError, match="warmup_fraction"):
        train_amortized(model, PRIOR, num_steps=1, batch_size=1, warmup_fraction=1.0)
    with pytest.raises(ValueError, match="lr"):
        train_amortized(model, PRIOR, num_steps=1, batch_size=1, lr=-1.0)
