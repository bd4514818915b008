"""ArviZ-named per-chain statistics of one transition of an adapted kernel."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

#: Kernel info fields and their ArviZ names, reported in this order when the info has them.
_ARVIZ_NAMES = (
    ("num_grad_evals", "n_steps"),
    ("is_divergent", "diverging"),
    ("energy", "energy"),
    ("tree_depth", "tree_depth"),
    ("reached_max_tree_depth", "reached_max_tree_depth"),
)


def sample_stats(chain: NamedTuple, info: NamedTuple, step_size: Tensor) -> dict[str, Tensor]:
    """Statistics of one transition, each ``C``.

    Args:
        chain: The new chain states (``position`` ``C x D``; ``logdensity`` ``C`` is reported as ``lp``).
        info: The kernel's info; it must have ``acceptance_rate`` ``C``.
        step_size: The step size the transition used, ``C`` or ``()``.
    """
    stats = {"lp": chain.logdensity} if hasattr(chain, "logdensity") else {}
    stats["acceptance_rate"] = info.acceptance_rate
    stats["step_size"] = step_size.expand(chain.position.shape[:1])
    for field, name in _ARVIZ_NAMES:
        if hasattr(info, field):
            stats[name] = getattr(info, field)
    return stats
