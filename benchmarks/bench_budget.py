"""The bench deliverable's cost per method and data set, and its estimated time at the default budgets.

Reads the cells of the deliverable run (``--cells``, default ``benchmarks/results/bench``) and, optionally, the cells
of a probe run of the same grid at the current default budgets on fewer splits (``--probe``; its cells record CPU
time). Writes a markdown report (``--out``) with:

* per method and data set: the measured seconds of the deliverable's cells (wall time where they recorded no CPU
  time), gradient evaluations and seconds per gradient, and the estimate at the default budgets
  (``probnets_app.bench.cost.estimate``: seconds times the ratio of the budgets);
* the old and new budget per family;
* the estimated total: cell seconds, the deliverable's prediction seconds, and a per-cell process overhead outside
  fit and predictions (``probnets_app.bench.cost.overhead_seconds`` of the cells in ``--overhead-cells``, a run
  with the current runner, else ``--overhead``), divided by ``--jobs``;
* with a probe: the same estimate from the probe's CPU times (per data set and method: the probe's seconds on its
  splits, scaled by the deliverable's ratio of all splits to those splits), and the probe's test log-likelihood
  beside the deliverable's on the same splits.

Usage::

    python benchmarks/bench_budget.py [--cells DIR] [--probe DIR] [--overhead-cells DIR] [--jobs 2]
        [--out benchmarks/results/bench/budgets.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from probnets_app.bench import cost
from probnets_app.bench.budget import DEFAULT_BUDGETS


def load(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*/*/split*.json"))]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=Path, default=Path("benchmarks/results/bench"))
    parser.add_argument("--probe", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--overhead-cells", type=Path,
                        help="a bench folder whose cells ran with the current runner and recorded process CPU time")
    parser.add_argument("--overhead", type=float, default=4.4,
                        help="seconds per cell process outside fit and predictions without --overhead-cells "
                             "(default: 4.4, the deliverable run's (2 x elapsed - fit - predict time) / cells)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    records = load(args.cells)
    rows = cost.estimate(records)
    old_budgets = {r["family"]: r["budget"] for r in rows}
    probe = load(args.probe) if args.probe else []
    measured = load(args.overhead_cells) if args.overhead_cells else []
    overhead = cost.overhead_seconds(measured)
    overhead_note = (f"{overhead:.2f} s (mean process CPU time outside fit and predictions of the {len(measured)} "
                     f"cells in `{args.overhead_cells}`)" if overhead is not None
                     else f"{args.overhead:.2f} s (--overhead)")
    overhead = args.overhead if overhead is None else overhead
    summary = args.cells / "summary.json"  # the report's order of the data sets, which the command reproduces
    data_sets = list(dict.fromkeys([*(s["data_set"] for s in json.loads(summary.read_text()) if summary.exists()),
                                    *(r["data_set"] for r in rows)]))
    methods = sorted({r["method"] for r in rows}, key=lambda m: -sum(r["seconds"] for r in rows if r["method"] == m))
    by = {(r["data_set"], r["method"]): r for r in rows}

    lines = ["# Bench budgets: measured cost and the estimate at the default budgets", "",
             f"Cells: `{args.cells}` ({len(records)} cells). Cost of a cell: CPU seconds of its fit where recorded, "
             "else its wall time (the deliverable's cells: wall time at machine load "
             f"{_load_range(records)}, so these figures err high). New seconds: measured seconds x new budget / "
             "old budget (every plan is proportional to its budget; GP baselines have none).", "",
             "## Budgets per family (gradient evaluations per cell)", "", "| family | old | new |", "|---|---|---|"]
    lines += [f"| {family} | {old_budgets.get(family, 'n/a')} | {new} |" for family, new in DEFAULT_BUDGETS.items()]
    lines += ["", "## Seconds per method (sum over splits)", "",
              "| method | family | " + " | ".join(f"{d} s | {d} us/grad" for d in data_sets) + " | total s | share | "
              "new total s |", "|---|---|" + "---|---|" * len(data_sets) + "---|---|---|"]
    grand = sum(r["seconds"] for r in rows)
    for method in methods:
        cells = [by.get((d, method)) for d in data_sets]
        total = sum(c["seconds"] for c in cells if c)
        new_total = sum(c["new_seconds"] for c in cells if c)
        parts = []
        for c in cells:
            per = c and c["seconds_per_grad"]
            parts.append(f"{c['seconds']:.0f} | {per * 1e6:.0f}" if per else (f"{c['seconds']:.0f} | n/a" if c
                                                                              else "n/a | n/a"))
        family = next(c["family"] for c in cells if c)
        lines.append(f"| {method} | {family} | " + " | ".join(parts) + f" | {total:.0f} | {total / grand:.1%} | "
                     f"{new_total:.0f} |")
    old_total = cost.total_seconds(rows, overhead, len(records), new=False)
    new_total = cost.total_seconds(rows, overhead, len(records))
    lines += ["", "## Estimated deliverable time", "",
              f"Per-cell process overhead: {overhead_note}.", "",
              f"- At the old budgets with this overhead: {old_total:.0f} s of cell time, "
              f"{old_total / args.jobs / 60:.1f} min at --jobs {args.jobs}.",
              f"- At the default budgets, from the deliverable's seconds: {new_total:.0f} s, "
              f"{new_total / args.jobs / 60:.1f} min at --jobs {args.jobs}."]
    if probe:
        lines += _probe_section(records, rows, probe, overhead, args.jobs, args.probe)
    spend = [r for r in rows if r["family"] == "hmc" and r["grad_evals"]]
    lines += ["", "## The HMC samplers' spend (gradient evaluations made / budget, mean over splits)", "",
              "| data set | " + " | ".join(sorted({r["method"] for r in spend})) + " |",
              "|---|" + "---|" * len({r["method"] for r in spend})]
    for data_set in data_sets:
        lines.append(f"| {data_set} | " + " | ".join(
            f"{by[data_set, m]['grad_evals'] / by[data_set, m]['cells'] / by[data_set, m]['budget']:.2f}"
            for m in sorted({r["method"] for r in spend})) + " |")
    flags = ",".join(f"{family}={count}" for family, count in old_budgets.items() if count)
    lines += ["", "ChEES adapts its trajectory length, so its iterations, sized by 48 leapfrog steps per iteration, "
              "can spend more than the budget where its trajectories grow longer.", "",
              "## Rewriting the deliverable's report", "",
              "Its cells record the budgets they ran with; with the defaults changed, the command that rewrites the "
              "report without recomputing a cell gives them:", "",
              f"    probnets bench --datasets {','.join(data_sets)} --methods all --splits 5 --budget {flags} "
              f"--jobs {args.jobs} --out {args.cells}"]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return text


def _probe_section(records: list[dict], rows: list[dict], probe: list[dict], overhead: float, jobs: int,
                   folder: Path) -> list[str]:
    """The estimate with the probe's CPU times where it ran (per data set and method: its seconds on its splits,
    scaled by the deliverable's ratio of all splits to those splits), the deliverable's estimate elsewhere, and the
    probe's test log-likelihoods beside the deliverable's on the same splits."""
    def key(r):
        return r["data_set"], r["method"]

    done = [r for r in probe if r.get("status") == "ok"]
    old = {}
    for r in records:
        if r.get("status") == "ok":
            old.setdefault(key(r), []).append(r)
    table = ["| data set | method | probe CPU s | deliverable s (same splits, its budget) | probe test_ll | "
             "deliverable test_ll (same splits) |", "|---|---|---|---|---|---|"]
    total, probed = 0.0, 0
    for row in rows:
        k = (row["data_set"], row["method"])
        mine = [r for r in done if key(r) == k]
        total += row["predict_seconds"]
        if not mine:
            total += row["new_seconds"]
            continue
        probed += 1
        splits = {r["split"] for r in mine}
        theirs = [r for r in old[k] if r["split"] in splits]
        probe_s = sum(cost.cell_seconds(r) for r in mine)
        same = sum(cost.cell_seconds(r) for r in theirs)
        total += probe_s * row["seconds"] / same
        ll = sum(r["metrics"]["test_ll"] for r in mine) / len(mine)
        ll_old = sum(r["metrics"]["test_ll"] for r in theirs) / len(theirs)
        table.append(f"| {k[0]} | {k[1]} | {probe_s:.1f} | {same:.1f} | {ll:.3f} | {ll_old:.3f} |")
    cells = sum(row["cells"] for row in rows)
    estimate = total + overhead * cells
    return ["", f"## Probe at the default budgets (`{folder}`, {len(done)} cells, split 0, machine load "
            f"{_load_range(probe)})", "",
            f"With the probe's CPU times for the {probed} of {len(rows)} data set / method pairs it ran (the methods "
            "whose budget changed, and all of diabetes) and the estimate above for the others, the deliverable's "
            f"prediction seconds and the overhead above: {estimate:.0f} s of cell time, {estimate / jobs / 60:.1f} min "
            f"at --jobs {jobs}. CPU time too grows under contention (the probe's cells of unchanged budgets took up "
            "to 1.4 times the deliverable's wall time), so on a quiet machine both estimates err high.", "", *table]


def _load_range(records: list[dict]) -> str:
    loads = [r["load_average"][0] for r in records if r.get("load_average")]
    return f"{min(loads):.2f} to {max(loads):.2f}" if loads else "unknown"


if __name__ == "__main__":
    main()
