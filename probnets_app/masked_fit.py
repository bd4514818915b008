"""``probnets fit --model masked-bnn``: a masked node-sparse BNN (Kong et al. 2023) sampled by the masked Gibbs
sampler (``inference.sample_masked``), with the usual fit report plus the active-node trace.

Example:
    $ probnets fit --model masked-bnn --data diabetes --widths 100 --out masked_run
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from probnets_app import arguments, output
from probnets_app.cli import PROG, DataError

#: Run defaults of the masked model (the ``--chains/--warmup/--samples`` of ``probnets fit``).
DEFAULTS = {"chains": 4, "warmup": 1000, "samples": 1000, "thin": 10}
ACTIVE_NODES_FIGURE = "active_nodes.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only ``--model masked-bnn`` reads."""
    group = parser.add_argument_group(
        "masked-bnn", f"options of --model masked-bnn (sampled by the masked Gibbs sampler, not --method; defaults "
                      f"{DEFAULTS['chains']} chains, {DEFAULTS['warmup']} warm-up + {DEFAULTS['samples']} "
                      f"iterations, every {DEFAULTS['thin']}th kept; activation relu unless --activation)")
    group.add_argument("--mask-lambda", type=float, default=0.1,
                       help="lambda of the mask prior exp(-(lambda log n)^5 s^2) / C(p, s) (default: 0.1)")
    group.add_argument("--leapfrog-steps", type=arguments.positive_int, default=20,
                       help="leapfrog steps of each HMC update of the weights (default: 20)")
    group.add_argument("--mask-updates", type=arguments.nonnegative_int, default=10,
                       help="birth/death moves on the masks per iteration (default: 10)")
    group.add_argument("--max-flips", type=arguments.positive_int, default=3,
                       help="most nodes one birth/death move flips (default: 3)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, split, out: Path, dtype) -> int:
    """Build the masked BNN, sample it, write the fit report and the active-node trace; print the report."""
    import inference
    from inference.diagnostics import ConvergenceWarning
    from probnets.masked_bnn import MaskedBNN
    from probnets_app.report import fit_report, format_report

    for flag, value in (("--batch-size", args.batch_size), ("--epochs", args.epochs)):
        if value is not None:
            parser.error(f"argument {flag}: the masked Gibbs sampler uses the full batch")
    args.thin = args.thin if args.thin is not None else DEFAULTS["thin"]
    chains = args.chains if args.chains is not None else DEFAULTS["chains"]
    warmup = args.warmup if args.warmup is not None else DEFAULTS["warmup"]
    samples = args.samples if args.samples is not None else DEFAULTS["samples"]
    thin = args.thin if args.thin is not None else DEFAULTS["thin"]
    activation = args.activation or "relu"
    weight_prior = args.weight_prior or "cauchy"
    if weight_prior not in ("cauchy", "normal"):
        parser.error(f"argument --weight-prior: --model masked-bnn takes cauchy or normal, not {weight_prior}")
    n_train = int(split.x_train.shape[0])
    try:
        model = MaskedBNN(split.x_train.shape[1], args.widths, num_data=n_train, mask_lambda=args.mask_lambda,
                          activation=activation, weight_prior=weight_prior, prior_scale=args.prior_scale)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    data_name = "diabetes" if args.data == "diabetes" else str(args.data)
    print(f"{PROG}: {model} on {data_name} ({n_train} training, {split.x_test.shape[0]} test rows); masked Gibbs "
          f"with {chains} chains, {warmup} warm-up + {samples} iterations (thin {thin})", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            posterior = inference.sample_masked(
                model, (split.x_train, split.y_train), num_chains=chains, num_warmup=warmup, num_samples=samples,
                thin=thin, seed=args.seed, num_steps=args.leapfrog_steps, num_mask_updates=args.mask_updates,
                max_flips=args.max_flips, dtype=dtype, progress=not args.no_progress, print_summary=False,
                check_convergence=False, checkpoint=args.checkpoint)
        except ValueError as exc:  # e.g. a checkpoint from another configuration
            raise DataError(str(exc)) from None
        active = {f"layer_{layer}": float(posterior.sample_stats[f"active_fraction_{layer}"].mean())
                  for layer in range(len(args.widths))}
        extra = {"data": data_name, "target": split.target_name, "widths": list(args.widths),
                 "activation": activation, "test_fraction": args.test_fraction, "split_seed": args.split_seed,
                 "mean_active_fraction": active,
                 "mask_acceptance_rate": float(posterior.sample_stats["mask_acceptance_rate"].mean())}
        report = fit_report(model, posterior, split, out_dir=out, level=args.level, extra=extra)
    plot_active_nodes(posterior, out / ACTIVE_NODES_FIGURE)
    text = format_report(report) + "\nMean active fraction per hidden layer: " + ", ".join(
        f"{k} {v:.3f}" for k, v in active.items())
    return output.finish(out, report, text, posterior=posterior if args.save_posterior else None,
                         extra_files=[out / ACTIVE_NODES_FIGURE])


def plot_active_nodes(posterior, path: str | os.PathLike) -> Path:
    """Active-node fraction per hidden layer and chain against the iteration (warm-up, then kept draws).

    Args:
        posterior: A ``SamplePosterior`` of ``inference.sample_masked``.
        path: Where to write the PNG.
    """
    from probnets_app.plots import _new_figure, _numpy, _save

    layers = sorted(k for k in posterior.sample_stats if k.startswith("active_fraction_"))
    num_warmup, thin = int(posterior.info.get("num_warmup", 0)), int(posterior.info.get("thin", 1))
    fig, axes = _new_figure(len(layers), 1, width=6.0, height=2.6)
    for ax, name in zip(axes[:, 0], layers):
        warm = _numpy(posterior.warmup_stats[name]) if name in posterior.warmup_stats else None
        kept = _numpy(posterior.sample_stats[name])
        for chain in range(kept.shape[0]):
            color = f"C{chain % 10}"
            if warm is not None and warm.shape[1]:
                ax.plot(range(warm.shape[1]), warm[chain], color=color, lw=0.7, alpha=0.6)
            steps = [num_warmup + thin * (k + 1) - 1 for k in range(kept.shape[1])]
            ax.plot(steps, kept[chain], color=color, lw=0.9, label=f"chain {chain}")
        if num_warmup:
            ax.axvline(num_warmup - 0.5, color="0.5", ls="--", lw=0.8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"active share, layer {name.rsplit('_', 1)[-1]}")
    axes[-1, 0].set_xlabel("iteration (dashed: end of warm-up)")
    if posterior.num_chains <= 8:
        axes[0, 0].legend(loc="upper right", fontsize="x-small", ncols=min(4, posterior.num_chains))
    return _save(fig, path)
