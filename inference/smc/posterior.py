"""The posterior of an SMC run: weighted particles of independent populations.

A ``SamplePosterior`` whose chains are populations and whose draws are particles with ``log_weights``
(normalised per population, so every population carries the same mass). Its summary and warnings use the
weights and measure Monte Carlo error across populations (``inference.smc.estimates``); everything else
(``sample``, ``predictive``, ``to_arviz``, ``save``) is the ``SamplePosterior``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from inference import diagnostics
from inference.posterior import SamplePosterior
from inference.smc import estimates

#: Total Kish ESS below which ``warnings`` reports a degenerate population.
MIN_ESS = 400
#: Standard deviation of the populations' ``log Z_r`` above which the evidence's delta-method MCSE is not trusted.
MAX_LOG_EVIDENCE_SPREAD = 1.0


def weighted_quantiles(values: Tensor, log_weights: Tensor, prob: float) -> Tensor:
    """The ``prob`` quantile of weighted particles ``R x P x E`` (populations weighted equally): ``E``."""
    flat = values.reshape(-1, values.shape[-1])
    w = torch.softmax(log_weights.double(), -1).reshape(-1) / log_weights.shape[0]
    order = flat.argsort(0)
    cumulative = w[order].cumsum(0)
    index = torch.searchsorted(cumulative.T.contiguous(), torch.full((flat.shape[1], 1), prob, dtype=w.dtype))
    return flat.gather(0, order.gather(0, index.T.clamp_max(flat.shape[0] - 1)))[0]


class ParticlePosterior(SamplePosterior):
    """Weighted particles ``R x P x D`` (``log_weights`` ``R x P``) of ``R`` independent SMC populations."""

    def summary(self, names: Sequence[str] | None = None, *, prob: float = 0.9) -> diagnostics.SummaryTable:
        """Weighted mean, sd and central interval of every scalar parameter, the MCSE of the mean across
        populations, the total Kish ESS of the weights and the cross-population R-hat."""
        if not 0.0 < prob < 1.0:
            raise ValueError(f"prob must be in (0, 1); got {prob}")
        draws = self._named()
        names = list(draws) if names is None else list(names)
        columns = ["name", "mean", "sd", f"q{round(50 * (1 - prob), 6):g}", f"q{round(50 * (1 + prob), 6):g}",
                   "mcse_mean", "ess", "r_hat"]
        ess = float(estimates.total_ess(self.log_weights))
        rows = []
        for name in names:
            values = draws[name].reshape(self.num_chains, self.num_draws, -1).double()
            means = estimates.population_means(values, self.log_weights)
            mean = means.mean(0)
            sd = estimates.population_means((values - mean).square(), self.log_weights).mean(0).sqrt()
            stats = [mean, sd, weighted_quantiles(values, self.log_weights, (1 - prob) / 2),
                     weighted_quantiles(values, self.log_weights, (1 + prob) / 2), estimates.mcse(means),
                     torch.full_like(mean, ess), estimates.rhat(values, self.log_weights)]
            for k, label in enumerate(diagnostics._element_names(name, draws[name].shape[2:])):
                rows.append({"name": label, **{c: float(s[k]) for c, s in zip(columns[1:], stats)}})
        return diagnostics.SummaryTable(rows=rows, columns=columns, num_chains=self.num_chains,
                                        num_draws=self.num_draws)

    def warnings(self) -> list[str]:
        """Divergent moves in the last stage, cross-population R-hat above 1.01, a total Kish ESS below
        ``MIN_ESS``, populations' log evidences spread by more than ``MAX_LOG_EVIDENCE_SPREAD`` and particles
        dropped for NaN log densities."""
        out = []
        diverging = self.sample_stats.get("diverging")
        if diverging is not None and int(diverging.sum()):
            out.append(f"{int(diverging.sum())} particles had divergent moves in the last stage; consider a "
                       "smaller step_size or a higher target_accept")
        table = self.summary()
        high = [row["name"] for row in table if float(row["r_hat"]) > 1.01]
        if high:
            out.append(f"cross-population R-hat above 1.01 for {high[:5]}{'...' if len(high) > 5 else ''}: the "
                       "populations disagree; use more particles, moves per stage or a higher target_ess")
        ess = float(estimates.total_ess(self.log_weights))
        if ess < MIN_ESS:
            out.append(f"the total ESS of the particle weights is only {ess:.0f}; use more particles")
        spread = self.info.get("log_evidence_spread")
        if isinstance(spread, float) and spread > MAX_LOG_EVIDENCE_SPREAD:
            out.append(f"the populations' log evidence estimates spread by {spread:.2f} (sd of log Z_r): one "
                       "population dominates the evidence, so its MCSE (a delta-method figure, at most 1) is "
                       "unreliable; use more particles or moves per stage")
        num_nan = self.warmup_stats.get("num_nan")
        if num_nan is not None and int(num_nan.sum()):
            out.append(f"{int(num_nan.sum())} particles were given zero weight because their log density was NaN")
        return out
