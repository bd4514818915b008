"""Amortized models (neural processes, PFNs) as BoTorch surrogates.

Fitting is conditioning: the observations (normalised inputs, standardised outcomes) become the model's context,
and the posterior at ``X`` is the model's predictive there, moment-matched to independent Gaussians per point (a
``GPyTorchPosterior``). New observations extend the context (``condition_on_observations``), with no refit. The
predictive is of ``y`` (these models do not separate noise from the latent function), so ``observation_noise``
changes nothing.

A model meta-trained for the problem's dimension can be passed in; otherwise one is meta-trained on
:func:`bo_task_prior` (GP functions on the unit cube) at the first fit and cached for the rest of the process, so
that a BO loop pays for it once.
"""

from __future__ import annotations

import functools

import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from torch import Tensor, nn

from inference.amortized import train_amortized
from probnets.neural_process import ANP, CANP, CNP, MPANP, MPNP, NP, NeuralProcess
from probnets.pfn import PFN, BarDistribution, borders_from_samples, load_pretrained
from probnets.priors import GPTaskPrior
from probnets.validation import check_positive_int
from surrogates.data_transforms import fitted_transforms
from surrogates.gaussian_model import independent_gaussian_posterior

NEURAL_PROCESSES = {"cnp": CNP, "canp": CANP, "np": NP, "anp": ANP, "mpnp": MPNP, "mpanp": MPANP}


def bo_task_prior(dim: int) -> GPTaskPrior:
    """GP functions on ``[0, 1]^dim`` at the scale of standardised outcomes: Matern-5/2 with lengthscale
    ``U(0.1, 1) sqrt(dim)``, output scale ``U(0.5, 1.5)``, noise std ``U(0.01, 0.1)``; 1 to 63 context points.
    Unchanged by ``x -> 1 - x`` and ``y -> -y`` (the symmetries a PFN trained on it averages over)."""
    root = dim ** 0.5
    return GPTaskPrior("matern52", dim=dim, x_range=(0.0, 1.0), lengthscale=(0.1 * root, root), scale=(0.5, 1.5),
                       noise=(0.01, 0.1), num_context=(1, 63), max_points=80, min_target=16)


@functools.lru_cache(maxsize=8)
def meta_trained(kind: str, dim: int, steps: int, width: int, seed: int, progress: bool = False) -> nn.Module:
    """A neural process (``kind`` in ``NEURAL_PROCESSES``) or a PFN (``kind="pfn"``) meta-trained on
    :func:`bo_task_prior` for ``steps`` steps of 16 tasks; frozen, in evaluation mode, cached per arguments."""
    prior = bo_task_prior(dim)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if kind == "pfn":
            draws = prior.sample(2000, num_context=0, num_target=prior.max_points, generator=generator).y
            model = PFN(borders_from_samples(draws, 100), dim=dim, emsize=width, num_layers=4, num_heads=4,
                        hidden=2 * width, symmetries={"x_range": (0.0, 1.0), "negate_y": True})
        else:
            model = NEURAL_PROCESSES[kind](dim, width=width)
        train_amortized(model, prior, num_steps=steps, batch_size=16, lr=5e-4, seed=seed, progress=progress)
    return model.eval().requires_grad_(False)


