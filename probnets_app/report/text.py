"""A fit report as a short text block, as printed by ``probnets fit``."""

from __future__ import annotations

import math
from typing import Any

from inference import diagnostics


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable block: metrics, function-space diagnostics, a parameter summary, warnings."""
    lines = []
    s = report.get("sampler", {})
    m = report.get("model", {})
    lines.append(f"Model: {m.get('repr', '?')}")
    lines.append(f"Sampler: {s.get('method', '?')}, {s.get('num_chains', '?')} chains x {s.get('num_samples', '?')} "
                 f"draws after {s.get('num_warmup', '?')} warm-up iterations (seed {s.get('seed', '?')}, "
                 f"{s.get('dtype', '?')})")
    data = report.get("data", {})
    scores = report.get("metrics", {})
    if report.get("task") == "classification":
        lines.append(f"Test metrics (n_test = {data.get('n_test')}):")
        lines.append(f"  accuracy {_fmt(scores.get('accuracy'))}   NLL {_fmt(scores.get('nll'))}   "
                     f"ECE {_fmt(scores.get('ece'))}   Brier {_fmt(scores.get('brier'))}")
    else:
        level = report.get("level", 0.9)
        cov = scores.get(f"coverage_{level:g}")
        lines.append(f"Test metrics ({scores.get('units', 'original')} units, n_test = {data.get('n_test')}):")
        lines.append(f"  RMSE {_fmt(scores.get('rmse'))}   NLL {_fmt(scores.get('nll'))}   "
                     f"CRPS {_fmt(scores.get('crps'))}"
                     f"   {level:.0%} interval coverage {_fmt(cov)}")
    d = report.get("diagnostics", {})
    lines.append(f"Sampler diagnostics in function space ({d.get('quantity', 'f(x_test)')}):")
    lines.append(f"  max R-hat {_fmt(d.get('max_rhat'), '.3f')}   min ESS bulk {_fmt(d.get('min_ess_bulk'), '.0f')}   "
                 f"min ESS tail {_fmt(d.get('min_ess_tail'), '.0f')}   (of {d.get('num_draws')} draws)")
    if d.get("noise_scale_rhat") is not None:
        lines.append(f"  noise scale: R-hat {_fmt(d.get('noise_scale_rhat'), '.3f')}   ESS bulk "
                     f"{_fmt(d.get('noise_scale_ess_bulk'), '.0f')}   "
                     f"ESS tail {_fmt(d.get('noise_scale_ess_tail'), '.0f')}")
    lines.append(f"  divergences {d.get('num_divergences')} (warm-up: {d.get('num_warmup_divergences', 'n/a')})   "
                 f"wall time {_fmt(d.get('wall_time'), '.1f')} s   "
                 f"gradient evaluations {_fmt_int(d.get('grad_evals'))}   "
                 f"min bulk ESS/s {_fmt(d.get('ess_per_second'), '.2f')}")
    summ = report.get("summary")
    if summ and summ.get("rows"):
        lines.append("Posterior summary (noise scale in original units, a few weights):")
        rows = [{k: (math.nan if v is None else v) for k, v in row.items()} for row in summ["rows"]]
        table = diagnostics.SummaryTable(rows=rows, columns=summ["columns"], num_chains=summ.get("num_chains", 0),
                                         num_draws=summ.get("num_draws", 0))
        lines.extend("  " + line for line in table.to_string().splitlines())
    f_warn = report.get("function_space_warnings", [])
    lines.append("Function-space warnings:" if f_warn else "Function-space warnings: none")
    lines.extend(f"  - {w}" for w in f_warn)
    p_warn = report.get("warnings", [])
    if p_warn:
        lines.append("Parameter-space warnings:")
        lines.extend(f"  - {w}" for w in p_warn)
        lines.extend(f"  note: {n}" for n in report.get("notes", []))
    else:
        lines.append("Parameter-space warnings: none")
    return "\n".join(lines)


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _fmt_int(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"
