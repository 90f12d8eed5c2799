"""Capacity mode's start-up measurement (pod asked for → ready): a replica cancelled while it loads measures
nothing. It used to count as turned ready: four A100s asked for, one cancelled 15 s later, read as a 30 s start-up,
and the hold (the longest start-up of the model's variants) let go of capacity after 30 s instead of 90 s."""

from __future__ import annotations

import math

from kedascaler.loop.capacity import Startup, track_startup
from kedascaler.sources.base import WorkloadStatus


def follow(*steps: tuple[float, int, int]) -> Startup:
    """(clock, replicas asked for, ready) per cycle, from an empty tracker."""
    found = Startup()
    for now, current, ready in steps:
        found = track_startup(found, WorkloadStatus(current, ready), now)
    return found


def test_a_replica_cancelled_while_it_loads_measures_no_start_up():
    # t = 15: three more asked for; t = 30: one of them cancelled; t = 105: the other two ready
    cancelled = follow((0, 1, 1), (15, 4, 1), (30, 3, 1))
    assert cancelled.measured is None and len(cancelled.pending_since) == 2
    ready = follow((0, 1, 1), (15, 4, 1), (30, 3, 1), (105, 3, 3))
    assert ready.samples == (105.0, 105.0) and ready.pending_since == ()


def test_the_newest_are_cancelled_and_the_oldest_turn_ready():
    # one asked for at t = 15, two more at t = 45; at t = 60 one is cancelled and one turns ready
    found = follow((0, 1, 1), (15, 2, 1), (45, 4, 1), (60, 3, 2))
    assert found.samples == (60.0,)  # the one asked for first, stamped with the cycle before it was seen (t = 0)
    assert found.pending_since == (15.0,)  # one of the two asked for at t = 45 stays, stamped t = 15


def test_pods_loading_when_first_seen_are_not_measured():
    found = follow((0, 3, 1), (90, 3, 3))
    assert found.measured is None and all(math.isnan(t) for t in follow((0, 3, 1)).pending_since)
