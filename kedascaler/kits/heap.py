"""The garbage collector of a long-running scaler: no full collection while it serves, a bounded heap all the same.

CPython's cyclic collector holds the GIL for the whole of a collection. Its full (oldest-generation) collections
walk every tracked object, and a reconcile cycle at 10,000 variants keeps hundreds of thousands of them (the
inventory, the last decisions, the capacity rows kept across cycles): about 1 s with the GIL held, during which
the event loop answers no RPC, whichever thread triggered it. `HeapPolicy` keeps the young collections (they
free a cycle's short-lived cycles in a millisecond or two) and turns the automatic full ones off; after each
cycle it freezes what survived (`gc.freeze()`: those objects leave the collector's generations, so no collection
walks them again; reference counting still frees each one the moment it is dropped).

What that could leak is cyclic garbage among frozen objects — a structure with a reference cycle that survived a
cycle and was dropped later. The heap's size tells (`sys.getallocatedblocks()`, the interpreter's count of
allocated memory blocks, read in constant time): it stays at the live set's size while nothing leaks (a dropped
frozen object is freed by refcounting), so a full collection runs only when it has grown by `growth` (100%: it
doubled) since the heap settled or since the last full collection. The state kept across cycles grows after
start-up until its history windows are full (the capacity memory keeps 30 minutes of samples: the heap at
1,000 variants grows 2.7× over those 120 cycles of 15 s, steadily), so a base taken at the first cycle is reached
by that growth alone, and the full collection it sets off (1-2.5 s at 10,000 variants, the GIL held all along:
every RPC waits) finds nothing. `settle`: the seconds after `start()` the live set takes to reach its size (serve
passes the history's length); the base is the heap after the first cycle past them, and no full collection runs
before. The reconcile cycle leaves no reference cycles behind (`tests/loop/test_heap.py` holds it to that), so
neither the growth nor any full collection comes in steady state.

`young`: the youngest generation's threshold (allocations between two young collections; CPython's default 700).
A young collection walks what was allocated since the last one and has not been freed yet, and each tenth one
(the middle generation) ten times that, all with the GIL held; during a cycle at 10,000 variants most of it
survives (the next state being built), so at 700 the middle collections took up to 12-16 ms each (a quarter of
them over 5 ms, 148 a cycle pair), at 2,000 up to 160 ms, at 200 at most 5-7 ms, for the same or less collector
time in all (`benchmarks/probe_stalls.py`).

`switch_interval`: how long a thread holding the GIL runs before a waiting one gets it (CPython's default 5 ms);
shorter, an RPC waiting behind the cycle's bytecode gets the GIL sooner, at the cost of more hand-overs. 1 ms:
at 1,000 variants 5 ms made GetMetrics' p99 during cycles 15 ms (1 ms: 9-11 ms), and 0.2 ms cost the cycle
≈ 35% more CPU for a p99 within the noise (8-9 ms) and no shorter worst stall.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("kedascaler.heap")

NEVER = 2**31 - 1  # a generation-2 threshold no count reaches: the automatic full collection is off


@dataclass
class HeapPolicy:
    """Young collections only, the survivors of each cycle frozen, a full collection when the frozen set grows."""

    growth: float = 1.0
    young: int | None = 200
    switch_interval: float | None = 0.001
    settle: float = 0.0  # s after start() before the base is taken (the live set still growing to its size)
    clock: Callable[[], float] = time.monotonic
    full_collections: int = 0  # how many full collections `after_cycle` ran (a leak's trace)
    _base: int | None = None  # the heap after the first cycle past `settle`, or after the last full collection
    _started: float | None = None

    def start(self) -> None:
        """Before the first cycle: the start-up's objects frozen, automatic full collections off, the young
        collections small."""
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young if self.young is None else self.young, middle, NEVER)
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)
        gc.collect()
        gc.freeze()
        self._started = self.clock()

    def after_cycle(self) -> None:
        """After a cycle (in its thread): freeze what it kept; a full collection only if the frozen set grew."""
        gc.freeze()  # constant time: the generations' lists are spliced onto the frozen one
        blocks = sys.getallocatedblocks()  # constant time (gc.get_freeze_count() walks the list: 10s of ms)
        if self._base is None:
            if self._started is not None and self.clock() - self._started < self.settle:
                return  # the live set still growing to its size: no base yet, no full collection
            self._base = blocks  # after the first cycle (past `settle`): the live heap's size
        if blocks <= self._base * (1 + self.growth):
            return
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._base = sys.getallocatedblocks()
        self.full_collections += 1
        log.debug("full garbage collection: %d memory blocks before, %d after, %d objects unreachable, %.0f ms",
                  blocks, self._base, found, (time.perf_counter() - started) * 1000)

    def stop(self) -> None:
        """Back to CPython's defaults (tests, and a process that goes on after serving)."""
        gc.unfreeze()
        gc.set_threshold(*DEFAULT_THRESHOLD)
        sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL)


def release(box: list[Any], depth: int = 4, wide: int = 64) -> None:
    """Drop what `box` holds, in small pieces: no single deallocation holding the GIL for long.

    Dropping the last reference to a big structure — last cycle's state, its report (40,000 pod samples, 10,000
    decisions with their steps) — frees it all in one C-level cascade: 20-60 ms at 10,000 variants, with the GIL
    held. Here the structure's parts are taken first (dataclass fields, the values of mappings and the items of
    sequences wider than `wide`, `depth` levels down; an entry of a wide container is one part, not taken
    apart); then the containers go (their parts kept alive here) and the parts one by one, each a small free
    between bytecodes where another thread can take the GIL. Nothing is mutated: a part another structure still
    holds just outlives this. `box` is emptied; the caller must hold no other reference (pass `[x]` built in the
    call, or a list it then forgets). It costs ≈ 150 ms CPU a cycle at 10,000 variants, about what the frees
    themselves cost."""
    pending: list[Any] = []
    while box:
        _take_apart(box.pop(), pending, depth, wide)
    while pending:
        pending.pop()


_LEAVES = (str, bytes, int, float, bool, type(None))
_WIDE = (Mapping, tuple, list, set, frozenset)


def _take_apart(obj: Any, pending: list[Any], depth: int, wide: int, fields: bool = True) -> None:
    """Push `obj`'s parts onto `pending` (taken apart themselves, depth permitting), then `obj` (popped first).
    A dataclass's fields are parts (`fields`); so are the entries of a wide container, but each of those is taken
    apart only when it is a wide container itself (an entry — a decision, a pod sample — frees quickly alone)."""
    if depth > 0 and not isinstance(obj, _LEAVES):
        if fields and hasattr(obj, "__dataclass_fields__"):
            for name in obj.__dataclass_fields__:
                _take_apart(getattr(obj, name, None), pending, depth - 1, wide)
        elif isinstance(obj, _WIDE) and len(obj) > wide:
            for part in list(obj.values()) if isinstance(obj, Mapping) else list(obj):
                if isinstance(part, _WIDE) and len(part) > wide:
                    _take_apart(part, pending, depth - 1, wide, fields=False)
                else:
                    pending.append(part)
    pending.append(obj)


DEFAULT_THRESHOLD = gc.get_threshold()
DEFAULT_SWITCH_INTERVAL = sys.getswitchinterval()

__all__ = ["NEVER", "HeapPolicy", "release"]
