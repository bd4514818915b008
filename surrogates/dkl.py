"""Deep kernel learning (Wilson et al. 2016): an exact GP on the features of a tanh MLP, trained jointly."""

from __future__ import annotations

from functools import partial

import torch
from botorch.models import SingleTaskGP
from botorch.optim.fit import fit_gpytorch_mll_torch
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor, nn


class DKLModel(SingleTaskGP):
    """``SingleTaskGP`` whose Matern-5/2 kernel acts on ``feature_extractor(x)`` (an MLP ``d -> widths``).

    Args:
        train_X: ``n x d``. train_Y: ``n x m``.
        widths: Hidden widths of the tanh MLP; the last one is the feature dimension.
        input_transform, outcome_transform: As for ``SingleTaskGP``.
    """

    def __init__(self, train_X: Tensor, train_Y: Tensor, *, widths=(64, 64), input_transform=None,
                 outcome_transform=None):
        batch_shape = torch.Size([train_Y.shape[-1]]) if train_Y.shape[-1] > 1 else torch.Size()
        kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=widths[-1], batch_shape=batch_shape),
                             batch_shape=batch_shape)
        super().__init__(train_X, train_Y, covar_module=kernel, input_transform=input_transform,
                         outcome_transform=outcome_transform)
        layers, fan_in = [], train_X.shape[-1]
        for width in widths:
            layers += [nn.Linear(fan_in, width), nn.Tanh()]
            fan_in = width
        self.feature_extractor = nn.Sequential(*layers).to(train_X)

    def forward(self, x: Tensor) -> MultivariateNormal:
        if self.training:
            x = self.transform_inputs(x)
        features = self.feature_extractor(x)
        return MultivariateNormal(self.mean_module(x), self.covar_module(features))


def fit_dkl(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, widths=(64, 64),
            steps: int = 500, lr: float = 1e-2) -> DKLModel:
    """Train a ``DKLModel`` by Adam on the exact marginal likelihood (network and kernel jointly)."""
    del warm_start
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DKLModel(X, Y, widths=widths, input_transform=Normalize(X.shape[-1], bounds=bounds),
                         outcome_transform=Standardize(Y.shape[-1]))
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        # BoTorch's torch fitter keeps every hyperparameter inside its bounds (its noise constraint has no
        # transform and relies on the optimiser to respect the lower bound).
        fit_gpytorch_mll_torch(mll, step_limit=steps, optimizer=partial(torch.optim.Adam, lr=lr))
        model.eval()
    return model
