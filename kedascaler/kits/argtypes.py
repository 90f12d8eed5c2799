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


def http_url(value: str) -> str:
    """An http:// or https:// URL with a host (and a valid port when one is given): `http://prometheus:9090`."""
    from urllib.parse import urlsplit

    hint = "expected an http:// or https:// URL with a host, e.g. http://prometheus.monitoring:9090"
    if not value or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{value!r}: {hint}")
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError when it is not a number in 0-65535
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}; {hint}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r}: {hint}")
    if port == 0:
        raise argparse.ArgumentTypeError(f"{value!r}: port 0 cannot be dialled; {hint}")
    return value


def count(value: str) -> int:
    """A whole number ≥ 1 (a limit)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number
