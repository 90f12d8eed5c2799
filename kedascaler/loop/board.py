"""The DecisionBoard: the latest decision per variant, swapped in atomically, read in O(1) by every RPC.

The reconcile loop publishes; the gRPC servicer reads and subscribes. Subscribers (StreamIsActive) get the
active flag of their variant whenever it changes, pushed from whichever thread publishes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from kedascaler.engine.types import Decision, VariantKey, VariantSpec


@dataclass(frozen=True)
class BoardView:
    """One consistent, immutable view of the board: what was published last."""

    decisions: dict[VariantKey, Decision]
    specs: dict[VariantKey, VariantSpec]
    version: int


class Subscription:
    """An asyncio-side mailbox of active flags for one variant; only the latest value matters."""

    def __init__(self, board: DecisionBoard, key: VariantKey, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self._board = board
        self._loop = loop
        self._changed = asyncio.Event()
        self._latest: bool | None = None

    def _offer(self, active: bool) -> None:
        """Called from any thread: record the newest flag and wake the waiting coroutine."""
        self._loop.call_soon_threadsafe(self._set, active)

    def _set(self, active: bool) -> None:
        self._latest = active
        self._changed.set()

    async def next(self) -> bool:
        """Wait for the next change of the active flag and return it."""
        await self._changed.wait()
        self._changed.clear()
        assert self._latest is not None
        return self._latest

    def close(self) -> None:
        self._board._unsubscribe(self)


class DecisionBoard:
    """Thread-safe holder of the latest decisions; reads never block on writers."""

    def __init__(self) -> None:
        self._view = BoardView({}, {}, 0)
        self._lock = threading.Lock()  # serialises writers and the subscriber table, never readers
        self._subscribers: dict[VariantKey, set[Subscription]] = {}

    # -- reading (O(1), lock-free: one attribute read of an immutable view) --
    @property
    def view(self) -> BoardView:
        return self._view

    def get(self, key: VariantKey) -> Decision | None:
        return self._view.decisions.get(key)

    def spec(self, key: VariantKey) -> VariantSpec | None:
        return self._view.specs.get(key)

    def names_in(self, namespace: str) -> list[str]:
        """Names of the known VariantAutoscalings in a namespace (for NOT_FOUND messages)."""
        return sorted(k.name for k in self._view.specs if k.namespace == namespace)

    # -- writing --
    def publish(self, decisions: Iterable[Decision], specs: Iterable[VariantSpec] | None = None) -> None:
        """Merge new decisions (and, if given, replace the set of known variants), then push flips."""
        with self._lock:
            old = self._view
            merged = dict(old.decisions)
            for d in decisions:
                merged[d.key] = d
            new_specs = old.specs if specs is None else {s.key: s for s in specs}
            if specs is not None:
                merged = {k: v for k, v in merged.items() if k in new_specs}
            self._view = BoardView(merged, new_specs, old.version + 1)
            flips = [
                (key, d.active)
                for key, d in merged.items()
                if key in self._subscribers and (key not in old.decisions or old.decisions[key].active != d.active)
            ]
            targets = [(sub, active) for key, active in flips for sub in self._subscribers[key]]
        for sub, active in targets:
            sub._offer(active)

    # -- subscribing --
    def subscribe(self, key: VariantKey, loop: asyncio.AbstractEventLoop | None = None) -> Subscription:
        sub = Subscription(self, key, loop or asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(key, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.key]

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscribers.values())
