"""``probnets fit --method mp-gelu|gelu-mp|relu-mp``: a moment-propagation BNN trained by deterministic VI, with its
report.

Example:
    $ probnets fit --method mp-gelu --data diabetes --out run --steps 3000
    $ probnets fit --method relu-mp --covariance full --data diabetes --out run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probnets_app import output, variational
from probnets_app.cli import PROG, DataError

#: The ``--method`` values handled here (the ``inference.vi`` methods of moment-propagation networks).
METHODS = ("mp-gelu", "gelu-mp", "relu-mp")
_ACTIVATIONS = {"mp-gelu": "gelu", "gelu-mp": "exact-gelu", "relu-mp": "relu"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the deterministic-VI methods (ignored by samplers)."""
    group = parser.add_argument_group("moment propagation (--method mp-gelu, gelu-mp or relu-mp; with --steps, "
                                      "--batch-size, --lr; --activation, --chains, --warmup and --samples do not "
                                      "apply)")
    group.add_argument("--covariance", choices=["diagonal", "full"], default="diagonal",
                       help="relu-mp: hidden covariance kept between layers (default: diagonal)")
    group.add_argument("--kl-weight", type=float, default=1.0, help="weight of the KL term (default: 1)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, split, out: Path, dtype) -> int:
    """Fit, report and print; ``split`` is the standardised data split, ``out`` the checked output folder."""
    if args.method != "relu-mp" and args.covariance == "full":
        parser.error(f"argument --covariance: {args.method} propagates diagonal moments; 'full' is for --method "
                     "relu-mp")
    if not args.kl_weight > 0:
        parser.error(f"argument --kl-weight: must be > 0, got {args.kl_weight}")
    variational.optimiser_defaults(args, parser)
    import torch

    from inference.vi import fit_vi
    from probnets.moment import MomentNetwork
    from probnets_app.report.moment_report import format_moment_report, moment_report

    data_name = "diabetes" if args.data == "diabetes" else str(args.data)
    network = MomentNetwork(split.x_train.shape[1], args.widths, activation=_ACTIVATIONS[args.method],
                            covariance=args.covariance, dtype=dtype,
                            generator=torch.Generator().manual_seed(args.seed))
    print(f"{PROG}: {network.method} network {list(args.widths)} on {data_name} ({split.x_train.shape[0]} training, "
          f"{split.x_test.shape[0]} test rows); deterministic VI, {args.steps} steps", file=sys.stderr)
    try:
        posterior = fit_vi(network, (split.x_train, split.y_train), method=args.method, num_steps=args.steps,
                           batch_size=args.batch_size, lr=args.lr, kl_weight=args.kl_weight, seed=args.seed,
                           checkpoint=args.checkpoint, progress=not args.no_progress)
    except ValueError as exc:  # e.g. a checkpoint from another configuration
        raise DataError(str(exc)) from None
    extra = {"data": data_name, "target": split.target_name, "test_fraction": args.test_fraction,
             "split_seed": args.split_seed}
    report = moment_report(posterior, split, out_dir=out, level=args.level, extra=extra)
    return output.finish(out, report, format_moment_report(report),
                         posterior=posterior if args.save_posterior else None)
