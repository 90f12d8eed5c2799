"""Argument types shared by every `kedascaler` subcommand: a bad value names the flag and exits 2 (argparse)."""

from __future__ import annotations

import argparse


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None


def positive(value: str) -> float:
    """A number > 0 (seconds, factors, targets)."""
    number = _number(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value!r}")
    return number


def non_negative(value: str) -> float:
    """A number ≥ 0."""
    number = _number(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value!r}")
    return number


def port(value: str) -> int:
    """A TCP port, 0-65535 (0: a free one, or off where the flag says so)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be within 0-65535, got {value}")
    return number
