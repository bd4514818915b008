"""``probnets bench``: compare inference methods on data sets over saved splits, resumably, with a report.

Example:
    $ probnets bench --datasets diabetes,boston --methods chees,nuts,mfvi,ensemble --splits 5 --jobs 2 --out bench
    $ probnets bench --datasets runs.csv --target yield --methods map,sghmc --budget sgmcmc=40000 --out bench2

Rerunning the same command continues an interrupted bench: finished cells are read back, not recomputed; on a
finished bench it rewrites the report. Cells record the budgets they ran with, so a bench run before the default
budgets changed is rewritten with its own ``--budget`` (``benchmarks/results/bench/budgets.md`` gives the first
deliverable run's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probnets_app import arguments
from probnets_app.cli import PROG, DataError
from probnets_app.command import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from probnets_app.bench.budget import DEFAULT_BUDGETS
    from probnets_app.bench.methods import METHODS

    parser.epilog = ("Default budgets (gradient evaluations per cell): "
                     + ", ".join(f"{k}={v}" for k, v in DEFAULT_BUDGETS.items() if v))
    parser.add_argument("--datasets", type=arguments.names, required=True, metavar="NAME|PATH.csv[,...]",
                        help="bundled data sets (diabetes, boston, concrete, auto_mpg, cpu_performance, yacht, wine, "
                             "power_plant, protein, breast_cancer, digits, moons) and/or CSV files with a header row")
    parser.add_argument("--target", metavar="COLUMN", help="target column of the CSV data sets")
    parser.add_argument("--task", choices=["regression", "classification"], default="regression",
                        help="task of the CSV data sets (default: regression)")
    parser.add_argument("--methods", type=arguments.names, required=True, metavar="METHOD[,...]",
                        help="bench methods, or 'all': "
                             + "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    parser.add_argument("--splits", type=arguments.positive_int, default=5, help="splits per data set (default: 5)")
    parser.add_argument("--budget", metavar="N|FAMILY=N[,...]",
                        help="gradient evaluations per cell, for every family or per family (default: per family)")
    parser.add_argument("--timeout", type=arguments.positive_float, metavar="SECONDS",
                        help="wall seconds after which a cell is stopped and recorded as failed")
    parser.add_argument("--jobs", type=arguments.positive_int, default=1,
                        help="cells run in parallel processes, each with cpu_count // jobs threads (default: 1)")
    parser.add_argument("--widths", type=arguments.widths, default=(50,), metavar="W[,W...]",
                        help="hidden widths of the shared BNN (default: 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and the cells (default: 0)")
    parser.add_argument("--retry-failed", action="store_true", help="run again the cells recorded as failed")
    parser.add_argument("--in-process", action="store_true",
                        help="run the cells one at a time in this process (for debugging; no --jobs or --timeout; "
                             "peak memory is then the process's)")
    parser.add_argument("--out", required=True, metavar="DIR", help="bench folder (cells, splits and report)")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from probnets_app.bench import methods as registry
    from probnets_app.bench.runner import run

    methods = list(registry.METHODS) if args.methods == ("all",) else list(args.methods)
    unknown = [m for m in methods if m not in registry.METHODS]
    if unknown:
        parser.error(f"argument --methods: unknown method {unknown[0]!r}; choose from all, "
                     f"{', '.join(registry.METHODS)}")
    try:
        run(list(args.datasets), methods, out=args.out, splits=args.splits, budget=args.budget, target=args.target,
            task=args.task, jobs=args.jobs, timeout=args.timeout, seed=args.seed, widths=args.widths,
            retry_failed=args.retry_failed, isolate=not args.in_process,
            log=lambda line: print(f"{PROG}: {line}", file=sys.stderr))
    except ValueError as exc:
        raise DataError(str(exc)) from None
    print((Path(args.out) / "report.md").read_text())
    return 0


COMMAND = Command(
    help="benchmark inference methods on data sets (resumable; tables, Pareto, calibration and trace figures)",
    description="Fit every method to every split of every data set (Hernandez-Lobato and Adams protocol: 90/10 "
                "splits with saved indices, training-set standardisation), score the test rows (log-likelihood, "
                "RMSE, CRPS, 90% coverage in original units; accuracy, NLL, ECE, Brier for classes) and write one "
                "JSON per cell, results.csv, report.md, a self-contained report.html, and per data set "
                "pareto_<data>.png, calibration_<data>.png, coverage_<data>.png and the trace and rank plots of the "
                "MCMC cells of largest R-hat (traces/) into --out, with the check of the HMC cells against published "
                "log-likelihoods. Rerunning the command with the same options on a finished bench rewrites the "
                "report without recomputing a cell (give the --budget of its run if the defaults changed since).",
    add_arguments=_add_arguments,
    run=_run,
)
