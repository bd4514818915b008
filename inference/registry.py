"""The sampler registry: every sampler ``inference.sample`` can run, with its defaults and options.

An entry names the function that builds the sampler's ``Algorithm`` (``"module:function"``, imported on first
use so that listing the samplers stays cheap), its default chains, warm-up and draws, and whether it consumes
minibatches. The builder's signature is the sampler's option list::

    def build(logdensity: LogDensity, num_warmup: int, *, option_a=..., option_b=...) -> Algorithm

``inference.sample(..., method=name, **options)`` binds ``options`` against it, so an unknown option is a
clear error naming it and listing the accepted ones. Adding a sampler = its file plus one ``register`` line
below; it then joins the CLI, the estimators and the sampler contract suite (``tests/conformance``), which
fails until the new sampler has a contract class.

Defaults measured on the diabetes demo (BNN 10-50-1, protocol H1, 2 CPU cores). Split R-hat of short chains
grows like ``sqrt(1 + 1/ESS_per_split_chain - 1/draws_per_split_chain)`` even when the chains have mixed, so
ChEES needs long chains rather than many: 64 x 100 draws gave a max R-hat of f(x_test) of 1.016-1.023,
16 x 1000 gave 1.003-1.005 (noise scale 1.005-1.010). ChEES needs ~300 warm-up iterations to adapt its
trajectory length (200: R-hat 1.012-1.014). NUTS: 4 x 500 gives R-hat ~1.005 and bulk ESS > 1000. Static
HMC (32 leapfrog steps) mixes slowly per draw, so it needs long chains: 4 x 500 gave R-hat 1.036, 4 x 3000
gave 1.007 (measured with fixed 32-step trajectories, before the default step-count jitter).
SGHMC follows the BNN-surrogate study's SGHMC baseline (1000 burn-in steps, every 5th of 500 kept).
The other SG-MCMC samplers (``inference.sgmcmc``) take SGHMC's chains, burn-in and thinning (not measured on the
demo); the cyclical ones run four 1000-step cycles after one warm-up cycle. Their default steps were checked on a
synthetic BNN 10-50-1 with 400 data (8 chains, full batch and batches of 32): no divergence, training RMSE
0.06-0.09 (noise 0.1) for SGHMC, SGLD and pSGLD; cyclical SGLD mixes slower at its step (RMSE 0.16 and 0.36),
and larger cyclical steps (3e-4, 1e-3) were unstable there (constant SGLD at 3e-4 was not).
Structured SG-MCMC (``structured-*``, which samples a mean-field approximation) takes its base sampler's step,
chains, warm-up and thinning, 4 balanced random groups (plain variant: 5 gradient evaluations per chain and step)
and a history of 1000 iterates (38.5 MB for 8 chains of the demo BNN in float64). Measured on the diabetes demo
(8 chains, seed 0): no divergence; test RMSE 0.71-0.73 and NLL 1.10-1.13 (standardised units; the bases:
0.73-0.75 and 1.12-1.13), training RMSE 0.64-0.67 against the bases' 0.53-0.58 (the mean field fits less
tightly); batches of 32 with structured SGHMC: test RMSE 0.74, NLL 1.13 (SGHMC: 0.75, 1.13).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampler:
    """One registered sampler.

    Attributes:
        name: The ``method`` name users pass.
        builder: ``"module:function"`` of ``build(logdensity, num_warmup, **options) -> Algorithm``.
        num_chains, num_warmup, num_samples: Defaults of ``inference.sample`` for this sampler
            (``num_samples`` counts post-warm-up iterations, before thinning).
        thin: Default thinning.
        minibatch: Whether the sampler accepts stochastic (minibatch) log densities; full-batch samplers
            need the exact log density at every step (a Metropolis correction, or trajectories).
        summary: One line for ``--help`` and error messages.
        runner: ``"module:function"`` of the loop that runs the sampler when it is not the MCMC runner
            (``inference.runner.run``), e.g. SMC's (``inference.smc.runner.run``); it receives the log
            density, the model and data and the bound options, and builds the algorithm itself.
    """

    name: str
    builder: str
    num_chains: int
    num_warmup: int
    num_samples: int
    thin: int = 1
    minibatch: bool = False
    summary: str = ""
    runner: str | None = None
    _build: list = field(default_factory=list, repr=False, compare=False)

    @property
    def build(self) -> Callable[..., Any]:
        """The builder function (imported on first use)."""
        if not self._build:
            module, function = self.builder.split(":")
            self._build.append(getattr(importlib.import_module(module), function))
        return self._build[0]

    @property
    def run(self) -> Callable[..., Any]:
        """The sampler's own runner (imported on use); only for samplers with a ``runner``."""
        module, function = self.runner.split(":")
        return getattr(importlib.import_module(module), function)

    def options(self) -> dict[str, Any]:
        """The accepted options and their defaults (keyword-only parameters of the builder)."""
        return {p.name: p.default for p in inspect.signature(self.build).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def bind(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """All options with defaults filled in; an unknown option is a ``TypeError`` naming it."""
        accepted = self.options()
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise TypeError(f"method {self.name!r} does not accept the option(s) {unknown}; its options are "
                            f"{sorted(accepted)}")
        return {**accepted, **options}


SAMPLERS: dict[str, Sampler] = {}


def register(sampler: Sampler) -> Sampler:
    """Add ``sampler`` to the registry (its name must be new)."""
    if sampler.name in SAMPLERS:
        raise ValueError(f"a sampler named {sampler.name!r} is already registered")
    SAMPLERS[sampler.name] = sampler
    return sampler


def get(name: str) -> Sampler:
    """The registered sampler ``name``; a ``ValueError`` listing the registered names otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"method must be one of {tuple(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name]


register(Sampler("nuts", "inference.mcmc.samplers:nuts", 4, 500, 500,
                 summary="multinomial NUTS with Stan's windowed warm-up"))
register(Sampler("hmc", "inference.mcmc.samplers:hmc", 4, 500, 3000,
                 summary="static HMC (fixed steps or integration time) with Stan's windowed warm-up"))
register(Sampler("chees", "inference.mcmc.samplers:chees", 16, 300, 1000,
                 summary="many-chain ChEES-HMC with adaptive trajectory length"))
register(Sampler("sghmc", "inference.sgmcmc.sghmc:sghmc", 8, 1000, 500, thin=5, minibatch=True,
                 summary="scale-adapted stochastic-gradient HMC (minibatches or full batch)"))
register(Sampler("sgld", "inference.sgmcmc.sgld:sgld", 8, 1000, 1000, thin=5, minibatch=True,
                 summary="stochastic-gradient Langevin dynamics (constant or decaying step size)"))
register(Sampler("psgld", "inference.sgmcmc.psgld:psgld", 8, 1000, 1000, thin=5, minibatch=True,
                 summary="SGLD preconditioned by RMSprop (adapted during warm-up)"))
register(Sampler("csgld", "inference.sgmcmc.cyclical:csgld", 8, 1000, 4000, thin=5, minibatch=True,
                 summary="cyclical SGLD: cosine step-size cycles, draws kept in each cycle's sampling phase"))
register(Sampler("csghmc", "inference.sgmcmc.cyclical:csghmc", 8, 1000, 4000, thin=5, minibatch=True,
                 summary="cyclical scale-adapted SGHMC: cosine step-size cycles with a sampling phase"))
register(Sampler("smc", "inference.smc.tempered:tempered_smc", 16, 5, 500, runner="inference.smc.runner:run",
                 summary="adaptive tempered SMC with HMC moves: weighted particles of independent populations "
                         "(num_chains) and the log evidence; num_samples particles, num_warmup moves per stage"))
register(Sampler("structured-sgld", "inference.sgmcmc.structured:structured_sgld", 8, 1000, 1000, thin=5,
                 minibatch=True, summary="structured SGLD: samples the mean-field over parameter groups from the "
                                         "chain's history; faster mixing"))
register(Sampler("structured-psgld", "inference.sgmcmc.structured:structured_psgld", 8, 1000, 1000, thin=5,
                 minibatch=True, summary="structured pSGLD (mean-field over parameter groups, RMSprop-preconditioned)"))
register(Sampler("structured-sghmc", "inference.sgmcmc.structured:structured_sghmc", 8, 1000, 500, thin=5,
                 minibatch=True, summary="structured scale-adapted SGHMC (mean-field over parameter groups)"))
