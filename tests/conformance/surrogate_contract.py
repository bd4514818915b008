"""The surrogate contract suite: every surrogate kind's test class inherits ``SurrogateContract``.

Subclasses set ``kind`` and ``options`` (small settings for speed). The suite fits the kind once per dtype
on a 2-D toy problem and checks posterior shapes over ``b x q x d`` inputs, both MC acquisition functions
through ``optimize_acqf``, gradients with respect to X, and float32/float64.
"""

from __future__ import annotations

import functools

import pytest
import torch
from botorch.acquisition import qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.optim import optimize_acqf
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior

from surrogates import fit_surrogate

DTYPES = (torch.float32, torch.float64)
BOUNDS = torch.tensor([[-1.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
INPUT_SHAPES = ((1, 2), (3, 2), (4, 1, 2), (2, 3, 2))


def toy_data(dtype, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    X = BOUNDS[0] + u * (BOUNDS[1] - BOUNDS[0])
    Y = torch.stack([torch.sin(3 * X[:, 0]) + X[:, 1] ** 2, X[:, 0] - X[:, 1]], -1)
    return X.to(dtype), Y.to(dtype)


def marginal_moments(posterior):
    """Mean and variance ``batch x q x m``: mixture posteriors (BoTorch's fully Bayesian pattern) carry a
    model-batch dimension, and their marginal is the mixture over it."""
    if isinstance(posterior, GaussianMixturePosterior):
        return posterior.mixture_mean, posterior.mixture_variance
    return posterior.mean, posterior.variance


@functools.lru_cache(maxsize=None)
def _fitted(kind: str, options: tuple, dtype: torch.dtype, outputs: int):
    X, Y = toy_data(dtype)
    return fit_surrogate(X, Y[:, :outputs], kind, bounds=BOUNDS.to(dtype), seed=0, **dict(options)), X


class SurrogateContract:
    kind: str = ""
    options: dict = {}

    def fitted(self, dtype, outputs=1):
        return _fitted(self.kind, tuple(sorted(self.options.items())), dtype, outputs)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", INPUT_SHAPES)
    def test_posterior_shapes(self, dtype, shape):
        model, _ = self.fitted(dtype)
        X = BOUNDS[0].to(dtype) + torch.rand(*shape, dtype=dtype) * (BOUNDS[1] - BOUNDS[0]).to(dtype)
        post = model.posterior(X)
        q_shape = shape[:-1]
        mean, variance = marginal_moments(post)
        assert mean.shape == variance.shape == (*q_shape, 1)
        assert bool((variance >= 0).all()) and bool(torch.isfinite(mean).all())
        draws = post.rsample(torch.Size([5]))
        assert draws.shape[0] == 5 and draws.shape[-2:] == q_shape[-1:] + (1,)
        assert draws.shape[1:len(q_shape)] == q_shape[:-1]
        assert mean.dtype == dtype

    def test_multi_output(self):
        model, _ = self.fitted(torch.float64, outputs=2)
        assert model.num_outputs == 2
        assert model.posterior(torch.zeros(3, 2, dtype=torch.float64)).mean.shape == (3, 2)

    def test_posterior_is_in_observation_units(self):
        model, X = self.fitted(torch.float64)
        _, Y = toy_data(torch.float64)
        mean = marginal_moments(model.posterior(X))[0].squeeze(-1).detach()
        # the fit follows the data (standardisation is undone), far better than predicting the mean
        assert float(((mean - Y[:, 0]) ** 2).mean()) < 0.5 * float(Y[:, 0].var())

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_gradients_flow_to_x(self, dtype):
        model, _ = self.fitted(dtype)
        X = torch.tensor([[[0.1, 0.5]], [[0.3, 1.5]]], dtype=dtype, requires_grad=True)
        model.posterior(X).mean.sum().backward()
        assert X.grad is not None and bool(torch.isfinite(X.grad).all()) and bool((X.grad != 0).any())

    @pytest.mark.parametrize("acquisition", ["qlognei", "qucb"])
    def test_acquisition_optimises(self, acquisition):
        model, X = self.fitted(torch.float64)
        acq = (qLogNoisyExpectedImprovement(model, X) if acquisition == "qlognei"
               else qUpperConfidenceBound(model, beta=0.2))
        torch.manual_seed(0)
        candidate, value = optimize_acqf(acq, BOUNDS, q=2, num_restarts=2, raw_samples=16,
                                         options={"maxiter": 20})
        assert candidate.shape == (2, 2) and bool(torch.isfinite(value))
        assert bool(((candidate >= BOUNDS[0]) & (candidate <= BOUNDS[1])).all())
        # the acquisition surface is deterministic (fixed base samples / members)
        torch.testing.assert_close(acq(candidate.unsqueeze(0)), acq(candidate.unsqueeze(0)))
