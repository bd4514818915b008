"""Adaptive tempered SMC: independent particle populations carried along a path from a reference to the target.

Each population starts from exact draws of the reference and alternates (Del Moral, Doucet and Jasra 2006;
Jasra et al. 2011; Buchholz, Chopin and Jacob 2021):

- choose the next path coordinate ``lambda'`` by bisection so that the conditional ESS of the incremental
  weights is ``target_ess`` times that of the particles still alive;
- reweight by ``gamma_lambda' / gamma_lambda`` and add the log normaliser to the log evidence; resample when
  the ESS falls below ``resample_threshold * P`` (``feynman_kac``);
- adapt the move from the population: the inverse mass matrix (or random-walk scale) from the weighted
  particle variance; the step size is steered towards a target acceptance rate after every move sweep;
- apply ``num_moves`` MCMC moves (``moves``: HMC, MALA or random-walk MH) that leave ``gamma_lambda'`` invariant.

After the last stage reaches the target the populations get ``num_moves`` more moves and their weights are
kept. The path has one or two segments (``paths``): the likelihood is tempered (or the data added one at a
time) from the prior, preceded by a geometric bridge from a Gaussian reference to the prior when the prior
cannot be sampled directly (a ``ProbModel`` only evaluates its prior); a bare log density is reached from the
Gaussian reference directly.

The algorithm is a state machine whose ``step`` is one move sweep or one stage transition, so that a run can
be checkpointed between any two steps and resumed bit-identically (``inference.smc.runner``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from inference.mcmc import mass_matrix as metrics
from inference.smc import feynman_kac, moves, paths
from inference.smc import resampling as resamplers
from inference.smc.feynman_kac import SMCState
from probnets.model import Batch, LogDensity, ProbModel
from probnets.validation import check_positive_float, check_positive_int

#: Default target acceptance per move: HMC as Stan's (0.8, well inside the leapfrog's stability limit, so the
#: moves of the last stage rarely diverge), MALA and RWMH near their optimal-scaling values (0.574, 0.234).
TARGET_ACCEPT = {"hmc": 0.8, "mala": 0.57, "rwmh": 0.3}
_BISECTION_STEPS = 50


class SMCTarget(NamedTuple):
    """What tempered SMC is pointed at.

    Attributes:
        logdensity: The unnormalised log posterior (or bare target) ``(..., D) -> (...)``.
        model: The ``ProbModel`` (``None`` for a bare log density).
        batch: The model's full data ``(x, y)`` (``None`` for a bare log density).
        reference_mean: ``R x D`` centres of the Gaussian references (one per population).
        temperature: The likelihood's temperature in ``logdensity`` (data annealing divides by it too).
    """

    logdensity: LogDensity
    model: ProbModel | None
    batch: Batch | None
    reference_mean: Tensor
    temperature: float = 1.0


class TemperedSMCState(NamedTuple):
    """The populations and the schedule's state (``R`` populations of ``P`` particles in ``D`` dims).

    Attributes:
        smc: Particles (a ``moves`` state ``R x P``), normalised log weights ``R x P``, log evidence ``R``.
        terms: The current segment's ``K`` potential terms at the particles, ``R x P x K_max`` (zero-padded to
            the most terms of any segment, so that the state's shapes never change).
        segment: Index of the current path segment, ``()``.
        temperature: Path coordinate ``lambda`` in the current segment, ``R``.
        step_size: Move step size, ``R``.
        inverse_mass: Inverse mass matrix (HMC, MALA; diagonal ``R x D`` or dense ``R x D x D``) or squared
            proposal scales (RWMH, ``R x D``).
        num_moves_done: Moves made at the current temperature, ``()``.
        acceptance: Acceptance probabilities summed over those moves, ``R x P``.
        diverging: Whether a particle had a divergent move at the current temperature, ``R x P``.
        stage: Number of stage transitions so far, ``()``.
    """

    smc: SMCState
    terms: Tensor
    segment: Tensor
    temperature: Tensor
    step_size: Tensor
    inverse_mass: Tensor
    num_moves_done: Tensor
    acceptance: Tensor
    diverging: Tensor
    stage: Tensor


class StageInfo(NamedTuple):
    """One stage transition, each ``R``: the new ``temperature`` (in ``segment``), the ``ess`` after
    reweighting, ``log_evidence_increment``, ``num_nan`` (zero-weight particles from NaN potentials),
    ``resampled``, and the previous stage's moves: mean ``acceptance_rate``, the adapted ``step_size`` and
    ``diverging`` (divergent moves plus NaN potentials)."""

    temperature: Tensor
    segment: Tensor
    ess: Tensor
    log_evidence_increment: Tensor
    num_nan: Tensor
    resampled: Tensor
    acceptance_rate: Tensor
    step_size: Tensor
    diverging: Tensor


class TemperedSMC(NamedTuple):
    """``init(num_chains, num_particles, generator) -> state``; ``step(state, batch, generator) -> (state,
    info)`` (a ``moves.MoveInfo`` for a move sweep, a ``StageInfo`` for a stage transition); ``is_done(state)``;
    ``progress(state)`` (path position in ``[0, num_segments]``); ``num_segments``."""

    init: Callable[[int, int, torch.Generator], TemperedSMCState]
    step: Callable[[TemperedSMCState, Any, torch.Generator], tuple[TemperedSMCState, Any]]
    is_done: Callable[[TemperedSMCState], bool]
    progress: Callable[[TemperedSMCState], float]
    num_segments: int


def _segments(target: SMCTarget, annealing: str, reference: paths.GaussianReference) -> Sequence[Any]:
    if target.model is None:
        if annealing != "temperature":
            raise ValueError("annealing='data' needs a ProbModel with data; a bare log density is tempered")
        return (paths.GeometricSegment(reference, target.logdensity),)
    model, batch = target.model, target.batch
    prior = LogDensity(model.log_prior, model.spec.dim)
    # The bridge only delivers prior draws: a model's log prior is a normalised density, so its normaliser
    # (1) is known and the bridge's noisy estimate of it (heavy-tailed when the reference is the narrower)
    # stays out of the evidence.
    if annealing == "temperature":
        likelihood = paths.GeometricSegment(prior, target.logdensity)
    else:
        likelihood = paths.DataSegment(prior, lambda theta: model.log_likelihood(theta, batch) / target.temperature,
                                       batch[0].shape[0])
    return paths.GeometricSegment(reference, prior, evidence=False), likelihood


def _incremental_log_weights(terms: Tensor, old: Tensor, new: Tensor) -> Tensor:
    """``log gamma_new - log gamma_old`` per particle, ``R x P`` (terms whose coefficient does not change do
    not enter, so a ``-inf`` term of a datum not yet added is no ``NaN``)."""
    delta = (paths.coefficients(new, terms.shape[-1]) - paths.coefficients(old, terms.shape[-1])).unsqueeze(-2)
    return torch.where(delta > 0, delta * terms, torch.zeros_like(terms)).sum(-1)


def next_temperature(log_weights: Tensor, terms: Tensor, temperature: Tensor, target_ess: float) -> Tensor:
    """The largest ``lambda' <= 1`` whose incremental weights keep a conditional ESS of ``target_ess``.

    The conditional ESS ``(sum W G)^2 / (sum W G^2)`` (Zhou, Johansen and Aston 2016) is taken over the
    particles whose incremental weight is finite, so NaN particles (zero weight from now on) do not stall the
    schedule. Always advances (by at least the bisection's resolution).

    Args:
        log_weights: Normalised ``R x P``.
        terms: ``R x P x K``.
        temperature: Current ``lambda``, ``R``.
    """

    def cess(candidate: Tensor) -> Tensor:
        increment = _incremental_log_weights(terms, temperature, candidate)
        alive = torch.isfinite(increment)
        increment = torch.where(alive, increment, -torch.inf)
        first = torch.logsumexp(log_weights + increment, -1)
        second = torch.logsumexp(log_weights + 2 * increment, -1)
        mass = torch.logsumexp(torch.where(alive, log_weights, -torch.inf), -1)
        return torch.nan_to_num(torch.exp(2 * first - second - mass), nan=0.0)

    low, high = temperature.clone(), torch.ones_like(temperature)
    done = cess(high) >= target_ess
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        ok = cess(middle) >= target_ess
        low, high = torch.where(ok, middle, low), torch.where(ok, high, middle)
    chosen = torch.where(low > temperature, low, high)
    return torch.where(done | (temperature >= 1), torch.ones_like(temperature), chosen)


def tempered_smc(target: SMCTarget, num_warmup: int, *, move: str = "hmc", num_steps: int = 8,
                 step_size: float = 0.5, target_accept: float | None = None, target_ess: float = 0.5,
                 resampling: str = "systematic", resample_threshold: float = 0.5, annealing: str = "temperature",
                 reference_scale: float = 1.0, adapt_mass_matrix: bool = True, dense_mass: bool = False,
                 max_stages: int = 1000) -> TemperedSMC:
    """Adaptive tempered SMC (the ``"smc"`` sampler of ``inference.sample``).

    With ``inference.sample(..., method="smc")``, ``num_chains`` is the number of independent populations,
    ``num_samples`` the particles per population and ``num_warmup`` the number of MCMC moves per stage.

    Args:
        target: The posterior (or log density) and the references (``SMCTarget``).
        num_warmup: Moves per stage (``num_moves``).
        move: ``"hmc"``, ``"mala"`` or ``"rwmh"`` (``inference.smc.moves``).
        num_steps: Leapfrog steps per HMC move.
        step_size: Initial step size, adapted after every move sweep (``* exp(acceptance - target_accept)``,
            per population); with the adapted mass matrix it is relative to the particles' spread.
        target_accept: Acceptance rate the step size is steered to (default per move: ``TARGET_ACCEPT``).
        target_ess: Conditional ESS fraction kept by each tempering step (the schedule's resolution).
        resampling: Resampling scheme (``inference.smc.resampling.RESAMPLERS``).
        resample_threshold: Resample a population when its ESS is below this fraction of ``P`` (1: always).
        annealing: ``"temperature"`` (temper the whole likelihood) or ``"data"`` (add the data one at a time,
            ``ProbModel`` only).
        reference_scale: Standard deviation of the Gaussian reference, centred at ``init`` (one row per
            population) or at 0.
        adapt_mass_matrix: Set the inverse mass matrix (HMC, MALA) or random-walk scale to the weighted
            particle (co)variance at every stage.
        dense_mass: A dense inverse mass matrix (the weighted covariance; HMC and MALA). It removes
            correlations that keep a diagonal metric's step size small (and its last-stage moves diverging),
            at ``O(P D^2)`` memory per population: for small ``D``.
        max_stages: Give up (``RuntimeError``) after this many stages.
    """
    num_moves = check_positive_int(num_warmup, "num_warmup", minimum=0)
    if move not in TARGET_ACCEPT:
        raise ValueError(f"move must be one of {tuple(TARGET_ACCEPT)}, got {move!r}")
    num_steps = check_positive_int(num_steps, "num_steps")
    check_positive_float(step_size, "step_size")
    target_accept = TARGET_ACCEPT[move] if target_accept is None else target_accept
    for name, value in (("target_accept", target_accept), ("target_ess", target_ess)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    if not 0.0 <= resample_threshold <= 1.0:
        raise ValueError(f"resample_threshold must be in [0, 1], got {resample_threshold!r}")
    resamplers.get(resampling)
    if annealing not in ("temperature", "data"):
        raise ValueError(f"annealing must be 'temperature' or 'data', got {annealing!r}")
    check_positive_float(reference_scale, "reference_scale")
    max_stages = check_positive_int(max_stages, "max_stages")

    reference = paths.GaussianReference(target.reference_mean, reference_scale)
    segments = _segments(target, annealing, reference)
    last = len(segments) - 1
    max_terms = max(segment.num_terms for segment in segments)

    def padded(terms: Tensor) -> Tensor:
        return torch.nn.functional.pad(terms, (0, max_terms - terms.shape[-1]))
    gradient_move = move != "rwmh"
    if dense_mass and not gradient_move:
        raise ValueError("dense_mass needs a gradient move ('hmc' or 'mala'); 'rwmh' scales its proposal by the "
                         "diagonal")
    init_move = moves.init_with_gradient if gradient_move else moves.init

    def move_once(particles, generator, logdensity, step, inverse_mass):
        if move == "rwmh":
            return moves.random_walk_metropolis(particles, generator, logdensity, step, inverse_mass.sqrt())
        mass = metrics.dense(inverse_mass) if dense_mass else metrics.diagonal(inverse_mass)
        if move == "mala":
            return moves.mala(particles, generator, logdensity, step, mass)
        return moves.hmc(particles, generator, logdensity, step, num_steps, mass)

    def logdensity_at(segment: int, temperature: Tensor) -> LogDensity:
        return segments[segment].logdensity(paths.coefficients(temperature, segments[segment].num_terms))

    def weighted_covariance(position: Tensor, log_weights: Tensor, fallback: Tensor) -> Tensor:
        """Per population: the weighted variances ``R x D`` (or covariance ``R x D x D``), ``fallback`` where
        not positive definite (e.g. a population collapsed onto one particle)."""
        w = resamplers.normalise(log_weights).unsqueeze(-1)
        centred = position - (w * position).sum(-2, keepdim=True)
        if not dense_mass:
            variance = (w * centred.square()).sum(-2)
            return torch.where(torch.isfinite(variance) & (variance > 0), variance, fallback)
        cov = torch.einsum("rp,rpi,rpj->rij", w[..., 0], centred, centred)
        ok = torch.linalg.cholesky_ex(cov)[1] == 0
        return torch.where(ok[:, None, None], cov, fallback)

    def initial_inverse_mass(position: Tensor) -> Tensor:
        diagonal = torch.full_like(position[:, 0], reference_scale**2)
        return torch.diag_embed(diagonal) if dense_mass else diagonal

    def init(num_chains: int, num_particles: int, generator: torch.Generator) -> TemperedSMCState:
        position = reference.sample(num_particles, generator)
        if position.shape[0] != num_chains:
            raise ValueError(f"reference_mean must have one row per population ({num_chains}), got "
                             f"{position.shape[0]}")
        temperature = position.new_zeros(num_chains)
        particles = init_move(position, logdensity_at(0, temperature))
        long = torch.zeros((), dtype=torch.long, device=position.device)
        return TemperedSMCState(
            smc=feynman_kac.init(particles), terms=padded(segments[0].terms(position)), segment=long.clone(),
            temperature=temperature, step_size=torch.full_like(temperature, step_size),
            inverse_mass=initial_inverse_mass(position), num_moves_done=long.clone(),
            acceptance=torch.zeros_like(position[..., 0]),
            diverging=torch.zeros(position.shape[:-1], dtype=torch.bool, device=position.device),
            stage=long.clone())

    def is_done(state: TemperedSMCState) -> bool:
        return (int(state.segment) == last and bool((state.temperature >= 1).all())
                and int(state.num_moves_done) >= num_moves and int(state.stage) > 0)

    def progress(state: TemperedSMCState) -> float:
        return int(state.segment) + float(state.temperature.min())

    def move_sweep(state: TemperedSMCState, generator) -> tuple[TemperedSMCState, moves.MoveInfo]:
        logdensity = logdensity_at(int(state.segment), state.temperature)
        particles, info = move_once(state.smc.particles, generator, logdensity, state.step_size.unsqueeze(-1),
                                    state.inverse_mass.unsqueeze(1))
        # Steer each population's step size towards target_accept after every sweep (the kernel of a sweep is
        # fixed when it runs, so every move leaves the stage's target invariant); zero-weight particles (NaN
        # densities, never accepted) do not count.
        weights = resamplers.normalise(state.smc.log_weights)
        step = state.step_size * torch.exp((weights * info.acceptance_rate).sum(-1) - target_accept)
        return state._replace(smc=state.smc._replace(particles=particles), step_size=step,
                              num_moves_done=state.num_moves_done + 1,
                              acceptance=state.acceptance + info.acceptance_rate,
                              diverging=state.diverging | info.is_divergent), info

    def transition(state: TemperedSMCState, generator) -> tuple[TemperedSMCState, StageInfo]:
        if int(state.stage) >= max_stages:
            raise RuntimeError(f"tempered SMC did not reach the target within max_stages={max_stages} stages "
                               f"(temperatures {state.temperature.tolist()[:8]}); use more particles or moves")
        done_moves = int(state.num_moves_done)
        acceptance = state.acceptance.mean(-1) / max(done_moves, 1)
        segment, temperature = int(state.segment), state.temperature
        position = feynman_kac.positions(state.smc.particles)
        num_terms = segments[segment].num_terms
        terms = segments[segment].terms(position) if done_moves else state.terms[..., :num_terms]
        if bool((temperature >= 1).all()) and segment < last:
            segment, temperature = segment + 1, torch.zeros_like(temperature)
            terms = segments[segment].terms(position)
        new_temperature = next_temperature(state.smc.log_weights, terms, temperature, target_ess)
        smc, reweighted = feynman_kac.reweight(state.smc, _incremental_log_weights(terms, temperature,
                                                                                   new_temperature))
        if not segments[segment].evidence:
            smc = smc._replace(log_evidence=state.smc.log_evidence)
        # Terms travel with their particles through resampling.
        bundle, resampled = feynman_kac.resample(smc._replace(particles=(smc.particles, terms)), generator,
                                                 resampling_scheme=resampling, threshold=resample_threshold)
        (particles, terms), smc = bundle.particles, bundle
        position = feynman_kac.positions(particles)
        inverse_mass = state.inverse_mass
        if adapt_mass_matrix:
            inverse_mass = weighted_covariance(position, smc.log_weights, inverse_mass)
        particles = init_move(position, logdensity_at(segment, new_temperature))
        info = StageInfo(new_temperature, torch.full_like(new_temperature, segment), reweighted.ess,
                         reweighted.log_evidence_increment, reweighted.num_invalid, resampled, acceptance,
                         state.step_size, state.diverging.sum(-1) + reweighted.num_invalid)
        long = state.stage.new_zeros(())
        new = TemperedSMCState(smc._replace(particles=particles), padded(terms), long + segment, new_temperature,
                               state.step_size, inverse_mass, long.clone(), torch.zeros_like(state.acceptance),
                               torch.zeros_like(state.diverging), state.stage + 1)
        return new, info

    def step(state: TemperedSMCState, batch, generator) -> tuple[TemperedSMCState, Any]:
        del batch
        if int(state.stage) > 0 and int(state.num_moves_done) < num_moves:
            return move_sweep(state, generator)
        return transition(state, generator)

    return TemperedSMC(init, step, is_done, progress, len(segments))

