"""``probnets fit --model pbnn``: a partial BNN trained by open-horizon SMC (``--method ohsmc``) or by SGSMC followed
by HMC on the stochastic block (``--method sgsmc``), evaluated with the usual fit report.

The network is the paper's UCI architecture (Zhao et al. 2024): ``d -> 50 -> 20 | 20 -> 5 | 5 -> 1``, GELU, the
middle layer Bayesian under N(0, 1), Gaussian noise of variance 1 on the standardised target. A fraction of the
training rows (``--validation-fraction``) is held out to keep the state with the best validation NLPD.

Example:
    $ probnets fit --model pbnn --method ohsmc --data diabetes --out pbnn_run --epochs 50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probnets_app import arguments, output
from probnets_app.cli import PROG, DataError

METHODS = ("ohsmc", "sgsmc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``--model pbnn`` (``--chains``/``--warmup``/``--samples`` set the HMC phase of sgsmc;
    ``--epochs`` and ``--batch-size`` default to 100 and 50)."""
    group = parser.add_argument_group("partial BNN (--model pbnn)")
    group.add_argument("--particles", type=arguments.positive_int, default=1000,
                       help="SMC particles (default: 1000)")
    group.add_argument("--move", choices=["rw", "ou"], default="rw",
                       help="ohsmc jitter: random walk or prior-preserving Ornstein-Uhlenbeck (default: rw)")
    group.add_argument("--move-scale", type=float, default=1e-2,
                       help="jitter variance (rw) or time step (ou) (default: 0.01)")
    group.add_argument("--mh-steps", type=arguments.nonnegative_int, default=10,
                       help="sgsmc: random-walk MH steps per datum (default: 10)")
    group.add_argument("--hmc-steps", type=arguments.positive_int, default=100,
                       help="sgsmc: leapfrog steps per HMC trajectory (default: 100)")
    group.add_argument("--validation-fraction", type=arguments.fraction, default=0.2,
                       help="fraction of the training rows held out to pick the best state (default: 0.2)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, split, out: Path, dtype) -> int:
    """Train, report and write the output files (the caller has loaded and checked ``split``)."""
    args.epochs = args.epochs if args.epochs is not None else 100
    args.batch_size = args.batch_size if args.batch_size is not None else 50
    args.lr = args.lr if args.lr is not None else 1e-2
    if args.thin is not None:
        parser.error("argument --thin: not used by --model pbnn")
    if args.method not in METHODS:
        parser.error(f"argument --method: --model pbnn takes {', '.join(METHODS)}, not {args.method!r}")
    import torch

    from inference.smc.open_horizon import fit_open_horizon
    from inference.smc.sgsmc import fit_sgsmc
    from probnets.partial_bnn import paper_mlp
    from probnets_app.report import fit_report, format_report

    n = split.x_train.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.split_seed))
    n_val = max(1, round(args.validation_fraction * n))
    if n - n_val < 2:
        raise DataError(f"too few training rows ({n}) to hold out a validation fraction of "
                        f"{args.validation_fraction:g}")
    val, train = order[:n_val], order[n_val:]
    data = (split.x_train[train], split.y_train[train])
    validation = (split.x_train[val], split.y_train[val])
    model = paper_mlp("uci", split.x_train.shape[1], generator=torch.Generator().manual_seed(args.seed), dtype=dtype)
    data_name = "diabetes" if args.data == "diabetes" else str(args.data)
    print(f"{PROG}: {model} on {data_name} ({len(train)} training, {n_val} validation, {split.x_test.shape[0]} test "
          f"rows); {args.method} with {args.particles} particles, {args.epochs} epochs", file=sys.stderr)
    common = dict(num_particles=args.particles, num_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  validation=validation, seed=args.seed, dtype=dtype, progress=not args.no_progress,
                  checkpoint=args.checkpoint)
    try:
        if args.method == "ohsmc":
            posterior = fit_open_horizon(model, data, move=args.move, move_scale=args.move_scale, **common)
        else:
            posterior = fit_sgsmc(model, data, num_mh_steps=args.mh_steps, hmc_chains=args.chains or 4,
                                  hmc_warmup=2000 if args.warmup is None else args.warmup,
                                  hmc_samples=args.samples or 1000, hmc_num_steps=args.hmc_steps, **common)
    except ValueError as exc:  # e.g. a checkpoint from another configuration
        raise DataError(str(exc)) from None
    extra = {"data": data_name, "target": split.target_name, "architecture": "uci (d-50-20 | 20-5 | 5-1)",
             "n_validation": n_val, "test_fraction": args.test_fraction, "split_seed": args.split_seed}
    report = fit_report(model, posterior, split, out_dir=out, level=args.level, extra=extra)
    return output.finish(out, report, format_report(report), posterior=posterior if args.save_posterior else None)
