"""The loop of tempered SMC behind ``inference.sample(..., method="smc")``: stages, progress bar, checkpoints.

Registered samplers with a ``runner`` (``inference.registry``) are run by it instead of the MCMC runner: SMC
has no fixed number of iterations (the schedule adapts) and returns weighted particles. An iteration here is
one step of the ``TemperedSMC`` state machine (a move sweep or a stage transition); checkpoints are written
every ``checkpoint_every`` iterations and at the end, and a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inference import checkpoint as ckpt
from inference.progress import ProgressBar
from inference.runner import _plain
from inference.smc import estimates
from inference.smc.posterior import ParticlePosterior
from inference.smc.tempered import SMCTarget, StageInfo, tempered_smc
from probnets.model import Batch, LogDensity, ProbModel
from probnets.spec import ParamSpec
from probnets.validation import check_positive_int

_CHECKPOINT_FORMAT = 1


def run(logdensity: LogDensity, *, model: ProbModel | None, batch: Batch | None, init: Tensor | None,
        num_chains: int, num_warmup: int, num_samples: int, thin: int, dtype: torch.dtype,
        generator: torch.Generator, options: Mapping[str, Any], progress: bool = True,
        checkpoint: str | Path | None = None, checkpoint_every: int = 100, config: Mapping[str, Any] | None = None,
        spec: ParamSpec | None = None, description: str = "smc") -> ParticlePosterior:
    """Run adaptive tempered SMC (``inference.smc.tempered``) with ``num_chains`` independent populations of
    ``num_samples`` particles and ``num_warmup`` moves per stage.

    Args:
        logdensity: The unnormalised log posterior (of ``model`` on ``batch``) or a bare target.
        model, batch: The ``ProbModel`` and its full data (``None`` for a bare log density).
        init: ``R x D`` centres of the Gaussian references (``None``: the origin).
        thin: Must be 1 (particles are not a chain).
        options: The ``tempered_smc`` options.
        checkpoint, checkpoint_every, config, spec, description: As in ``inference.runner.run``.

    Returns:
        A ``ParticlePosterior``: particles ``R x P x D`` with normalised ``log_weights``; ``sample_stats``
        per particle (``lp`` the log target, ``acceptance_rate`` and ``diverging`` of the last stage's moves);
        ``warmup_stats`` per population and stage (``temperature``, ``segment``, ``ess``,
        ``log_evidence_increment``, ``num_nan``, ``resampled``, ``acceptance_rate``, ``step_size``,
        ``diverging``); ``info`` with ``log_evidence`` (``log mean_r Z_r``), ``log_evidence_mcse``,
        ``log_evidence_spread`` (sd of the populations' ``log Z_r``), ``log_evidences`` (per population),
        ``num_stages``, ``max_rhat`` (cross-population), ``grad_evals`` (gradient evaluations of the moves, summed
        over particles).
    """
    if thin != 1:
        raise ValueError(f"thin must be 1 for SMC (particles are not a Markov chain), got {thin}")
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    reference_mean = (torch.zeros(num_chains, logdensity.dim, dtype=dtype) if init is None else init.to(dtype))
    target = SMCTarget(logdensity, model, batch, reference_mean, (config or {}).get("temperature", 1.0))
    algorithm = tempered_smc(target, num_warmup, **options)
    config = dict(config or {}, num_chains=num_chains, dim=logdensity.dim, num_warmup=num_warmup,
                  num_samples=num_samples, dtype=str(dtype))

    state = algorithm.init(num_chains, num_samples, generator)
    stages: list[dict[str, Tensor]] = []
    iteration, elapsed_before = 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        saved = ckpt.load(checkpoint)
        if saved.get("format") != _CHECKPOINT_FORMAT or saved.get("config") != _plain(config):
            raise ValueError(f"checkpoint {checkpoint} was written by a different run configuration: "
                             f"{saved.get('config')} != {_plain(config)}")
        state = ckpt.unflatten_like(state, saved["state"])
        generator.set_state(saved["generator"])
        iteration, elapsed_before = saved["iteration"], saved["elapsed"]
        stages = [dict(zip(saved["stage_names"], row)) for row in zip(*saved["stages"])]

    grad_evals = 0
    scale = 100
    bar = ProgressBar(scale * algorithm.num_segments, initial=round(scale * algorithm.progress(state)),
                      description=description, enabled=progress, unit="%")
    t0 = time.perf_counter()
    while not algorithm.is_done(state):
        before = algorithm.progress(state)
        state, info = algorithm.step(state, None, generator)
        iteration += 1
        if isinstance(info, StageInfo):
            stages.append({k: v.clone() for k, v in info._asdict().items()})
            if progress:
                bar.update(round(scale * algorithm.progress(state)) - round(scale * before))
                if bar.postfix_due:
                    bar.set_postfix(_postfix(info, int(state.stage)))
        else:
            grad_evals += int(info.num_grad_evals.sum())
        done = algorithm.is_done(state)
        if checkpoint is not None and (iteration % checkpoint_every == 0 or done):
            names = list(stages[0]) if stages else []
            ckpt.save(checkpoint, {
                "format": _CHECKPOINT_FORMAT, "config": _plain(config), "iteration": iteration,
                "elapsed": elapsed_before + time.perf_counter() - t0, "state": ckpt.flatten_state(state),
                "generator": generator.get_state(), "stage_names": names,
                "stages": [torch.stack([s[n] for s in stages]).cpu() for n in names],
            })
    bar.close()
    elapsed = elapsed_before + time.perf_counter() - t0
    return _posterior(state, stages, num_warmup, spec, {**_plain(config), "wall_time": elapsed,
                                                        "grad_evals": grad_evals})


def _posterior(state, stages: list[dict[str, Tensor]], num_moves: int, spec: ParamSpec | None,
               info: dict[str, Any]) -> ParticlePosterior:
    particles = state.smc.particles
    log_weights = state.smc.log_weights
    value, mcse = estimates.log_evidence(state.smc.log_evidence)
    rhat = estimates.rhat(particles.position.double(), log_weights)
    spread = float(state.smc.log_evidence.double().std()) if state.smc.log_evidence.shape[0] > 1 else math.nan
    info.update(log_evidence=value, log_evidence_mcse=mcse, log_evidence_spread=spread,
                log_evidences=state.smc.log_evidence.clone(),
                num_stages=len(stages), max_rhat=float(torch.nan_to_num(rhat, nan=math.inf).max())
                if particles.position.shape[0] > 1 else math.nan)
    sample_stats = {
        "lp": particles.logdensity,
        "acceptance_rate": state.acceptance / max(num_moves, 1),
        "diverging": state.diverging | torch.isnan(particles.logdensity),
    }
    warmup_stats = {name: torch.stack([s[name] for s in stages], 1) for name in (stages[0] if stages else {})}
    return ParticlePosterior(particles.position, sample_stats, warmup_stats=warmup_stats, spec=spec, info=info,
                             log_weights=log_weights, final_state=state)


def _postfix(info: StageInfo, stage: int) -> dict[str, object]:
    """Stage, mean temperature, ESS, acceptance rate and step size of the populations."""
    return {"stage": stage, "seg": int(info.segment[0]), "T": f"{float(info.temperature.mean()):.3g}",
            "ess": f"{float(info.ess.mean()):.0f}", "acc": f"{float(info.acceptance_rate.mean()):.2f}",
            "step": f"{float(info.step_size.mean()):.3g}"}
