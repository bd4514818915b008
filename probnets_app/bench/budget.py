"""The compute budget of one bench cell, in gradient evaluations, and its defaults per method family.

A gradient evaluation is one gradient of the log joint (or of a training loss) at one parameter vector on the
training rows, counted over chains, particles, ensemble members and Monte Carlo draws; every method turns the
budget into its own settings (``probnets_app.bench.methods``): exactly for fixed-cost methods (optimisers,
SG-MCMC), through a measured mean trajectory length for the adaptive HMC samplers (NUTS, ChEES), whose cells
record the gradient evaluations they really made. Wall time is capped separately (``timeout``).

Example:
    >>> parse_budget("hmc=400000,vi=20000")
    {'hmc': 400000, 'vi': 20000}
    >>> parse_budget("50000")          # every family
    {'*': 50000}
"""

from __future__ import annotations

import math

#: Default gradient evaluations per cell, by family (see ``probnets_app.bench.methods.METHODS``), sized so that the
#: deliverable bench (diabetes, Boston, Concrete x 5 splits x every regression method, ``--jobs 2``) fits an hour on
#: two cores: ``benchmarks/results/bench/budgets.md`` derives them from the cells' measured cost per gradient. The HMC
#: samplers keep the budget of the literature check; SMC, VI and moment propagation have half that of the first
#: deliverable run (their cells were 38% of its cell time, gelu-mp alone 28%).
DEFAULT_BUDGETS = {
    "hmc": 300_000,      # NUTS, static HMC, ChEES: chains x (warm-up + draws) x leapfrog steps
    "smc": 150_000,      # tempered SMC: populations x particles x stages x moves x leapfrog steps (estimated)
    "sgmcmc": 16_000,    # SG-MCMC (full batch): chains x iterations x gradients per step
    "vi": 8_000,         # mfvi/ssvi: steps x Monte Carlo draws per step
    "moment": 1_000,     # MP-GELU / ReLU-MP / GELU-MP: deterministic steps (one gradient each)
    "map": 2_000,        # MAP: Adam steps
    "ensemble": 10_000,  # deep ensemble: members x Adam steps
    "pbnn": 40_000,      # partial-BNN SMC: particles x minibatch steps
    "gp": 0,             # GP baselines: marginal-likelihood fit, no budget
}


def parse_budget(text: str) -> dict[str, int]:
    """``"N"`` (every family) or ``"family=N,family=N"`` as a mapping (``"*"`` for every family).

    Raises:
        ValueError: Naming the bad part: an unknown family or a count that is not a positive integer.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"budget must be N or family=N[,family=N...], got {text!r}")
    out: dict[str, int] = {}
    for part in text.split(","):
        family, _, count = part.strip().rpartition("=")
        family = family.strip() or "*"
        if family != "*" and family not in DEFAULT_BUDGETS:
            raise ValueError(f"budget names no method family {family!r}; families: {', '.join(DEFAULT_BUDGETS)}")
        out[family] = _positive_count(count.strip(), part)
    return out


def budget_for(family: str, budget: dict[str, int] | None) -> int:
    """The gradient evaluations of one cell of ``family``: its own entry, else ``"*"``, else the default."""
    budget = budget or {}
    return budget.get(family, budget.get("*", DEFAULT_BUDGETS[family]))


def _positive_count(text: str, part: str) -> int:
    """``text`` as a positive integer (``"100000"``, ``"1e5"``); a ``ValueError`` quoting ``part`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (1 <= value < math.inf and value == int(value)):
        raise ValueError(f"budget {part.strip()!r}: expected a positive integer count of gradient evaluations")
    return int(value)
