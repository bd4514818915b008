"""``fit_surrogate``: one entry point that fits every surrogate kind to BO data and returns a BoTorch model.

Every kind sees inputs normalised to the unit cube (BoTorch ``Normalize`` with the problem's bounds) and
standardised outcomes (``Standardize``); both transforms stay attached to the returned model, so its
posterior is in the units of the observations.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pyro.distributions as dist
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.models.utils.gpytorch_modules import (get_gaussian_likelihood_with_gamma_prior,
                                                  get_matern_kernel_with_gamma_prior)
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

import inference
from inference.map import ascend_rows, map_estimates
from probnets import BNN, Gaussian, LogDensity, priors
from probnets.kernels import NNGPKernel
from probnets.validation import check_finite
from surrogates.amortized import fit_neural_process, fit_pfn
from surrogates.data_transforms import fitted_transforms
from surrogates.dkl import fit_dkl
from surrogates.ensemble_model import SampleEnsembleModel
from surrogates.moment_bnn import fit_moment_bnn
from surrogates.pbnn import fit_smc_pbnn
from surrogates.student_t import fit_student_t
from surrogates.vi_bnn import fit_mfvi_bnn


def fit_surrogate(train_X: Tensor, train_Y: Tensor, kind: str = "hmc-bnn", *, bounds: Tensor | None = None,
                  warm_start: Tensor | None = None, seed: int = 0, **options) -> Model:
    """Fit a surrogate of the given kind.

    Args:
        train_X: Observed inputs, ``n x d``.
        train_Y: Observed outcomes, ``n x m`` (maximisation convention does not matter here).
        kind: One of ``KINDS``: ``"gp"`` (SingleTaskGP, by default Matern-5/2 with ARD), ``"ibnn"`` (GP with an
            infinite-width network kernel), ``"student-t"`` (Student-t process on an NNGP kernel, one
            output), ``"dkl"`` (deep kernel learning), ``"hmc-bnn"`` (tanh BNN sampled with ChEES-HMC),
            ``"sghmc-bnn"`` (the same BNN sampled with scale-adapted SGHMC), ``"ensemble"``
            (deep ensemble of MAP networks on random subsets), ``"np"`` (a neural process, by default an MPANP
            meta-trained on GP functions, conditioned on the data), ``"pfn"`` (a PFN, likewise), ``"smc-pbnn"``
            (a partial BNN trained by open-horizon SMC), ``"mp-gelu-bnn"`` (an MP-GELU BNN fitted by
            deterministic VI, one-pass Gaussian predictive; ``activation="exact-gelu"``: the GELU network with
            exact moments, ``"relu"``: the ReLU baseline), ``"mfvi-bnn"`` (a BNN fitted by mean-field VI,
            Gaussian predictive; ``surrogates.vi_bnn``).
        bounds: ``2 x d`` box of the search space used to normalise inputs; the data range if ``None``.
        warm_start: The ``warm_start`` attribute of the surrogate fitted at the previous BO iteration, where
            the kind has one (``hmc-bnn``: its chains' last draws, ``C x D``); ignored by other kinds.
        seed: Seed for every random choice of the fit.
        **options: Kind-specific settings (see the ``fit_*`` functions).

    Returns:
        A BoTorch ``Model`` with ``num_outputs == m``.
    """
    X, Y = _check_data(train_X, train_Y)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if bounds is not None:
        bounds = torch.as_tensor(bounds, dtype=X.dtype)
        if bounds.shape != (2, X.shape[-1]) or not bool((bounds[1] > bounds[0]).all()):
            raise ValueError(f"bounds must be a 2 x {X.shape[-1]} tensor with upper > lower, got "
                             f"{tuple(bounds.shape)}")
    return KINDS[kind](X, Y, bounds=bounds, warm_start=warm_start, seed=seed, **options)


def fit_gp(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, prior: str = "gamma",
           covar_module=None) -> Model:
    """BoTorch's ``SingleTaskGP`` with learned noise, fitted by marginal likelihood.

    Args:
        prior: ``"gamma"``: a Matern-5/2 ARD kernel with an output scale, Gamma(3, 6) lengthscale, Gamma(2, 0.15)
            output-scale and Gamma(1.1, 0.05) noise priors: BoTorch's defaults before 0.12, the GP of the
            BNN-surrogate study. ``"dimension-scaled"``: BoTorch's current defaults, an RBF ARD kernel whose
            LogNormal lengthscale prior grows with sqrt(d) and a LogNormal noise prior (Hvarfner et al. 2024),
            which keeps the GP from overfitting in high dimension: prefer it there (it is the best surrogate on
            ``bnn-draw-50`` in ``benchmarks/results/bo_bnn_draw_20seeds.md``).
        covar_module: A kernel replacing the default one (the noise prior still follows ``prior``).
    """
    del warm_start
    if prior not in GP_PRIORS:
        raise ValueError(f"prior must be one of {GP_PRIORS}, got {prior!r}")
    batch_shape = _output_batch_shape(Y)
    likelihood = None
    if prior == "gamma":
        likelihood = get_gaussian_likelihood_with_gamma_prior(batch_shape)
        if covar_module is None:
            covar_module = get_matern_kernel_with_gamma_prior(X.shape[-1], batch_shape)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        gp = SingleTaskGP(X, Y, likelihood=likelihood, covar_module=covar_module,
                          input_transform=Normalize(X.shape[-1], bounds=bounds),
                          outcome_transform=Standardize(Y.shape[-1]))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


GP_PRIORS = ("gamma", "dimension-scaled")


def _output_batch_shape(Y: Tensor) -> torch.Size:
    """SingleTaskGP models m > 1 outputs as a batch of m independent GPs, each with its own kernel."""
    return torch.Size([Y.shape[-1]]) if Y.shape[-1] > 1 else torch.Size()


def fit_ibnn(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, depth: int = 3,
             activation: str = "relu", weight_var: float = 10.0, bias_var: float = 1.6,
             fit_variances: bool = False, prior: str = "gamma") -> Model:
    """Infinite-width BNN (I-BNN): a GP whose kernel is the NNGP of a ``depth``-layer network
    (``probnets.kernels.NNGPKernel``).

    As in the BNN-surrogate study the variances stay at ``weight_var`` and ``bias_var`` (its 10 and 1.6) and
    only the noise and constant mean are fitted; with ``fit_variances`` the two variances are fitted by
    marginal likelihood too, starting from those values. ``prior`` sets the noise prior as in ``fit_gp``.
    """
    kernel = NNGPKernel(depth, activation, weight_var=weight_var, bias_var=bias_var,
                        batch_shape=_output_batch_shape(Y)).to(X)
    if not fit_variances:
        kernel.requires_grad_(False)
    return fit_gp(X, Y, bounds=bounds, warm_start=warm_start, seed=seed, prior=prior, covar_module=kernel)


def fit_hmc_bnn(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, widths=(64, 64),
                activation: str = "tanh", prior: str = "fan-in", prior_scale: float = 3.0,
                noise_scale: float | None = None,
                method: str = "chees", num_chains: int = 8, num_warmup: int = 200, num_samples: int = 32,
                warm_start_warmup: int = 100, pretrain_steps: int = 500, progress: bool = False,
                until_converged: bool = False, max_time: float | None = None) -> Model:
    """A tanh BNN on normalised inputs and standardised outcomes, sampled with probnets' ChEES-HMC (or NUTS/HMC).

    Following the BNN-surrogate study's HMC recipe (Li, Rudner and Wilson 2024) the chains start from MAP
    estimates (``pretrain_steps`` of Adam on the log posterior, one per chain from different prior draws);
    with ``warm_start`` (the last draws of an earlier ``hmc-bnn`` surrogate of the same architecture) they
    start at those draws instead and warm up for ``warm_start_warmup`` iterations. The returned model's
    ``warm_start`` holds this run's last draws, ``num_chains x D``.

    Args:
        widths: Hidden widths.
        prior: ``"normal"``: Normal(0, ``prior_scale``) on every weight and bias; ``"fan-in"``:
            Normal(0, ``prior_scale / sqrt(fan_in)``) on weights and Normal(0, ``prior_scale``) on biases (the
            finite-width counterpart of the I-BNN kernel, whose function scale does not grow with ``d``).
        prior_scale: Prior scale (see ``prior``).
        noise_scale: Fixed noise standard deviation in standardised units; learned under a
            LogNormal(-1, 1) prior when ``None``.
        method, num_chains, num_warmup, num_samples: Sampler settings (see ``inference.sample``).
        warm_start_warmup: Warm-up iterations when starting from ``warm_start``.
        pretrain_steps: Adam steps of the MAP start (cold starts only). progress: Show the sampler's bar.
        until_converged, max_time: Sample in rounds until the function-space R-hat and ESS pass, within
            ``max_time`` seconds (``inference.sample``); the outcome is in
            ``model.posterior_samples.info["until_converged"]``.
    """
    input_tf, outcome_tf, Xn, Yn = fitted_transforms(X, Y, bounds)
    bnn = _surrogate_bnn(X, Y, widths, activation, prior, prior_scale, noise_scale)
    generator = torch.Generator().manual_seed(seed)
    if warm_start is not None and warm_start.shape == (num_chains, bnn.spec.dim):
        init, warmup = warm_start.to(Xn.dtype), warm_start_warmup
    else:
        init, warmup = map_estimates(bnn, (Xn, Yn), num_chains, pretrain_steps, generator), num_warmup
    post = inference.sample(bnn, (Xn, Yn), method=method, num_chains=num_chains, num_warmup=warmup,
                            num_samples=num_samples, seed=seed, init=init, progress=progress,
                            print_summary=False, check_convergence=False, until_converged=until_converged,
                            max_time=max_time)
    model = SampleEnsembleModel(bnn, post.samples, input_transform=input_tf, outcome_transform=outcome_tf)
    model.warm_start = post.samples[:, -1].clone()
    model.posterior_samples = post
    return model


def fit_sghmc_bnn(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, widths=(64, 64),
                  activation: str = "tanh", prior: str = "fan-in", prior_scale: float = 3.0,
                  noise_scale: float | None = None, num_chains: int = 8, num_burnin: int = 1000,
                  num_samples: int = 25, thin: int = 5, step_size: float = 1e-2, friction: float = 0.05) -> Model:
    """The ``hmc-bnn`` network and prior sampled with scale-adapted SGHMC (``inference.sample(method="sghmc")``)
    instead, following the BNN-surrogate study's SGHMC baseline (pybnn's Bohamiann: random start, 1000 burn-in
    steps, every 5th state kept, step 1e-2, friction 0.05) on full-batch gradients, ``num_chains`` chains at once.

    Args:
        widths, activation, prior, prior_scale, noise_scale: As for ``fit_hmc_bnn``.
        num_chains, num_burnin: Chains and adapting burn-in steps.
        num_samples, thin: Draws kept per chain, every ``thin``-th step after burn-in.
        step_size, friction: See ``inference.sgmcmc.sghmc.sghmc``.
    """
    del warm_start
    input_tf, outcome_tf, Xn, Yn = fitted_transforms(X, Y, bounds)
    bnn = _surrogate_bnn(X, Y, widths, activation, prior, prior_scale, noise_scale)
    post = inference.sample(bnn, (Xn, Yn), method="sghmc", num_chains=num_chains, num_warmup=num_burnin,
                            num_samples=num_samples * thin, thin=thin, seed=seed, step_size=step_size,
                            friction=friction, progress=False, print_summary=False, check_convergence=False)
    model = SampleEnsembleModel(bnn, post.samples, input_transform=input_tf, outcome_transform=outcome_tf)
    model.posterior_samples = post
    return model


def _surrogate_bnn(X: Tensor, Y: Tensor, widths, activation: str, prior: str, prior_scale: float,
                   noise_scale: float | None) -> BNN:
    likelihood = Gaussian(noise_scale=noise_scale) if noise_scale is not None else None
    return BNN(X.shape[-1], widths, Y.shape[-1], activation=activation, prior=_weight_prior(prior, prior_scale),
               likelihood=likelihood)


def _weight_prior(name: str, scale: float):
    if name == "normal":
        return dist.Normal(0.0, scale)
    if name == "fan-in":
        return priors.fan_in_normal(scale)
    raise ValueError(f"prior must be 'normal' or 'fan-in', got {name!r}")


def fit_deep_ensemble(X: Tensor, Y: Tensor, *, bounds=None, warm_start=None, seed: int = 0, num_members: int = 10,
                      widths=(64, 64), activation: str = "tanh", prior_scale: float = 1.0,
                      subsample: float = 0.8, steps: int = 1000, lr: float = 1e-2) -> Model:
    """Deep ensemble: ``num_members`` networks, each the MAP estimate on its own random ``subsample`` of the
    data, trained together as one batched parameter tensor (as in the BNN-surrogate study)."""
    del warm_start
    input_tf, outcome_tf, Xn, Yn = fitted_transforms(X, Y, bounds)
    bnn = BNN(X.shape[-1], widths, Y.shape[-1], activation=activation, prior=dist.Normal(0.0, prior_scale))
    generator = torch.Generator().manual_seed(seed)
    n = Xn.shape[0]
    keep = max(1, round(subsample * n))
    mask = torch.zeros(num_members, n, dtype=Xn.dtype)
    for member in range(num_members):
        mask[member, torch.randperm(n, generator=generator)[:keep]] = 1.0
    objective = LogDensity(lambda t: (bnn.log_likelihood(t, (Xn, Yn)) * mask).sum(-1) * (n / keep)
                           + bnn.log_prior(t), bnn.spec.dim)
    theta = ascend_rows(objective.value_and_grad, bnn.init_theta(num_members, generator=generator, dtype=Xn.dtype),
                        steps, lr)
    return SampleEnsembleModel(bnn, theta, input_transform=input_tf, outcome_transform=outcome_tf)


KINDS: dict[str, Callable[..., Model]] = {"gp": fit_gp, "ibnn": fit_ibnn, "student-t": fit_student_t, "dkl": fit_dkl,
                                          "hmc-bnn": fit_hmc_bnn, "sghmc-bnn": fit_sghmc_bnn, "ensemble": fit_deep_ensemble,
                                          "np": fit_neural_process, "pfn": fit_pfn}
KINDS["smc-pbnn"] = fit_smc_pbnn
KINDS["mfvi-bnn"] = fit_mfvi_bnn
KINDS["mp-gelu-bnn"] = fit_moment_bnn  # deterministic VI; activation "exact-gelu" / "relu": baselines

#: Arguments every kind takes from ``fit_surrogate`` itself, never as options.
_COMMON = ("bounds", "warm_start", "seed")


def option_names(kind: str) -> tuple[str, ...]:
    """The kind-specific option names ``fit_surrogate(..., kind, **options)`` accepts."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    parameters = inspect.signature(KINDS[kind]).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _COMMON)


def check_options(kind: str, options: dict) -> None:
    """Raise a ``ValueError`` naming any option that ``kind`` does not take, before any fit is run."""
    unknown = sorted(set(options) - set(option_names(kind)))
    if unknown:
        raise ValueError(f"surrogate {kind!r} does not take the option(s) {unknown}; its options are "
                         f"{list(option_names(kind))}")


def _check_data(train_X, train_Y) -> tuple[Tensor, Tensor]:
    for name, value in (("train_X", train_X), ("train_Y", train_Y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() != 2:
            raise ValueError(f"{name} must be 2-D (n x d / n x m), got shape {tuple(value.shape)}")
        if not torch.is_floating_point(value):
            raise TypeError(f"{name} must be floating point, got {value.dtype}")
        check_finite(value, name)
    if train_X.shape[0] != train_Y.shape[0]:
        raise ValueError(f"train_X and train_Y must have the same number of rows, got {train_X.shape[0]} and "
                         f"{train_Y.shape[0]}")
    if train_X.shape[0] < 2:
        raise ValueError(f"at least 2 observations are needed to fit a surrogate, got {train_X.shape[0]}")
    return train_X, train_Y.to(train_X.dtype)
