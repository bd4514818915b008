"""Sampler options of ``probnets fit`` that map onto a registered sampler's own options.

``--target-accept`` and ``--max-tree-depth`` are what the convergence warnings recommend (a higher target
acceptance against divergences, a deeper tree against saturated NUTS trajectories). Each is passed only to
methods whose builder takes it (``inference.registry.get(method).options()``); for any other method it is a
usage error naming the methods that do take it.
"""

from __future__ import annotations

import argparse
from typing import Any

from probnets_app import arguments

#: Command-line option -> the sampler option it sets.
OPTIONS = {"target_accept": "--target-accept", "max_tree_depth": "--max-tree-depth"}


def _probability(text: str) -> float:
    return arguments.fraction(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target-accept", type=_probability, metavar="P",
                        help="target acceptance probability of the step-size adaptation, in (0, 1); higher gives "
                             "smaller steps and fewer divergences (nuts, hmc, chees; default: per method, 0.8)")
    parser.add_argument("--max-tree-depth", type=arguments.positive_int, metavar="N",
                        help="NUTS trajectories stop after 2**N integrator steps (default: 10)")


def chosen(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The sampler options given on the command line, checked against ``args.method``'s options."""
    from inference import registry

    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}
    accepted = registry.get(args.method).options()
    for name in given:
        if name not in accepted:
            takers = [s.name for s in registry.SAMPLERS.values() if name in s.options()]
            parser.error(f"argument {OPTIONS[name]}: method {args.method!r} has no {name} option; it applies to "
                         f"{', '.join(takers)}")
    return given
