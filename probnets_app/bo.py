"""``probnets bo``: a Bayesian-optimisation loop on a benchmark problem.

Example:
    $ probnets bo --problem hartmann6 --surrogate hmc-bnn --iterations 20 --out bo_run
    $ probnets bo --problem branin --surrogate mp-gelu-bnn --surrogate-option activation=exact-gelu --out bo_gelu

Runs a loop with a live progress bar (iteration, best value, fit time) and writes ``bo.json`` (every
evaluation, best value / regret per iteration, timings) and ``regret.png`` to ``--out``. Options are
checked before any evaluation.
"""

from __future__ import annotations

import argparse
import json

from probnets_app import arguments, output
from probnets_app.command import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from probnets_app.light_import import light_module

    names = light_module("surrogates", "names")  # no BoTorch import for --help
    parser.add_argument("--problem", choices=names.PROBLEMS, required=True)
    parser.add_argument("--surrogate", choices=sorted(names.SURROGATE_KINDS), default="gp",
                        help="surrogate kind (default: gp)")
    parser.add_argument("--surrogate-option", type=arguments.key_value, action="append", default=[],
                        metavar="NAME=VALUE", dest="surrogate_options",
                        help="a fit option of the surrogate kind, repeatable, e.g. activation=exact-gelu, "
                             "num_steps=500, widths=(32,32)")
    parser.add_argument("--acquisition", choices=names.SINGLE_OBJECTIVE + names.MULTI_OBJECTIVE,
                        help="default: qlognei (single objective) or qlognehvi (multi-objective)")
    parser.add_argument("--q", type=arguments.positive_int, default=1, help="points per iteration (default: 1)")
    parser.add_argument("--n-init", type=arguments.positive_int, default=10, help="initial Sobol points (default: 10)")
    parser.add_argument("--iterations", type=arguments.nonnegative_int, default=20,
                        help="BO iterations (default: 20)")
    parser.add_argument("--dim", type=arguments.positive_int, help="dimension of bnn-draw / poly-draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for bo.json and regret.png")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="saved after every iteration; resumed from when it exists")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from probnets_app.regret_plot import plot_regret
    from surrogates.bo import run_bo
    from surrogates.fit import check_options
    from surrogates.names import MULTI_OBJECTIVE
    from surrogates.problems import get_problem

    out = output.check_out_dir(args.out)
    if args.checkpoint is not None:
        output.check_file_path(args.checkpoint, "--checkpoint")
    if args.dim is not None and args.problem not in ("bnn-draw", "poly-draw"):
        parser.error(f"--dim applies to bnn-draw and poly-draw only, not {args.problem}")
    if args.n_init < 2:
        parser.error("--n-init must be at least 2")
    options = dict(args.surrogate_options)
    if len(options) < len(args.surrogate_options):
        parser.error("--surrogate-option: each NAME at most once")
    try:
        check_options(args.surrogate, options)
    except ValueError as error:
        parser.error(f"--surrogate-option: {error}")
    problem = get_problem(args.problem, dim=args.dim, seed=args.seed)
    if args.acquisition is not None and (args.acquisition in MULTI_OBJECTIVE) != (problem.num_objectives > 1):
        kind = "multi" if problem.num_objectives > 1 else "single"
        parser.error(f"--acquisition {args.acquisition} does not fit {args.problem}, a {kind}-objective problem")
    result = run_bo(problem, args.surrogate, args.acquisition, q=args.q, n_init=args.n_init,
                    iterations=args.iterations, seed=args.seed, surrogate_options=options,
                    checkpoint=args.checkpoint,
                    progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    output.remove_known_outputs(out, output.BO_OUTPUTS)
    (out / "bo.json").write_text(json.dumps(dict(result.to_dict(), surrogate_options=options), indent=1))
    figure = plot_regret([result], out / "regret.png")
    what = "hypervolume" if problem.num_objectives > 1 else "best value"
    print(f"{problem.name} with {args.surrogate}: {what} {result.best[-1]:.6g} after {result.X.shape[0]} evaluations"
          + (f", regret {result.regret[-1]:.4g}" if result.regret else ""))
    print(f"mean fit time {sum(result.fit_time) / max(len(result.fit_time), 1):.2f} s, mean acquisition time "
          f"{sum(result.acq_time) / max(len(result.acq_time), 1):.2f} s per iteration")
    print(f"Output files:\n  {out / 'bo.json'}\n  {figure}")
    return 0


COMMAND = Command(
    help="run a Bayesian-optimisation loop on a benchmark problem",
    description="Bayesian optimisation of a benchmark problem (maximisation) with a probnets or BoTorch surrogate: "
                "Sobol initial design, then fit -> optimise the acquisition -> evaluate.",
    add_arguments=_add_arguments,
    run=_run,
)
