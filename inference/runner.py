"""The sampling loop shared by every MCMC algorithm: warm-up, draws, progress bar and checkpoints."""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inference import checkpoint as ckpt
from inference import fingerprint
from inference.base import Algorithm
from inference.minibatch import BatchStream
from inference.posterior import SamplePosterior
from inference.progress import ProgressBar
from probnets.spec import ParamSpec
from probnets.validation import check_positive_int

_CHECKPOINT_FORMAT = 3
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


class DeadlineReached(RuntimeError):
    """A :func:`stop_at` deadline passed before the run kept its first draw (during warm-up)."""


@contextlib.contextmanager
def stop_at(deadline: float | None) -> Iterator[None]:
    """Runs of :func:`run` inside the block stop once ``time.perf_counter()`` passes ``deadline``: with the draws
    kept so far (``info["stopped_at_deadline"]``), or with :class:`DeadlineReached` when none is kept yet.
    ``None``: no deadline. (Used by ``inference.until_converged`` to keep a round within the time budget.)"""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _position(state: Any) -> Tensor:
    return state.chain.position if hasattr(state, "chain") else state.position


def _per_chain_stats(info: Any, num_chains: int) -> dict[str, Tensor]:
    items = info.items() if isinstance(info, Mapping) else info._asdict().items()
    return {k: v for k, v in items if isinstance(v, Tensor) and v.shape == (num_chains,)}


