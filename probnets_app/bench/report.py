"""The bench's tables and reports: one tidy row per cell, means and standard errors over splits, the markdown and
HTML reports with the best value of every column marked and paired tests against it, the failed cells and the run's
metadata.

Written into the bench folder: ``results.csv`` (one row per cell), ``summary.json`` (the aggregated table),
``report.md`` with the check against the literature (:mod:`probnets_app.bench.references`), the self-contained
``report.html`` (:mod:`probnets_app.bench.html_page`) and the figures of :mod:`probnets_app.bench.figures`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from probnets_app.bench import references
from probnets_app.bench.stats import mean_se

#: Aggregated columns per task, with how the best value is chosen (min, max, or the value closest to a target).
COLUMNS = {
    "regression": (("test_ll", "max"), ("rmse", "min"), ("crps", "min"), ("coverage_0.9", 0.9)),
    "classification": (("accuracy", "max"), ("nll", "min"), ("ece", "min"), ("brier", "min")),
}
#: Cost and MCMC columns of every table.
COST_COLUMNS = (("wall_time", "min"), ("cpu_time", "min"), ("grad_evals", None), ("budget_used", None),
                ("peak_memory_mb", None), ("max_rhat", 1.0), ("ess_per_s", "max"), ("divergences", None))
#: Columns every table shows, as ``n/a`` where no cell recorded them (cells written before CPU time was recorded).
ALWAYS_SHOWN = ("cpu_time",)
#: MCMC cells per data set whose trace and rank plots the reports show (:func:`worst_traces`).
TRACE_CELLS = 4
#: Level of the paired t-tests against the best method of a column.
SIGNIFICANCE = 0.05
_DIAGNOSTICS = ("max_rhat", "min_ess_bulk", "min_ess_tail", "ess_per_s", "divergences")


def flat_rows(records: list[dict]) -> list[dict]:
    """One flat dict per cell record: identity, status, error, cost, metrics and diagnostics as columns."""
    rows = []
    for r in records:
        row = {k: r.get(k) for k in ("data_set", "method", "split", "status", "error", "family", "budget", "seed",
                                     "wall_time", "cpu_time", "process_cpu_time", "grad_evals",
                                     "peak_memory_mb", "task", "model")}
        if r.get("grad_evals") and r.get("budget"):
            row["budget_used"] = r["grad_evals"] / r["budget"]
        row["load_average"] = (r.get("load_average") or [None])[0]
        row.update(r.get("metrics") or {})
        row.update({k: v for k, v in (r.get("diagnostics") or {}).items() if k in _DIAGNOSTICS})
        rows.append(row)
    return rows


def as_table(rows: list[dict]):
    """``rows`` as a pandas ``DataFrame`` when pandas is installed, else unchanged."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard error over the finished splits per data set and method (keys ``<col>`` and
    ``<col>_se``), with the counts of finished and failed cells and the first error."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["data_set"], row["method"]), []).append(row)
    summary = []
    for (data_set, method), cells in groups.items():
        ok = [c for c in cells if c["status"] == "ok"]
        failed = [c for c in cells if c["status"] != "ok"]
        entry = {"data_set": data_set, "method": method, "task": ok[0]["task"] if ok else None, "splits": len(ok),
                 "failed": len(failed), "error": failed[0]["error"] if failed else None}
        columns = [c for task in COLUMNS.values() for c, _ in task] + [c for c, _ in COST_COLUMNS]
        for column in columns:
            values = [c[column] for c in ok if isinstance(c.get(column), (int, float)) and math.isfinite(c[column])]
            if values:
                entry[column], entry[f"{column}_se"] = mean_se(values)
        summary.append(entry)
    return summary


def markdown(summary: list[dict], rows: list[dict] | None = None) -> str:
    """One table per data set: ``mean +- se`` per column, the best value of each quality/cost column in bold and,
    given the per-cell ``rows``, a dagger on the values not significantly different from it (:func:`not_worse`)."""
    lines = ["# probnets bench", "", LEGEND, ""]
    for table in tables(summary, rows):
        lines += [f"## {table['data_set']} ({table['task']})", "",
                  "| method | splits | failed | " + " | ".join(table["columns"]) + " |",
                  "|---|---|---|" + "---|" * len(table["columns"])]
        for row in table["rows"]:
            cells = [f"**{text}**" if mark == "best" else f"{text} \u2020" if mark == "tie" else text
                     for text, mark in row["cells"]]
            lines.append(f"| {row['method']} | {row['splits']} | {row['failed']} | " + " | ".join(cells) + " |")
        if table["errors"]:
            lines += ["", "Failures: " + "; ".join(f"{method}: {error[:200]}" for method, error in table["errors"])]
        lines.append("")
    return "\n".join(lines)


