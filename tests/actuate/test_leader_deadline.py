"""Leadership ends when renewals cannot complete within the renew deadline: a black-holed API server cannot keep
`is_leader` true, and the writers' threads (`submit`) hold nothing while the API server is slow."""

from __future__ import annotations

import threading

import pytest

from kedascaler.actuate.leader import LeaderElector
from kedascaler.actuate.status import StatusWriter
from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec
from kedascaler.spec.inventory import InventoryState
from tests.support.kube import eventually
from tests.support.kube_apiserver import va

LEASE = ("kedascaler-system", "kedascaler-leader")
KEY = VariantKey("demo", "llama-h100")
STATE = InventoryState(variants=(VariantSpec(KEY, "meta/llama", "llama-h100", accelerator="H100"),))


def decision(desired: int, at: float = 1000.0) -> Decision:
    return Decision(KEY, "meta/llama", desired, True, Reason("scale-up", "avg_spare_kv", 0.05, 0.1),
                    current_replicas=1, ready_replicas=1, decided_at=at)


def test_an_api_server_that_stops_answering_ends_the_leadership(apiserver, api_client):
    elector = LeaderElector(api_client, *LEASE, "a", lease_seconds=3).start()  # deadline 2 s, a try every 0.4 s
    try:
        assert eventually(lambda: elector.is_leader)
        apiserver.stall()  # accepts, reads, never answers
        assert eventually(lambda: not elector.is_leader, timeout=15)
        apiserver.unstall()  # the renewing thread was not stuck for good: it leads again
        assert eventually(lambda: elector.is_leader, timeout=15)
    finally:
        apiserver.unstall()
        elector.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_renewal_keeps_the_lease_until_the_renew_deadline(apiserver, api_client, monkeypatch):
    clock = Clock()
    elector = LeaderElector(api_client, *LEASE, "a", lease_seconds=15, clock=clock)
    assert elector.try_acquire_or_renew() and elector.is_leader
    attempt = elector._attempt

    def unreachable(now: float) -> bool:
        raise ConnectionError("connection refused")

    monkeypatch.setattr(elector, "_attempt", unreachable)
    clock.now += 6
    assert elector.try_acquire_or_renew() is True  # 6 s < the 10 s renew deadline: still safe to lead
    clock.now += 4.5
    assert elector.is_leader is False  # no renewal for 10.5 s: whatever the thread is doing
    assert elector.try_acquire_or_renew() is False
    monkeypatch.setattr(elector, "_attempt", attempt)
    assert elector.try_acquire_or_renew() and elector.is_leader


def test_the_renew_deadline_ends_before_another_replica_may_take_the_lease(api_client):
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderElector(api_client, *LEASE, "a", lease_seconds=15, renew_deadline_s=15)
    elector = LeaderElector(api_client, *LEASE, "a", lease_seconds=15)
    assert (elector.retry_period_s, elector.renew_deadline_s, elector.request_timeout_s) == (2.0, 10.0, 5.0)


def test_submit_returns_while_the_api_server_holds_the_write(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    leading = threading.Event()
    leading.set()
    writer = StatusWriter(api_client, leading=leading.is_set)
    apiserver.hold_patches()
    try:
        writer.submit([decision(2)], STATE)  # returns at once: the PATCH waits in the writer's thread
        assert eventually(lambda: apiserver.count("PATCH", "/status") == 1)
        for desired in (3, 4, 5):  # coalesced while the first write is held: only the latest is written next
            writer.submit([decision(desired, at=1000.0 + desired)], STATE)
        assert writer._worker.coalesced == 2
    finally:
        apiserver.release_patches()
    assert writer.wait_idle(10)
    assert apiserver.get("VariantAutoscaling", "demo", "llama-h100")["status"]["desiredReplicas"] == 5
    assert apiserver.count("PATCH", "/status") == 2
    leading.clear()  # no longer leader: what is submitted is not written
    writer.submit([decision(6, at=1100.0)], STATE)
    assert writer.wait_idle(10)
    assert apiserver.count("PATCH", "/status") == 2
    writer.close()
