"""Capacity mode's arrival rate across a scale-down: requests a removed pod hands back are counted once.

A removed vLLM pod hands its waiting requests back to the gateway, which routes them again; they come back as
backlog growth at the pods that stay. They arrived once already: counted again, one scale-down would read as a
burst of new demand and buy replicas for work that was never new.
"""

from __future__ import annotations

import pytest

from kedascaler.engine.arrivals import demand_view
from kedascaler.engine.capacity_types import CapacityInputs
from kedascaler.engine.explain_capacity import demand_message
from kedascaler.loop.capacity import CapacityState, observe
from kedascaler.sources.base import PodSample, PodUsage, WorkloadStatus
from tests.engine.builders import MODEL, NS, key, snapshot, variant

WINDOW = 15.0


def pod(name: str, waiting: float, completed: float, growth: float) -> PodSample:
    usage = PodUsage(WINDOW, completed_rate=completed, prompt_tokens_rate=completed * 200.0,
                     output_tokens_rate=completed * 100.0, backlog_growth_rate=growth)
    return PodSample(NS, name, MODEL, 0.5, waiting, 8.0, 0.0, variant=key("a100"), usage=usage)


def two_cycles(second: list[PodSample], failed: tuple[str, ...] = (),
               status: WorkloadStatus | None = None) -> CapacityState:
    snap = snapshot(variant("a100", current=2))
    first = observe(CapacityState(), [snap], {key("a100"): [pod("a100-0", 30.0, 5.0, 0.0),
                                                            pod("a100-1", 0.0, 5.0, 0.0)]}, {}, 15.0)
    return observe(first, [snap], {key("a100"): second}, {key("a100"): status}, 30.0, failed=failed)


def latest(state: CapacityState):
    return state.history[(NS, MODEL)][-1]


def test_the_requests_a_removed_pod_had_waiting_do_not_count_again_where_they_are_routed():
    # a100-0 is gone with 30 waiting; they reappear at a100-1 as 2 req/s of backlog growth over 15 s
    after = latest(two_cycles([pod("a100-1", 30.0, 10.0, 30.0 / WINDOW)]))
    assert after.rate == pytest.approx(10.0) and after.handed_back == pytest.approx(2.0)


def test_only_the_growth_seen_is_taken_out_and_new_arrivals_still_count():
    # the requests handed back went to a pod read for the first time (no usage): nothing came back to take out
    assert latest(two_cycles([pod("a100-1", 0.0, 10.0, 0.0)])).rate == pytest.approx(10.0)
    # 2 req/s came back and 3 req/s more arrived: the 3 count
    grown = latest(two_cycles([pod("a100-1", 75.0, 10.0, 5.0)]))
    assert grown.rate == pytest.approx(13.0) and grown.handed_back == pytest.approx(2.0)


def test_a_pod_whose_metrics_failed_is_not_gone():
    # a100-0 could not be read this cycle: its queue is still its own, the growth at a100-1 is new arrivals
    kept = two_cycles([pod("a100-1", 30.0, 10.0, 2.0)], failed=(f"{NS}/a100-0",))
    assert latest(kept).rate == pytest.approx(12.0) and latest(kept).handed_back == 0.0
    # ... and remembered: when it is gone for good, what it had waiting is handed back then
    snap = snapshot(variant("a100", current=1))
    gone = observe(kept, [snap], {key("a100"): [pod("a100-1", 60.0, 10.0, 2.0)]}, {}, 45.0)
    assert latest(gone).handed_back == pytest.approx(2.0)


def test_a_ready_pod_that_missed_a_read_is_not_gone():
    # the Deployment still has two ready pods: a100-0 only gave no sample this cycle
    missed = two_cycles([pod("a100-1", 30.0, 10.0, 2.0)], status=WorkloadStatus(2, 2))
    assert latest(missed).rate == pytest.approx(12.0) and latest(missed).handed_back == 0.0
    # one ready pod left: a100-0 is gone, and what it had waiting came back at a100-1
    left = two_cycles([pod("a100-1", 30.0, 10.0, 2.0)], status=WorkloadStatus(1, 1))
    assert latest(left).rate == pytest.approx(10.0) and latest(left).handed_back == pytest.approx(2.0)


def test_the_reason_says_what_was_not_counted():
    state = two_cycles([pod("a100-1", 30.0, 10.0, 30.0 / WINDOW)])
    view = demand_view(CapacityInputs(history=state.history[(NS, MODEL)]), 30.0, 30.0, None, 90.0)
    assert view is not None and view.handed_back == pytest.approx(2.0)
    assert "2 req/s routed again from pods gone not counted" in demand_message(view)
