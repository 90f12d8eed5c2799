"""The board, mirrored into another process: what KEDA's calls read there, sent as compact messages.

`serve` answers KEDA from a process of its own (`kedascaler.cli.answerer`), so that a cycle at 10,000 models,
which shares a GIL with whatever runs beside it, never delays an RPC. That process needs three numbers per
variant — desired replicas, the active flag, the time of its metrics — and the names it knows.

`MirrorFeed` listens to the `DecisionBoard` (in the cycle's thread) and turns each publish into messages:
- `Keys`: the known variants, in order, sent only when they change, in chunks of `KEY_CHUNK` (each is
  unpickled in well under a millisecond, so the answering process's loop is never held for the whole list);
- `Values`: every variant's three numbers as raw arrays, after a full cycle;
- `Update`: the same for the variants a wake-up cycle published, by index.
`MirrorBoard` applies them in the answering process (its receiving thread) and reads in O(1): an index
lookup and three array reads. Each apply swaps in new arrays whole, so a reader sees one publish or the
next, never half of one; flips of the active flag reach the subscribed streams as on the `DecisionBoard`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kedascaler.engine.types import Decision, VariantKey
from kedascaler.loop.board import BoardView, Subscribable, Subscription

KEY_CHUNK = 2_048
NO_DECISION = -1  # desired replicas of a known variant that has no decision yet


@dataclass(frozen=True)
class Keys:
    """One chunk of the known variants (generation `generation`, chunk `index` of `count`)."""

    generation: int
    index: int
    count: int
    names: tuple[tuple[str, str], ...]  # (namespace, name)


@dataclass(frozen=True)
class Values:
    """Every known variant's numbers, in the order of the keys of `generation`."""

    generation: int
    version: int
    desired: bytes  # int64
    active: bytes  # bool
    data_at: bytes  # float64


@dataclass(frozen=True)
class Update:
    """Some variants' numbers (a wake-up cycle's), by their index in the keys of `generation`."""

    generation: int
    version: int
    index: bytes  # int64
    desired: bytes
    active: bytes
    data_at: bytes


Message = Keys | Values | Update


@dataclass(frozen=True)
class ServedDecision:
    """What an RPC reads of a mirrored decision (`kedascaler.loop.board.Served`)."""

    desired_replicas: int
    active: bool
    data_at: float


def _numbers(decisions: Sequence[Decision | None]) -> tuple[bytes, bytes, bytes]:
    desired = np.fromiter((NO_DECISION if d is None else d.desired_replicas for d in decisions), np.int64,
                          len(decisions))
    active = np.fromiter((d is not None and d.active for d in decisions), np.bool_, len(decisions))
    data_at = np.fromiter((0.0 if d is None else d.data_at for d in decisions), np.float64, len(decisions))
    return desired.tobytes(), active.tobytes(), data_at.tobytes()


