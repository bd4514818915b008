"""One call from a model (or any log density) to posterior draws: warm-up, sampling, diagnostics."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import Tensor

from inference import distributed as _distributed
from inference import fingerprint, registry, runner
from inference.base import as_logdensity
from inference.diagnostics import ConvergenceWarning
from inference.function_space import sample_report
from inference.minibatch import BatchStream, MinibatchLogDensity
from inference.posterior import SamplePosterior
from inference.start import CountingLogDensity, check_init, check_initial_density
from inference.until_converged import DEFAULT_MAX_ROUNDS, sample_until_converged
from probnets.compiled import CompiledLogDensity
from probnets.model import Batch, ProbModel
from probnets.validation import check_positive_float, check_positive_int

METHODS = tuple(registry.SAMPLERS)


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
    epochs: int | None = None,
    progress: bool = True,
    print_summary: bool | None = None,
    check_convergence: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    run_info: dict | None = None,
    until_converged: bool = False,
    max_time: float | None = None,
    rhat_threshold: float = 1.01,
    min_ess: float = 400,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    distributed: str | None = None,
    compile: bool = False,
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
            ``"sghmc"`` (scale-adapted SGHMC), ``"csgld"`` and ``"csghmc"`` (cyclical step sizes); structured
            SG-MCMC ``"structured-sgld"``, ``"structured-psgld"``, ``"structured-sghmc"`` (a mean-field
            approximation over parameter groups, ``inference.sgmcmc.structured``); or ``"smc"``: adaptive tempered SMC (``inference.smc``), where ``num_chains`` counts independent
            particle populations, ``num_samples`` the particles of each and ``num_warmup`` the MCMC moves per
            tempering stage; it returns weighted particles and the log evidence in ``info``.
        num_chains, num_warmup, num_samples, thin: Chains, warm-up iterations, post-warm-up iterations and
            thinning (``num_samples // thin`` draws are kept, fewer for cyclical samplers, which keep draws
            only in the sampling phase of each cycle); ``None`` takes the sampler's registered defaults
            (``inference.registry.get(method)``; e.g. ChEES 16 x (300 + 1000), NUTS 4 x (500 + 500)); with
            ``init`` given, ``num_chains`` defaults to its rows.
        seed: Seeds the ``torch.Generator`` that drives everything (initialisation included).
        init: Starting points ``C x D``; default ``model.init_theta`` (or N(0, 1)/Uniform(-2, 2)-style
            draws for a bare log density). For ``"smc"``: the centres of the populations' Gaussian references
            (default: the origin).
        dtype: Computation dtype (default: that of ``x``/``init``, else torch's default).
        temperature: Likelihood tempering (``ProbModel`` only).
        batch_size: Minibatch size for minibatch samplers on ``(x, y)`` data (``None``: full batch). Each
            step sees the unbiased estimate ``log p(theta) + (N / |B|) sum_B log p(y | x, theta) / T``.
        epochs: Minibatch samplers on a ``ProbModel``'s data only, instead of ``num_samples``: the sampling
            phase runs ``epochs`` passes over the data, ``num_samples = epochs * batches per epoch`` iterations
            (``ceil(N / batch_size)`` batches, ``len(loader)`` for a ``DataLoader``, 1 for full batches), of which
            every ``thin``-th is kept. Warm-up stays ``num_warmup`` iterations (not epochs).
        progress: Show a live progress bar (step size, log density, acceptance rate, divergences, gradient
            evaluations per trajectory).
        print_summary: Print an ArviZ-like summary table after sampling (default: when ``progress``). For a
            network (``BNN``, ``from_module``) the function-space diagnostics over ``f(x)`` at (up to 200)
            training inputs come first, as in the command line's report (``inference.function_space``).
        check_convergence: Issue ``ConvergenceWarning``s for a single chain, divergences (also stuck chains
            and warm-up divergences), saturated NUTS trees, R-hat > 1.01 and low ESS (computing R-hat and ESS
            of every parameter takes seconds on large posteriors). For a network, function-space warnings
            come first and parameter-space ones say that weight-space R-hat is expected to look poor.
        checkpoint: Save to this file every ``checkpoint_every`` iterations; resume from it if it exists.
            The file records what determines the run (the model's description, a hash of the training
            tensors, the starting points, the log prior and log density there, method, options, dtype, seed,
            chains; see ``inference.fingerprint``); resuming from a file another run wrote is a
            ``ValueError`` naming what differs.
        run_info: Plain values (str, int, float, bool) describing the run beyond what this call sees, e.g. the
            data source and train/test split; kept in ``posterior.info`` and checked against a checkpoint.
        until_converged: Sample in rounds of doubling warm-up and draws, each started from the last draws of
            the one before, until R-hat <= ``rhat_threshold`` and bulk/tail ESS >= ``min_ess`` (in function
            space for a network, else over the parameters) or the budget runs out (``max_time`` seconds in
            total, ``max_rounds`` rounds); ``posterior.info["until_converged"]`` says which happened. With
            ``checkpoint``, round ``r`` checkpoints to ``<checkpoint>.round<r>`` (resumable). See
            ``inference.until_converged``.
        distributed: Run in every process of a ``torch.distributed`` group (``inference.distributed``):
            ``"data"`` (``data`` is this rank's shard; the log density and its gradient are summed over the
            ranks, ``batch_size`` is the global minibatch; same seed on every rank, identical chains) or
            ``"chains"`` (every rank runs ``num_chains`` chains of its own on all the data; every rank returns
            the gathered ``world_size * num_chains`` chains). Only rank 0 shows progress and the summary; each
            rank checkpoints to ``checkpoint.rank<r>``.
        compile: Evaluate the log density's gradient through a compiled graph (``probnets.compiled``: traced
            and compiled by inductor once per architecture, data and chain count, several seconds, cached on
            disk; checked against eager autograd first, with a ``CompileFallbackWarning`` and eager autograd if
            the model cannot be compiled). Full-batch ``ProbModel`` targets and bare log densities only; a
            fused kernel (an MLP ``BNN`` with a Gaussian, Bernoulli or Categorical likelihood) is used instead
            when available. The compile time shows in the progress bar's description and in
            ``info["compile_seconds"]``.
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
    if until_converged:
        sampler = registry.get(method)
        if distributed is not None:
            raise ValueError("until_converged does not run under distributed= yet: give num_warmup and num_samples")
        if epochs is not None:
            raise ValueError("until_converged sets the draws round by round; give num_samples, not epochs")
        check_positive_int(max_rounds, "max_rounds")
        check_positive_float(min_ess, "min_ess")
        if not (isinstance(rhat_threshold, (int, float)) and rhat_threshold >= 1):
            raise ValueError(f"rhat_threshold must be a number >= 1, got {rhat_threshold!r}")
        if max_time is not None:
            check_positive_float(max_time, "max_time")
        settings = dict(method=method, num_chains=num_chains, thin=thin, seed=seed, dim=dim, dtype=dtype,
                        temperature=temperature, batch_size=batch_size, progress=progress, check_convergence=False,
                        print_summary=False, checkpoint_every=checkpoint_every, run_info=run_info, compile=compile,
                        **options)
        x = None
        if isinstance(target, ProbModel) and data is not None:
            first = next(iter(data)) if isinstance(data, torch.utils.data.DataLoader) else data
            x = target.prepare_batch(first)[0]

        def run_round(*, num_warmup, num_samples, init, checkpoint):
            return sample(target, data, num_warmup=num_warmup, num_samples=num_samples, init=init,
                          checkpoint=checkpoint, **settings)

        posterior = sample_until_converged(
            run_round, num_warmup=sampler.num_warmup if num_warmup is None else num_warmup,
            num_samples=sampler.num_samples if num_samples is None else num_samples, init=init, max_time=max_time,
            rhat_threshold=rhat_threshold, min_ess=min_ess, max_rounds=max_rounds,
            model=target if isinstance(target, ProbModel) else None, x=x,
            checkpoint=None if checkpoint is None else str(checkpoint), progress=progress)
        _report(posterior, target if isinstance(target, ProbModel) else None, x, print_summary, progress,
                check_convergence)
        return posterior
    sampler = registry.get(method)
    options = sampler.bind(options)
    if epochs is not None:
        epochs = check_positive_int(epochs, "epochs")
        if not sampler.minibatch:
            raise ValueError(f"epochs counts passes over minibatches; method {method!r} is a full-batch sampler: give "
                             "num_samples (iterations) instead")
        if num_samples is not None:
            raise ValueError("give num_samples (iterations) or epochs (passes over the data), not both")
    if num_chains is None and isinstance(init, Tensor) and init.dim() == 2:
        num_chains = init.shape[0]  # the chains the starting points give
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
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {compile!r}")
    if compile and (batch_size is not None or is_loader or distributed is not None):
        raise ValueError("compile=True needs the full-batch log density (no batch_size, DataLoader or distributed)")
    distributed = _distributed.check_mode(distributed)
    if distributed is not None and sampler.runner is not None:
        raise ValueError(f"method {method!r} runs its own loop and does not run under distributed= yet")
    lead = distributed is None or _distributed.world()[0] == 0
    if distributed is not None:
        progress, checkpoint = progress and lead, _distributed.rank_path(checkpoint)
    if distributed == "chains":
        seed = _distributed.rank_seed(seed)
    generator = torch.Generator().manual_seed(int(seed))
    given_init = init

    model = target if isinstance(target, ProbModel) else None
    batches = None
    batch = data_hash = None
    if model is not None:
        if data is None:
            raise ValueError("data=(x, y) is required to sample a ProbModel")
        if distributed == "data":
            logdensity, batches = _distributed.data_parallel(model, data, batch_size, seed=seed,
                                                             temperature=temperature, dtype=dtype)
            dtype = logdensity.local.dtype
            first = next(iter(data)) if is_loader else data
            x = model.prepare_batch(first)[0]
            data_hash = f"{fingerprint.tensor_hash(*model.prepare_batch(first))} (rank shard)"
        elif is_loader or batch_size is not None:
            batches = BatchStream(data if is_loader else model.prepare_batch(data), batch_size, seed=seed,
                                  prepared=not is_loader)
            first = next(iter(data)) if is_loader else batches.data
            x = model.prepare_batch(first)[0]
            data_hash = f"{fingerprint.tensor_hash(*model.prepare_batch(first))} (N={batches.num_data})"
            dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
            logdensity = MinibatchLogDensity(model, batches.num_data, first, temperature=temperature, dtype=dtype)
        else:
            x, y = model.prepare_batch(data)
            dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
            y = y.to(dtype) if torch.is_floating_point(y) else y
            batch = (x.to(dtype), y)
            logdensity = model.logdensity(batch, temperature=temperature, compile=compile)
            data_hash = fingerprint.tensor_hash(*batch)
        spec = model.spec
        if epochs is not None:
            num_samples = epochs * (batches.batches_per_epoch if batches is not None else 1)
        if init is None:
            init = model.init_theta(num_chains, generator=generator, dtype=dtype)
    else:
        if data is not None or batch_size is not None:
            raise ValueError("data and batch_size are only used with a ProbModel target; a log density has its "
                             "data bound in")
        if epochs is not None:
            raise ValueError("epochs counts passes over a ProbModel's data; a log density has no data: give "
                             "num_samples")
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
        if compile:
            logdensity = CompiledLogDensity(logdensity)
        spec = getattr(target, "spec", None)
        own_dtype = getattr(target, "dtype", None)  # e.g. a Pyro model's, whose tensors fix it
        own_dtype = own_dtype if isinstance(own_dtype, torch.dtype) else torch.get_default_dtype()
        dtype = dtype or (init.dtype if init is not None else own_dtype)
        if init is None and hasattr(target, "init_theta"):
            init = target.init_theta(num_chains, generator=generator, dtype=dtype)
        elif init is None:
            init = 4 * torch.rand((num_chains, dim), generator=generator, dtype=dtype) - 2
    init = check_init(init, num_chains, logdensity.dim, dtype)
    if distributed == "data":
        _distributed.check_identical(torch.tensor(int(seed)), "seed")
        _distributed.check_identical(init, "init")
    counter = CountingLogDensity(logdensity, spec=spec)
    init, value_at_init = check_initial_density(counter, init, target)  # compiles a compiled log density
    description = method
    compile_seconds = getattr(logdensity, "compile_seconds", None)
    if compile_seconds is not None:
        fallback = logdensity.fallback_reason
        description = f"{method} ({'eager: compile failed' if fallback else f'compiled in {compile_seconds:.1f} s'})"
    config = {**_plain_run_info(run_info), "method": method, "seed": int(seed), "temperature": temperature,
              "batch_size": batch_size, **({"epochs": epochs} if epochs is not None else {}), **options,
              "target": fingerprint.describe_target(target), "init": fingerprint.tensor_hash(init),
              "logdensity_at_init": float(value_at_init.sum())}
    if model is not None:
        config["data"] = data_hash
        with torch.no_grad():
            config["log_prior_at_init"] = float(model.log_prior(init).sum())
    with _torch_threads(1 if counter.uses_own_threads else None):
        if sampler.runner is not None:  # samplers with their own loop (SMC) build their algorithm themselves
            posterior = sampler.run(counter, model=model, batch=batch, init=None if given_init is None else init,
                                    num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples,
                                    thin=thin, dtype=init.dtype, generator=generator, options=options,
                                    progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                    config=config, spec=spec, description=description)
        else:
            algorithm = sampler.build(counter, num_warmup, **options)
            posterior = runner.run(algorithm, init, num_samples, num_warmup=num_warmup, generator=generator,
                                   batches=batches, thin=thin, progress=progress, checkpoint=checkpoint,
                                   checkpoint_every=checkpoint_every, config=config, spec=spec, description=description)
            posterior.info["grad_evals"] = counter.grad_evals
    if compile_seconds is not None:
        posterior.info.update(compile_seconds=logdensity.compile_seconds, compile_fallback=logdensity.fallback_reason)
    posterior.constrain = getattr(target, "constrain", None)
    if getattr(target, "batching", None) is not None:  # a Pyro model: how its chains were evaluated
        posterior.info["batching"] = target.batching
    if distributed == "chains":
        posterior = _distributed.gather_chains(posterior)
    if distributed is not None:
        posterior.info.update(distributed=distributed, world_size=_distributed.world()[1])
    if lead:
        _report(posterior, model, x if model is not None else None, print_summary, progress, check_convergence)
    return posterior


def _report(posterior: SamplePosterior, model, x, print_summary, progress, check_convergence) -> None:
    """Print the summary and issue the convergence warnings of a finished run."""
    show = print_summary if print_summary is not None else progress
    if show or check_convergence:
        text, messages = sample_report(model, posterior, x, check_convergence=check_convergence)
        if show:
            print(text)
        for message in messages:
            warnings.warn(message, ConvergenceWarning, stacklevel=3)


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


def _plain_run_info(run_info: dict | None) -> dict:
    if run_info is None:
        return {}
    if not isinstance(run_info, dict) or not all(isinstance(k, str) for k in run_info):
        raise TypeError(f"run_info must be a dict with str keys, got {type(run_info).__name__}")
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in run_info.items()}


__all__ = ["METHODS", "ConvergenceWarning", "CountingLogDensity", "sample"]