#: What the tables show (the markdown and HTML reports).
LEGEND = ("Mean +- standard error over splits; bold: best in its column (coverage: closest to 0.9, R-hat: closest to "
          f"1); \u2020: not significantly different from the best (two-sided paired t-test over the splits both "
          f"finished, p >= {SIGNIFICANCE}). Regression metrics in the target's original units; wall_time and cpu_time: "
          "wall and CPU seconds of the fit, per cell (CPU time, all threads of the cell's process, is the fair cost on "
          "a shared machine; n/a: cells written before it was recorded); budget_used: gradient evaluations made / "
          "budget (the HMC samplers' iterations are sized by an estimated trajectory length).")


def tables(summary: list[dict], rows: list[dict] | None = None) -> list[dict]:
    """The report's tables, one per data set: ``data_set``, ``task``, ``columns``, ``rows`` (``method``,
    ``splits``, ``failed`` and ``cells``: ``(text, mark)`` per column, ``mark`` ``"best"``, ``"tie"`` (not
    significantly worse than the best, given the per-cell ``rows``) or ``None``) and ``errors``
    (``(method, first error)``)."""
    out = []
    for data_set in dict.fromkeys(s["data_set"] for s in summary):
        entries = [s for s in summary if s["data_set"] == data_set]
        task = next((s["task"] for s in entries if s["task"]), "regression")
        columns = [*COLUMNS[task], *COST_COLUMNS]
        columns = [(c, rule) for c, rule in columns if c in ALWAYS_SHOWN or any(c in s for s in entries)]
        best = {c: _best([s.get(c) for s in entries], rule) for c, rule in columns if rule is not None}
        leaders = {c: next(s["method"] for s in entries if s.get(c) == best[c]) for c in best if best[c] is not None}
        table_rows = []
        for s in entries:
            cells = []
            for c, rule in columns:
                mark = None
                if c in leaders and s["method"] == leaders[c]:
                    mark = "best"
                elif c in leaders and rows is not None and s.get(c) is not None and not_worse(
                        rows, data_set, c, rule, s["method"], leaders[c]):
                    mark = "tie"
                text = _format(s.get(c), s.get(f"{c}_se"))
                cells.append((text or ("n/a" if c in ALWAYS_SHOWN else ""), mark))
            table_rows.append({"method": s["method"], "splits": s["splits"], "failed": s["failed"], "cells": cells})
        out.append({"data_set": data_set, "task": task, "columns": [c for c, _ in columns], "rows": table_rows,
                    "errors": [(s["method"], s["error"]) for s in entries if s["error"]]})
    return out


def not_worse(rows: list[dict], data_set: str, column: str, rule, method: str, best: str) -> bool:
    """Whether ``method`` is not significantly worse than ``best`` in ``column`` on ``data_set``: a two-sided paired
    t-test over the splits both finished (at least 2) gives ``p >= SIGNIFICANCE`` (scores ``|value - target|``
    for a target rule, e.g. coverage). Fewer than 2 common splits: ``False`` (no evidence either way is shown)."""
    from scipy import stats

    def by_split(name):
        return {r["split"]: r[column] for r in rows if r["data_set"] == data_set and r["method"] == name
                and r["status"] == "ok" and isinstance(r.get(column), (int, float)) and math.isfinite(r[column])}

    a, b = by_split(method), by_split(best)
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return False
    score = (lambda v: v) if rule in ("min", "max") else (lambda v: abs(v - rule))
    x, y = [score(a[k]) for k in common], [score(b[k]) for k in common]
    if x == y:
        return True
    p = stats.ttest_rel(x, y).pvalue
    return bool(math.isnan(p) or p >= SIGNIFICANCE)


def _best(values: list, rule) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    if rule == "min":
        return min(values)
    if rule == "max":
        return max(values)
    return min(values, key=lambda v: abs(v - rule))


def _format(value, se) -> str:
    if value is None:
        return ""
    text = f"{value:.4g}"
    if se is not None and math.isfinite(se):
        text += f" +- {se:.2g}"
    return text


