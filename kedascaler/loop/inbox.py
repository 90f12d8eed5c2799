"""Requests pushed for cold models (POST /v1/activate): the newest time per model, and the models to wake now."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from kedascaler.sources.gateway import ModelRef


class ActivationInbox:
    """Requests pushed for cold models: the newest time per model, and the models to reconcile at once.

    Thread-safe: the HTTP endpoint records from its threads, the reconcile loop reads from its own. `attach`
    an asyncio.Event (the reconcile loop's wake event) to have it set, on its loop, at every record.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._latest: dict[ModelRef, float] = {}
        self._pending: set[ModelRef] = set()
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def attach(self, wake: asyncio.Event, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Set `wake` (on `loop`, default: the running one) whenever a request is recorded."""
        with self._lock:
            self._wakers.append((loop or asyncio.get_running_loop(), wake))

    def record(self, namespace: str, model: str, at: float | None = None) -> float:
        """A request for `model` was seen now (or at `at`): remember it and wake the reconcile loop."""
        when = self.clock() if at is None else at
        ref = (namespace, model)
        with self._lock:
            self._latest[ref] = max(when, self._latest.get(ref, when))
            self._pending.add(ref)
            wakers = list(self._wakers)
        for loop, event in wakers:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: nobody to wake there any more
                pass
        return when

    def latest(self) -> dict[ModelRef, float]:
        """The newest pushed request per model, as of now (a copy: the cycle's input)."""
        with self._lock:
            return dict(self._latest)

    def last_request_at(self, namespace: str, model: str) -> float | None:
        with self._lock:
            return self._latest.get((namespace, model))

    def take_pending(self) -> set[ModelRef]:
        """The models recorded since the last call (to reconcile at once), emptied."""
        with self._lock:
            pending, self._pending = self._pending, set()
            return pending

    @property
    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)
