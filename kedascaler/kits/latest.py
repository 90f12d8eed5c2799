"""A single worker thread for the latest piece of work: `submit` never blocks, and work waiting is coalesced.

What an actuator writes to another server (status, Events, pod annotations) must not hold the caller — the
asyncio loop answering RPCs — while that server is slow or gone. `LatestOnly` holds at most one item waiting
beside the one running: an item submitted while another waits is merged into it (`merge(waiting, new)`;
default: the new one replaces it), so a stalled server costs memory for one item, never a queue, and the
worker writes only what is latest once it can. An exception from the work is logged, never raised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("kedascaler.kits.latest")


def _replace(_waiting: T, new: T) -> T:
    return new


class LatestOnly(Generic[T]):
    """Runs `work(item)` in its own daemon thread for the latest item submitted (merged with any waiting)."""

    def __init__(self, work: Callable[[T], object], *, name: str,
                 merge: Callable[[T, T], T] = _replace) -> None:
        self.work = work
        self.name = name
        self.merge = merge
        self._cond = threading.Condition()
        self._waiting: T | None = None
        self._has_waiting = False
        self._running = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.submitted = 0
        self.coalesced = 0  # items merged into one already waiting (work never done on its own)
        self.done = 0
        self.failed = 0

    def submit(self, item: T) -> None:
        """Hand `item` over and return at once; merged into the item waiting, if one is."""
        with self._cond:
            if self._closed:
                return
            self.submitted += 1
            if self._has_waiting:
                self.coalesced += 1
                self._waiting = self.merge(self._waiting, item)  # type: ignore[arg-type]
            else:
                self._waiting, self._has_waiting = item, True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_waiting and not self._closed:
                    self._cond.wait()
                if not self._has_waiting:
                    return
                item, self._waiting, self._has_waiting = self._waiting, None, False
                self._running = True
            try:
                self.work(item)  # type: ignore[arg-type]
                ok = True
            except Exception:  # noqa: BLE001 - the worker outlives any one item
                log.exception("%s: work failed; the next item is still written", self.name)
                ok = False
            with self._cond:
                self._running = False
                self.done += ok
                self.failed += not ok
                self._cond.notify_all()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._running or self._has_waiting

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs or waits (True), or `timeout` seconds (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running and not self._has_waiting, timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Take no more items; give the one running and the one waiting up to `timeout` s to finish.
        True when they did (the thread has ended)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()
