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

from probnets_app import arguments, fit_moment, masked_fit, output, pbnn_fit, sampler_options, variational
from probnets_app.cli import PROG, DataError
from probnets_app.command import Command
from probnets_app.data import load_split


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from probnets_app.light_import import light_module

    registry = light_module("inference", "registry")  # no torch import for --help

    parser.epilog = ("Method defaults (chains/warm-up/draws): "
                     + "; ".join(f"{s.name}: {s.num_chains}/{s.num_warmup}/{s.num_samples}"
                                 for s in registry.SAMPLERS.values()))
    parser.add_argument("--model", choices=["bnn", "pbnn", "masked-bnn"], default="bnn",
                        help="model family (default: bnn; pbnn: partial BNN trained by SMC; masked-bnn: node-sparse "
                             "BNN sampled by masked Gibbs)")
    parser.add_argument("--method", choices=[*registry.SAMPLERS, *variational.METHODS, *fit_moment.METHODS,
                                             *pbnn_fit.METHODS], default=None,
                        help="a registered sampler (default: chees): "
                             + "; ".join(f"{s.name}: {s.summary}" for s in registry.SAMPLERS.values())
                             + "; or a variational method: "
                             + "; ".join(f"{k}: {v}" for k, v in variational.METHODS.items())
                             + "; or deterministic VI of a moment-propagation network: mp-gelu, gelu-mp, relu-mp"
                             + "; for --model pbnn: ohsmc (default) or sgsmc")
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
    parser.add_argument("--activation", help="hidden activation (default: tanh; relu for masked-bnn)")
    parser.add_argument("--weight-prior", choices=["normal", "fan-in", "cauchy"],
                        help="prior of every weight and bias: normal N(0, s^2); fan-in N(0, s^2 / fan_in) on weights "
                             "and N(0, s^2) on biases (the prior function's scale then does not grow with the width); "
                             "cauchy (default: normal for bnn, cauchy for masked-bnn; bnn takes all three, masked-bnn "
                             "normal or cauchy)")
    parser.add_argument("--prior-scale", type=arguments.positive_float, metavar="S",
                        help="scale s of the weight prior (default: 1)")
    parser.add_argument("--chains", type=arguments.positive_int, help="number of chains (default: per method)")
    parser.add_argument("--warmup", type=arguments.nonnegative_int,
                        help="warm-up iterations per chain (default: per method)")
    parser.add_argument("--samples", type=arguments.positive_int,
                        help="post-warm-up iterations per chain; SG-MCMC methods keep every --thin-th as a draw "
                             "(default: per method)")
    minibatch = ", ".join(s.name for s in registry.SAMPLERS.values() if s.minibatch)
    parser.add_argument("--batch-size", type=arguments.positive_int, metavar="B",
                        help=f"minibatch size (minibatch methods only: {minibatch}; --model pbnn: default 50; "
                             "default: full batch)")
    parser.add_argument("--epochs", type=arguments.positive_int,
                        help="instead of --samples: passes over the training data after warm-up (minibatch methods "
                             "only; iterations = epochs x batches per epoch; --model pbnn: training epochs, default 100)")
    parser.add_argument("--thin", type=arguments.positive_int,
                        help="keep every THIN-th post-warm-up iteration (minibatch methods and --model masked-bnn; "
                             "default: per method)")
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
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="computation dtype (default: float32, 2.7x faster sampling than float64 on the demo with "
                             "the same test NLL and R-hat: benchmarks/results/demo_cost.md)")
    parser.add_argument("--steps", type=arguments.positive_int,
                        help="optimiser steps (variational methods: default 2000)")
    parser.add_argument("--lr", type=arguments.positive_float,
                        help="Adam learning rate (variational methods and --model pbnn: default 0.01)")
    parser.add_argument("--distributed", choices=["data", "chains"],
                        help="run in every process started by torchrun: 'data' (each rank samples the same chains "
                             "on its shard of the training rows, gradients all-reduced) or 'chains' (each rank runs "
                             "--chains chains of its own; all are gathered); rank 0 writes the report")
    variational.add_arguments(parser)
    fit_moment.add_arguments(parser)
    pbnn_fit.add_arguments(parser)
    masked_fit.add_arguments(parser)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    out = output.check_out_dir(args.out)
    if args.checkpoint is not None:
        output.check_file_path(args.checkpoint, "--checkpoint")
    import torch

    from probnets.activations import ACTIVATIONS

    if args.activation is not None and args.activation not in ACTIVATIONS:
        parser.error(f"argument --activation: invalid choice: {args.activation!r} (choose from "
                     f"{', '.join(sorted(ACTIVATIONS))})")
    dtype = getattr(torch, args.dtype)
    split = load_split(args.data, target=args.target, test_fraction=args.test_fraction,
                       split_seed=args.split_seed, dtype=dtype, features=args.features, drop=args.drop)
    if args.model != "bnn":
        sampler_options.reject(args, parser)
    if args.model == "pbnn" or args.method in fit_moment.METHODS:
        _reject_prior(args, parser)
    args.prior_scale = args.prior_scale or 1.0
    if args.model == "pbnn":
        args.method = args.method or "ohsmc"
        return pbnn_fit.run(args, parser, split, out, dtype)
    if args.model == "masked-bnn":
        return masked_fit.run(args, parser, split, out, dtype)
    args.method = args.method or "chees"
    from inference import registry

    if args.method not in registry.SAMPLERS:
        sampler_options.reject(args, parser)
    if args.method in fit_moment.METHODS:
        return fit_moment.run(args, parser, split, out, dtype)
    if args.method in pbnn_fit.METHODS:
        parser.error(f"argument --method: {args.method} trains a partial BNN; use it with --model pbnn")
    args.activation = args.activation or "tanh"
    if args.method in variational.METHODS:
        variational.check(args, parser)
        plan = variational.describe(args)
    else:
        plan = _sampling_plan(args, parser, split.x_train.shape[0])
    options = sampler_options.chosen(args, parser) if args.method in registry.SAMPLERS else {}

    import warnings

    import pyro.distributions as dist

    import inference
    from inference.diagnostics import ConvergenceWarning
    from probnets import BNN, Gaussian
    from probnets_app.report import fit_report, format_report

    lead = True
    if args.distributed is not None:
        if args.method not in registry.SAMPLERS:
            parser.error(f"argument --distributed: runs the registered samplers, not --method {args.method}")
        from inference import distributed

        try:
            lead = distributed.init_process_group()[0] == 0
        except RuntimeError as exc:
            parser.error(f"argument --distributed: {exc}")
    args.weight_prior = args.weight_prior or "normal"
    try:
        model = BNN(split.x_train.shape[1], args.widths, activation=args.activation,
                    prior=weight_prior(args.weight_prior, args.prior_scale),
                    likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    except (ValueError, TypeError) as exc:
        parser.error(f"argument --widths: {exc}")
    data_name = "diabetes" if args.data == "diabetes" else str(args.data)
    if lead:
        print(f"{PROG}: {model} on {data_name} ({split.x_train.shape[0]} training, {split.x_test.shape[0]} test "
              f"rows); {plan}", file=sys.stderr)
    extra = {"data": data_name, "target": split.target_name, "widths": list(args.widths),
             "activation": args.activation, "weight_prior": args.weight_prior, "prior_scale": args.prior_scale,
             "test_fraction": args.test_fraction, "split_seed": args.split_seed}
    with warnings.catch_warnings():
        # The report checks convergence in function space and lists the problems (check_convergence=False spares
        # the sampler's own parameter-space check, a third of the demo's time); no warnings on stderr as well.
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            if args.method in variational.METHODS:
                fitted, posterior = variational.fit(args, model, split, dtype)
            else:
                train = (split.x_train, split.y_train)
                if args.distributed == "data":
                    train = distributed.shard(train)
                posterior = fitted = inference.sample(
                    model, train, method=args.method, num_chains=args.chains, num_warmup=args.warmup,
                    thin=args.thin, batch_size=args.batch_size, num_samples=None if args.epochs else args.samples,
                    epochs=args.epochs, seed=args.seed, dtype=dtype, progress=not args.no_progress,
                    print_summary=False, check_convergence=False, checkpoint=args.checkpoint, run_info=extra,
                    distributed=args.distributed, **options)
        except ValueError as exc:  # e.g. a checkpoint from another configuration
            raise DataError(str(exc)) from None
        finally:
            if args.distributed is not None:  # sampling made the last collective call
                distributed.destroy_process_group()
        if not lead:
            return 0
        output.remove_known_outputs(out, output.FIT_OUTPUTS)
        report = fit_report(model, posterior, split, out_dir=out, level=args.level,
                            extra={**extra, **_until_converged(posterior)})
    return output.finish(out, report, format_report(report), posterior=fitted if args.save_posterior else None)


def _reject_prior(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for flag, value in (("--weight-prior", args.weight_prior), ("--prior-scale", args.prior_scale)):
        if value is not None:
            route = "--model pbnn" if args.model == "pbnn" else f"--method {args.method}"
            parser.error(f"argument {flag}: {route} sets its own prior; the option applies to --model bnn and "
                         "masked-bnn")


def weight_prior(name: str, scale: float):
    """The BNN weight prior ``--weight-prior name --prior-scale scale``."""
    import pyro.distributions as dist

    from probnets import priors

    if name == "fan-in":
        return priors.fan_in_normal(scale)
    return dist.Cauchy(0.0, scale) if name == "cauchy" else dist.Normal(0.0, scale)


def _sampling_plan(args: argparse.Namespace, parser: argparse.ArgumentParser, num_rows: int) -> str:
    """Check the sampler options, fill in the registered defaults (in ``args``) and describe the run."""
    from inference import registry

    defaults = registry.get(args.method)
    given = [flag for flag, value in (("--batch-size", args.batch_size), ("--epochs", args.epochs),
                                      ("--thin", args.thin)) if value is not None]
    if given and not defaults.minibatch:
        parser.error(f"argument {given[0]}: only for minibatch methods "
                     f"({', '.join(s.name for s in registry.SAMPLERS.values() if s.minibatch)}), not {args.method}")
    if args.epochs is not None and args.samples is not None:
        parser.error("argument --epochs: not allowed with argument --samples (give one)")
    for flag, value in (("--steps", args.steps), ("--lr", args.lr)):
        if value is not None:
            parser.error(f"argument {flag}: for the variational methods and --model pbnn, not {args.method}")
    args.chains = args.chains if args.chains is not None else defaults.num_chains
    args.warmup = args.warmup if args.warmup is not None else defaults.num_warmup
    args.thin = args.thin if args.thin is not None else defaults.thin
    if args.epochs is not None:
        iterations = args.epochs * (-(-num_rows // args.batch_size) if args.batch_size else 1)
    else:
        args.samples = iterations = args.samples if args.samples is not None else defaults.num_samples
    if iterations < args.thin:
        parser.error(f"argument --thin: {args.thin} exceeds the {iterations} post-warm-up iterations")
    if args.thin == 1:
        plan = f"{args.warmup} warm-up + {iterations} draws"
    else:  # a cyclical schedule keeps draws only in the sampling phase of each cycle
        cyclical = "cycle_length" in defaults.options()
        plan = (f"{args.warmup} warm-up + {iterations} iterations thinned by {args.thin}: "
                f"{'at most ' if cyclical else ''}{iterations // args.thin} draws")
    epochs = f" ({args.epochs} epochs)" if args.epochs is not None else ""
    batch = f", batches of {args.batch_size}" if args.batch_size else ""
    return f"{args.method} with {args.chains} chains, {plan}{epochs}{batch}"


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
    description="Sample the posterior of a Bayesian neural network (N(0, 1) priors on all weights unless "
                "--weight-prior/--prior-scale, Gaussian "
                "likelihood with noise scale ~ LogNormal(-1, 1), on standardised data), then evaluate it on a "
                "held-out test split: RMSE, NLL, CRPS, interval coverage (original units), function-space "
                "R-hat/ESS, figures and report.json in --out.",
    add_arguments=_add_arguments,
    run=_run,
)
