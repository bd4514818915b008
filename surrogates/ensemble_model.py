"""Any sample posterior (MCMC draws, SMC particles, ensemble members) as a BoTorch ``EnsembleModel``."""

from __future__ import annotations

import torch
from botorch.models.ensemble import EnsembleModel
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform
from torch import Tensor

from probnets.model import ProbModel


class SampleEnsembleModel(EnsembleModel):
    """BoTorch model whose posterior at ``X`` is the set of latent functions ``f_s(X)``, one per draw.

    ``posterior(X)`` returns an ``EnsemblePosterior`` with values ``batch x s x q x m``; BoTorch's
    ``get_sampler`` pairs it with an ``IndexSampler``, which fixes the drawn members once, so Monte
    Carlo acquisition functions are deterministic in ``X`` and ``optimize_acqf`` can use L-BFGS-B.
    Gradients with respect to ``X`` flow through ``model.predict_f``.

    Args:
        model: The probnets model the draws belong to (``predict_f(theta, x) -> ... x n x m``).
        theta: Parameter draws, ``s x D`` (or ``C x S x D``, flattened to ``C*S`` members).
        log_weights: Optional unnormalised log importance weights, ``s`` (e.g. SMC); uniform if ``None``.
        input_transform: BoTorch input transform applied to ``X`` before ``predict_f`` (e.g. ``Normalize``).
        outcome_transform: BoTorch outcome transform whose ``untransform`` maps the model's outputs back to
            the scale of the observations (e.g. a fitted ``Standardize``).
        chunk_size: Bound on the number of draws evaluated at once inside ``predict_f``.
        num_outputs: Number of latent outputs ``m``; read from ``model.num_latent`` when omitted.
    """

    def __init__(self, model: ProbModel, theta: Tensor, *, log_weights: Tensor | None = None,
                 input_transform: InputTransform | None = None, outcome_transform: OutcomeTransform | None = None,
                 chunk_size: int | None = None, num_outputs: int | None = None):
        if not isinstance(theta, Tensor) or theta.dim() not in (2, 3):
            raise ValueError(f"theta must be a tensor of shape (s, D) or (C, S, D), got "
                             f"{tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__}")
        theta = theta.reshape(-1, theta.shape[-1])
        if theta.shape[0] == 0:
            raise ValueError("theta must hold at least one draw")
        weights = None
        if log_weights is not None:
            log_weights = log_weights.reshape(-1)
            if log_weights.shape[0] != theta.shape[0]:
                raise ValueError(f"log_weights must have one entry per draw ({theta.shape[0]}), got "
                                 f"{log_weights.shape[0]}")
            weights = torch.softmax(log_weights.to(theta.dtype), 0)
        super().__init__(weights=weights)
        self.model = model
        self.register_buffer("theta", theta)
        self.chunk_size = chunk_size
        num_outputs = num_outputs if num_outputs is not None else getattr(model, "num_latent", None)
        if num_outputs is None:
            raise ValueError(f"num_outputs is required: {type(model).__name__} has no num_latent attribute")
        self._num_outputs = int(num_outputs)
        if input_transform is not None:
            self.input_transform = input_transform
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform

    def _set_transformed_inputs(self) -> None:
        # BoTorch re-transforms stored training inputs on eval(); the draws already encode the data.
        pass

    @property
    def num_draws(self) -> int:
        return self.theta.shape[0]

    def forward(self, X: Tensor) -> Tensor:
        """Latent outputs of every draw: ``batch x q x d`` -> ``batch x s x q x m``."""
        batch, q, d = X.shape[:-2], X.shape[-2], X.shape[-1]
        f = self.model.predict_f(self.theta, X.reshape(-1, d).to(self.theta.dtype), chunk_size=self.chunk_size)
        f = f.reshape(self.num_draws, *batch, q, f.shape[-1])      # s x batch x q x m
        return f.movedim(0, -3)

