"""``probnets fit --method mfvi|ssvi``: the variational methods behind the fit command.

The fit report works on draws, so the fitted ``GaussianPosterior`` hands it ``--samples`` draws per restart (a
``SamplePosterior``, restarts as chains); ``--save-posterior`` saves the Gaussian itself.
"""

from __future__ import annotations

import argparse

from probnets_app import arguments

METHODS = {"mfvi": "mean-field Gaussian VI (local reparameterisation)",
           "ssvi": "sparse subspace VI (fixed density per layer, pruned and regrown)"}
DEFAULT_DRAWS = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of mfvi/ssvi besides the shared ``--steps``, ``--batch-size`` and ``--lr``."""
    group = parser.add_argument_group(
        "variational methods (--method mfvi|ssvi; with --steps, --batch-size, --lr above)",
        f"--chains: mfvi's restarts (default 1); --samples: draws of the fitted posterior for the report (default "
        f"{DEFAULT_DRAWS}); --checkpoint: the optimisation's checkpoint")
    group.add_argument("--density", type=arguments.fraction, default=0.25,
                       help="ssvi: fraction of active weights per layer (default: 0.25)")


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Reject options that do not apply to the chosen kind of method; fill in the optimiser defaults."""
    for flag, value in (("--warmup", args.warmup), ("--chains", args.chains if args.method == "ssvi" else None)):
        if value is not None:
            parser.error(f"argument {flag}: does not apply to --method {args.method}")
    optimiser_defaults(args, parser)


def optimiser_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--steps``, ``--batch-size`` and ``--lr`` of every variational method (2000, 128, 0.01 unless given);
    ``--epochs`` and ``--thin`` are sampler options."""
    for flag, value in (("--epochs", args.epochs), ("--thin", args.thin)):
        if value is not None:
            parser.error(f"argument {flag}: not used by --method {args.method} (give --steps)")
    args.steps = args.steps if args.steps is not None else 2000
    args.batch_size = args.batch_size if args.batch_size is not None else 128
    args.lr = args.lr if args.lr is not None else 1e-2


def describe(args: argparse.Namespace) -> str:
    restarts = args.chains or 1  # mfvi's restarts (SSVI runs one)
    return (f"{args.method} with {args.steps} steps, {restarts} restart{'s' * (restarts > 1)}, "
            f"{args.samples or DEFAULT_DRAWS} draws for the report")


def fit(args: argparse.Namespace, model, split, dtype):
    """Fit the variational posterior; returns it and its draws for the report."""
    import torch

    from inference.vi import fit_vi

    options = {"num_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
               "seed": args.seed, "dtype": dtype, "progress": not args.no_progress, "checkpoint": args.checkpoint}
    if args.method == "ssvi":
        options["density"] = args.density
    else:
        options["num_restarts"] = args.chains or 1
    posterior = fit_vi(model, (split.x_train, split.y_train), method=args.method, **options)
    num_draws = args.samples or DEFAULT_DRAWS
    draws = posterior.to_sample_posterior(num_draws, generator=torch.Generator().manual_seed(args.seed))
    draws.info.update(num_chains=posterior.num_components, num_samples=num_draws, num_warmup=0)
    return posterior, draws
