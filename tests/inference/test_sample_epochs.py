"""``inference.sample(..., epochs=...)``: the sampling phase of a minibatch sampler as passes over the data
(``num_samples = epochs * batches per epoch``; warm-up stays in iterations), and its errors."""

import pyro.distributions as dist
import pytest
import torch

import inference
from inference.testing import correlated_gaussian_2d
from probnets import BNN, Gaussian

SETTINGS = dict(method="sgld", num_chains=2, num_warmup=3, thin=1, progress=False, check_convergence=False)


@pytest.fixture(scope="module")
def problem():
    x = torch.randn(45, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return BNN(2, [3], prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(noise_scale=0.5)), (x, x.sum(-1))


def test_epochs_of_tensor_minibatches(problem):
    """45 rows in batches of 10: 5 batches per epoch (the last has 5 rows); 3 epochs = 15 iterations."""
    model, data = problem
    post = inference.sample(model, data, batch_size=10, epochs=3, **SETTINGS)
    assert post.info["num_samples"] == 15 and post.info["epochs"] == 3 and post.samples.shape[1] == 15


def test_epochs_of_a_dataloader(problem):
    model, (x, y) = problem
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=20)
    post = inference.sample(model, loader, epochs=2, **SETTINGS)
    assert len(loader) == 3 and post.info["num_samples"] == 6


def test_a_full_batch_is_one_batch_per_epoch(problem):
    model, data = problem
    assert inference.sample(model, data, epochs=4, **SETTINGS).info["num_samples"] == 4


@pytest.mark.parametrize("change, message", [
    (dict(method="nuts"), "method 'nuts' is a full-batch sampler"),
    (dict(num_samples=10), "give num_samples .* or epochs .*, not both"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(epochs=1.5), "epochs must be an integer >= 1")])
def test_epochs_errors_are_named(problem, change, message):
    model, data = problem
    with pytest.raises(ValueError, match=message):
        inference.sample(model, data, **{**SETTINGS, "epochs": 2, **change})


def test_epochs_need_data():
    with pytest.raises(ValueError, match="a log density has no data"):
        inference.sample(correlated_gaussian_2d(), dim=2, epochs=2, **SETTINGS)
