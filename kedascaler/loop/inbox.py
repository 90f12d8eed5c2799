"""Requests pushed for cold models (POST /v1/activate): the newest time per model, and the models to wake now."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from kedascaler.sources.gateway import ModelRef

MIN_WAKE_GAP = 1.0  # seconds: at most one wake-up cycle per model per second, however many requests are pushed


class ActivationInbox:
    """Requests pushed for cold models: the newest time per model, and the models to reconcile at once.

    Thread-safe: the HTTP endpoint records from its threads, the reconcile loop reads from its own. `attach`
    an asyncio.Event (the reconcile loop's wake event) to have it set, on its loop, when a model becomes
    pending. Wake-ups are coalesced: a model woken less than `min_gap` seconds ago stays pending until its
    gap has passed (`take_due`, `next_due`), so a flood of pushes costs at most one cycle per model per gap.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, min_gap: float = MIN_WAKE_GAP,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.min_gap = min_gap
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._latest: dict[ModelRef, float] = {}
        self._pending: set[ModelRef] = set()
        self._woken_at: dict[ModelRef, float] = {}
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def attach(self, wake: asyncio.Event, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Set `wake` (on `loop`, default: the running one) whenever a model becomes pending."""
        with self._lock:
            self._wakers.append((loop or asyncio.get_running_loop(), wake))

    def record(self, namespace: str, model: str, at: float | None = None, *, wake: bool = True) -> float:
        """A request for `model` was seen now (or at `at`): remember it and (with `wake`) ask for a cycle of it.

        `wake=False`: the model is active already, so only its newest request time matters (the idle timer)."""
        when = self.clock() if at is None else at
        ref = (namespace, model)
        with self._lock:
            self._latest[ref] = max(when, self._latest.get(ref, when))
            newly = wake and ref not in self._pending
            if newly:
                self._pending.add(ref)
            wakers = list(self._wakers) if newly else []
        for loop, event in wakers:  # only when the model became pending: a flood sets the event once
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
        """Every pending model, emptied: a full cycle reads every pushed time anyway (and is not an extra cycle)."""
        with self._lock:
            pending, self._pending = self._pending, set()
            return pending

    def take_due(self) -> set[ModelRef]:
        """The pending models whose last wake-up is at least `min_gap` old, taken; the others stay pending."""
        with self._lock:
            now = self._monotonic()
            due = {r for r in self._pending if now - self._woken_at.get(r, -float("inf")) >= self.min_gap}
            self._pending -= due
            for ref in due:
                self._woken_at[ref] = now
            return due

    def next_due(self) -> float | None:
        """Seconds until the first pending model is due (0: now), or None when nothing is pending."""
        with self._lock:
            if not self._pending:
                return None
            now = self._monotonic()
            return max(0.0, min(self.min_gap - (now - self._woken_at.get(r, -float("inf"))) for r in self._pending))

    @property
    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)
