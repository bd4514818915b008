"""Sample until converged within a time budget: rounds of longer runs until R-hat and ESS pass.

Round ``r`` (from 0) runs ``2**r`` times the warm-up and the draws of the first round, started from the last
draws of the round before (so its warm-up starts in the typical set), until the run has converged:

- R-hat <= ``rhat_threshold`` and bulk and tail ESS >= ``min_ess`` (totals over chains), in function space
  for a network with data (``inference.function_space``: weights are not identifiable), else over all
  parameters;

or the budget runs out: a round is not started when its predicted time (twice the last round's) would
pass ``max_time`` seconds in total, nor after ``max_rounds`` rounds; a later round that runs past ``max_time``
all the same (its cost can grow more than twice, e.g. with longer adapted trajectories) stops there, keeping its
draws so far, or, still in warm-up, is dropped (``inference.runner.stop_at``). The first round always runs to
its end. The posterior of the last round is returned; ``posterior.info["until_converged"]`` says what happened
(``converged``, ``reason``, ``rounds``, the final R-hat and ESS), and a ``ConvergenceWarning`` is issued when the budget ran out first.

With a checkpoint path, round ``r`` checkpoints to ``<path>.round<r>``: a run stopped midway and started
again with the same arguments redoes the finished rounds from their files (their draws are restored, not
sampled again) and resumes the interrupted one.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from torch import Tensor

from inference import diagnostics
from inference.diagnostics import ConvergenceWarning
from inference.function_space import function_space_check, is_network
from inference.runner import DeadlineReached, stop_at

DEFAULT_MAX_ROUNDS = 6


def convergence_measures(posterior: Any, model: Any = None, x: Tensor | None = None) -> dict[str, float]:
    """``{"quantity", "max_rhat", "min_ess_bulk", "min_ess_tail"}`` in function space for a network with
    inputs ``x``, else over all parameters (NaN R-hat, as with one chain, counts as not converged)."""
    if is_network(model) and x is not None:
        check, _ = function_space_check(model, posterior, x)
        return {k: check[k] for k in ("quantity", "max_rhat", "min_ess_bulk", "min_ess_tail")}
    stats = [diagnostics.split_rhat(posterior.samples), diagnostics.ess_bulk(posterior.samples),
             diagnostics.ess_tail(posterior.samples)]
    rhat, bulk, tail = (float(s.max()) if i == 0 else float(s.min()) for i, s in enumerate(stats))
    return {"quantity": "parameters", "max_rhat": rhat, "min_ess_bulk": bulk, "min_ess_tail": tail}


def has_converged(measures: dict[str, float], rhat_threshold: float, min_ess: float) -> bool:
    rhat, bulk, tail = measures["max_rhat"], measures["min_ess_bulk"], measures["min_ess_tail"]
    return rhat == rhat and rhat <= rhat_threshold and bulk >= min_ess and tail >= min_ess


def sample_until_converged(run_round: Callable[..., Any], *, num_warmup: int, num_samples: int, init: Tensor | None,
                           max_time: float | None, rhat_threshold: float, min_ess: float, max_rounds: int,
                           model: Any = None, x: Tensor | None = None, checkpoint: str | None = None,
                           progress: bool = False) -> Any:
    """Run ``run_round(num_warmup=, num_samples=, init=, checkpoint=)`` in rounds (see the module docstring)."""
    start = time.perf_counter()
    history = []
    posterior, reason, last_wall = None, "max_rounds", 0.0
    for r in range(max_rounds):
        elapsed = time.perf_counter() - start
        if posterior is not None and max_time is not None and elapsed + 2 * last_wall > max_time:
            reason = "max_time"
            break
        t0 = time.perf_counter()
        deadline = start + max_time if max_time is not None and r > 0 else None
        try:
            with stop_at(deadline):
                round_posterior = run_round(
                    num_warmup=num_warmup * 2 ** r, num_samples=num_samples * 2 ** r, init=init,
                    checkpoint=None if checkpoint is None else f"{checkpoint}.round{r}")
        except DeadlineReached:
            reason = "max_time"
            break
        posterior, last_wall = round_posterior, time.perf_counter() - t0
        measures = convergence_measures(posterior, model, x)
        history.append({"round": r, "num_warmup": num_warmup * 2 ** r, "num_samples": num_samples * 2 ** r,
                        "num_draws": posterior.num_draws, **measures})
        if progress:
            print(f"round {r}: {measures['quantity']} max R-hat {measures['max_rhat']:.3f}, min ESS bulk "
                  f"{measures['min_ess_bulk']:.0f}, tail {measures['min_ess_tail']:.0f}")
        if has_converged(measures, rhat_threshold, min_ess):
            reason = "converged"
            break
        if posterior.info.get("stopped_at_deadline"):
            reason = "max_time"
            break
        init = posterior.samples[:, -1].clone()
    converged = reason == "converged"
    posterior.info["until_converged"] = {
        "converged": converged, "reason": reason, "rounds": len(history), "rhat_threshold": rhat_threshold,
        "min_ess": min_ess, "max_time": max_time, "total_time": time.perf_counter() - start, "history": history}
    if not converged:
        last = history[-1]
        budget = f"the time budget ({max_time:g} s)" if reason == "max_time" else f"{max_rounds} rounds"
        warnings.warn(f"not converged within {budget}: after {len(history)} round(s) {last['quantity']} max R-hat "
                      f"{last['max_rhat']:.3f} (want <= {rhat_threshold:g}), min ESS bulk {last['min_ess_bulk']:.0f} "
                      f"and tail {last['min_ess_tail']:.0f} (want >= {min_ess:g}); the draws of the last round are "
                      "returned", ConvergenceWarning, stacklevel=3)
    return posterior


__all__ = ["convergence_measures", "has_converged", "sample_until_converged"]