def run(algorithm: Algorithm, initial_position: Tensor, num_samples: int, *, num_warmup: int = 0,
        generator: torch.Generator, batches: BatchStream | None = None, thin: int = 1, progress: bool = True,
        checkpoint: str | Path | None = None, checkpoint_every: int = 100,
        config: Mapping[str, Any] | None = None, spec: ParamSpec | None = None,
        description: str = "sampling") -> SamplePosterior:
    """Run ``num_warmup + num_samples`` iterations of ``algorithm`` from ``initial_position`` ``(C, D)``.

    After warm-up the last state of every window of ``thin`` sampling iterations is kept (``num_samples // thin``
    draws unless ``algorithm.is_sampling`` excludes iterations), with ArviZ-named per-chain statistics.

    Args:
        algorithm: An ``Algorithm`` whose state has ``position`` (or ``chain.position``) ``C x D``.
        generator: The only source of randomness; same seed => bit-identical draws.
        batches: Minibatches fed to ``algorithm.step``, one per iteration (``None``: full-batch algorithms,
            whose step gets ``batch=None``). Their position is checkpointed with the run.
        checkpoint: File to save the run to every ``checkpoint_every`` iterations (atomically). If it
            exists when the run starts, the run resumes from it and continues bit-for-bit as if it had
            never stopped. It must come from the same configuration (checked against ``config``).
        config: Plain values identifying the run (method, chains, seed, model and data fingerprints, ...; see
            ``inference.fingerprint``), stored with checkpoints; a checkpoint whose entries differ is refused
            with a ``ValueError`` naming them.
        spec: Parameter layout, attached to the posterior for named views.

    Returns:
        A ``SamplePosterior`` with samples ``chains x draws x D``; its ``info`` holds ``config``, the wall time
        and the final state's ``run_info()`` when it has one (e.g. structured SG-MCMC's history size).
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    thin = check_positive_int(thin, "thin")
    if num_samples < thin:
        raise ValueError(f"num_samples ({num_samples}) must be at least thin ({thin}) to keep a draw")
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    num_chains, dim = initial_position.shape
    total = num_warmup + num_samples
    kept_at = _kept_iterations(algorithm, num_warmup, total, thin)
    slot = {i: k for k, i in enumerate(kept_at)}
    num_kept = len(kept_at)
    if num_kept == 0:
        raise ValueError(f"no iteration after warm-up is in the sampler's sampling phase; raise num_samples "
                         f"({num_samples})")
    config = dict(config or {}, num_chains=num_chains, dim=dim, num_warmup=num_warmup, num_samples=num_samples,
                  thin=thin, dtype=str(initial_position.dtype))

    state = algorithm.init(initial_position)
    draws = torch.empty((num_kept, num_chains, dim), dtype=initial_position.dtype, device=initial_position.device)
    stats: dict[str, Tensor] = {}
    warmup_stats: dict[str, Tensor] = {}
    start, elapsed_before = 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        saved = ckpt.load(checkpoint)
        if saved.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {checkpoint} was written by a different run configuration (checkpoint "
                             f"format {saved.get('format')}, this version writes {_CHECKPOINT_FORMAT}); delete it "
                             "or give another checkpoint path")
        changed = fingerprint.differences(saved.get("config", {}), _plain(config))
        if changed:
            raise ValueError(f"checkpoint {checkpoint} was written by a different run configuration, so its draws "
                             f"are not this run's; it differs in: {'; '.join(changed)}. Delete it or give another "
                             "checkpoint path")
        state = ckpt.unflatten_like(state, saved["state"])
        generator.set_state(saved["generator"])
        start, elapsed_before = saved["iteration"], saved["elapsed"]
        kept = saved["draws"].shape[0]
        draws[:kept] = saved["draws"].to(draws.device)
        stats = {k: _grow(v, num_kept, draws.device) for k, v in saved["stats"].items()}
        warmup_stats = {k: _grow(v, num_warmup, draws.device) for k, v in saved["warmup_stats"].items()}
        if batches is not None:
            batches.load_state_dict(saved["batches"])

    bar = ProgressBar(total, initial=start, description=description, enabled=progress)
    divergences = torch.zeros((), dtype=torch.long, device=draws.device)
    deadline, stopped = _DEADLINE.get(), False
    t0 = time.perf_counter()
    for i in range(start, total):
        state, info = algorithm.step(state, None if batches is None else next(batches), generator)
        step_stats = _per_chain_stats(info, num_chains)
        if i < num_warmup:
            _record(warmup_stats, i, step_stats, num_warmup)
        elif i in slot:
            k = slot[i]
            draws[k] = _position(state)
            _record(stats, k, step_stats, num_kept)
        if progress:
            if i >= num_warmup and "diverging" in step_stats:
                divergences += step_stats["diverging"].sum()
            bar.update()
            if bar.postfix_due:
                bar.set_postfix(_postfix(step_stats, i < num_warmup, divergences))
        if checkpoint is not None and ((i + 1) % checkpoint_every == 0 or i + 1 == total):
            kept = bisect.bisect_right(kept_at, i)
            ckpt.save(checkpoint, {
                "format": _CHECKPOINT_FORMAT, "config": _plain(config), "iteration": i + 1,
                "elapsed": elapsed_before + time.perf_counter() - t0, "state": ckpt.flatten_state(state),
                "generator": generator.get_state(), "draws": draws[:kept].cpu(),
                "stats": {k: v[:kept].cpu() for k, v in stats.items()},
                "warmup_stats": {k: v[: min(i + 1, num_warmup)].cpu() for k, v in warmup_stats.items()},
                "batches": None if batches is None else batches.state_dict(),
            })
        if deadline is not None and i + 1 < total and time.perf_counter() > deadline:
            num_kept = bisect.bisect_right(kept_at, i)
            if num_kept == 0:
                bar.close()
                raise DeadlineReached(f"the deadline passed at iteration {i + 1} of {total}, before the first draw")
            draws, stats, stopped = draws[:num_kept], {k: v[:num_kept] for k, v in stats.items()}, True
            break
    bar.close()
    elapsed = elapsed_before + time.perf_counter() - t0
    return SamplePosterior(
        samples=draws.transpose(0, 1).contiguous(),
        sample_stats={k: v.transpose(0, 1).contiguous() for k, v in stats.items()},
        warmup_stats={k: v.transpose(0, 1).contiguous() for k, v in warmup_stats.items()},
        spec=spec,
        info={**_plain(config), "wall_time": elapsed, **({"stopped_at_deadline": True} if stopped else {}),
              **(state.run_info() if hasattr(state, "run_info") else {})},
        final_state=state,
    )


def _kept_iterations(algorithm: Algorithm, num_warmup: int, total: int, thin: int) -> list[int]:
    """The iterations whose states are kept: the last of every window of ``thin`` sampling iterations."""
    is_sampling = algorithm.is_sampling or (lambda i: True)
    return [i for i in range(num_warmup, total) if is_sampling(i)][thin - 1::thin]


def _record(store: dict[str, Tensor], row: int, values: dict[str, Tensor], rows: int) -> None:
    for name, value in values.items():
        if name not in store:
            store[name] = torch.zeros((rows, *value.shape), dtype=value.dtype, device=value.device)
        store[name][row] = value


def _grow(saved: Tensor, rows: int, device) -> Tensor:
    out = torch.zeros((rows, *saved.shape[1:]), dtype=saved.dtype, device=device)
    out[: saved.shape[0]] = saved.to(device)
    return out


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in config.items()}


def _postfix(stats: dict[str, Tensor], warmup: bool, divergences: Tensor) -> dict[str, object]:
    """Live statistics of the progress bar: phase, mean step size, log density and acceptance, the most
    gradient evaluations of a chain's trajectory, and the divergences after warm-up."""
    postfix: dict[str, object] = {"phase": "warmup" if warmup else "sample"}
    if "step_size" in stats:
        postfix["step"] = f"{float(stats['step_size'].float().mean()):.3g}"
    if "lp" in stats:
        postfix["lp"] = f"{float(stats['lp'].float().mean()):.4g}"
    if "acceptance_rate" in stats:
        postfix["acc"] = f"{float(stats['acceptance_rate'].float().mean()):.2f}"
    if "n_steps" in stats:
        postfix["grads"] = int(stats["n_steps"].max())
    postfix["div"] = int(divergences)
    return postfix
