"""The bench's figures per data set, drawn from the cell records: the Pareto front of test NLL against wall time,
calibration curves (regression) or reliability diagrams (classification), coverage of central intervals, and the
trace and rank plots of the MCMC cells the report shows (``probnets_app.bench.report.worst_traces``).

Cells written before the records had calibration arrays or trace draws are left out of those figures (a data set
whose cells have none gets no such figure).
"""

from __future__ import annotations

import math
from pathlib import Path

from probnets_app.bench.cell import cell_path, trace_path
from probnets_app.bench.stats import mean_se

#: Nominal levels shown in the coverage figure (a subset of ``probnets_app.bench.cell.CALIBRATION_LEVELS``).
COVERAGE_LEVELS = (0.5, 0.9)
#: Resolution of the trace plots (dots per inch): about 150 kB a plot of 16 chains, a third of the default 100's.
TRACE_DPI = 60


def data_set_figures(data_set: str, summary: list[dict], records: list[dict], out: Path) -> list[tuple[str, Path]]:
    """Write the Pareto, calibration and coverage figures of ``data_set`` into ``out`` that its cells allow;
    returns ``(caption, path)`` pairs."""
    from probnets_app.plots import plot_calibration_curves, plot_coverage, plot_pareto, plot_reliability_curves

    figures = []
    points = [{"label": s["method"], "x": s["wall_time"], "y": _nll(s), "x_err": _finite(s.get("wall_time_se")),
               "y_err": _finite(s.get("test_ll_se", s.get("nll_se")))}
              for s in summary if s["data_set"] == data_set and "wall_time" in s and _nll(s) is not None]
    if points:
        title = f"{data_set}: test NLL against wall time"
        figures.append((title, plot_pareto(points, out / f"pareto_{data_set}.png", title=title)))
    cells = [r for r in records if r["data_set"] == data_set and r.get("status") == "ok" and r.get("calibration")]
    by_method: dict[str, list[dict]] = {}
    for record in cells:
        by_method.setdefault(record["method"], []).append(record["calibration"])
    if not by_method:
        return figures
    if all("levels" in c for calibrations in by_method.values() for c in calibrations):
        curves = [regression_curve(method, calibrations) for method, calibrations in by_method.items()]
        title = f"{data_set}: calibration of central intervals (mean over splits)"
        figures.append((title, plot_calibration_curves(curves, out / f"calibration_{data_set}.png", title=title)))
        coverage = [{"label": c["label"], "coverage": {level: (c["observed"][i], c["observed_err"][i])
                                                        for i, level in enumerate(c["levels"])
                                                        if level in COVERAGE_LEVELS}} for c in curves]
        title = f"{data_set}: coverage of central intervals (mean +- se over splits)"
        figures.append((title, plot_coverage(coverage, out / f"coverage_{data_set}.png", title=title)))
    else:
        curves = [reliability_curve(method, calibrations) for method, calibrations in by_method.items()]
        title = f"{data_set}: reliability diagram (splits pooled)"
        figures.append((title, plot_reliability_curves(curves, out / f"calibration_{data_set}.png", title=title)))
    return figures


def regression_curve(method: str, calibrations: list[dict]) -> dict:
    """Mean and standard error over splits of the observed coverage at every level the cells share."""
    levels = [level for level in calibrations[0]["levels"] if all(level in c["levels"] for c in calibrations)]
    stats = [mean_se([c["observed"][c["levels"].index(level)] for c in calibrations]) for level in levels]
    return {"label": method, "levels": levels, "observed": [m for m, _ in stats],
            "observed_err": [se if math.isfinite(se) else None for _, se in stats]}


def reliability_curve(method: str, calibrations: list[dict]) -> dict:
    """The reliability bins of all splits pooled: per bin, the count-weighted mean confidence and accuracy."""
    bins = len(calibrations[0]["counts"])
    calibrations = [c for c in calibrations if len(c["counts"]) == bins]
    counts = [sum(c["counts"][b] for c in calibrations) for b in range(bins)]

    def pooled(key: str) -> list[float | None]:
        return [sum(c[key][b] * c["counts"][b] for c in calibrations if c["counts"][b]) / counts[b] if counts[b]
                else None for b in range(bins)]

    return {"label": method, "confidence": pooled("confidence"), "accuracy": pooled("accuracy"), "counts": counts}


def trace_figures(records: list[dict], out: Path, keys: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], Path]:
    """Write ``traces/trace_<data set>_<method>_<split>.png`` (trace, histogram and rank plot of the test outputs
    of largest R-hat, at ``TRACE_DPI``) for the MCMC cells ``keys`` (``(data set, method, split)``) that have saved
    draws, unless it is newer than the draws; returns the paths by key, in the order of ``keys``."""
    import numpy as np

    from probnets_app.plots import plot_trace

    by_key = {(r["data_set"], r["method"], r["split"]): r for r in records}
    written = {}
    for key in keys:
        record = by_key.get(key, {})
        trace = record.get("trace")
        draws_file = trace_path(cell_path(out, *key))
        if record.get("status") != "ok" or not trace or not draws_file.exists():
            continue
        png = out / "traces" / "trace_{}_{}_{}.png".format(*key)
        if not png.exists() or png.stat().st_mtime < draws_file.stat().st_mtime:
            with np.load(draws_file) as saved:
                names = [f"{label}\nR-hat {rhat:.3f}" for label, rhat in zip(trace["labels"], trace["rhat"])]
                plot_trace(saved["draws"], png, names=names, max_params=len(names), ranks=True, dpi=TRACE_DPI)
        written[key] = png
    return written


def _nll(entry: dict) -> float | None:
    if "test_ll" in entry:
        return -entry["test_ll"]
    return entry.get("nll")


def _finite(value) -> float | None:
    return value if value is not None and math.isfinite(value) else None
