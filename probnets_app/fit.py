"""``probnets fit``: sample a BNN posterior on a data set and write a fit report.

Example:
    $ probnets fit --model bnn --method chees --data diabetes --out demo_output
    $ probnets fit --model bnn --method nuts --data measurements.csv --target yield --out run1

Data problems are found before any sampling and before any output is created (see :mod:`probnets_app.data`).
"""

from __future__ import annotations

import argparse
import sys

from probnets_app import arguments, output, sampler_options
from probnets_app.cli import PROG, DataError
from probnets_app.command import Command
from probnets_app.data import load_split


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from probnets_app.sampler_table import sampler_registry

    registry = sampler_registry()  # no torch import for --help

    parser.epilog = ("Method defaults (chains/warm-up/draws): "
                     + "; ".join(f"{s.name}: {s.num_chains}/{s.num_warmup}/{s.num_samples}"
                                 for s in registry.SAMPLERS.values()))
    parser.add_argument("--model", choices=["bnn"], default="bnn", help="model family (default: bnn)")
    parser.add_argument("--method", choices=list(registry.SAMPLERS), default="chees",
                        help="a registered sampler (default: chees): "
                             + "; ".join(f"{s.name}: {s.summary}" for s in registry.SAMPLERS.values()))
    parser.add_argument("--data", required=True, metavar="diabetes|PATH.csv",
                        help="'diabetes' (scikit-learn's diabetes data) or a CSV file with a header row")
    parser.add_argument("--target", metavar="COLUMN", help="target column of a CSV file (required for CSV data)")
    parser.add_argument("--features", type=arguments.names, metavar="COL[,COL...]",
                        help="feature columns of a CSV file (default: every column but the target and --drop)")
    parser.add_argument("--drop", type=arguments.names, metavar="COL[,COL...]",
                        help="columns of a CSV file that are not features (e.g. a row index)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (checked before sampling, created after it); in a reused folder the "
                             "files an earlier fit wrote there (report.json, the figures, posterior.pt) are "
                             "removed before the new ones are written, other files are kept")
    parser.add_argument("--widths", type=arguments.widths, default=(50,), metavar="W[,W...]",
                        help="hidden layer widths, comma-separated (default: 50)")
    parser.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    parser.add_argument("--chains", type=arguments.positive_int, help="number of chains (default: per method)")
    parser.add_argument("--warmup", type=arguments.nonnegative_int,
                        help="warm-up iterations per chain (default: per method)")
    parser.add_argument("--samples", type=arguments.positive_int,
                        help="draws kept per chain (default: per method)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    parser.add_argument("--test-fraction", type=arguments.fraction, default=0.1,
                        help="test fraction in (0, 1) (default: 0.1)")
    parser.add_argument("--level", type=arguments.fraction, default=0.9,
                        help="probability of the reported central predictive interval (default: 0.9)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="checkpoint file: saved during sampling, resumed from when it exists")
    parser.add_argument("--save-posterior", action="store_true", help="also save the draws as DIR/posterior.pt")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    sampler_options.add_arguments(parser)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                        help="computation dtype (default: float64)")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    out = output.check_out_dir(args.out)
    if args.checkpoint is not None:
        output.check_file_path(args.checkpoint, "--checkpoint")
    import torch

    from probnets.activations import ACTIVATIONS

    if args.activation not in ACTIVATIONS:
        parser.error(f"argument --activation: invalid choice: {args.activation!r} (choose from "
                     f"{', '.join(sorted(ACTIVATIONS))})")
    dtype = getattr(torch, args.dtype)
    split = load_split(args.data, target=args.target, test_fraction=args.test_fraction,
                       split_seed=args.split_seed, dtype=dtype, features=args.features, drop=args.drop)
    options = sampler_options.chosen(args, parser)

    import warnings

    import pyro.distributions as dist

    import inference
    from inference.diagnostics import ConvergenceWarning
    from inference import registry
    from probnets import BNN, Gaussian
    from probnets_app.report import fit_report, format_report

    defaults = registry.get(args.method)
    chains = args.chains if args.chains is not None else defaults.num_chains
    warmup = args.warmup if args.warmup is not None else defaults.num_warmup
    draws = args.samples if args.samples is not None else defaults.num_samples
    try:
        model = BNN(split.x_train.shape[1], args.widths, activation=args.activation,
                    prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    except (ValueError, TypeError) as exc:
        parser.error(f"argument --widths: {exc}")
    data_name = "diabetes" if args.data == "diabetes" else str(args.data)
    print(f"{PROG}: {model} on {data_name} ({split.x_train.shape[0]} training, {split.x_test.shape[0]} test rows); "
          f"{args.method} with {chains} chains, {warmup} warm-up + {draws} draws", file=sys.stderr)
    extra = {"data": data_name, "target": split.target_name, "widths": list(args.widths),
             "activation": args.activation, "test_fraction": args.test_fraction, "split_seed": args.split_seed}
    with warnings.catch_warnings():
        # The report lists convergence problems; no need for warnings on stderr as well.
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            posterior = inference.sample(model, (split.x_train, split.y_train), method=args.method,
                                         num_chains=chains, num_warmup=warmup, num_samples=draws, seed=args.seed,
                                         dtype=dtype, progress=not args.no_progress, print_summary=False,
                                         checkpoint=args.checkpoint, run_info=extra, **options)
        except ValueError as exc:  # e.g. a checkpoint from another configuration
            raise DataError(str(exc)) from None
        output.remove_known_outputs(out, output.FIT_OUTPUTS)
        report = fit_report(model, posterior, split, out_dir=out, level=args.level,
                            extra={**extra, **_until_converged(posterior)})
    files = [out / "report.json", *(out / name for name in report["figures"].values())]
    if args.save_posterior:
        posterior.save(out / "posterior.pt")
        files.append(out / "posterior.pt")
    print(format_report(report))
    print("Output files:")
    for path in files:
        print(f"  {path}")
    return 0


def _until_converged(posterior) -> dict:
    """The outcome of ``--until-converged`` for the report (empty without it), also printed."""
    outcome = posterior.info.get("until_converged")
    if outcome is None:
        return {}
    print(f"{PROG}: --until-converged: {'converged' if outcome['converged'] else 'NOT converged'} after "
          f"{outcome['rounds']} round(s) ({outcome['reason']}, {outcome['total_time']:.0f} s)", file=sys.stderr)
    return {"until_converged": outcome}


COMMAND = Command(
    help="sample a BNN posterior on a data set and write a fit report",
    description="Sample the posterior of a Bayesian neural network (N(0, 1) priors on all weights, Gaussian "
                "likelihood with noise scale ~ LogNormal(-1, 1), on standardised data), then evaluate it on a "
                "held-out test split: RMSE, NLL, CRPS, interval coverage (original units), function-space "
                "R-hat/ESS, figures and report.json in --out.",
    add_arguments=_add_arguments,
    run=_run,
)
