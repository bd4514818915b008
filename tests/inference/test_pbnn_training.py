"""The partial-BNN training loop around OHSMC: checkpoint and bit-identical resume, DataLoaders, non-finite
likelihoods, the best state by validation NLPD, and the result (psi saved and loaded with the particles)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from inference.posterior import SamplePosterior
from inference.smc import fisher_training
from inference.smc.open_horizon import fit_open_horizon
from inference.smc.partial_posterior import PartialPosterior
from probnets import Bernoulli
from probnets.partial_bnn import PartialBNN, partial_mlp


def small_model(seed=0):
    return partial_mlp((2, 8, 4, 1), 1, likelihood=Bernoulli(), generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, (x[:, 0] * x[:, 1] > 0).to(torch.float64)


SETTINGS = dict(num_particles=32, num_epochs=3, batch_size=8, lr=1e-2, seed=3, progress=False)


def test_checkpoint_resume_is_bit_identical(tmp_path):
    reference_model = small_model()
    reference = fit_open_horizon(reference_model, data(), validation=data(20, seed=1), **SETTINGS)
    path = tmp_path / "run.pt"

    def interrupt(step, loss):
        if step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_open_horizon(small_model(), data(), validation=data(20, seed=1), checkpoint=path, checkpoint_every=4,
                         callback=interrupt, **SETTINGS)
    model = small_model()
    resumed = fit_open_horizon(model, data(), validation=data(20, seed=1), checkpoint=path, checkpoint_every=4,
                               **SETTINGS)
    assert resumed.info["resumed_from"] == 8
    assert torch.equal(resumed.samples, reference.samples) and torch.equal(resumed.log_weights, reference.log_weights)
    for name, value in reference.psi.items():
        assert torch.equal(resumed.psi[name], value)
    for name, value in reference.trace.items():
        assert torch.equal(resumed.trace[name].nan_to_num(-1.0), value.nan_to_num(-1.0))
    assert resumed.info["best_step"] == reference.info["best_step"]


def test_dataloader_and_tensors_train_alike():
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True,
                                         generator=torch.Generator())
    post = fit_open_horizon(small_model(), loader, **SETTINGS)
    assert post.samples.shape == (1, 32, small_model().spec.dim) and post.info["num_steps"] == 15
    assert math.isfinite(float(post.trace["loss"].mean()))


class Exploding(nn.Module):
    """A network whose output is NaN where the stochastic scale is above 1: those particles get weight zero."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(2, 3, dtype=torch.float64)
        self.scale = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x):
        out = self.hidden(x).sum(-1) * self.scale
        return torch.where(self.scale > 1.0, torch.full_like(out, math.nan), out)


def test_non_finite_likelihoods_are_zero_weight_particles():
    x, y = data()
    model = PartialBNN(Exploding(), "scale", likelihood=Bernoulli())
    post = fit_open_horizon(model, (x, y), **SETTINGS)
    assert post.info["num_nonfinite"] > 0 and post.info["skipped_steps"] == 0
    assert all(bool(torch.isfinite(p).all()) for p in model.psi_parameters())
    assert bool((post.samples <= 1.0).all())  # zero-weight particles are never resampled


def test_best_state_by_validation_and_save_load(tmp_path):
    model = small_model()
    validation = data(20, seed=1)
    post = fit_open_horizon(model, data(), validation=validation, eval_every=2, **SETTINGS)
    assert 1 <= post.info["best_step"] <= 15
    assert isinstance(post, PartialPosterior)
    best = fisher_training.nlpd(model, post.samples[0], post.log_weights[0], validation)
    assert best == pytest.approx(post.info["best_nlpd"], rel=1e-12)
    x_test = data(10, seed=2)[0]
    expected = post.predictive(model, x_test).mean
    post.save(tmp_path / "post.pt")
    loaded = PartialPosterior.load(tmp_path / "post.pt")
    fresh = small_model(seed=9)  # same architecture, other psi: the posterior's psi is loaded into it
    torch.testing.assert_close(loaded.predictive(fresh, x_test).mean, expected)
    assert isinstance(SamplePosterior.load(tmp_path / "post.pt"), PartialPosterior)  # psi comes along
    idata = loaded.to_arviz(fresh, validation)
    assert "log_likelihood" in idata.groups()


def test_validation_checked_after_every_step_by_default(monkeypatch):
    """As the paper's code (spdes/pbnn, experiments/*/ohsmc.py): the best state is chosen among all steps."""
    scores = []
    original = fisher_training.nlpd

    def counting(*args):
        scores.append(original(*args))
        return scores[-1]

    monkeypatch.setattr(fisher_training, "nlpd", counting)
    post = fit_open_horizon(small_model(), data(), validation=data(20, seed=1), **SETTINGS)
    assert len(scores) == post.info["num_steps"] == 15 and post.info["eval_every"] == 1
    assert post.info["best_nlpd"] == min(scores) and post.info["best_step"] == scores.index(min(scores)) + 1


def test_bad_arguments():
    with pytest.raises(TypeError, match="psi_parameters"):
        from probnets import BNN
        fit_open_horizon(BNN(2, [3]), data(), **SETTINGS)
    with pytest.raises(ValueError, match="move"):
        fit_open_horizon(small_model(), data(), move="langevin", **{**SETTINGS})
    with pytest.raises(ValueError, match="num_particles"):
        fit_open_horizon(small_model(), data(), **{**SETTINGS, "num_particles": 0})
    with pytest.raises(ValueError, match="x"):
        x, y = data()
        x[0, 0] = math.nan
        fit_open_horizon(small_model(), (x, y), **SETTINGS)


def test_conv_net_with_a_stochastic_first_convolution_trains():
    """The paper's MNIST set-up in miniature: the first convolution stochastic, the rest psi."""
    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, dtype=torch.float64)
            self.head = nn.Linear(2, 3, dtype=torch.float64)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean((-1, -2)))

    from probnets import Categorical

    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 5, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    torch.manual_seed(0)
    model = PartialBNN(ConvNet(), 0, likelihood=Categorical(3))
    before = model.module.head.weight.detach().clone()
    post = fit_open_horizon(model, (x, y), num_particles=16, num_epochs=2, batch_size=8, seed=0, progress=False)
    assert post.samples.shape == (1, 16, 2 * 9 + 2) and not torch.equal(model.module.head.weight, before)
    assert bool(torch.isfinite(post.predictive(model, x).log_prob(y)).all())
