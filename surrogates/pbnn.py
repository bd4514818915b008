"""The ``smc-pbnn`` surrogate: a partial BNN trained by open-horizon SMC (Zhao et al. 2024) as a BoTorch model."""

from __future__ import annotations

import torch
from botorch.models.model import Model
from torch import Tensor

from inference.smc.open_horizon import fit_open_horizon
from probnets import Gaussian
from probnets.partial_bnn import partial_mlp
from probnets.validation import check_positive_float
from surrogates.data_transforms import fitted_transforms
from surrogates.ensemble_model import SampleEnsembleModel


def fit_smc_pbnn(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, widths=(50, 20),
                 stochastic_width: int = 5, noise_scale: float = 0.1, num_particles: int = 256,
                 num_epochs: int = 300, batch_size: int = 16, lr: float = 1e-2, move: str = "rw",
                 move_scale: float = 1e-2, progress: bool = False) -> Model:
    """A GELU MLP ``d -> widths -> stochastic_width -> m`` on normalised inputs and standardised outcomes whose layer
    into ``stochastic_width`` is Bayesian (N(0, 1) prior, the paper's ``psi | phi | psi`` shape), trained by
    open-horizon SMC; the particles are the ensemble members (weighted by their SMC weights).

    Args:
        widths: Deterministic hidden widths before the stochastic layer (its input width is ``widths[-1]``).
        stochastic_width: Output width of the stochastic layer.
        noise_scale: Fixed Gaussian noise standard deviation in standardised units (the paper fixes the
            variance to 1 on its larger data sets; BO data are few and nearly noise-free).
        num_particles, num_epochs, batch_size, lr, move, move_scale: See
            ``inference.smc.open_horizon.fit_open_horizon`` (batches of ``min(batch_size, n)``).
        progress: Show the training progress bar.
    """
    del warm_start
    check_positive_float(noise_scale, "noise_scale")
    input_tf, outcome_tf, Xn, Yn = fitted_transforms(X, Y, bounds)
    widths = tuple(widths)
    if not widths:
        raise ValueError("widths must hold at least one deterministic hidden width before the stochastic layer")
    generator = torch.Generator().manual_seed(seed)
    model = partial_mlp((X.shape[-1], *widths, stochastic_width, Y.shape[-1]), len(widths),
                        likelihood=Gaussian(noise_scale=noise_scale), generator=generator, dtype=Xn.dtype)
    post = fit_open_horizon(model, (Xn, Yn), num_particles=num_particles, num_epochs=num_epochs,
                            batch_size=min(batch_size, Xn.shape[0]), lr=lr, move=move, move_scale=move_scale,
                            seed=seed, progress=progress)
    for p in model.psi_parameters():
        p.requires_grad_(False)  # psi is fitted; gradients of the acquisition flow to X only
    surrogate = SampleEnsembleModel(model, post.samples, log_weights=post.log_weights, input_transform=input_tf,
                                    outcome_transform=outcome_tf, num_outputs=Y.shape[-1])
    surrogate.posterior_samples = post
    return surrogate


__all__ = ["fit_smc_pbnn"]
