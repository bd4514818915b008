"""Any Gaussian predictive (a mean and a variance per point and output) as a BoTorch model.

The posterior at ``X`` (``batch x q x d``) is a ``GPyTorchPosterior`` over independent Gaussians per point and
output, so analytic acquisition functions (EI, UCB) read its mean and variance and MC acquisition functions draw
from it with base samples (a deterministic surface under fixed base samples). Moment-propagation networks
(MP-GELU, ReLU moment propagation) and mean-field VI networks (their MC moments) plug in through one callable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

#: ``moments(x, observation_noise) -> (mean, variance)``: ``x`` is ``N x d`` (transformed inputs), ``mean`` and
#: ``variance`` are ``N x m`` in transformed outcome units, the latent function's when ``observation_noise`` is
#: ``False`` and those of ``y`` otherwise.
MomentsFn = Callable[[Tensor, bool], tuple[Tensor, Tensor]]


def independent_gaussian_posterior(mean: Tensor, variance: Tensor) -> GPyTorchPosterior:
    """Independent Gaussians with ``mean`` and ``variance`` (both ``batch x q x m``) as a ``GPyTorchPosterior``:
    a ``MultivariateNormal`` over ``q`` for one output, an interleaved ``MultitaskMultivariateNormal`` otherwise."""
    if mean.shape != variance.shape or mean.dim() < 2:
        raise ValueError(f"mean and variance must both be batch x q x m, got {tuple(mean.shape)} and "
                         f"{tuple(variance.shape)}")
    if mean.shape[-1] == 1:
        return GPyTorchPosterior(MultivariateNormal(mean[..., 0], DiagLinearOperator(variance[..., 0])))
    return GPyTorchPosterior(MultitaskMultivariateNormal(mean, DiagLinearOperator(variance.flatten(-2)),
                                                         interleaved=True))


class GaussianPredictiveModel(Model):
    """A BoTorch model whose posterior is a Gaussian predictive given by its moments.

    Args:
        moments: See :data:`MomentsFn`; differentiable in ``x`` for gradient-based acquisition optimisation.
        num_outputs: ``m``.
        input_transform, outcome_transform: Fitted BoTorch transforms (``X`` in, posterior out), in eval mode.
        min_variance: Floor of the variances (keeps the Gaussians proper where a predictive is near-certain).

    Example:
        >>> model = GaussianPredictiveModel(lambda x, noise: (x.sum(-1, keepdim=True), x.new_ones(len(x), 1)), 1)
        >>> model.posterior(torch.rand(4, 3, 2)).mean.shape           # 4 x 3 x 1
    """

    def __init__(self, moments: MomentsFn, num_outputs: int, *, input_transform=None, outcome_transform=None,
                 min_variance: float = 1e-9):
        super().__init__()
        if not callable(moments):
            raise TypeError(f"moments must be callable, got {type(moments).__name__}")
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(f"num_outputs must be a positive int, got {num_outputs!r}")
        self.moments, self._num_outputs, self.min_variance = moments, num_outputs, float(min_variance)
        if input_transform is not None:
            self.input_transform = input_transform
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform
        self.eval()

    def _set_transformed_inputs(self) -> None:
        # BoTorch re-transforms stored training inputs on eval(); this model stores none.
        pass

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False, posterior_transform=None,
                  **kwargs) -> GPyTorchPosterior:
        """Independent Gaussians per point and output (``batch x q x m``), in the observations' units; with
        ``observation_noise`` the predictive of ``y``, otherwise of the latent function."""
        Xt = self.transform_inputs(X)
        flat = Xt.reshape(-1, Xt.shape[-1])
        mean, variance = self.moments(flat, bool(observation_noise))
        if mean.shape != (flat.shape[0], self.num_outputs) or variance.shape != mean.shape:
            raise ValueError(f"moments must return mean and variance of shape ({flat.shape[0]}, "
                             f"{self.num_outputs}), got {tuple(mean.shape)} and {tuple(variance.shape)}")
        shape = (*Xt.shape[:-1], self.num_outputs)
        mean = mean.reshape(shape).to(X.dtype)
        variance = variance.clamp_min(self.min_variance).reshape(shape).to(X.dtype)
        if output_indices is not None:
            mean, variance = mean[..., output_indices], variance[..., output_indices]
        posterior = independent_gaussian_posterior(mean, variance)
        if getattr(self, "outcome_transform", None) is not None and output_indices is None:
            posterior = self.outcome_transform.untransform_posterior(posterior)
        return posterior_transform(posterior) if posterior_transform is not None else posterior