class AmortizedModel(Model):
    """BoTorch model whose posterior is an amortized model's predictive given the observations.

    Args:
        model: A :class:`~probnets.neural_process.NeuralProcess` or a :class:`~probnets.pfn.PFN` with input
            dimension ``d``; each of the ``m`` outputs is predicted from its own column of the context.
        context_x: Transformed (normalised) inputs, ``n x d``.
        context_y: Transformed (standardised) outcomes, ``n x m``.
        input_transform, outcome_transform: Fitted BoTorch transforms (``X`` in, posterior out).
        seed: Seed of the model's own randomness (latent or pseudo-context draws), fixed per posterior call so
            that acquisition surfaces are deterministic.
    """

    def __init__(self, model: nn.Module, context_x: Tensor, context_y: Tensor, *, input_transform=None,
                 outcome_transform=None, seed: int = 0):
        super().__init__()
        if not isinstance(model, (NeuralProcess, PFN)):
            raise TypeError(f"model must be a NeuralProcess or a PFN, got {type(model).__name__}")
        dim = model.dim if isinstance(model, NeuralProcess) else model.config["dim"]
        if context_x.shape[-1] != dim:
            raise ValueError(f"the model takes {dim}-dimensional inputs, the data have {context_x.shape[-1]}")
        self.model = model
        self.context_x, self.context_y, self.seed = context_x, context_y, seed
        if input_transform is not None:
            self.input_transform = input_transform
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform
        self.eval()

    def _set_transformed_inputs(self) -> None:
        # BoTorch re-transforms stored training inputs on eval(); the context is stored transformed already.
        pass

    @property
    def num_outputs(self) -> int:
        return self.context_y.shape[-1]

    def moments(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Predictive means and variances ``batch x q x m`` in transformed units at transformed ``X``
        (``batch x q x d``)."""
        batch, (q, d), m, n = X.shape[:-2], X.shape[-2:], self.num_outputs, self.context_x.shape[0]
        dtype = next(self.model.parameters()).dtype
        flat = X.reshape(-1, q, d).to(dtype)
        tasks = m * flat.shape[0]
        x = flat.expand(m, -1, -1, -1).reshape(tasks, q, d)
        cx = self.context_x.to(dtype).expand(tasks, n, d)
        cy = self.context_y.to(dtype).T[:, None, :, None].expand(m, flat.shape[0], n, 1).reshape(tasks, n, 1)
        if isinstance(self.model, PFN):  # members: the prior's symmetry transforms
            dist = BarDistribution(self.model.borders, self.model.symmetric_logits(cx, cy, x))
            means, variances = dist.mean, dist.variance  # S x tasks x q
        else:  # members: latent or pseudo-context draws
            means, scales = self.model(cx, cy, x, generator=torch.Generator().manual_seed(self.seed))
            means, variances = means[..., 0], scales[..., 0].square()
        mean = means.mean(0)
        variance = (variances + means.square()).mean(0) - mean.square()
        shape = (m,) + batch + (q,)
        return (mean.reshape(shape).movedim(0, -1).to(X.dtype),
                variance.clamp_min(1e-9).reshape(shape).movedim(0, -1).to(X.dtype))

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False, posterior_transform=None,
                  **kwargs) -> GPyTorchPosterior:
        """Independent Gaussians per point and output (``batch x q x m``), in the observations' units."""
        mean, variance = self.moments(self.transform_inputs(X))
        if output_indices is not None:
            mean, variance = mean[..., output_indices], variance[..., output_indices]
        posterior = independent_gaussian_posterior(mean, variance)
        if getattr(self, "outcome_transform", None) is not None and output_indices is None:
            posterior = self.outcome_transform.untransform_posterior(posterior)
        return posterior_transform(posterior) if posterior_transform is not None else posterior

    def condition_on_observations(self, X: Tensor, Y: Tensor, **kwargs) -> AmortizedModel:
        """A new model whose context also holds ``X`` (``k x d``) and ``Y`` (``k x m``), in the units of the
        observations (transformed with this model's fitted transforms)."""
        Xn = self.transform_inputs(X)
        Yn = self.outcome_transform(Y)[0] if getattr(self, "outcome_transform", None) is not None else Y
        return AmortizedModel(self.model, torch.cat([self.context_x, Xn.to(self.context_x)]),
                              torch.cat([self.context_y, Yn.to(self.context_y)]),
                              input_transform=getattr(self, "input_transform", None),
                              outcome_transform=getattr(self, "outcome_transform", None), seed=self.seed)


def fit_neural_process(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0,
                       model: NeuralProcess | None = None, model_class: str = "mpanp", steps: int = 3000,
                       width: int = 64, meta_seed: int = 0, progress: bool = False) -> AmortizedModel:
    """A neural process conditioned on the data. Without ``model``, a ``model_class`` (one of ``cnp``, ``canp``,
    ``np``, ``anp``, ``mpnp``, ``mpanp``) is meta-trained on :func:`bo_task_prior` for ``steps`` steps with seed
    ``meta_seed`` (cached, so a BO loop, whose ``seed`` changes every iteration, trains it once); ``seed`` seeds
    the model's latent or pseudo-context draws.
    The default is the attentive MPANP: mean-pooled models (CNP, NP, MPNP) underfit their context, which a BO
    surrogate must interpolate (on the surrogate contract's toy data, CNP after 1000 steps leaves 95% of the
    variance at the observed points unexplained, CANP after 500 steps 20%)."""
    del warm_start
    if model is None:
        if model_class not in NEURAL_PROCESSES:
            raise ValueError(f"model_class must be one of {sorted(NEURAL_PROCESSES)}, got {model_class!r}")
        model = meta_trained(model_class, X.shape[-1], check_positive_int(steps, "steps"),
                             check_positive_int(width, "width"), meta_seed, progress)
    input_tf, outcome_tf, Xn, Yn = fitted_transforms(X, Y, bounds)
    return AmortizedModel(model, Xn, Yn, input_transform=input_tf, outcome_transform=outcome_tf, seed=seed)


def fit_pfn(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, model: PFN | None = None,
            steps: int = 3000, width: int = 64, meta_seed: int = 0, progress: bool = False) -> AmortizedModel:
    """A PFN conditioned on the data. Without ``model``: the shipped ``gp-hyper-1d`` PFN for one input
    dimension, otherwise a PFN meta-trained on :func:`bo_task_prior` for ``steps`` steps with seed ``meta_seed``
    (cached, as for :func:`fit_neural_process`)."""
    del warm_start
    if model is None:
        model = (load_pretrained("gp-hyper-1d") if X.shape[-1] == 1 else
                 meta_trained("pfn", X.shape[-1], check_positive_int(steps, "steps"),
                              check_positive_int(width, "width"), meta_seed, progress))
    input_tf, outcome_tf, Xn, Yn = fitted_transforms(X, Y, bounds)
    return AmortizedModel(model.eval(), Xn, Yn, input_transform=input_tf, outcome_transform=outcome_tf, seed=seed)
