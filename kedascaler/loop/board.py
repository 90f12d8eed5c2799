"""The DecisionBoard: the latest decision per variant, swapped in atomically, read in O(1) by every RPC.

The reconcile loop publishes; the gRPC servicer reads and subscribes. Subscribers (StreamIsActive) get the
active flag of their variant whenever it changes, pushed from whichever thread publishes. Listeners
(`DecisionBoard.listen`) see every publish in order: `serve` mirrors the board into the process that answers
KEDA (`kedascaler.loop.mirror`).

`Board` is what the servicer reads: this board in one process, its `MirrorBoard` in the answering process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kedascaler.engine.types import Decision, VariantKey, VariantSpec


@dataclass(frozen=True)
class BoardView:
    """One consistent, immutable view of the board: what was published last."""

    decisions: dict[VariantKey, Decision]
    specs: dict[VariantKey, VariantSpec]
    version: int


class Served(Protocol):
    """What an RPC reads of a decision."""

    @property
    def desired_replicas(self) -> int: ...
    @property
    def active(self) -> bool: ...
    @property
    def data_at(self) -> float: ...


class Board(Protocol):
    """What the servicer reads: O(1) lookups, the known names, and subscriptions to the active flag."""

    @property
    def version(self) -> int: ...
    def get(self, key: VariantKey) -> Served | None: ...
    def knows(self, key: VariantKey) -> bool: ...
    def names_in(self, namespace: str) -> list[str]: ...
    def subscribe(self, key: VariantKey, loop: asyncio.AbstractEventLoop | None = None) -> Subscription: ...


# a listener of publishes: (the new view, the decisions just published, whether the known variants were replaced)
Listener = Callable[[BoardView, Sequence[Decision], bool], None]


class Subscription:
    """An asyncio-side mailbox of active flags for one variant; only the latest value matters."""

    def __init__(self, board: Subscribable, key: VariantKey, loop: asyncio.AbstractEventLoop) -> None:
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


class Subscribable:
    """The subscriber table of a board (this one, or its mirror): streams subscribe to a variant's active flag;
    `_lock` also guards the board's swaps, so no flip slips between a swap and a subscription."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[VariantKey, set[Subscription]] = {}

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


class DecisionBoard(Subscribable):
    """Thread-safe holder of the latest decisions; reads never block on writers."""

    def __init__(self) -> None:
        super().__init__()
        self._view = BoardView({}, {}, 0)
        self._publishing = threading.Lock()  # one publish at a time, its listeners included: they see them in order
        self._listeners: list[Listener] = []

    # -- reading (O(1), lock-free: one attribute read of an immutable view) --
    @property
    def view(self) -> BoardView:
        return self._view

    def get(self, key: VariantKey) -> Decision | None:
        return self._view.decisions.get(key)

    def spec(self, key: VariantKey) -> VariantSpec | None:
        return self._view.specs.get(key)

    @property
    def version(self) -> int:
        """How many publishes so far: 0 until the first cycle."""
        return self._view.version

    def knows(self, key: VariantKey) -> bool:
        view = self._view
        return key in view.specs or key in view.decisions

    def names_in(self, namespace: str) -> list[str]:
        """Names of the known VariantAutoscalings in a namespace (for NOT_FOUND messages)."""
        return sorted(k.name for k in self._view.specs if k.namespace == namespace)

    # -- writing --
    def listen(self, listener: Listener, *, replay: bool = False) -> None:
        """Call `listener(view, published, replaced)` after every publish, in the publishing thread, in order;
        `replay`: first with what is on the board now (when anything was published), as one full publish."""
        with self._publishing:
            self._listeners.append(listener)
            view = self._view
            if replay and view.version > 0:
                listener(view, tuple(view.decisions.values()), True)

    def publish(self, decisions: Iterable[Decision], specs: Iterable[VariantSpec] | None = None) -> None:
        """Merge new decisions (and, if given, replace the set of known variants), then push flips."""
        with self._publishing:
            published = tuple(decisions)
            self._publish(published, specs)
            view = self._view
            for listener in self._listeners:
                listener(view, published, specs is not None)

    def _publish(self, decisions: Sequence[Decision], specs: Iterable[VariantSpec] | None) -> None:
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