def write_report(records: list[dict], out: Path) -> list[Path]:
    """Write ``results.csv``, ``summary.json``, ``report.md``, the self-contained ``report.html`` and the figures
    (:mod:`probnets_app.bench.figures`: ``pareto_``, ``calibration_`` and ``coverage_<data set>.png``,
    ``traces/trace_<data set>_<method>_<split>.png``); returns the paths written."""
    from probnets_app.bench import figures, html_page

    rows = flat_rows(records)
    summary = summarise(rows)
    written = [out / "results.csv", out / "summary.json", out / "report.md", out / "report.html"]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(written[0], "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    written[1].write_text(json.dumps(summary, indent=1))
    text = markdown(summary, rows)
    loads = [row["load_average"] for row in rows if row.get("load_average") is not None]
    if loads:
        text += (f"\nMachine load (1-minute load average when a cell started): {min(loads):.2f} to {max(loads):.2f} "
                 f"over {len(loads)} cells.\n")
    checks = references.check(summary)
    text += "\n" + references.markdown(checks)
    traces = figures.trace_figures(records, out, worst_traces(records, out))
    by_data_set, trace_pages = {}, {}
    for data_set in dict.fromkeys(s["data_set"] for s in summary):
        by_data_set[data_set] = figures.data_set_figures(data_set, summary, records, out)
        for caption, path in by_data_set[data_set]:
            alt = data_set if path.name.startswith("pareto_") else caption
            text += f"\n![{alt}]({path.name})\n"
            written.append(path)
        trace_pages[data_set] = [(f"{d} / {m}, split {k}: trace, histogram and rank plot of the test outputs of "
                                  "largest R-hat", path) for (d, m, k), path in traces.items() if d == data_set]
        if trace_pages[data_set]:
            text += ("\nTrace and rank plots (test outputs of largest R-hat) of the split of largest R-hat of "
                     f"{', '.join(references.CHECKED_METHODS)} and of the other MCMC methods of largest R-hat, "
                     f"{TRACE_CELLS} cells (every MCMC cell's draws: cells/<data set>/<method>/split<k>.trace.npz): "
                     + ", ".join(f"[{m} split {k}](traces/{path.name})" for (d, m, k), path in traces.items()
                                 if d == data_set) + "\n")
    written += list(traces.values())
    written[2].write_text(text)
    written[3].write_text(html_page.page(tables(summary, rows), LEGEND, by_data_set, trace_pages, failures(records),
                                         run_metadata(records), checks))
    return written


def worst_traces(records: list[dict], out: Path, count: int = TRACE_CELLS,
                 always: tuple[str, ...] = references.CHECKED_METHODS) -> list[tuple[str, str, int]]:
    """The MCMC cells whose trace plots the reports show, as ``(data set, method, split)``: per data set, the split of
    largest function-space R-hat (``NaN`` or missing last) of each method in ``always`` (the literature check's
    samplers), then of the other methods of largest R-hat, ``count`` cells in all; only cells with saved draws."""
    from probnets_app.bench.cell import cell_path, trace_path

    worst: dict[str, dict[str, tuple[float, int]]] = {}
    for record in records:
        key = (record["data_set"], record["method"], record["split"])
        if record.get("status") != "ok" or not record.get("trace") or not trace_path(cell_path(out, *key)).exists():
            continue
        rhat = (record.get("diagnostics") or {}).get("max_rhat")
        rhat = rhat if isinstance(rhat, (int, float)) and math.isfinite(rhat) else -math.inf
        methods = worst.setdefault(key[0], {})
        if key[1] not in methods or rhat > methods[key[1]][0]:
            methods[key[1]] = (rhat, key[2])
    shown = []
    for data_set, methods in worst.items():
        order = [m for m in always if m in methods]
        order += sorted((m for m in methods if m not in always), key=lambda m: methods[m][0], reverse=True)
        shown += [(data_set, m, methods[m][1]) for m in order[:count]]
    return shown


def failures(records: list[dict]) -> list[dict]:
    """``data_set``, ``method``, ``split`` and ``error`` of every failed cell."""
    return [{k: r.get(k) for k in ("data_set", "method", "split", "error")} for r in records if r.get("status") != "ok"]


def run_metadata(records: list[dict]) -> dict:
    """What the report states about the run: cells, the seed of split 0, the budgets and settings per data set and
    method, the versions (every distinct set), threads per cell and the range of the 1-minute load average when
    cells started (keys absent from old records are left out)."""
    seeds = {r["seed"] - r["split"] for r in records if isinstance(r.get("seed"), int)}
    budgets = {}
    for r in records:  # the settings a plan makes of a budget may depend on the data set (e.g. its rows)
        budgets.setdefault(f"{r['data_set']} / {r['method']}", {"family": r.get("family"), "budget": r.get("budget"),
                                                                "settings": r.get("settings")})
    versions = list({json.dumps(r["versions"], sort_keys=True): r["versions"] for r in records if r.get("versions")}
                    .values())
    loads = [r["load_average"][0] for r in records if r.get("load_average")]
    return {"cells": len(records), "finished": sum(r.get("status") == "ok" for r in records),
            "seed": sorted(seeds), "budgets": budgets, "versions": versions,
            "threads": sorted({r["threads"] for r in records if r.get("threads") is not None}),
            "load_average": [min(loads), max(loads)] if loads else None}
