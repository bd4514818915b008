"""The ``probnets`` subcommand contract: what a package registers under the ``probnets.commands`` entry points.

A package adds a subcommand by naming a :class:`Command` in its ``pyproject.toml``; the entry point's name is
the subcommand's name:

    [project.entry-points."probnets.commands"]
    bench = "mypackage.bench:COMMAND"

``probnets --help`` loads every registered command but reads only ``help`` and ``description``, so the module
defining a command should import nothing heavy (torch, botorch) at module level; ``add_arguments`` runs only
for the command being invoked and may import what its choices and defaults come from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One ``probnets`` subcommand.

    Attributes:
        help: One line listed by ``probnets --help``.
        add_arguments: Adds the command's options to its (sub)parser; may also set ``parser.epilog``.
        run: Runs the command on the parsed arguments and returns the exit status. It receives the top-level
            parser for ``parser.error`` (exit status 2) and may raise :class:`probnets_app.cli.DataError`
            for a one-line ``probnets: error:`` message.
        description: Shown by ``probnets NAME --help``.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int]
    description: str | None = None