class MirrorFeed:
    """A `DecisionBoard` listener: each publish as `Message`s handed to `send` (in the publishing thread)."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self._send = send
        self._keys: tuple[VariantKey, ...] = ()
        self._index: dict[VariantKey, int] = {}
        self._generation = 0

    def __call__(self, view: BoardView, published: Sequence[Decision], replaced: bool) -> None:
        keys = self._known(view)
        if keys != self._keys:
            self._send_keys(keys)
            replaced = True
        if replaced:
            decisions = view.decisions
            desired, active, data_at = _numbers([decisions.get(k) for k in keys])
            self._send(Values(self._generation, view.version, desired, active, data_at))
            return
        index = np.fromiter((self._index[d.key] for d in published), np.int64, len(published))
        desired, active, data_at = _numbers(published)
        self._send(Update(self._generation, view.version, index.tobytes(), desired, active, data_at))

    def _known(self, view: BoardView) -> tuple[VariantKey, ...]:
        if view.specs.keys() == self._index.keys() and view.decisions.keys() <= view.specs.keys():
            return self._keys  # the usual cycle: the same variants as last time (set comparisons, in C)
        known = dict.fromkeys(view.specs)
        known.update(dict.fromkeys(view.decisions))
        return tuple(known)

    def _send_keys(self, keys: tuple[VariantKey, ...]) -> None:
        self._generation += 1
        self._keys = keys
        self._index = {k: i for i, k in enumerate(keys)}
        names = [(k.namespace, k.name) for k in keys]
        count = max(1, -(-len(names) // KEY_CHUNK))
        for i in range(count):
            self._send(Keys(self._generation, i, count, tuple(names[i * KEY_CHUNK:(i + 1) * KEY_CHUNK])))


@dataclass(frozen=True)
class _Mirror:
    """One consistent state of the mirror: the keys of a generation and their numbers."""

    generation: int
    version: int
    index: dict[VariantKey, int]
    desired: np.ndarray
    active: np.ndarray
    data_at: np.ndarray


_EMPTY = _Mirror(0, 0, {}, np.zeros(0, np.int64), np.zeros(0, np.bool_), np.zeros(0, np.float64))


class MirrorBoard(Subscribable):
    """The answering process's board (`kedascaler.loop.board.Board`): `apply` messages, read in O(1)."""

    def __init__(self) -> None:
        super().__init__()
        self._state = _EMPTY
        self._pending: dict[int, list[tuple[tuple[str, str], ...] | None]] = {}
        self._next_index: dict[VariantKey, int] | None = None  # keys of a new generation, not yet valued
        self._next_generation = 0

    # -- reading (lock-free: one attribute read of an immutable state) --
    @property
    def version(self) -> int:
        return self._state.version

    def get(self, key: VariantKey) -> ServedDecision | None:
        state = self._state
        i = state.index.get(key)
        if i is None:
            return None
        desired = int(state.desired[i])
        if desired == NO_DECISION:
            return None
        return ServedDecision(desired, bool(state.active[i]), float(state.data_at[i]))

    def knows(self, key: VariantKey) -> bool:
        return key in self._state.index

    def names_in(self, namespace: str) -> list[str]:
        return sorted(k.name for k in self._state.index if k.namespace == namespace)

    # -- writing (one thread: the one receiving the messages) --
    def apply(self, message: Message) -> None:
        if isinstance(message, Keys):
            self._keys(message)
        elif isinstance(message, Values):
            self._values(message)
        else:
            self._update(message)

    def _keys(self, message: Keys) -> None:
        chunks = self._pending.setdefault(message.generation, [None] * message.count)
        chunks[message.index] = message.names
        if any(c is None for c in chunks):
            return
        self._pending = {g: c for g, c in self._pending.items() if g > message.generation}  # this one and older
        index: dict[VariantKey, int] = {}
        for chunk in chunks:
            assert chunk is not None
            for namespace, name in chunk:
                index[VariantKey(namespace, name)] = len(index)
        self._next_index, self._next_generation = index, message.generation

    def _values(self, message: Values) -> None:
        state = self._state
        if message.generation != state.generation:
            if message.generation != self._next_generation or self._next_index is None:
                return  # values for keys never received in full: wait for the next full publish
            index, self._next_index = self._next_index, None
        else:
            index = state.index
        self._swap(_Mirror(message.generation, message.version, index,
                           np.frombuffer(message.desired, np.int64), np.frombuffer(message.active, np.bool_),
                           np.frombuffer(message.data_at, np.float64)))

    def _update(self, message: Update) -> None:
        state = self._state
        if message.generation != state.generation:
            return
        at = np.frombuffer(message.index, np.int64)
        desired, active, data_at = state.desired.copy(), state.active.copy(), state.data_at.copy()
        desired[at] = np.frombuffer(message.desired, np.int64)
        active[at] = np.frombuffer(message.active, np.bool_)
        data_at[at] = np.frombuffer(message.data_at, np.float64)
        self._swap(_Mirror(state.generation, message.version, state.index, desired, active, data_at))

    def _swap(self, new: _Mirror) -> None:
        """Swap in a new state, then push the flips of the active flag to the subscribed streams."""
        with self._lock:
            old, self._state = self._state, new
            targets: list[tuple[Subscription, bool]] = []
            for key, subs in self._subscribers.items():
                now = self.get(key)
                if now is None:
                    continue
                i = old.index.get(key)
                before = None if i is None or int(old.desired[i]) == NO_DECISION else bool(old.active[i])
                if before != now.active:
                    targets.extend((sub, now.active) for sub in subs)
        for sub, active in targets:
            sub._offer(active)
