"""``probnets fit``: sample a BNN posterior on a data set and write a fit report.

Example:
    $ probnets fit --model bnn --method chees --data diabetes --out demo_output
    $ probnets fit --model bnn --method nuts --data measurements.csv --target yield --out run1
    $ torchrun --standalone --nproc-per-node 2 --no-python probnets fit --method sghmc --data diabetes \
          --distributed data --out run2

Data problems are found before any sampling and before any output is created (see :mod:`probnets_app.data`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probnets_app import arguments
from probnets_app.cli import PROG, DataError
from probnets_app.command import Command
from probnets_app.data import load_split


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from inference import registry

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
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created after sampling)")
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
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                        help="computation dtype (default: float64)")
    parser.add_argument("--distributed", choices=["data", "chains"],
                        help="run in every process started by torchrun: 'data' (each rank samples the same chains "
                             "on its shard of the training rows, gradients all-reduced) or 'chains' (each rank runs "
                             "--chains chains of its own; all are gathered); rank 0 writes the report")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {args.out!r} exists and is not a directory")
    if args.checkpoint is not None and Path(args.checkpoint).is_dir():
        raise DataError(f"--checkpoint {args.checkpoint!r} is a directory; give a file path")
    import torch

    from probnets.activations import ACTIVATIONS

    if args.activation not in ACTIVATIONS:
        parser.error(f"argument --activation: invalid choice: {args.activation!r} (choose from "
                     f"{', '.join(sorted(ACTIVATIONS))})")
    dtype = getattr(torch, args.dtype)
    split = load_split(args.data, target=args.target, test_fraction=args.test_fraction,
                       split_seed=args.split_seed, dtype=dtype)

    import warnings

    import pyro.distributions as dist

    import inference
    from inference.diagnostics import ConvergenceWarning
    from inference import registry
    from probnets import BNN, Gaussian
    from probnets_app.report import fit_report, format_report

    lead = True
    if args.distributed is not None:
        from inference import distributed

        try:
            lead = distributed.init_process_group()[0] == 0
        except RuntimeError as exc:
            parser.error(f"argument --distributed: {exc}")
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
    if lead:
        print(f"{PROG}: {model} on {data_name} ({split.x_train.shape[0]} training, {split.x_test.shape[0]} test rows); "
              f"{args.method} with {chains} chains, {warmup} warm-up + {draws} draws", file=sys.stderr)
    with warnings.catch_warnings():
        # The report lists convergence problems; no need for warnings on stderr as well.
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            train = (split.x_train, split.y_train)
            if args.distributed == "data":
                train = distributed.shard(train)
            posterior = inference.sample(model, train, method=args.method,
                                         num_chains=chains, num_warmup=warmup, num_samples=draws, seed=args.seed,
                                         dtype=dtype, progress=not args.no_progress, print_summary=False,
                                         checkpoint=args.checkpoint, distributed=args.distributed)
        except ValueError as exc:  # e.g. a checkpoint from another configuration
            raise DataError(str(exc)) from None
        finally:
            if args.distributed is not None:  # sampling made the last collective call
                distributed.destroy_process_group()
        if not lead:
            return 0
        extra = {"data": data_name, "target": split.target_name, "widths": list(args.widths),
                 "activation": args.activation, "test_fraction": args.test_fraction, "split_seed": args.split_seed}
        report = fit_report(model, posterior, split, out_dir=out, level=args.level, extra=extra)
    files = [out / "report.json", *(out / name for name in report["figures"].values())]
    if args.save_posterior:
        posterior.save(out / "posterior.pt")
        files.append(out / "posterior.pt")
    print(format_report(report))
    print("Output files:")
    for path in files:
        print(f"  {path}")
    return 0


COMMAND = Command(
    help="sample a BNN posterior on a data set and write a fit report",
    description="Sample the posterior of a Bayesian neural network (N(0, 1) priors on all weights, Gaussian "
                "likelihood with noise scale ~ LogNormal(-1, 1), on standardised data), then evaluate it on a "
                "held-out test split: RMSE, NLL, CRPS, interval coverage (original units), function-space "
                "R-hat/ESS, figures and report.json in --out.",
    add_arguments=_add_arguments,
    run=_run,
)
