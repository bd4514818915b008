"""GaussianPredictiveModel: any mean/variance predictive as a BoTorch model (shapes, units, acquisitions)."""

import pytest
import torch
from botorch.acquisition import (LogExpectedImprovement, UpperConfidenceBound, qLogNoisyExpectedImprovement,
                                 qUpperConfidenceBound)
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from botorch.posteriors.gpytorch import GPyTorchPosterior

from surrogates.gaussian_model import GaussianPredictiveModel, independent_gaussian_posterior

BOUNDS = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)


def moments(x, observation_noise):
    mean = torch.stack([torch.sin(3 * x[:, 0]) + x[:, 1], x[:, 0] * x[:, 1]], -1)
    variance = 0.1 + x.square()
    return mean, variance + (0.5 if observation_noise else 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 2), (4, 1, 2), (2, 3, 2)])
def test_posterior_is_the_given_moments(dtype, shape):
    model = GaussianPredictiveModel(moments, 2)
    X = torch.rand(*shape, dtype=dtype)
    post = model.posterior(X)
    assert isinstance(post, GPyTorchPosterior)
    mean, variance = moments(X.reshape(-1, 2), False)
    torch.testing.assert_close(post.mean, mean.reshape(*shape[:-1], 2))
    torch.testing.assert_close(post.variance, variance.reshape(*shape[:-1], 2))
    noisy = model.posterior(X, observation_noise=True)
    torch.testing.assert_close(noisy.variance, variance.reshape(*shape[:-1], 2) + 0.5)
    assert post.rsample(torch.Size([5])).shape == (5, *shape[:-1], 2)
    assert model.posterior(X, output_indices=[1]).mean.shape == (*shape[:-1], 1)


def test_transforms_are_applied():
    outcome = Standardize(1)
    outcome(torch.tensor([[1.0], [3.0], [5.0]], dtype=torch.float64))
    outcome.eval()
    inp = Normalize(2, bounds=torch.tensor([[0.0, 0.0], [2.0, 2.0]], dtype=torch.float64))
    model = GaussianPredictiveModel(lambda x, noise: (x[:, :1], torch.ones_like(x[:, :1])), 1,
                                    input_transform=inp, outcome_transform=outcome)
    post = model.posterior(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(post.mean, torch.tensor([[3.0 + 2.0 * 0.5]], dtype=torch.float64))
    torch.testing.assert_close(post.variance, torch.tensor([[4.0]], dtype=torch.float64))


def test_analytic_and_mc_acquisitions_optimise():
    model = GaussianPredictiveModel(lambda x, noise: tuple(m[:, :1] for m in moments(x, noise)), 1)
    X = torch.rand(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    for acq in (LogExpectedImprovement(model, best_f=0.5), UpperConfidenceBound(model, beta=0.5)):
        candidate, value = optimize_acqf(acq, BOUNDS, q=1, num_restarts=2, raw_samples=16, options={"maxiter": 20})
        assert candidate.shape == (1, 2) and bool(torch.isfinite(value))
    for acq in (qLogNoisyExpectedImprovement(model, X), qUpperConfidenceBound(model, beta=0.2)):
        candidate, value = optimize_acqf(acq, BOUNDS, q=2, num_restarts=2, raw_samples=16, options={"maxiter": 20})
        assert candidate.shape == (2, 2) and bool(torch.isfinite(value))
        torch.testing.assert_close(acq(candidate[None]), acq(candidate[None]))
    # UCB's analytic value is mean + sqrt(beta) * sd of the given moments
    x = torch.tensor([[[0.2, 0.4]]], dtype=torch.float64)
    mean, variance = moments(x[0], False)
    torch.testing.assert_close(UpperConfidenceBound(model, beta=0.5)(x),
                               mean[:, 0] + 0.5**0.5 * variance[:, 0].sqrt())


def test_bad_input():
    with pytest.raises(TypeError, match="moments must be callable"):
        GaussianPredictiveModel(None, 1)
    with pytest.raises(ValueError, match="num_outputs"):
        GaussianPredictiveModel(moments, 0)
    with pytest.raises(ValueError, match="moments must return"):
        GaussianPredictiveModel(moments, 1).posterior(torch.rand(3, 2))
    with pytest.raises(ValueError, match="batch x q x m"):
        independent_gaussian_posterior(torch.zeros(3, 1), torch.zeros(3, 2))
