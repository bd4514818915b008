"""A fitted Student-t process as a BoTorch model: the multivariate t written as a scale mixture of Gaussians."""

from __future__ import annotations

import torch
from botorch.models.model import Model
from botorch.models.transforms.input import Normalize
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from gpytorch.distributions import MultivariateNormal
from scipy.stats import invgamma
from torch import Tensor

from probnets.kernels import NNGPKernel
from probnets.scale_mixture import StudentTProcess
from surrogates.data_transforms import fitted_transforms


class StudentTProcessModel(Model):
    """BoTorch model of a fitted ``StudentTProcess`` (one output).

    Given the data, the latent values at ``q`` points are jointly ``MVT_{2a+n}(mu, s2 Sigma)``, exactly the
    mixture over ``v ~ InvGamma(alpha + n/2, beta + y^T A^-1 y / 2)`` of ``N(mu, v Sigma)``. The model
    represents ``v`` by ``num_scales`` stratified quantiles (deterministic, so acquisition surfaces are
    too) and returns a ``GaussianMixturePosterior`` with the mixture as a model batch dimension, the
    pattern BoTorch uses for fully Bayesian GPs: acquisition functions average over it.

    Args:
        process: A fitted ``StudentTProcess`` on normalised inputs and standardised outcomes.
        input_transform: Maps raw inputs to the process's inputs (e.g. ``Normalize``).
        y_mean, y_std: Undo the outcome standardisation.
        num_scales: Number of mixture components.
    """

    _is_fully_bayesian = True
    _is_ensemble = True

    def __init__(self, process: StudentTProcess, *, input_transform: Normalize | None = None, y_mean: float = 0.0,
                 y_std: float = 1.0, num_scales: int = 64):
        super().__init__()
        self.process = process
        if input_transform is not None:
            self.input_transform = input_transform
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        ig = process.scale_posterior()
        levels = (torch.arange(num_scales, dtype=torch.float64) + 0.5) / num_scales
        scales = invgamma.ppf(levels.numpy(), a=float(ig.concentration), scale=float(ig.rate))
        self.register_buffer("scales", torch.as_tensor(scales, dtype=process.dtype))

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([self.scales.shape[0]])

    def _set_transformed_inputs(self) -> None:
        # the process holds its own (already transformed) training inputs
        pass

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False, posterior_transform=None,
                  **kwargs) -> GaussianMixturePosterior:
        """``batch x q x d`` -> mixture posterior with values ``batch x num_scales x q x 1``."""
        self.eval()
        X = self.transform_inputs(X).to(self.process.dtype)
        mean, cov = self.process.joint_conditional(X, observation_noise=bool(observation_noise is True))
        cov = self.scales[:, None, None] * cov.unsqueeze(-3)                  # batch x K x q x q
        mean = mean.unsqueeze(-2).expand(*cov.shape[:-1])                     # batch x K x q
        jitter = 1e-9 * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        mvn = MultivariateNormal(self.y_mean + self.y_std * mean, self.y_std**2 * cov + jitter)
        posterior = GaussianMixturePosterior(distribution=mvn)
        return posterior_transform(posterior) if posterior_transform is not None else posterior


def fit_student_t(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, depth: int = 3,
                  alpha: float = 2.0, beta: float = 2.0, num_steps: int = 100, num_scales: int = 64) -> Model:
    """Student-t process on an NNGP (ReLU, ``depth`` hidden layers) kernel, hyperparameters, noise, alpha and
    beta by empirical Bayes on normalised inputs and standardised outcomes (single output)."""
    del warm_start
    if Y.shape[-1] != 1:
        raise ValueError(f"the student-t surrogate models one output, got train_Y with {Y.shape[-1]} columns")
    input_tf, outcome_tf, Xn, Yn = fitted_transforms(X, Y, bounds)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        kernel = NNGPKernel(depth, "relu", weight_var=2.0, bias_var=1.0)
        process = StudentTProcess(kernel, alpha=alpha, beta=beta, dtype=X.dtype)
        process.fit(Xn, Yn[:, 0], num_steps=num_steps)
    return StudentTProcessModel(process, input_transform=input_tf, y_mean=float(outcome_tf.means),
                                y_std=float(outcome_tf.stdvs), num_scales=num_scales)
