"""The bench's method registry: every inference method of the engine, with how a cell fits it under a budget.

Every registered sampler (``inference.registry.SAMPLERS``), every variational method (``inference.vi.VI_METHODS``)
and every method ``probnets fit`` runs must have an entry here: ``tests/app/bench/test_methods.py`` fails when
one has not, so a new engine joins the bench when it lands.

Fairness: the BNN methods share one model, built by :func:`bnn`: ``d -> 50 -> out`` (``widths``), tanh, N(0, 1)
priors on all weights, a Gaussian likelihood whose noise scale has a LogNormal(-1, 1) prior on standardised
targets (the model of ``probnets fit``), or a Bernoulli/Categorical likelihood for classes. The methods with a
model of their own say so in ``model``: moment propagation (its own GELU/ReLU network and prior), the partial
BNN (the SMC paper's ``d-50-20 | 20-5 | 5-1`` GELU network) and the GP baselines.

A method's ``fit(problem, settings, seed)`` returns a :class:`Fitted`; ``plan(budget, problem)`` turns a budget
of gradient evaluations (``probnets_app.bench.budget``) into its settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

#: Leapfrog steps per iteration (per chain) by which the HMC samplers' iterations are sized from a budget. NUTS runs
#: with its trees capped at depth ``NUTS_MAX_TREE_DEPTH`` (at most 128 steps), so it cannot overspend: uncapped, at
#: 170 warm-up iterations on diabetes, its trees averaged 472 steps (twice the 222 of 500 warm-up iterations in
#: ``benchmarks/results/hmc_bnn.md``). Static HMC takes its default 32 steps (jittered around it); ChEES adapts its
#: trajectory (31 steps on average on the diabetes bench cell, but 1.6x and 3.7x the budget's 48 on Boston and
#: Concrete), so its trajectory is capped at ``2 x 48`` steps: with its jitter (a fraction in (0, 1] of the
#: trajectory) it averages at most about 48. Cells record the gradient evaluations made (``budget_used``).
LEAPFROG_STEPS = {"nuts": 128, "hmc": 32, "chees": 48}
CHEES_MAX_LEAPFROG_STEPS = 2 * LEAPFROG_STEPS["chees"]
NUTS_MAX_TREE_DEPTH = 7
#: Chains of the HMC samplers and of SG-MCMC in the bench.
CHAINS = {"nuts": 4, "hmc": 4, "chees": 16, "sgmcmc": 8}
#: Gradient evaluations per chain and step of structured SG-MCMC (plain variant, 4 groups: ``inference.registry``).
STRUCTURED_GRADS_PER_STEP = 5
#: Draws kept per chain by the SG-MCMC plans (thinning chosen accordingly).
SGMCMC_DRAWS = 100
#: Monte Carlo draws of the predictive of the Gaussian variational posteriors.
VI_PREDICTIVE_DRAWS = 200
#: Test outputs whose draws an MCMC cell keeps for its trace and rank plots (those of the largest R-hat).
TRACE_POINTS = 3


class Fitted(NamedTuple):
    """What a cell keeps of a fitted method.

    Attributes:
        predictive: ``x (t x d, standardised) -> Predictive`` in standardised units.
        grad_evals: Gradient evaluations made (``None`` where not counted).
        diagnostics: MCMC/SMC cells: ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ...
        info: Further plain values of the run (settings it chose, log evidence, ...).
        trace: MCMC cells with several unweighted chains: the draws of a few test outputs, see
            :func:`trace_draws`; ``None`` otherwise.
    """

    predictive: Callable[[Any], Any]
    grad_evals: int | None
    diagnostics: dict
    info: dict
    trace: dict | None = None


@dataclass(frozen=True)
class BenchMethod:
    """One method of the bench.

    Attributes:
        name: The ``--methods`` name (the engine's name where it has one).
        family: Budget family (a key of ``budget.DEFAULT_BUDGETS``).
        fit: ``fit(problem, settings, seed) -> Fitted``.
        plan: ``plan(budget, problem) -> settings`` (plain values, recorded with the cell).
        tasks: The tasks it applies to.
        model: The model it fits (``"bnn"``: the shared BNN).
        summary: One line for ``--help``.
    """

    name: str
    family: str
    fit: Callable[..., Fitted]
    plan: Callable[..., dict]
    tasks: tuple[str, ...] = ("regression", "classification")
    model: str = "bnn"
    summary: str = ""

    @property
    def takes_widths(self) -> bool:
        """Whether the bench's hidden widths apply (the shared BNN and the moment networks)."""
        return self.model == "bnn" or self.model.startswith("moment")


METHODS: dict[str, BenchMethod] = {}


def register(method: BenchMethod) -> BenchMethod:
    """Add ``method`` to the bench (its name must be new)."""
    if method.name in METHODS:
        raise ValueError(f"a bench method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get(name: str) -> BenchMethod:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; the bench methods are {', '.join(METHODS)}")
    return METHODS[name]


# --------------------------------------------------------------------------------------------------
# The shared model


def bnn(problem, widths=(50,)):
    """The shared BNN of the bench for ``problem`` (see the module docstring)."""
    import pyro.distributions as dist

    from probnets import BNN, Bernoulli, Categorical, Gaussian

    if problem.task == "regression":
        likelihood, out = Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)), 1
    elif problem.num_classes == 2:
        likelihood, out = Bernoulli(), 1
    else:
        likelihood, out = Categorical(problem.num_classes), problem.num_classes
    return BNN(problem.in_features, tuple(widths), out, activation="tanh", prior=dist.Normal(0.0, 1.0),
               likelihood=likelihood)


