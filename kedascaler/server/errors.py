"""RPC failures as values: a status code and a message a user can act on, never a stack trace on the wire."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc

log = logging.getLogger("kedascaler.server")

INTERNAL_MESSAGE = "internal error in kedascaler; the scaler's log has the details"
SHOWN_CHARS = 256  # of a client's value echoed in an error: longer than any Kubernetes name, far below a trailer
MAX_LOGGED_CHARS = 1_000  # of one logged failure


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)`, cut to `limit` characters with its length said: what a client sent, safe to echo."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


class RpcFailure(Exception):
    """Raised inside a handler to end the call with this status code and message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details
        super().__init__(f"{code.name}: {details}")


def invalid_argument(details: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, details)


def not_found(details: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.NOT_FOUND, details)


def unavailable(details: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.UNAVAILABLE, details)


def resource_exhausted(details: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, details)


class ThrottledLog:
    """Logs each distinct failure at most once per interval: a broken ScaledObject repeats it every 15 s.

    At most `burst` lines per interval in all, so a client sending a new bad value on every call cannot flood
    the log: the rest are counted, and the count is logged when the next interval opens."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic, limit: int = 1024,
                 burst: int = 100) -> None:
        self._interval = interval
        self._clock = clock
        self._limit = limit
        self._burst = burst
        self._last: dict[str, float] = {}
        self._window_start = -float("inf")
        self._logged = 0
        self._suppressed = 0

    def warning(self, method: str, failure: RpcFailure) -> None:
        message = f"{method} -> {failure.code.name}: {failure.details}"
        if len(message) > MAX_LOGGED_CHARS:
            message = f"{message[:MAX_LOGGED_CHARS]}… ({len(message)} characters)"
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last < self._interval:
            return
        if now - self._window_start >= self._interval:
            if self._suppressed:
                log.warning("%d more failures were not logged in the last %gs (at most %d lines per interval)",
                            self._suppressed, self._interval, self._burst)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged >= self._burst:
            self._suppressed += 1
            return
        if len(self._last) >= self._limit:
            self._last.clear()
        self._last[message] = now
        self._logged += 1
        log.warning("%s", message)
