"""A fitted Student-t process as a BoTorch model with a joint multivariate-t posterior."""

from __future__ import annotations

import torch
from botorch.models.model import Model
from botorch.models.transforms.input import Normalize
from torch import Tensor

import inference
from probnets.kernels import NNGPKernel
from probnets.scale_mixture import StudentTProcess
from surrogates.data_transforms import fitted_transforms
from surrogates.student_t_posterior import StudentTPosterior


class StudentTProcessModel(Model):
    """BoTorch model of a fitted ``StudentTProcess`` (one output).

    Given the data, the latent values at ``q`` points are jointly ``MVT_{2a+n}(mu, s2 Sigma)``, the mixture over
    ``v ~ InvGamma(alpha + n/2, beta + y^T A^-1 y / 2)`` of ``N(mu, v Sigma)``; ``posterior`` returns it as a
    ``StudentTPosterior`` (one scale per Monte Carlo draw, stratified and deterministic under fixed base samples).

    Args:
        process: A fitted ``StudentTProcess`` on normalised inputs and standardised outcomes.
        input_transform: Maps raw inputs to the process's inputs (e.g. ``Normalize``).
        y_mean, y_std: Undo the outcome standardisation.
    """

    def __init__(self, process: StudentTProcess, *, input_transform: Normalize | None = None, y_mean: float = 0.0,
                 y_std: float = 1.0):
        super().__init__()
        self.process = process
        if input_transform is not None:
            self.input_transform = input_transform
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        scale = process.scale_posterior()
        self.concentration, self.rate = float(scale.concentration), float(scale.rate)

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size()

    def _set_transformed_inputs(self) -> None:
        # the process holds its own (already transformed) training inputs
        pass

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False, posterior_transform=None,
                  **kwargs) -> StudentTPosterior:
        """``batch x q x d`` -> joint t posterior over the ``q`` points, values ``batch x q x 1``."""
        self.eval()
        X = self.transform_inputs(X).to(self.process.dtype)
        mean, cov = self.process.joint_conditional(X, observation_noise=bool(observation_noise is True))
        posterior = StudentTPosterior.from_unit_scale(self.y_mean + self.y_std * mean, self.y_std**2 * cov,
                                                      self.concentration, self.rate, jitter=1e-9)
        return posterior_transform(posterior) if posterior_transform is not None else posterior


def fit_student_t(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, depth: int = 3,
                  alpha: float = 2.0, beta: float = 2.0, num_steps: int = 100) -> Model:
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
        inference.fit(process, (Xn, Yn[:, 0]), num_steps=num_steps)
    return StudentTProcessModel(process, input_transform=input_tf, y_mean=float(outcome_tf.means),
                                y_std=float(outcome_tf.stdvs))
