"""Sampler options of ``probnets fit`` that map onto a registered sampler's own options, and the
``--until-converged``/``--max-time`` budget of ``inference.sample``.

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


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target-accept", type=_probability, metavar="P",
                        help="target acceptance probability of the step-size adaptation, in (0, 1); higher gives "
                             "smaller steps and fewer divergences (nuts, hmc, chees; default: per method, 0.8)")
    parser.add_argument("--max-tree-depth", type=arguments.positive_int, metavar="N",
                        help="NUTS trajectories stop after 2**N integrator steps (default: 10)")
    parser.add_argument("--until-converged", action="store_true",
                        help="sample in rounds of doubling warm-up and draws until the function-space R-hat <= "
                             "1.01 and bulk/tail ESS >= 400, or until --max-time; resumable with --checkpoint")
    parser.add_argument("--max-time", type=_positive_seconds, metavar="SECONDS",
                        help="time budget of --until-converged (default: none; at most 6 rounds)")


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
    if args.max_time is not None and not args.until_converged:
        parser.error("argument --max-time: applies with --until-converged only")
    if args.until_converged:
        given.update(until_converged=True, max_time=args.max_time)
    return given


def reject(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A usage error if a sampler-only option is given to a route that does not run a registered sampler."""
    flags = {**OPTIONS, "until_converged": "--until-converged", "max_time": "--max-time"}
    for name, flag in flags.items():
        if getattr(args, name, None) not in (None, False):
            parser.error(f"argument {flag}: applies to the registered samplers of --model bnn, not to "
                         f"--model {args.model}" + (f" --method {args.method}" if args.method else ""))
