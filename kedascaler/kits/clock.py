"""One clock for a process: the wall time at start plus the monotonic time since, so it never jumps.

`serve` hands one `SteadyClock` to everything that stamps or compares times: the reconcile cycle (decision
times, idle windows, hold windows, refits), the metrics sources (samples stamped on receipt), the push inbox
(request times) and the gRPC server (the staleness check). Ages and timers then share one clock that an NTP
step, a manual `date -s` or a VM resume never moves: an idle timer cannot fire early because the wall clock
jumped forward, nor hang because it jumped back, and `--stale-after` compares two readings of the same clock.

Its readings are Unix times (they start equal to `time.time()`), so what is shown to people (status
`lastRunTime`, decision records) stays readable; after a wall-clock step they differ from the wall clock by
that step until the process restarts. Nothing is compared with another server's clock: Prometheus's sample
times are turned into ages on arrival (`kedascaler.sources.prometheus`).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    """`clock()`: Unix seconds, monotonic (wall time at construction + monotonic seconds since)."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._start = monotonic()
        self._offset = wall() - self._start

    @classmethod
    def sharing(cls, offset: float) -> SteadyClock:
        """A clock that reads as one whose `offset` this is: in another process on the same host (the monotonic
        clock is the system's), the same readings."""
        clock = cls()
        clock._offset = offset
        return clock

    @property
    def offset(self) -> float:
        return self._offset

    def __call__(self) -> float:
        return self._offset + self._monotonic()
