"""Argument types shared by the ``probnets`` subcommands: each parses one option value or raises
``argparse.ArgumentTypeError`` (an argparse usage error, exit status 2)."""

from __future__ import annotations

import argparse
import ast


def _integer_at_least(minimum: int, kind: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
        return value

    parse.__doc__ = f"An integer >= {minimum}."
    return parse


positive_int = _integer_at_least(1, "positive")
nonnegative_int = _integer_at_least(0, "non-negative")


def widths(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. ``"50,20"`` -> ``(50, 20)``."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of positive integers, got {text!r}")
    return tuple(positive_int(p) for p in parts)


def names(text: str) -> tuple[str, ...]:
    """Comma-separated non-empty names, e.g. ``"age,bmi"`` -> ``("age", "bmi")``."""
    parts = tuple(p.strip() for p in text.split(","))
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of column names, got {text!r}")
    return parts


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def key_value(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` -> ``(NAME, VALUE)``; VALUE read as a Python literal (``3``, ``0.1``, ``True``, ``(64, 64)``,
    ``None``) or else kept as text (``relu``)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return name, value.strip()
