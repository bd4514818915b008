"""The ``probnets`` console script: the engine's commands (``fit``) plus ``probnets bo``.

Example:
    $ probnets bo --problem hartmann6 --surrogate hmc-bnn --iterations 20 --out bo_run

``probnets bo`` runs a Bayesian-optimisation loop with a live progress bar (iteration, best value, fit
time) and writes ``bo.json`` (every evaluation, best value / regret per iteration, timings) and
``regret.png`` to ``--out``. Options are checked before any evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from probnets_app import fit as engine_cli
from probnets_app.regret_plot import plot_regret
from surrogates.bo import MULTI_OBJECTIVE, SINGLE_OBJECTIVE, run_bo
from surrogates.fit import KINDS
from surrogates.problems import PROBLEMS, get_problem


def build_parser() -> argparse.ArgumentParser:
    parser = engine_cli.build_parser()
    bo = parser.commands.add_parser(
        "bo", help="run a Bayesian-optimisation loop on a benchmark problem",
        description="Bayesian optimisation of a benchmark problem (maximisation) with a probnets or BoTorch "
                    "surrogate: Sobol initial design, then fit -> optimise the acquisition -> evaluate.")
    bo.add_argument("--problem", choices=PROBLEMS, required=True)
    bo.add_argument("--surrogate", choices=sorted(KINDS), default="gp", help="surrogate kind (default: gp)")
    bo.add_argument("--acquisition", choices=SINGLE_OBJECTIVE + MULTI_OBJECTIVE,
                    help="default: qlognei (single objective) or qlognehvi (multi-objective)")
    bo.add_argument("--q", type=engine_cli._positive_int, default=1, help="points per iteration (default: 1)")
    bo.add_argument("--n-init", type=engine_cli._positive_int, default=10, help="initial Sobol points (default: 10)")
    bo.add_argument("--iterations", type=engine_cli._nonnegative_int, default=20, help="BO iterations (default: 20)")
    bo.add_argument("--dim", type=engine_cli._positive_int, help="dimension of bnn-draw / poly-draw")
    bo.add_argument("--seed", type=int, default=0)
    bo.add_argument("--out", required=True, metavar="DIR", help="output folder for bo.json and regret.png")
    bo.add_argument("--checkpoint", metavar="PATH", help="saved after every iteration; resumed from when it exists")
    bo.add_argument("--no-progress", action="store_true", help="no live progress bar")
    bo.set_defaults(handler=_bo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``probnets`` console script; returns the exit status."""
    return engine_cli.main(argv, parser=build_parser())


def _bo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.dim is not None and args.problem not in ("bnn-draw", "poly-draw"):
        parser.error(f"--dim applies to bnn-draw and poly-draw only, not {args.problem}")
    if args.n_init < 2:
        parser.error("--n-init must be at least 2")
    problem = get_problem(args.problem, dim=args.dim, seed=args.seed)
    if args.acquisition is not None and (args.acquisition in MULTI_OBJECTIVE) != (problem.num_objectives > 1):
        kind = "multi" if problem.num_objectives > 1 else "single"
        parser.error(f"--acquisition {args.acquisition} does not fit {args.problem}, a {kind}-objective problem")
    result = run_bo(problem, args.surrogate, args.acquisition, q=args.q, n_init=args.n_init,
                    iterations=args.iterations, seed=args.seed, checkpoint=args.checkpoint,
                    progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bo.json").write_text(json.dumps(result.to_dict(), indent=1))
    figure = plot_regret([result], out / "regret.png")
    what = "hypervolume" if problem.num_objectives > 1 else "best value"
    print(f"{problem.name} with {args.surrogate}: {what} {result.best[-1]:.6g} after {result.X.shape[0]} evaluations"
          + (f", regret {result.regret[-1]:.4g}" if result.regret else ""))
    print(f"mean fit time {sum(result.fit_time) / max(len(result.fit_time), 1):.2f} s, mean acquisition time "
          f"{sum(result.acq_time) / max(len(result.acq_time), 1):.2f} s per iteration")
    print(f"Output files:\n  {out / 'bo.json'}\n  {figure}")
    return 0
