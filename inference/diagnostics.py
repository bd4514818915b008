"""MCMC convergence diagnostics in torch: split R-hat, ESS, MCSE, summary tables and warnings.

Every diagnostic takes draws ``x`` of shape ``(chains, draws, *event)`` and returns a float64 tensor of
shape ``event``; all parameters are processed at once (no Python loop over them). The definitions
follow Vehtari, Gelman, Simpson, Carpenter & Buerkner (2021), "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC", exactly as implemented in
ArviZ 0.23 (``az.rhat``, ``az.ess``, ``az.mcse``), including ArviZ's edge-case conventions:

* any NaN among an element's draws, fewer than 4 draws per chain, or (R-hat only) fewer than 2
  chains gives NaN for that element;
* constant draws give R-hat NaN but ESS equal to the number of (split) draws, MCSE of the mean 0
  and MCSE of the sd NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ConvergenceWarning",
    "SummaryTable",
    "convergence_warnings",
    "divergence_warnings",
    "ess_bulk",
    "ess_mean",
    "ess_quantile",
    "ess_tail",
    "mcse_mean",
    "mcse_sd",
    "split_rhat",
    "summary",
]

_MIN_DRAWS = 4


class ConvergenceWarning(UserWarning):
    """Issued after sampling for divergences, R-hat above 1.01 or low effective sample sizes."""


#: With one chain split R-hat is undefined (NaN): nothing compares chains started apart.
SINGLE_CHAIN_WARNING = ("Only 1 chain: R-hat is undefined, so convergence cannot be checked (a single chain can sit "
                        "in one mode and look converged). Run at least 4 chains (num_chains / --chains).")


# ArviZ treats draws whose range is below float64 resolution as constant and returns ESS = size.
_CONSTANT_RANGE = float(np.finfo(np.float64).resolution)
# Blom (1958) offset used by ArviZ's rank normalisation: (r - 3/8) / (S + 1/4).
_BLOM_OFFSET = 3.0 / 8.0


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _flatten_event(x: Tensor | np.ndarray) -> tuple[Tensor, torch.Size]:
    """Cast draws to float64 and flatten the event dimensions.

    Args:
        x: Draws, shape ``(chains, draws, *event)``.

    Returns:
        The draws as float64 with shape ``(chains, draws, E)`` with ``E = prod(event)``, and ``event``.
    """
    x = torch.as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"draws must have shape (chains, draws, *event); got shape {tuple(x.shape)}")
    event = x.shape[2:]
    flat = x.to(torch.float64).reshape(x.shape[0], x.shape[1], math.prod(event))
    return flat, event


def _invalid(x: Tensor, min_chains: int) -> Tensor:
    """ArviZ's ``not_valid``: NaN anywhere in an element's draws, or too few chains or draws.

    Args:
        x: Draws, shape ``(chains, draws, E)``.
        min_chains: Minimum number of chains.

    Returns:
        Boolean mask, shape ``(E,)``.
    """
    chains, draws = x.shape[:2]
    if chains < min_chains or draws < _MIN_DRAWS:
        return torch.ones(x.shape[2], dtype=torch.bool, device=x.device)
    return torch.isnan(x).any(dim=1).any(dim=0)


def _diagnostic(x: Tensor | np.ndarray, compute: Callable[[Tensor], Tensor], *, min_chains: int = 1) -> Tensor:
    """Apply ``compute`` (``(chains, draws, E) -> (E,)``) to valid inputs and NaN-out invalid elements.

    Returns:
        float64 tensor, shape ``event``.
    """
    flat, event = _flatten_event(x)
    invalid = _invalid(flat, min_chains)
    if bool(invalid.all()):
        return torch.full(event, math.nan, dtype=torch.float64, device=flat.device)
    result = compute(flat).masked_fill(invalid, math.nan)
    return result.reshape(event)


# --------------------------------------------------------------------------------------------------
# Building blocks (all on (chains, draws, E) float64 tensors)
# --------------------------------------------------------------------------------------------------


def _split_chains(x: Tensor) -> Tensor:
    """Split every chain into its first and last half (dropping the middle draw if odd).

    Args:
        x: shape ``(chains, draws, E)``.

    Returns:
        shape ``(2 * chains, draws // 2, E)``: all first halves, then all second halves.
    """
    half = x.shape[1] // 2
    return torch.cat([x[:, :half], x[:, x.shape[1] - half :]], dim=0)


def _pooled(x: Tensor) -> Tensor:
    """Pool chains and draws: ``(chains, draws, E) -> (chains * draws, E)``."""
    return x.reshape(-1, x.shape[-1])


def _average_ranks(values: Tensor) -> Tensor:
    """1-based ranks along dim 0, ties receiving the average of their ranks (scipy ``"average"``).

    Args:
        values: shape ``(S, E)``.

    Returns:
        float64 ranks, shape ``(S, E)``.
    """
    size = values.shape[0]
    sorted_values, order = torch.sort(values, dim=0)
    position = torch.arange(size, device=values.device).unsqueeze(1).expand_as(order)
    starts_tie_group = torch.ones_like(order, dtype=torch.bool)
    starts_tie_group[1:] = sorted_values[1:] != sorted_values[:-1]
    ends_tie_group = torch.ones_like(starts_tie_group)
    ends_tie_group[:-1] = starts_tie_group[1:]
    group_first = torch.where(starts_tie_group, position, 0).cummax(dim=0).values
    group_last = torch.where(ends_tie_group, position, size - 1).flip(0).cummin(dim=0).values.flip(0)
    sorted_ranks = (group_first + group_last).to(torch.float64) / 2 + 1
    return torch.empty_like(sorted_ranks).scatter_(0, order, sorted_ranks)


def _rank_normalise(x: Tensor) -> Tensor:
    """Rank-normalise jointly over chains and draws: ``Phi^-1((r - 3/8) / (S + 1/4))``.

    Args:
        x: shape ``(chains, draws, E)``.

    Returns:
        Normal scores, shape ``(chains, draws, E)``.
    """
    ranks = _average_ranks(_pooled(x))
    size = ranks.shape[0]
    scores = torch.special.ndtri((ranks - _BLOM_OFFSET) / (size - 2 * _BLOM_OFFSET + 1))
    return scores.reshape(x.shape)


def _sorted_pooled(x: Tensor) -> Tensor:
    """Pooled draws sorted along dim 0: ``(chains, draws, E) -> (chains * draws, E)``."""
    return torch.sort(_pooled(x), dim=0).values


def _pooled_median(x: Tensor) -> Tensor:
    """Median over chains and draws (mean of the two middle values for even counts), shape ``(E,)``."""
    ordered = _sorted_pooled(x)
    size = ordered.shape[0]
    return (ordered[(size - 1) // 2] + ordered[size // 2]) / 2


def _quantile_from_sorted(ordered: Tensor, prob: float) -> Tensor:
    """Type-7 (R default, linear) quantile, computed like ``scipy.stats.mstats.mquantiles(alphap=betap=1)``.

    Args:
        ordered: Values sorted along dim 0, shape ``(S, E)``.
        prob: Probability in ``[0, 1]``.

    Returns:
        shape ``(E,)``.
    """
    size = ordered.shape[0]
    if size == 1:
        return ordered[0]
    aleph = size * prob + (1.0 - prob)
    k = int(math.floor(min(max(aleph, 1.0), size - 1.0)))
    gamma = min(max(aleph - k, 0.0), 1.0)
    return (1.0 - gamma) * ordered[k - 1] + gamma * ordered[k]


def _autocovariance(x: Tensor) -> Tensor:
    """Biased autocovariance of each chain at every lag, by FFT.

    Args:
        x: shape ``(chains, draws, E)``.

    Returns:
        shape ``(chains, draws, E)``; entry ``[c, t]`` is ``sum_i (x_i - m)(x_{i+t} - m) / draws``.
    """
    draws = x.shape[1]
    centred = x - x.mean(dim=1, keepdim=True)
    # Zero-padding to >= 2 * draws turns the FFT's circular correlation into the linear one.
    n_fft = 1 << (2 * draws - 1).bit_length()
    spectrum = torch.fft.rfft(centred, n=n_fft, dim=1)
    power = spectrum.real.square() + spectrum.imag.square()
    return torch.fft.irfft(power, n=n_fft, dim=1)[:, :draws] / draws


def _potential_scale_reduction(x: Tensor) -> Tensor:
    """Classic (non-split) R-hat of Gelman & Rubin on already prepared chains.

    Args:
        x: shape ``(chains, draws, E)``.

    Returns:
        shape ``(E,)``.
    """
    draws = x.shape[1]
    between = draws * x.mean(dim=1).var(dim=0, correction=1)
    within = x.var(dim=1, correction=1).mean(dim=0)
    return torch.sqrt((between / within + draws - 1) / draws)


def _effective_sample_size(x: Tensor) -> Tensor:
    """ESS of already prepared chains with Geyer's initial monotone sequence (ArviZ's / Stan's ``_ess``).

    Autocorrelations are paired as ``P_k = rho_2k + rho_2k+1``. The sum is truncated at the first
    non-positive pair (Geyer's initial positive sequence), pairs before it are made non-increasing
    (initial monotone sequence), and the even lag of the truncation pair is added if it is positive.

    Args:
        x: shape ``(chains, draws, E)``, float64.

    Returns:
        shape ``(E,)``.
    """
    chains, draws = x.shape[:2]
    size = chains * draws
    acov = _autocovariance(x)
    mean_var = acov[:, 0].mean(dim=0) * draws / (draws - 1.0)
    var_plus = mean_var * (draws - 1.0) / draws
    if chains > 1:
        var_plus = var_plus + x.mean(dim=1).var(dim=0, correction=1)
    rho = 1.0 - (mean_var - acov.mean(dim=0)) / var_plus
    rho[0] = 1.0

    # ArviZ's loop examines pairs k = 1..last_pair (its condition ``t < draws - 3`` with t = 2k - 1).
    last_pair = max((draws - 3) // 2, 0)
    pair_sums = rho[0 : 2 * last_pair + 2 : 2] + rho[1 : 2 * last_pair + 2 : 2]
    leading_positive = (pair_sums > 0).long().cumprod(dim=0).sum(dim=0)
    stop = leading_positive.clamp(max=last_pair)

    pair_index = torch.arange(last_pair + 1, device=x.device).unsqueeze(1)
    monotone_sums = pair_sums.cummin(dim=0).values
    tau = -1.0 + 2.0 * torch.where(pair_index < stop, monotone_sums, 0.0).sum(dim=0)
    even_at_stop = rho.gather(0, 2 * stop.unsqueeze(0)).squeeze(0)
    sum_at_stop = pair_sums.gather(0, stop.unsqueeze(0)).squeeze(0)
    keep_even = (even_at_stop > 0) | (sum_at_stop >= 0)
    tau = tau + torch.where(keep_even, even_at_stop, 0.0)
    tau = tau.clamp(min=1.0 / math.log10(size))

    ess = size / tau
    ess = torch.where(torch.isnan(rho[1]), math.nan, ess)
    value_range = x.amax(dim=(0, 1)) - x.amin(dim=(0, 1))
    return torch.where(value_range < _CONSTANT_RANGE, float(size), ess)


def _ess_of_quantile_indicator(x: Tensor, prob: float) -> Tensor:
    """ESS of the indicator ``x <= q_prob`` (q over all chains and draws), shape ``(E,)``."""
    quantile = _quantile_from_sorted(_sorted_pooled(x), prob)
    indicator = (x <= quantile).to(torch.float64)
    return _effective_sample_size(_split_chains(indicator))


def _ess_of_split_chains(x: Tensor) -> Tensor:
    """ESS of the raw split chains (ArviZ ``method="mean"``), shape ``(E,)``."""
    return _effective_sample_size(_split_chains(x))


def _mcse_sd_flat(x: Tensor) -> Tensor:
    """ArviZ 0.23's sd MCSE (delta method on the variance) of ``(chains, draws, E)`` draws, shape ``(E,)``."""
    squared_deviation = (x - x.mean(dim=(0, 1))).square()
    ess = _ess_of_split_chains(squared_deviation)
    variance = squared_deviation.mean(dim=(0, 1))
    variance_of_variance = (squared_deviation.square().mean(dim=(0, 1)) - variance.square()) / ess
    # sd = sqrt(var) so Var(sd) ~ Var(var) / (4 var).
    mcse = torch.sqrt(variance_of_variance / variance / 4)
    # ArviZ's 0/0 for constant draws; pinned so that rounding in the mean cannot turn it into 0.
    return torch.where(variance == 0, math.nan, mcse)


# --------------------------------------------------------------------------------------------------
# Public diagnostics
# --------------------------------------------------------------------------------------------------


def split_rhat(x: Tensor | np.ndarray) -> Tensor:
    """Rank-normalised split R-hat (Vehtari et al. 2021; ArviZ ``az.rhat(method="rank")``).

    The maximum of the split R-hat of the rank-normalised draws (bulk) and of the rank-normalised
    draws folded about their median (tails).

    Args:
        x: Draws, shape ``(chains, draws, *event)``; at least 2 chains of 4 draws.

    Returns:
        float64 tensor, shape ``event``; NaN where invalid (see module docstring) or constant.
    """

    def compute(flat: Tensor) -> Tensor:
        split = _split_chains(flat)
        bulk = _potential_scale_reduction(_rank_normalise(split))
        folded = (split - _pooled_median(split)).abs()
        tail = _potential_scale_reduction(_rank_normalise(folded))
        # ArviZ's Python max(bulk, tail): NaN bulk wins, NaN tail is ignored.
        return torch.where(torch.isnan(tail), bulk, torch.maximum(bulk, tail))

    return _diagnostic(x, compute, min_chains=2)


def ess_bulk(x: Tensor | np.ndarray) -> Tensor:
    """Bulk effective sample size: ESS of the rank-normalised split chains (ArviZ ``method="bulk"``).

    Args:
        x: Draws, shape ``(chains, draws, *event)``.

    Returns:
        float64 tensor, shape ``event``.
    """
    return _diagnostic(x, lambda flat: _effective_sample_size(_rank_normalise(_split_chains(flat))))


def ess_quantile(x: Tensor | np.ndarray, prob: float) -> Tensor:
    """ESS for the ``prob`` quantile: ESS of the split indicator ``x <= q_prob`` (ArviZ ``method="quantile"``).

    Args:
        x: Draws, shape ``(chains, draws, *event)``.
        prob: Quantile level in ``[0, 1]``.

    Returns:
        float64 tensor, shape ``event``.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1]; got {prob}")
    return _diagnostic(x, lambda flat: _ess_of_quantile_indicator(flat, prob))


def ess_tail(x: Tensor | np.ndarray, tail_prob: float = 0.05) -> Tensor:
    """Tail effective sample size: min of the quantile ESS at ``tail_prob`` and ``1 - tail_prob``.

    With the default this is ArviZ's ``method="tail"`` (5% and 95% quantiles).

    Args:
        x: Draws, shape ``(chains, draws, *event)``.
        tail_prob: Lower tail probability.

    Returns:
        float64 tensor, shape ``event``.
    """
    return torch.minimum(ess_quantile(x, tail_prob), ess_quantile(x, 1.0 - tail_prob))


def ess_mean(x: Tensor | np.ndarray) -> Tensor:
    """ESS for the mean: ESS of the raw split chains (ArviZ ``method="mean"``).

    Args:
        x: Draws, shape ``(chains, draws, *event)``.

    Returns:
        float64 tensor, shape ``event``.
    """
    return _diagnostic(x, _ess_of_split_chains)


def mcse_mean(x: Tensor | np.ndarray) -> Tensor:
    """Monte Carlo standard error of the posterior mean: ``sd / sqrt(ess_mean)`` (ArviZ ``method="mean"``).

    Args:
        x: Draws, shape ``(chains, draws, *event)``.

    Returns:
        float64 tensor, shape ``event``.
    """

    def compute(flat: Tensor) -> Tensor:
        sd = _pooled(flat).std(dim=0, correction=1)
        return sd / torch.sqrt(_ess_of_split_chains(flat))

    return _diagnostic(x, compute)


def mcse_sd(x: Tensor | np.ndarray) -> Tensor:
    """Monte Carlo standard error of the posterior sd, as ArviZ 0.23 ``az.mcse(method="sd")``.

    With ``d = (x - mean)^2`` and ``E = ess_mean(d)``: ``sqrt((mean(d^2) - mean(d)^2) / E / (4 mean(d)))``,
    i.e. the delta method applied to the MCSE of the variance.

    Args:
        x: Draws, shape ``(chains, draws, *event)``.

    Returns:
        float64 tensor, shape ``event``.
    """
    return _diagnostic(x, _mcse_sd_flat)


# --------------------------------------------------------------------------------------------------
# Summary table
# --------------------------------------------------------------------------------------------------

_INTEGER_COLUMNS = ("ess_bulk", "ess_tail")


def _quantile_label(prob: float) -> str:
    return f"q{round(100 * prob, 6):g}"


def _format_number(column: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if column in _INTEGER_COLUMNS:
        return f"{value:.0f}"
    if column == "r_hat":
        return f"{value:.3f}"
    if value == 0 or 1e-2 <= abs(value) < 1e5:
        return f"{value:.3f}"
    return f"{value:.2e}"


@dataclass
class SummaryTable:
    """Per-element posterior summary and diagnostics, one row dict per scalar parameter.

    Attributes:
        rows: Row dicts with the keys of ``columns``.
        columns: ``name, mean, sd, q<lo>, q<hi>, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat``.
        num_chains: Number of chains the table was computed from.
        num_draws: Number of draws per chain.
        max_rows: Default row limit used by ``str(table)``; None prints all rows.
    """

    rows: list[dict[str, str | float]]
    columns: list[str]
    num_chains: int
    num_draws: int
    max_rows: int | None = field(default=None)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, str | float]]:
        return iter(self.rows)

    def row(self, name: str) -> dict[str, str | float]:
        """The row of parameter ``name`` (e.g. ``"w[0,1]"``)."""
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(name)

    def to_string(self, max_rows: int | None = None) -> str:
        """Aligned text table; at most ``max_rows`` rows (default ``self.max_rows``) plus a truncation note."""
        limit = self.max_rows if max_rows is None else max_rows
        shown = self.rows if limit is None else self.rows[: max(limit, 0)]
        cells = [list(self.columns)]
        for row in shown:
            cells.append([str(row["name"])] + [_format_number(c, float(row[c])) for c in self.columns[1:]])
        widths = [max(len(line[i]) for line in cells) for i in range(len(self.columns))]
        lines = [
            "  ".join([line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])])
            for line in cells
        ]
        hidden = len(self.rows) - len(shown)
        if hidden > 0:
            lines.append(f"... {hidden} more rows not shown ({len(self.rows)} parameters in total)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_string()


def _element_names(name: str, event: torch.Size) -> list[str]:
    """``w`` for scalars, else ``w[i,j,...]`` in row-major order."""
    if len(event) == 0:
        return [name]
    return [f"{name}[{','.join(str(i) for i in index)}]" for index in np.ndindex(*event)]


def _named_blocks(
    draws: Tensor | np.ndarray | Mapping[str, Tensor | np.ndarray], names: Sequence[str] | None
) -> list[tuple[list[str], Tensor]]:
    """Normalise summary input to ``[(element names, draws (chains, draws, E))]``."""
    if isinstance(draws, Mapping):
        selected = list(draws) if names is None else list(names)
        blocks = []
        for name in selected:
            flat, event = _flatten_event(draws[name])
            blocks.append((_element_names(name, event), flat))
        return blocks
    flat, event = _flatten_event(draws)
    if names is None:
        return [(_element_names("x", event), flat)]
    names = [str(n) for n in names]
    if len(names) != flat.shape[2]:
        raise ValueError(f"got {len(names)} names for {flat.shape[2]} parameters")
    return [(names, flat)]


def _summary_columns(flat: Tensor, prob: float) -> dict[str, Tensor]:
    """All summary statistics of ``(chains, draws, E)`` draws, each of shape ``(E,)``."""
    lower, upper = (1 - prob) / 2, (1 + prob) / 2
    ordered = _sorted_pooled(flat)
    return {
        "mean": _pooled(flat).mean(dim=0),
        "sd": _pooled(flat).std(dim=0, correction=1),
        _quantile_label(lower): _quantile_from_sorted(ordered, lower),
        _quantile_label(upper): _quantile_from_sorted(ordered, upper),
        "mcse_mean": mcse_mean(flat),
        "mcse_sd": mcse_sd(flat),
        "ess_bulk": ess_bulk(flat),
        "ess_tail": ess_tail(flat),
        "r_hat": split_rhat(flat),
    }


def summary(
    draws: Tensor | np.ndarray | Mapping[str, Tensor | np.ndarray],
    names: Sequence[str] | None = None,
    *,
    prob: float = 0.9,
    max_rows: int | None = None,
) -> SummaryTable:
    """Posterior summary with convergence diagnostics, one row per scalar parameter.

    Args:
        draws: Either a tensor of shape ``(chains, draws, *event)`` (elements are named ``x[i,...]``
            unless ``names`` is given), or a mapping ``name -> (chains, draws, *event)`` (all with the
            same chains and draws; elements are named ``name`` or ``name[i,j]``).
        names: For a tensor, one name per element (``prod(event)`` names, row-major). For a mapping,
            the variables to include, in order (default: all).
        prob: Mass of the central interval reported as columns ``q<100(1-prob)/2>``/``q<100(1+prob)/2>``
            (``q5``/``q95`` by default).
        max_rows: Default row limit when printing the table.

    Returns:
        A ``SummaryTable``; ``str(table)`` prints an aligned table.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1); got {prob}")
    blocks = _named_blocks(draws, names)
    if not blocks:
        raise ValueError("no variables to summarise")
    shapes = {tuple(flat.shape[:2]) for _, flat in blocks}
    if len(shapes) != 1:
        raise ValueError(f"all variables need the same (chains, draws); got {sorted(shapes)}")
    (num_chains, num_draws), = shapes

    rows: list[dict[str, str | float]] = []
    columns: list[str] = ["name"]
    for element_names, flat in blocks:
        stats = _summary_columns(flat, prob)
        columns = ["name", *stats]
        values = torch.stack(list(stats.values()), dim=1).tolist()
        rows.extend({"name": n, **dict(zip(stats, v))} for n, v in zip(element_names, values))
    return SummaryTable(rows=rows, columns=columns, num_chains=num_chains, num_draws=num_draws, max_rows=max_rows)


# --------------------------------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------------------------------


def divergence_warnings(diverging: Tensor | np.ndarray) -> list[str]:
    """The warning about divergent transitions ``(chains, draws)`` (empty without any)."""
    diverging = torch.as_tensor(diverging).to(torch.bool)
    count, total = int(diverging.sum()), diverging.numel()
    if count == 0:
        return []
    message = f"There were {count} divergent transitions ({100 * count / total:.1f}% of {total} draws)"
    if diverging.ndim == 2 and diverging.shape[0] > 1:
        per_chain = ", ".join(str(int(c)) for c in diverging.sum(dim=1))
        message += f", per chain: {per_chain}"
    return [message + ". Consider a higher target acceptance probability or reparameterising the model."]


def _rhat_warning(rows: list[dict], threshold: float) -> list[str]:
    # NaN R-hat (constant draws, a single chain) is not reported.
    bad = [row for row in rows if float(row["r_hat"]) > threshold]
    if not bad:
        return []
    worst = max(bad, key=lambda row: float(row["r_hat"]))
    return [
        f"{len(bad)} of {len(rows)} parameters have R-hat > {threshold:g} "
        f"(worst: {worst['name']} with R-hat {float(worst['r_hat']):.3f}); the chains have not mixed."
    ]


def _ess_warning(rows: list[dict], min_ess: float) -> list[str]:
    def lowest(row: dict) -> tuple[float, str]:
        return min((float(row["ess_bulk"]), "bulk"), (float(row["ess_tail"]), "tail"))

    bad = [row for row in rows if lowest(row)[0] < min_ess]
    if not bad:
        return []
    worst = min(bad, key=lambda row: lowest(row)[0])
    worst_ess, kind = lowest(worst)
    return [
        f"{len(bad)} of {len(rows)} parameters have bulk or tail ESS < {min_ess:g} "
        f"(worst: {worst['name']} with {kind} ESS {worst_ess:.0f}); estimates may be unreliable."
    ]


def _rhat_and_ess(flat: Tensor) -> Tensor:
    """``split_rhat``, ``ess_bulk`` and ``ess_tail`` of ``(chains, draws, E)`` draws, ``(E, 3)``, sharing the
    rank normalisation and the sort (the sorts dominate the cost on large posteriors)."""
    chains, draws = flat.shape[:2]
    invalid = _invalid(flat, 1)
    if bool(invalid.all()):
        return torch.full((flat.shape[2], 3), math.nan, dtype=torch.float64, device=flat.device)
    split = _split_chains(flat)
    normal_scores = _rank_normalise(split)
    ordered = _sorted_pooled(flat)
    ordered_split = ordered if draws % 2 == 0 else _sorted_pooled(split)
    size = ordered_split.shape[0]
    median = (ordered_split[(size - 1) // 2] + ordered_split[size // 2]) / 2
    bulk = _potential_scale_reduction(normal_scores)
    tail = _potential_scale_reduction(_rank_normalise((split - median).abs()))
    rhat = torch.where(torch.isnan(tail), bulk, torch.maximum(bulk, tail))
    if chains < 2:
        rhat = torch.full_like(rhat, math.nan)
    tail_ess = torch.minimum(*(_effective_sample_size(_split_chains((flat <= _quantile_from_sorted(ordered, p)).double()))
                               for p in (0.05, 0.95)))
    stats = torch.stack([rhat, _effective_sample_size(normal_scores), tail_ess], 1)
    return stats.masked_fill(invalid.unsqueeze(1), math.nan)


def _convergence_rows(draws: Tensor | np.ndarray | Mapping[str, Tensor | np.ndarray]) -> tuple[list[dict], int]:
    """Only what the warnings need (R-hat, bulk and tail ESS) per element, and the number of chains."""
    rows = []
    for element_names, flat in _named_blocks(draws, None):
        stats = _rhat_and_ess(flat).tolist()
        rows.extend({"name": n, "r_hat": r, "ess_bulk": b, "ess_tail": t} for n, (r, b, t) in zip(element_names, stats))
    return rows, flat.shape[0]


def convergence_warnings(
    table_or_draws: SummaryTable | Tensor | np.ndarray | Mapping[str, Tensor | np.ndarray],
    *,
    diverging: Tensor | np.ndarray | None = None,
    num_chains: int | None = None,
    rhat_threshold: float = 1.01,
    min_ess_per_chain: float = 100,
) -> list[str]:
    """Human-readable convergence warnings; an empty list when nothing is wrong.

    Reports a single chain (R-hat undefined), divergent transitions, parameters with R-hat above
    ``rhat_threshold`` and parameters whose bulk or tail ESS is below ``min_ess_per_chain * min(num_chains, 4)``:
    400 with four or more chains (Vehtari et al. 2021), so that runs with many short chains are not held to a
    per-chain rule.

    Args:
        table_or_draws: A ``SummaryTable``, or draws accepted by ``summary`` (then only R-hat and ESS are
            computed).
        diverging: Optional boolean divergence flags, shape ``(chains, draws)``.
        num_chains: Overrides the number of chains stored in the table.
        rhat_threshold: R-hat above this is reported.
        min_ess_per_chain: ESS threshold per chain, for up to four chains.

    Returns:
        List of warning strings.
    """
    if isinstance(table_or_draws, SummaryTable):
        rows, chains = table_or_draws.rows, table_or_draws.num_chains
    else:
        rows, chains = _convergence_rows(table_or_draws)
    chains = chains if num_chains is None else num_chains
    warnings: list[str] = []
    if chains < 2:
        warnings.append(SINGLE_CHAIN_WARNING)
    if diverging is not None:
        warnings += divergence_warnings(diverging)
    warnings += _rhat_warning(rows, rhat_threshold)
    warnings += _ess_warning(rows, min_ess_per_chain * min(chains, 4))
    return warnings
