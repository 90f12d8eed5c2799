"""RPC failures as values: a status code and a message a user can act on, never a stack trace on the wire."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc

log = logging.getLogger("kedascaler.server")

INTERNAL_MESSAGE = "internal error in kedascaler; the scaler's log has the details"


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


class ThrottledLog:
    """Logs each distinct failure at most once per interval: a broken ScaledObject repeats it every 15 s."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic, limit: int = 1024) -> None:
        self._interval = interval
        self._clock = clock
        self._limit = limit
        self._last: dict[str, float] = {}

    def warning(self, method: str, failure: RpcFailure) -> None:
        message = f"{method} -> {failure.code.name}: {failure.details}"
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last < self._interval:
            return
        if len(self._last) >= self._limit:
            self._last.clear()
        self._last[message] = now
        log.warning("%s", message)
