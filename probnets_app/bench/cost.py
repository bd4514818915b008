"""What a bench grid costs: the seconds its finished cells took, and what the same grid would take at other budgets.

A cell's cost is the CPU time of its fit where recorded (``cpu_time``: the fair cost on a shared machine), else its
wall time (for a one-thread cell at least its CPU time, so an estimate from it errs high). Every method's settings
are proportional to its budget (``probnets_app.bench.methods``: iterations, steps, particles or epochs are the
budget divided by a cost per unit), so a cell's cost at another budget is its cost times the ratio of the budgets;
methods without a budget (the GP baselines) keep their cost. Each cell also pays for its predictions on the test
rows (``predict_time``, kept as measured) and its process a fixed cost outside the fit and the predictions (data,
warm-up, scoring): ``process_cpu_time - cpu_time - predict_cpu_time`` where recorded.

Example:
    >>> rows = estimate(records, {"hmc": 300_000, "vi": 8_000})
    >>> total_seconds(rows, overhead=4.0, cells=len(records)) / 2 / 60   # minutes at --jobs 2
"""

from __future__ import annotations

import math

from probnets_app.bench.budget import budget_for


def cell_seconds(record: dict) -> float | None:
    """The cost of a finished cell's fit: its CPU time where recorded, else its wall time (``None`` if failed)."""
    if record.get("status") != "ok":
        return None
    cpu = record.get("cpu_time")
    return cpu if isinstance(cpu, (int, float)) else record.get("wall_time")


def overhead_seconds(records: list[dict]) -> float | None:
    """Mean CPU seconds of a cell process outside its fit and predictions, over the cells that recorded its CPU time
    (``None``: none did)."""
    gaps = [r["process_cpu_time"] - r["cpu_time"] - r["predict_cpu_time"] for r in records
            if all(isinstance(r.get(k), (int, float)) for k in ("process_cpu_time", "cpu_time", "predict_cpu_time"))]
    return sum(gaps) / len(gaps) if gaps else None


def estimate(records: list[dict], budget: dict[str, int] | None = None) -> list[dict]:
    """Per data set and method: the measured cost of its finished cells and the estimate at ``budget``.

    Args:
        records: Cell records (one JSON each, ``probnets_app.bench.cell``).
        budget: Gradient evaluations per family (``budget.parse_budget``); families not named take their defaults.

    Returns:
        ``data_set``, ``method``, ``family``, ``cells`` (finished), ``seconds`` (measured, summed over the cells),
        ``grad_evals`` (summed; ``None`` where not counted), ``seconds_per_grad``, ``predict_seconds`` (summed),
        ``budget`` (the cells'), ``new_budget`` and ``new_seconds`` (``seconds`` times ``new_budget / budget``;
        unchanged without a budget).

    Raises:
        ValueError: Cells of one data set and method written with different budgets.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        if cell_seconds(record) is not None:
            groups.setdefault((record["data_set"], record["method"]), []).append(record)
    rows = []
    for (data_set, method), cells in groups.items():
        budgets = {c.get("budget") for c in cells}
        if len(budgets) != 1:
            raise ValueError(f"{data_set} / {method}: cells of different budgets {sorted(budgets)}")
        old = budgets.pop()
        family = cells[0]["family"]
        new = budget_for(family, budget)
        seconds = sum(cell_seconds(c) for c in cells)
        grads = [c.get("grad_evals") for c in cells]
        grads = sum(grads) if all(isinstance(g, int) for g in grads) else None
        rows.append({"data_set": data_set, "method": method, "family": family, "cells": len(cells),
                     "seconds": seconds, "grad_evals": grads,
                     "seconds_per_grad": seconds / grads if grads else None,
                     "predict_seconds": sum(c.get("predict_time") or 0.0 for c in cells), "budget": old,
                     "new_budget": new,
                     "new_seconds": seconds * new / old if old else seconds})
    return rows


def total_seconds(rows: list[dict], overhead: float, cells: int, new: bool = True) -> float:
    """The summed cost of ``rows`` (:func:`estimate`; ``new``: at the new budget) with their predictions, plus
    ``overhead`` seconds for each of ``cells`` cell processes."""
    if not (isinstance(overhead, (int, float)) and math.isfinite(overhead) and overhead >= 0):
        raise ValueError(f"overhead must be a non-negative number of seconds, got {overhead!r}")
    return sum(r["new_seconds" if new else "seconds"] + r["predict_seconds"] for r in rows) + overhead * cells
