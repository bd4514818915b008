"""One call from a model (or any log density) to posterior draws: warm-up, sampling, diagnostics."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import Tensor

from inference import runner
from inference.base import as_logdensity
from inference.diagnostics import ConvergenceWarning
from inference.mcmc import chees as chees_lib
from inference.mcmc import hmc as hmc_lib
from inference.mcmc import nuts as nuts_lib
from inference.mcmc.window_adaptation import window_adaptation
from inference.posterior import SamplePosterior
from inference.sample_settings import DEFAULT_SETTINGS
from probnets.model import Batch, LogDensity, ProbModel
from probnets.validation import check_positive_float, check_positive_int, check_probability

METHODS = tuple(DEFAULT_SETTINGS)


class CountingLogDensity(LogDensity):
    """Delegates to a log density and counts gradient evaluations per chain (``grad_evals``)."""

    def __init__(self, inner: LogDensity):
        super().__init__(inner.__call__, inner.dim)
        self.inner = inner
        self.uses_own_threads = inner.uses_own_threads
        self.grad_evals = 0

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        self.grad_evals += theta.shape[:-1].numel()
        return self.inner.value_and_grad(theta)


def sample(
    target,
    data: Batch | None = None,
    *,
    method: str = "nuts",
    num_chains: int | None = None,
    num_warmup: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    init: Tensor | None = None,
    dim: int | None = None,
    dtype: torch.dtype | None = None,
    thin: int = 1,
    target_accept: float | None = None,
    max_tree_depth: int = 10,
    num_steps: int | None = None,
    trajectory_length: float | None = None,
    max_leapfrog_steps: int = 1000,
    dense_mass: bool = False,
    step_size: float = 0.1,
    temperature: float = 1.0,
    progress: bool = True,
    print_summary: bool | None = None,
    check_convergence: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
) -> SamplePosterior:
    """Sample a posterior with NUTS, static HMC or ChEES-HMC, chains vectorised in one tensor.

    Args:
        target: A ``ProbModel`` (then ``data`` is required), a Pyro model wrapped by ``from_pyro``, or a
            log density: a ``LogDensity`` or a function ``theta (C, D) -> (C,)`` (then give ``init`` or
            ``dim``).
        data: ``(x, y)`` for a ``ProbModel``.
        method: ``"nuts"`` (multinomial NUTS with Stan's windowed warm-up), ``"hmc"`` (static
            trajectories, same warm-up) or ``"chees"`` (many-chain ChEES-HMC).
        num_chains, num_warmup, num_samples: Chains and iterations per chain; ``None`` takes the measured
            defaults of ``inference.sample_settings.DEFAULT_SETTINGS`` (ChEES 16 x (300 + 1000), NUTS
            4 x (500 + 500), HMC 4 x (500 + 3000)).
        seed: Seeds the ``torch.Generator`` that drives everything (initialisation included).
        init: Starting points ``C x D``; default ``model.init_theta`` (or N(0, 1)/Uniform(-2, 2)-style
            draws for a bare log density).
        dtype: Computation dtype (default: that of ``x``/``init``, else torch's default).
        target_accept: Step-size adaptation target (default 0.8; for ChEES, of the mean acceptance over
            chains).
        num_steps / trajectory_length: HMC only: fixed leapfrog steps, or a fixed integration time
            (steps = ``ceil(trajectory_length / step_size)`` capped at ``max_leapfrog_steps``).
        dense_mass: Adapt a dense mass matrix instead of a diagonal one.
        step_size: Initial step size (refined by a heuristic and dual averaging during warm-up; used as is
            when ``num_warmup=0``).
        temperature: Likelihood tempering (``ProbModel`` only).
        progress: Show a live progress bar (step size, acceptance rate, divergences, leapfrog steps).
        print_summary: Print an ArviZ-like summary table after sampling (default: when ``progress``).
        check_convergence: Issue ``ConvergenceWarning``s for divergences, R-hat > 1.01 and low ESS (computing
            R-hat and ESS of every parameter takes seconds on large posteriors).
        checkpoint: Save to this file every ``checkpoint_every`` iterations; resume from it if it exists.

    Returns:
        A ``SamplePosterior``; ``info`` holds the settings, ``wall_time`` and ``grad_evals`` (gradient
        evaluations summed over chains, including warm-up and step-size search, made by this call: a
        resumed run counts only its own).

    Example:
        >>> model = BNN(10, [50])
        >>> post = sample(model, (x, y), method="chees", num_chains=64, num_warmup=300, num_samples=100)
        >>> pred = post.predictive(model, x_test)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    defaults = DEFAULT_SETTINGS[method]
    num_chains = check_positive_int(num_chains if num_chains is not None else defaults["num_chains"], "num_chains")
    num_warmup = check_positive_int(num_warmup if num_warmup is not None else defaults["num_warmup"], "num_warmup",
                                    minimum=0)
    num_samples = check_positive_int(num_samples if num_samples is not None else defaults["num_samples"],
                                     "num_samples")
    if target_accept is not None:
        check_probability(target_accept, "target_accept")
    step_size = check_positive_float(step_size, "step_size")
    generator = torch.Generator().manual_seed(int(seed))

    model = target if isinstance(target, ProbModel) else None
    if model is not None:
        if data is None:
            raise ValueError("data=(x, y) is required to sample a ProbModel")
        x, y = model.prepare_batch(data)
        dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
        logdensity = model.logdensity((x.to(dtype), y.to(dtype) if torch.is_floating_point(y) else y),
                                      temperature=temperature)
        spec = model.spec
        if init is None:
            init = model.init_theta(num_chains, generator=generator, dtype=dtype)
    else:
        if init is not None:
            dim = init.shape[-1]
        dim = dim if dim is not None else getattr(target, "dim", None)
        if dim is None:
            raise ValueError("give init (C x D starting points) or dim when sampling a bare log density")
        logdensity = as_logdensity(target, dim)
        spec = getattr(target, "spec", None)
        dtype = dtype or (init.dtype if init is not None else torch.get_default_dtype())
        if init is None and hasattr(target, "init_theta"):
            init = target.init_theta(num_chains, generator=generator, dtype=dtype)
        elif init is None:
            init = 4 * torch.rand((num_chains, dim), generator=generator, dtype=dtype) - 2
    init = _check_init(init, num_chains, logdensity.dim, dtype)
    counter = CountingLogDensity(logdensity)
    init = _check_initial_density(counter, init)

    if method == "chees":
        algorithm = chees_lib.chees(counter, num_warmup, target_accept=target_accept,
                                    max_leapfrog_steps=max_leapfrog_steps, dense=dense_mass,
                                    initial_step_size=step_size)
    else:
        if method == "nuts":
            kernel = nuts_lib.build_kernel(max_tree_depth)
        else:
            kernel = _static_hmc_kernel(num_steps, trajectory_length, max_leapfrog_steps)
        algorithm = window_adaptation(kernel, counter, num_warmup, dense=dense_mass, target_accept=target_accept or 0.8,
                                      initial_step_size=step_size)

    config = {"method": method, "seed": int(seed), "max_tree_depth": max_tree_depth, "num_steps": num_steps,
              "trajectory_length": trajectory_length, "dense_mass": dense_mass, "temperature": temperature,
              "target_accept": target_accept}
    with _torch_threads(1 if counter.uses_own_threads else None):
        posterior = runner.run(algorithm, init, num_samples, num_warmup=num_warmup, generator=generator,
                               thin=thin, progress=progress, checkpoint=checkpoint,
                               checkpoint_every=checkpoint_every, config=config, spec=spec, description=method)
    posterior.info["grad_evals"] = counter.grad_evals
    posterior.constrain = getattr(target, "constrain", None)
    if print_summary if print_summary is not None else progress:
        print(posterior.summary().to_string(max_rows=12))
    for message in posterior.warnings() if check_convergence else ():
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return posterior


@contextlib.contextmanager
def _torch_threads(num: int | None):
    """Run the block with ``num`` torch threads (unchanged when ``None``), restoring the setting after."""
    before = torch.get_num_threads()
    if num is not None:
        torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _static_hmc_kernel(num_steps: int | None, trajectory_length: float | None, max_leapfrog_steps: int):
    if num_steps is not None and trajectory_length is not None:
        raise ValueError("give num_steps or trajectory_length for HMC, not both")
    if num_steps is None and trajectory_length is None:
        num_steps = 32
    if num_steps is not None:
        num_steps = check_positive_int(num_steps, "num_steps")
    else:
        trajectory_length = check_positive_float(trajectory_length, "trajectory_length")
    base = hmc_lib.build_kernel()

    def kernel(state, generator, logdensity, step_size, mass_matrix):
        steps = num_steps
        if steps is None:
            steps = torch.ceil(trajectory_length / step_size).clamp(1, max_leapfrog_steps).long()
        return base(state, generator, logdensity, step_size, mass_matrix, steps)

    return kernel


def _check_init(init: Tensor, num_chains: int, dim: int, dtype: torch.dtype) -> Tensor:
    if not isinstance(init, Tensor):
        raise TypeError(f"init must be a torch.Tensor, got {type(init).__name__}")
    if init.shape != (num_chains, dim):
        raise ValueError(f"init must have shape (num_chains, D) = ({num_chains}, {dim}), got {tuple(init.shape)}")
    if not bool(torch.isfinite(init).all()):
        raise ValueError("init contains NaN or infinite values")
    return init.to(dtype)


def _check_initial_density(logdensity: LogDensity, init: Tensor) -> Tensor:
    """Fail fast on a non-finite start; adopt the log density's dtype if it promotes the positions."""
    value, grad = logdensity.value_and_grad(init)
    bad = ~(torch.isfinite(value) & torch.isfinite(grad).all(-1))
    if bool(bad.any()):
        chains = bad.nonzero().flatten().tolist()
        raise ValueError(f"the log density or its gradient is not finite at the initial point of chains {chains[:10]}"
                         f"{'...' if len(chains) > 10 else ''}; choose another init")
    return init.to(grad.dtype) if grad.dtype != init.dtype and grad.dtype.is_floating_point else init


__all__ = ["METHODS", "ConvergenceWarning", "CountingLogDensity", "sample"]
