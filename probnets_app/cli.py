"""The ``probnets`` command line: a parser whose subcommands are registered by the installed packages.

Every entry point of the group ``probnets.commands`` is one subcommand (see :mod:`probnets_app.command`);
this distribution registers ``fit`` and ``bo``. Only the invoked command's options are built, so
``probnets --help`` imports neither torch nor botorch.

Example:
    $ probnets --help
    $ probnets fit --model bnn --method chees --data diabetes --out demo_output

Problems with the input data are reported as one line ``probnets: error: <problem>`` on stderr with exit
status 2 (the status argparse uses for bad options).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection, Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

from probnets_app.command import Command

PROG = "probnets"
COMMAND_GROUP = "probnets.commands"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Iterations a waiting OpenMP thread spins before it sleeps (see :func:`short_openmp_spin`).
OPENMP_SPIN_COUNT = 1000


class DataError(Exception):
    """A problem with the input data, reported as one ``probnets: error:`` line (exit status 2)."""


def registered_commands() -> dict[str, Command]:
    """The subcommands registered under the ``probnets.commands`` entry points, by name."""
    return {ep.name: ep.load() for ep in entry_points(group=COMMAND_GROUP)}


def build_parser(configure: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``probnets`` parser with one subparser per registered command.

    Args:
        configure: Names of the commands whose options are added; ``None``: all of them. The others are
            listed (name and help) but parse no options.
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="Bayesian deep learning on PyTorch: sample BNN posteriors and report on them.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in registered_commands().items():
        subparser = subparsers.add_parser(name, help=command.help, description=command.description)
        subparser.set_defaults(run=command.run)
        if configure is None or name in configure:
            command.add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probnets`` console script; returns the exit status."""
    short_openmp_spin()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(configure=[_command_name(argv)])
    args = parser.parse_args(argv)  # exits with status 2 on bad options
    try:
        return args.run(args, parser)
    except DataError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def short_openmp_spin() -> None:
    """Let torch's OpenMP threads spin only briefly before they sleep while waiting (``GOMP_SPINCOUNT=1000``),
    unless the user chose a wait policy (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set).

    With libgomp's default (300 000 spins), waiting threads take the cores from the thread they wait for and from
    other users' processes: with two busy processes on two cores, ChEES sampling took 2.5x as long as with 1 000
    spins (the count libgomp itself uses when it knows the cores are oversubscribed), which is within the noise
    of the default on an idle machine (``benchmarks/results/wait_policy.md``). OpenMP reads the variable when
    torch loads it, so this runs before torch is imported.
    """
    if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
        os.environ["GOMP_SPINCOUNT"] = str(OPENMP_SPIN_COUNT)


def _command_name(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first non-option argument (the top-level options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _error(message: str) -> int:
    message = " ".join(str(message).split())  # exactly one line
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _version() -> str:
    try:
        return version("probnets")
    except PackageNotFoundError:  # metadata absent in a source checkout
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
