"""The ``probnets`` command line: ``probnets fit`` samples a BNN posterior and writes a fit report.

Example:
    $ probnets fit --model bnn --method chees --data diabetes --out demo_output
    $ probnets fit --model bnn --method nuts --data measurements.csv --target yield --out run1

Heavy imports (torch, the engine) happen inside the command functions so that ``probnets --help`` is
fast. Data problems are found before any sampling and before any output is created; they are reported as
one line ``probnets: error: <problem>`` on stderr with exit status 2 (the status argparse uses for bad
options).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from inference.sample_settings import DEFAULT_SETTINGS

PROG = "probnets"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

MIN_TRAIN_ROWS = 10
MIN_TEST_ROWS = 2


class DataError(Exception):
    """A problem with the input data, reported as one ``probnets: error:`` line (exit status 2)."""


# --------------------------------------------------------------------------------------------------
# Argument parsing


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of positive integers, got {text!r}")
    return tuple(_positive_int(p) for p in parts)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _level(text: str) -> float:
    return _fraction(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Bayesian deep learning on PyTorch: sample BNN posteriors and report on them.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    parser.commands = commands  # packages above the engine (surrogates) add their commands here

    fit = commands.add_parser(
        "fit", help="sample a BNN posterior on a data set and write a fit report",
        description="Sample the posterior of a Bayesian neural network (N(0, 1) priors on all weights, Gaussian "
                    "likelihood with noise scale ~ LogNormal(-1, 1), on standardised data), then evaluate it on a "
                    "held-out test split: RMSE, NLL, CRPS, interval coverage (original units), function-space "
                    "R-hat/ESS, figures and report.json in --out.",
        epilog="Method defaults (chains/warm-up/draws): "
               + "; ".join(f"{m}: {d['num_chains']}/{d['num_warmup']}/{d['num_samples']}"
                           for m, d in DEFAULT_SETTINGS.items()),
    )
    fit.add_argument("--model", choices=["bnn"], default="bnn", help="model family (default: bnn)")
    fit.add_argument("--method", choices=list(DEFAULT_SETTINGS), default="chees",
                     help="sampler: many-chain ChEES-HMC, NUTS or static HMC (default: chees)")
    fit.add_argument("--data", required=True, metavar="diabetes|PATH.csv",
                     help="'diabetes' (scikit-learn's diabetes data) or a CSV file with a header row")
    fit.add_argument("--target", metavar="COLUMN", help="target column of a CSV file (required for CSV data)")
    fit.add_argument("--out", required=True, metavar="DIR", help="output folder (created after sampling)")
    fit.add_argument("--widths", type=_widths, default=(50,), metavar="W[,W...]",
                     help="hidden layer widths, comma-separated (default: 50)")
    fit.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    fit.add_argument("--chains", type=_positive_int, help="number of chains (default: per method)")
    fit.add_argument("--warmup", type=_nonnegative_int, help="warm-up iterations per chain (default: per method)")
    fit.add_argument("--samples", type=_positive_int, help="draws kept per chain (default: per method)")
    fit.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    fit.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    fit.add_argument("--test-fraction", type=_fraction, default=0.1, help="test fraction in (0, 1) (default: 0.1)")
    fit.add_argument("--level", type=_level, default=0.9,
                     help="probability of the reported central predictive interval (default: 0.9)")
    fit.add_argument("--checkpoint", metavar="PATH",
                     help="checkpoint file: saved during sampling, resumed from when it exists")
    fit.add_argument("--save-posterior", action="store_true", help="also save the draws as DIR/posterior.pt")
    fit.add_argument("--no-progress", action="store_true", help="no live progress bar")
    fit.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                     help="computation dtype (default: float64)")
    fit.set_defaults(handler=_fit)
    return parser


def main(argv: list[str] | None = None, *, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the command line (``parser`` defaults to ``build_parser()``); returns the exit status."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on bad options
    try:
        return args.handler(args, parser)
    except DataError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _error(message: str) -> int:
    message = " ".join(str(message).split())  # exactly one line
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# --------------------------------------------------------------------------------------------------
# Data


def load_split(data: str, *, target: str | None, test_fraction: float, split_seed: int, dtype):
    """A standardised :class:`~probnets.datasets.RegressionSplit` of the diabetes data or a CSV file.

    Raises:
        DataError: For any problem with the data (missing file, unknown column, non-numeric or missing
            cells, too few rows, a constant target).
    """
    from probnets import datasets

    if data == "diabetes":
        if target is not None:
            raise DataError("--target applies to CSV data only; the diabetes data has a fixed target")
        return datasets.diabetes(test_fraction=test_fraction, seed=split_seed, dtype=dtype)
    x, y, feature_names = read_csv(data, target)
    n_test = math.ceil(test_fraction * len(y))  # as scikit-learn's train_test_split
    n_train = len(y) - n_test
    if n_train < MIN_TRAIN_ROWS or n_test < MIN_TEST_ROWS:
        raise DataError(f"{data}: too few rows ({len(y)}) for a train/test split with test fraction {test_fraction:g}: "
                        f"{n_train} training and {n_test} test rows; need at least {MIN_TRAIN_ROWS} training and "
                        f"{MIN_TEST_ROWS} test rows")
    try:
        return datasets.standardised_split(x, y, test_fraction=test_fraction, seed=split_seed,
                                           feature_names=feature_names, target_name=target, dtype=dtype)
    except ValueError as exc:
        raise DataError(f"{data}: {exc}") from None


def read_csv(path: str, target: str | None):
    """Numeric features and target of a CSV file with a header row, validated cell by cell.

    Returns:
        ``(x, y, feature_names)`` with ``x`` an ``n x d`` and ``y`` an ``n`` float64 numpy array.

    Raises:
        DataError: Naming the file, and the column and the data row (1-based, header excluded; with the
            line number of the file) of a bad cell.
    """
    import csv

    import numpy as np

    file = Path(path)
    if not file.exists():
        raise DataError(f"data file {path!r} does not exist (use 'diabetes' or the path of a CSV file)")
    if file.is_dir():
        raise DataError(f"data path {path!r} is a directory, not a CSV file")
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path!r}: {exc}") from None
    # Blank lines carry no data.
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(cell.strip() for cell in row)]
    if not numbered:
        raise DataError(f"{path}: the file is empty")
    _, header = numbered[0]
    header = [h.strip() for h in header]
    if any(not h for h in header):
        raise DataError(f"{path}: the header row has an empty column name (column {header.index('') + 1})")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DataError(f"{path}: duplicate column names {duplicates}")
    if target is None:
        raise DataError(f"--target is required for CSV data; available columns: {', '.join(header)}")
    if target not in header:
        raise DataError(f"{path}: no column {target!r}; available columns: {', '.join(header)}")
    if len(header) < 2:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    values = np.empty((len(numbered) - 1, len(header)), dtype=np.float64)
    for r, (line, row) in enumerate(numbered[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: data row {r + 1} (line {line}) has {len(row)} cells, expected {len(header)} "
                            "(one per column)")
        where = f"row {r + 1} (line {line})"
        for c, cell in enumerate(row):
            text = cell.strip()
            if not text:
                raise DataError(f"{path}: empty cell in column {header[c]!r}, {where}")
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"{path}: non-numeric value {text[:40]!r} in column {header[c]!r}, {where}") from None
            if math.isnan(value):
                raise DataError(f"{path}: missing value (NaN) in column {header[c]!r}, {where}")
            if math.isinf(value):
                raise DataError(f"{path}: infinite value in column {header[c]!r}, {where}")
            values[r, c] = value
    t = header.index(target)
    features = [h for i, h in enumerate(header) if i != t]
    return np.delete(values, t, axis=1), values[:, t], features


# --------------------------------------------------------------------------------------------------
# Commands


def _fit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
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
    from probnets_app.report import fit_report, format_report
    from probnets import BNN, Gaussian

    defaults = DEFAULT_SETTINGS[args.method]
    chains = args.chains if args.chains is not None else defaults["num_chains"]
    warmup = args.warmup if args.warmup is not None else defaults["num_warmup"]
    draws = args.samples if args.samples is not None else defaults["num_samples"]
    try:
        model = BNN(split.x_train.shape[1], args.widths, activation=args.activation,
                    prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    except (ValueError, TypeError) as exc:
        parser.error(f"argument --widths: {exc}")
    data_name = "diabetes" if args.data == "diabetes" else str(args.data)
    print(f"{PROG}: {model} on {data_name} ({split.x_train.shape[0]} training, {split.x_test.shape[0]} test rows); "
          f"{args.method} with {chains} chains, {warmup} warm-up + {draws} draws", file=sys.stderr)
    with warnings.catch_warnings():
        # The report lists convergence problems; no need for warnings on stderr as well.
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            posterior = inference.sample(model, (split.x_train, split.y_train), method=args.method,
                                         num_chains=chains, num_warmup=warmup, num_samples=draws, seed=args.seed,
                                         dtype=dtype, progress=not args.no_progress, print_summary=False,
                                         checkpoint=args.checkpoint)
        except ValueError as exc:  # e.g. a checkpoint from another configuration
            raise DataError(str(exc)) from None
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


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("probnets")
    except Exception:  # noqa: BLE001 - metadata absent in a source checkout
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
