"""Problems of a sampling run that R-hat and ESS do not show: stuck chains, saturated NUTS trees, warm-up
divergences.

- A chain that diverges on most of its iterations is stuck: it barely moves, and a sampler that adapts
  from the chains that did not diverge (ChEES's step size) or from pooled statistics averages it away.
- NUTS trajectories that stop at ``max_tree_depth`` on most iterations are cut short: the sampler behaves
  like static HMC with a too short path and mixes slowly.
- Divergences during warm-up are common while the step size adapts, but many of them point to the same
  geometry problems as divergences after it; both counts are reported side by side (a warning when there
  are divergences after warm-up too, or more than ``WARMUP_DIVERGENCE_RATE`` of warm-up diverged).
"""

from __future__ import annotations

from typing import Any

import torch

#: A chain whose share of divergent iterations after warm-up exceeds this is reported as stuck.
STUCK_DIVERGENCE_RATE = 0.5
#: Warm-up divergences are warned about beside divergences after warm-up, or alone above this share of the
#: warm-up iterations (a few while the step size adapts are normal; the count is always in the report).
WARMUP_DIVERGENCE_RATE = 0.1
#: NUTS is reported as saturated when more than this share of its iterations reach ``max_tree_depth``.
MAX_TREE_DEPTH_RATE = 0.5


def divergence_counts(posterior: Any) -> dict[str, int]:
    """``{"warmup": ..., "sampling": ...}``: divergent iterations summed over chains in each phase."""
    return {phase: int(stats["diverging"].sum()) if "diverging" in stats else 0
            for phase, stats in (("warmup", posterior.warmup_stats), ("sampling", posterior.sample_stats))}


def stuck_chains(posterior: Any) -> list[int]:
    """Chains that diverged on more than ``STUCK_DIVERGENCE_RATE`` of their kept iterations."""
    diverging = posterior.sample_stats.get("diverging")
    if diverging is None or diverging.numel() == 0:
        return []
    rate = diverging.to(torch.float64).mean(-1)
    return (rate > STUCK_DIVERGENCE_RATE).nonzero().flatten().tolist()


def sampling_warnings(posterior: Any) -> list[str]:
    """Warnings about stuck chains, saturated NUTS trees and warm-up divergences (empty when none apply).

    Args:
        posterior: A ``SamplePosterior`` (``sample_stats``/``warmup_stats`` ``C x S``, ``info``).
    """
    out = []
    stuck = stuck_chains(posterior)
    if stuck:
        rate = posterior.sample_stats["diverging"].to(torch.float64).mean(-1)
        listed = ", ".join(f"{c} ({100 * float(rate[c]):.0f}%)" for c in stuck[:10])
        out.append(f"{len(stuck)} of {posterior.num_chains} chains are stuck: they diverged on most iterations after "
                   f"warm-up (chain and share of divergent iterations: {listed}{', ...' if len(stuck) > 10 else ''}). "
                   "Their draws barely move and do not represent the posterior; samplers that adapt from the other "
                   "chains (ChEES) hide them. Lower the step size (a higher target_accept), reparameterise the "
                   "model, or start the chains elsewhere.")
    reached = posterior.sample_stats.get("reached_max_tree_depth")
    if reached is not None and reached.numel():
        rate = float(reached.to(torch.float64).mean())
        if rate > MAX_TREE_DEPTH_RATE:
            depth = posterior.info.get("max_tree_depth", "max_tree_depth")
            out.append(f"NUTS reached the maximum tree depth ({depth}) on {100 * rate:.0f}% of its iterations after "
                       "warm-up: its trajectories were cut short, so it mixes like HMC with too short a path. Raise "
                       "max_tree_depth (--max-tree-depth), or reparameterise the model.")
    counts = divergence_counts(posterior)
    warmup = posterior.warmup_stats["diverging"].numel() if "diverging" in posterior.warmup_stats else 0
    if counts["warmup"] and (counts["sampling"] or counts["warmup"] > WARMUP_DIVERGENCE_RATE * warmup):
        out.append(f"{counts['warmup']} divergent transitions during warm-up ({100 * counts['warmup'] / warmup:.1f}% "
                   f"of {warmup} warm-up iterations), {counts['sampling']} after it. Divergences early in warm-up "
                   "are common while the step size adapts; many of them point to regions the sampler cannot "
                   "explore.")
    return out