def _train(problem):
    return problem.data.x_train, problem.data.y_train


# --------------------------------------------------------------------------------------------------
# Samplers (inference.registry)


def _sampler_plan(name: str, family: str):
    def plan(budget: int, problem) -> dict:
        if family == "hmc":
            chains, cost = CHAINS[name], LEAPFROG_STEPS[name]
        else:
            chains = CHAINS["sgmcmc"]
            cost = STRUCTURED_GRADS_PER_STEP if name.startswith("structured-") else 1
        iterations = max(4, budget // (chains * cost))
        settings = {"num_chains": chains, "num_warmup": iterations // 2, "num_samples": iterations - iterations // 2}
        if name == "nuts":
            settings["max_tree_depth"] = NUTS_MAX_TREE_DEPTH
        if name == "chees":
            settings["max_leapfrog_steps"] = CHEES_MAX_LEAPFROG_STEPS
        if family == "sgmcmc":
            settings["thin"] = max(1, settings["num_samples"] // SGMCMC_DRAWS)
            if name in ("csgld", "csghmc"):  # four cycles in the sampling phase
                settings["cycle_length"] = max(2, settings["num_samples"] // 4)
        return settings

    return plan


def _fit_sampler(name: str):
    def fit(problem, settings: dict, seed: int) -> Fitted:
        import inference

        model = bnn(problem, settings.get("widths", (50,)))
        options = {k: v for k, v in settings.items() if k != "widths"}
        posterior = inference.sample(model, _train(problem), method=name, seed=seed, progress=False,
                                     print_summary=False, check_convergence=False, **options)
        return Fitted(lambda x: posterior.predictive(model, x), posterior.info.get("grad_evals"),
                      sampler_diagnostics(model, posterior, problem.data.x_test), _smc_info(posterior),
                      trace_draws(model, posterior, problem.data.x_test))

    return fit


def sampler_diagnostics(model, posterior, x) -> dict:
    """Function-space R-hat and bulk/tail ESS of ``f(x)`` at the test inputs (unweighted multi-chain draws) and
    divergences; the cell adds ESS per second of its wall time."""
    from inference.function_space import function_space_check

    out: dict = {"divergences": posterior.num_divergences, "num_chains": posterior.num_chains,
                 "num_draws": posterior.num_draws}
    if posterior.num_chains > 1 and posterior.log_weights is None:
        check, _ = function_space_check(model, posterior, x)
        out.update(max_rhat=check["max_rhat"], min_ess_bulk=check["min_ess_bulk"], min_ess_tail=check["min_ess_tail"])
    return out


def trace_draws(model, posterior, x, count: int = TRACE_POINTS) -> dict | None:
    """The draws of the ``count`` test outputs with the largest R-hat among those :func:`sampler_diagnostics`
    checks (the first ``MAX_POINTS`` test inputs), for trace and rank plots: ``f(x)`` in standardised units, or
    the class probabilities of a classifier.

    Returns:
        ``None`` for a single chain or weighted draws (SMC), else ``{"draws": C x S x count array, "labels":
        [str], "points": [test row], "outputs": [output], "rhat": [float]}`` (worst first; NaN R-hat, e.g. of
        constant draws, ranks last).
    """
    import torch

    from inference import diagnostics
    from inference.function_space import MAX_POINTS, predictive_draws

    if posterior.num_chains < 2 or posterior.log_weights is not None:
        return None
    quantity, f = next(iter(predictive_draws(model, posterior, x[:MAX_POINTS]).items()))
    m = f.shape[-1]  # outputs per point
    f = f.detach().reshape(*f.shape[:2], -1)  # C x S x (n m)
    rhat = diagnostics.split_rhat(f)
    order = torch.argsort(torch.nan_to_num(rhat, nan=-math.inf), descending=True)[:count].tolist()
    points, outputs = [k // m for k in order], [k % m for k in order]
    if quantity == "f(x)":
        labels = [f"f(x_test[{p}])" + (f"[{o}]" if m > 1 else "") for p, o in zip(points, outputs)]
    else:  # class probabilities; a Bernoulli's one output is p(y=1)
        labels = [f"p(y={o if m > 1 else 1} | x_test[{p}])" for p, o in zip(points, outputs)]
    return {"draws": f[:, :, order].to(torch.float32).numpy(), "labels": labels, "points": points,
            "outputs": outputs, "rhat": [float(rhat[k]) for k in order]}


def _smc_info(posterior) -> dict:
    return {k: float(posterior.info[k]) for k in ("log_evidence", "log_evidence_mcse") if k in posterior.info}


def _smc_plan(budget: int, problem) -> dict:
    # populations x particles x stages x moves x leapfrog steps; the diabetes BNN took 32 tempering stages
    populations, moves, steps, stages = 2, 2, 8, 32
    particles = max(8, budget // (populations * moves * steps * stages))
    return {"num_chains": populations, "num_samples": particles, "num_warmup": moves, "num_steps": steps}


# --------------------------------------------------------------------------------------------------
# Variational methods (inference.vi)


def _vi_plan(num_draws: int, **options):
    def plan(budget: int, problem) -> dict:
        return {"num_steps": max(1, budget // num_draws), "num_samples": num_draws, **options}

    return plan


def _fit_vi(name: str):
    def fit(problem, settings: dict, seed: int) -> Fitted:
        import torch

        from inference.vi import fit_vi

        model = bnn(problem, settings.get("widths", (50,)))
        options = {k: v for k, v in settings.items() if k != "widths"}
        posterior = fit_vi(model, _train(problem), method=name, seed=seed, progress=False, **options)
        theta = posterior.sample((VI_PREDICTIVE_DRAWS,), generator=torch.Generator().manual_seed(seed))
        grads = settings["num_steps"] * settings["num_samples"]
        return Fitted(lambda x: model.predictive(theta, x), grads, {}, {})

    return fit


def _moment_plan(budget: int, problem) -> dict:
    return {"num_steps": max(1, budget), "batch_size": None}


_MOMENT_ACTIVATIONS = {"mp-gelu": "gelu", "gelu-mp": "exact-gelu", "relu-mp": "relu"}


def _fit_moment(name: str):
    def fit(problem, settings: dict, seed: int) -> Fitted:
        import torch

        from inference.vi import fit_vi
        from probnets.moment import MomentNetwork

        network = MomentNetwork(problem.in_features, tuple(settings.get("widths", (50,))),
                                activation=_MOMENT_ACTIVATIONS[name], dtype=torch.float64,
                                generator=torch.Generator().manual_seed(seed))
        posterior = fit_vi(network, _train(problem), method=name, num_steps=settings["num_steps"],
                           batch_size=settings["batch_size"], seed=seed, progress=False)
        return Fitted(posterior.predictive, settings["num_steps"], {}, {})

    return fit


# --------------------------------------------------------------------------------------------------
# Point estimates: MAP and deep ensembles


def _ensemble_plan(members: int):
    def plan(budget: int, problem) -> dict:
        # half for the run on the fit rows that picks the step count, at most half for the refit on all rows
        return {"num_members": members, "num_steps": max(1, budget // (2 * members)), "eval_every": 50}

    return plan


def _fit_map(problem, settings: dict, seed: int) -> Fitted:
    """MAP networks whose Adam steps are chosen by the validation rows, then refitted on all training rows."""
    import torch

    from inference.map import early_stopped_map

    model = bnn(problem, settings.get("widths", (50,)))
    theta, steps = early_stopped_map(model, model.prepare_batch(problem.fit_rows),
                                     model.prepare_batch(problem.validation_rows), settings["num_members"],
                                     settings["num_steps"], torch.Generator().manual_seed(seed),
                                     refit=model.prepare_batch(_train(problem)), eval_every=settings["eval_every"])
    grads = settings["num_members"] * (settings["num_steps"] + int(steps.max()))
    return Fitted(lambda x: model.predictive(theta, x), grads, {}, {"chosen_steps": steps.tolist()})


# --------------------------------------------------------------------------------------------------
# Partial BNNs trained by SMC (probnets fit --model pbnn)


#: SGSMC's settings besides the budgeted epochs: MH steps per datum, then HMC on the Bayesian block.
SGSMC_SETTINGS = {"num_mh_steps": 2, "hmc_chains": 2, "hmc_warmup": 200, "hmc_samples": 200, "hmc_num_steps": 20}


def _pbnn_plan(name: str):
    def plan(budget: int, problem) -> dict:
        particles, batch_size = 100, 50
        n = problem.fit_rows[0].shape[0]
        # per epoch: one gradient per particle and minibatch; SGSMC adds its MH steps per datum and particle
        per_epoch = particles * (math.ceil(n / batch_size) + (n * SGSMC_SETTINGS["num_mh_steps"] if name == "sgsmc"
                                                               else 0))
        settings = {"num_particles": particles, "batch_size": batch_size, "num_epochs": max(1, budget // per_epoch)}
        return {**settings, **(SGSMC_SETTINGS if name == "sgsmc" else {})}

    return plan


def _fit_pbnn(name: str):
    def fit(problem, settings: dict, seed: int) -> Fitted:
        import torch

        from inference.smc.open_horizon import fit_open_horizon
        from inference.smc.sgsmc import fit_sgsmc
        from probnets.partial_bnn import paper_mlp

        model = paper_mlp("uci", problem.in_features, generator=torch.Generator().manual_seed(seed),
                          dtype=torch.float64)
        common = dict(validation=problem.validation_rows, seed=seed, progress=False, **settings)
        fit_fn = fit_open_horizon if name == "ohsmc" else fit_sgsmc
        posterior = fit_fn(model, problem.fit_rows, **common)
        posterior.apply_psi(model)
        theta = posterior.flat_samples()
        log_w = None if posterior.log_weights is None else posterior.log_weights.reshape(-1)
        grads = settings["num_particles"] * settings["num_epochs"] * math.ceil(
            problem.fit_rows[0].shape[0] / settings["batch_size"])
        if name == "sgsmc":
            grads += settings["hmc_chains"] * (settings["hmc_warmup"] + settings["hmc_samples"]) * settings[
                "hmc_num_steps"]
        return Fitted(lambda x: model.predictive(theta, x, log_weights=log_w), grads, {}, {})

    return fit


# --------------------------------------------------------------------------------------------------
# GP baselines (surrogates.fit)


def _fit_gp(kind: str):
    def fit(problem, settings: dict, seed: int) -> Fitted:
        import torch

        from probnets.moment.likelihood import gaussian_predictive
        from surrogates.fit import fit_gp, fit_ibnn

        x, y = _train(problem)
        model = (fit_gp if kind == "gp" else fit_ibnn)(x, y[:, None], seed=seed)

        def predictive(x_new):
            with torch.no_grad():
                post = model.posterior(x_new, observation_noise=True)
                return gaussian_predictive(post.mean, post.variance)

        return Fitted(predictive, None, {}, {})

    return fit


def _no_plan(budget: int, problem) -> dict:
    return {}


# --------------------------------------------------------------------------------------------------
# The registry


#: The family of every sampler of ``inference.registry`` (listed here, not derived, so that a new sampler needs a
#: decision about its budget: the registry test fails until it has one).
SAMPLER_FAMILIES = {"nuts": "hmc", "hmc": "hmc", "chees": "hmc", "smc": "smc",
                    **dict.fromkeys(("sgld", "psgld", "sghmc", "csgld", "csghmc", "structured-sgld",
                                     "structured-psgld", "structured-sghmc"), "sgmcmc")}
_SAMPLER_SUMMARIES = {"nuts": "multinomial NUTS", "hmc": "static HMC", "chees": "ChEES-HMC (many chains)",
                      "smc": "adaptive tempered SMC with HMC moves", "sgld": "SGLD (full batch)",
                      "psgld": "preconditioned SGLD (full batch)", "sghmc": "scale-adapted SGHMC (full batch)",
                      "csgld": "cyclical SGLD (full batch)", "csghmc": "cyclical SGHMC (full batch)",
                      "structured-sgld": "structured SGLD (full batch)", "structured-psgld": "structured pSGLD",
                      "structured-sghmc": "structured SGHMC (full batch)"}

_SUMMARIES = {"mfvi": "mean-field Gaussian VI", "ssvi": "sparse subspace VI (density 0.25)",
              "mp-gelu": "MP-GELU network, deterministic VI", "relu-mp": "ReLU moment propagation, deterministic VI",
              "gelu-mp": "exact moments of the deterministic GELU, deterministic VI"}

for _name, _family in SAMPLER_FAMILIES.items():
    register(BenchMethod(_name, _family, _fit_sampler(_name), _smc_plan if _family == "smc" else
                         _sampler_plan(_name, _family), summary=_SAMPLER_SUMMARIES[_name]))
register(BenchMethod("mfvi", "vi", _fit_vi("mfvi"), _vi_plan(8), summary=_SUMMARIES["mfvi"]))
register(BenchMethod("ssvi", "vi", _fit_vi("ssvi"), _vi_plan(4, density=0.25), summary=_SUMMARIES["ssvi"]))
register(BenchMethod("mp-gelu", "moment", _fit_moment("mp-gelu"), _moment_plan, ("regression",), "moment-gelu",
                     _SUMMARIES["mp-gelu"]))
register(BenchMethod("gelu-mp", "moment", _fit_moment("gelu-mp"), _moment_plan, ("regression",), "moment-exact-gelu",
                     _SUMMARIES["gelu-mp"]))
register(BenchMethod("relu-mp", "moment", _fit_moment("relu-mp"), _moment_plan, ("regression",), "moment-relu",
                     _SUMMARIES["relu-mp"]))
register(BenchMethod("map", "map", _fit_map, _ensemble_plan(1),
                     summary="MAP estimate (Adam; steps chosen on the validation rows, then refitted)"))
register(BenchMethod("ensemble", "ensemble", _fit_map, _ensemble_plan(5),
                     summary="deep ensemble: 5 MAP networks from different prior draws (steps as map)"))
register(BenchMethod("ohsmc", "pbnn", _fit_pbnn("ohsmc"), _pbnn_plan("ohsmc"), ("regression",), "partial-bnn",
                     "partial BNN by open-horizon SMC (validation rows pick the state)"))
register(BenchMethod("sgsmc", "pbnn", _fit_pbnn("sgsmc"), _pbnn_plan("sgsmc"), ("regression",), "partial-bnn",
                     "partial BNN by SGSMC, then HMC on the Bayesian block"))
register(BenchMethod("gp", "gp", _fit_gp("gp"), _no_plan, ("regression",), "gp-matern",
                     "exact GP, Matern-5/2 ARD kernel, marginal likelihood"))
register(BenchMethod("nngp", "gp", _fit_gp("nngp"), _no_plan, ("regression",), "gp-nngp",
                     "exact GP with the infinite-width ReLU network kernel (I-BNN)"))


def engine_methods() -> set[str]:
    """Every inference method the engine and ``probnets fit`` offer, read from their own registries: the samplers
    (``inference.registry.SAMPLERS``), the variational methods (``inference.vi.VI_METHODS``) and the methods of
    ``probnets fit --model pbnn`` and of moment propagation."""
    from inference import registry
    from inference.vi import VI_METHODS
    from probnets_app import fit_moment, pbnn_fit, variational

    return {*registry.SAMPLERS, *VI_METHODS, *variational.METHODS, *fit_moment.METHODS, *pbnn_fit.METHODS}
