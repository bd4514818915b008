"""One call from a model (or any log density) to posterior draws: warm-up, sampling, diagnostics."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import Tensor

from inference import distributed as _distributed
from inference import registry, runner
from inference.base import as_logdensity
from inference.diagnostics import ConvergenceWarning
from inference.minibatch import BatchStream, MinibatchLogDensity
from inference.posterior import SamplePosterior
from probnets.model import Batch, LogDensity, ProbModel
from probnets.validation import check_positive_float, check_positive_int

METHODS = tuple(registry.SAMPLERS)


class CountingLogDensity(LogDensity):
    """Delegates to a log density and counts gradient evaluations per chain (``grad_evals``).

    ``at(batch)`` (minibatch log densities) returns a counter of the minibatch estimate that adds to this
    counter's count.
    """

    def __init__(self, inner: LogDensity, parent: CountingLogDensity | None = None):
        super().__init__(inner.__call__, inner.dim)
        self.inner = inner
        self.parent = parent
        self.uses_own_threads = inner.uses_own_threads
        self.grad_evals = 0

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        (self.parent or self).grad_evals += theta.shape[:-1].numel()
        return self.inner.value_and_grad(theta)

    def at(self, batch: Batch) -> CountingLogDensity:
        return CountingLogDensity(self.inner.at(batch), self.parent or self)


def sample(
    target,
    data: Batch | torch.utils.data.DataLoader | None = None,
    *,
    method: str = "nuts",
    num_chains: int | None = None,
    num_warmup: int | None = None,
    num_samples: int | None = None,
    thin: int | None = None,
    seed: int = 0,
    init: Tensor | None = None,
    dim: int | None = None,
    dtype: torch.dtype | None = None,
    temperature: float = 1.0,
    batch_size: int | None = None,
    progress: bool = True,
    print_summary: bool | None = None,
    check_convergence: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    distributed: str | None = None,
    **options,
) -> SamplePosterior:
    """Sample a posterior with any registered sampler (``inference.registry``), chains vectorised in one tensor.

    Args:
        target: A ``ProbModel`` (then ``data`` is required), a Pyro model wrapped by ``from_pyro``, or a
            log density: a ``LogDensity`` or a function ``theta (C, D) -> (C,)`` (then give ``init`` or
            ``dim``).
        data: ``(x, y)`` for a ``ProbModel``, or a ``torch.utils.data.DataLoader`` of ``(x, y)`` minibatches
            (minibatch samplers only).
        method: A registered sampler (``inference.registry.SAMPLERS``): ``"nuts"`` (multinomial NUTS with
            Stan's windowed warm-up), ``"hmc"`` (static trajectories, same warm-up), ``"chees"`` (many-chain
            ChEES-HMC), or the SG-MCMC family for full batches or minibatches: ``"sgld"``, ``"psgld"``,
            ``"sghmc"`` (scale-adapted SGHMC), ``"csgld"`` and ``"csghmc"`` (cyclical step sizes).
        num_chains, num_warmup, num_samples, thin: Chains, warm-up iterations, post-warm-up iterations and
            thinning (``num_samples // thin`` draws are kept, fewer for cyclical samplers, which keep draws
            only in the sampling phase of each cycle); ``None`` takes the sampler's registered defaults
            (``inference.registry.get(method)``; e.g. ChEES 16 x (300 + 1000), NUTS 4 x (500 + 500)).
        seed: Seeds the ``torch.Generator`` that drives everything (initialisation included).
        init: Starting points ``C x D``; default ``model.init_theta`` (or N(0, 1)/Uniform(-2, 2)-style
            draws for a bare log density).
        dtype: Computation dtype (default: that of ``x``/``init``, else torch's default).
        temperature: Likelihood tempering (``ProbModel`` only).
        batch_size: Minibatch size for minibatch samplers on ``(x, y)`` data (``None``: full batch). Each
            step sees the unbiased estimate ``log p(theta) + (N / |B|) sum_B log p(y | x, theta) / T``.
        progress: Show a live progress bar (step size, log density, acceptance rate, divergences, gradient
            evaluations per trajectory).
        print_summary: Print an ArviZ-like summary table after sampling (default: when ``progress``).
        check_convergence: Issue ``ConvergenceWarning``s for divergences, R-hat > 1.01 and low ESS (computing
            R-hat and ESS of every parameter takes seconds on large posteriors).
        checkpoint: Save to this file every ``checkpoint_every`` iterations; resume from it if it exists.
        distributed: Run in every process of a ``torch.distributed`` group (``inference.distributed``):
            ``"data"`` (``data`` is this rank's shard; the log density and its gradient are summed over the
            ranks, ``batch_size`` is the global minibatch; same seed on every rank, identical chains) or
            ``"chains"`` (every rank runs ``num_chains`` chains of its own on all the data; every rank returns
            the gathered ``world_size * num_chains`` chains). Only rank 0 shows progress and the summary; each
            rank checkpoints to ``checkpoint.rank<r>``.
        **options: The sampler's own options, e.g. ``target_accept``, ``max_tree_depth``, ``dense_mass``,
            ``step_size`` for NUTS; ``num_steps``/``trajectory_length`` for HMC; ``friction`` and
            ``posterior_temperature`` for SGHMC (``inference.registry.get(method).options()`` lists them with
            their defaults). An option the
            sampler does not know is a ``TypeError`` naming it.

    Returns:
        A ``SamplePosterior``; ``info`` holds the settings, ``wall_time`` and ``grad_evals`` (gradient
        evaluations summed over chains, including warm-up and step-size search, made by this call: a
        resumed run counts only its own).

    Example:
        >>> model = BNN(10, [50])
        >>> post = sample(model, (x, y), method="chees", num_chains=64, num_warmup=300, num_samples=100)
        >>> pred = post.predictive(model, x_test)
    """
    sampler = registry.get(method)
    options = sampler.bind(options)
    num_chains = check_positive_int(sampler.num_chains if num_chains is None else num_chains, "num_chains")
    num_warmup = check_positive_int(sampler.num_warmup if num_warmup is None else num_warmup, "num_warmup",
                                    minimum=0)
    num_samples = check_positive_int(sampler.num_samples if num_samples is None else num_samples, "num_samples")
    thin = check_positive_int(sampler.thin if thin is None else thin, "thin")
    check_positive_float(temperature, "temperature")
    is_loader = isinstance(data, torch.utils.data.DataLoader)
    if (batch_size is not None or is_loader) and not sampler.minibatch:
        minibatch = [s.name for s in registry.SAMPLERS.values() if s.minibatch]
        raise ValueError(f"method {method!r} needs the exact log density at every step; minibatches (batch_size "
                         f"or a DataLoader) need a minibatch sampler: {minibatch}")
    distributed = _distributed.check_mode(distributed)
    lead = distributed is None or _distributed.world()[0] == 0
    if distributed is not None:
        progress, checkpoint = progress and lead, _distributed.rank_path(checkpoint)
    if distributed == "chains":
        seed = _distributed.rank_seed(seed)
    generator = torch.Generator().manual_seed(int(seed))

    model = target if isinstance(target, ProbModel) else None
    batches = None
    if model is not None:
        if data is None:
            raise ValueError("data=(x, y) is required to sample a ProbModel")
        if distributed == "data":
            logdensity, batches = _distributed.data_parallel(model, data, batch_size, seed=seed,
                                                             temperature=temperature, dtype=dtype)
            dtype = logdensity.local.dtype
        elif is_loader or batch_size is not None:
            batches = BatchStream(data if is_loader else model.prepare_batch(data), batch_size, seed=seed,
                                  prepared=not is_loader)
            first = next(iter(data)) if is_loader else batches.data
            x = model.prepare_batch(first)[0]
            dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
            logdensity = MinibatchLogDensity(model, batches.num_data, first, temperature=temperature, dtype=dtype)
        else:
            x, y = model.prepare_batch(data)
            dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
            logdensity = model.logdensity((x.to(dtype), y.to(dtype) if torch.is_floating_point(y) else y),
                                          temperature=temperature)
        spec = model.spec
        if init is None:
            init = model.init_theta(num_chains, generator=generator, dtype=dtype)
    else:
        if data is not None or batch_size is not None:
            raise ValueError("data and batch_size are only used with a ProbModel target; a log density has its "
                             "data bound in")
        if distributed == "data" and not isinstance(target, _distributed.AllReduced):
            raise ValueError("distributed='data' needs a ProbModel with this rank's data shard, or a log density "
                             "summed over the ranks (inference.distributed.AllReduced)")
        if temperature != 1.0:
            raise ValueError("temperature applies to a ProbModel's likelihood; temper a bare log density yourself")
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
    if distributed == "data":
        _distributed.check_identical(torch.tensor(int(seed)), "seed")
        _distributed.check_identical(init, "init")
    counter = CountingLogDensity(logdensity)
    init = _check_initial_density(counter, init)
    algorithm = sampler.build(counter, num_warmup, **options)

    config = {"method": method, "seed": int(seed), "temperature": temperature, "batch_size": batch_size, **options}
    with _torch_threads(1 if counter.uses_own_threads else None):
        posterior = runner.run(algorithm, init, num_samples, num_warmup=num_warmup, generator=generator,
                               batches=batches, thin=thin, progress=progress, checkpoint=checkpoint,
                               checkpoint_every=checkpoint_every, config=config, spec=spec, description=method)
    posterior.info["grad_evals"] = counter.grad_evals
    posterior.constrain = getattr(target, "constrain", None)
    if distributed == "chains":
        posterior = _distributed.gather_chains(posterior)
    if distributed is not None:
        posterior.info.update(distributed=distributed, world_size=_distributed.world()[1])
    if lead and (print_summary if print_summary is not None else progress):
        print(posterior.summary().to_string(max_rows=12))
    for message in posterior.warnings() if check_convergence and lead else ():
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
