"""Kubernetes faults against the in-memory API server fixture, with the whole control loop running:
KubernetesInventory (watches) → Reconciler → board, and the leader writing status as `kedascaler serve` does.

Watch drops, 410 Gone, the API server down for a while (stopped, then restarted on the same port), a
conflicting status write, and the leadership lost in the middle of a cycle: no crash, no decision lost from
the board, and the status in the cluster eventually right.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from kedascaler.actuate.leader import LeaderElector
from kedascaler.actuate.status import StatusWriter
from kedascaler.engine.types import VariantKey
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.cycle import CycleReport
from kedascaler.loop.follow import Follower
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sources.base import CollectResult, PodSample, ScrapeTarget
from kedascaler.sources.kubernetes import KubernetesInventory
from tests.support.kube import eventually
from tests.support.kube_apiserver import (
    FakeApiServer,
    _Handler,
    _QuietServer,
    api_client_for,
    deployment,
    pod,
    va,
)

KEY = VariantKey("demo", "llama-h100")
LEASE = ("kedascaler-system", "kedascaler-leader")


class Load:
    """A MetricsSource answering for whichever pods it is given; the load is set by the test."""

    def __init__(self, kv: float, queue: float) -> None:
        self.kv, self.queue = kv, queue
        self.now = 1000.0

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        return CollectResult(tuple(PodSample(t.variant.namespace, t.pod, "meta/llama", self.kv, self.queue, 4.0,
                                             self.now, variant=t.variant) for t in targets), queries=len(targets))

    def close(self) -> None:
        pass


class RestartableApiServer(FakeApiServer):
    """The fixture, able to go down (every connection, kept-alive ones too, is cut) and come back on its port."""

    def start(self, port: int = 0) -> RestartableApiServer:
        api = self

        class Handler(_Handler):
            def handle_one_request(self) -> None:
                if api.closed:  # down: hang up on kept-alive connections too
                    self.close_connection = True
                    return
                super().handle_one_request()
        Handler.api = api
        self.closed = False
        self._httpd = _QuietServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self


class Replica:
    """One kedascaler replica: inventory, reconciler, board, status writer and elector, cycled by hand."""

    def __init__(self, api: FakeApiServer, identity: str, load: Load, follow: bool = False) -> None:
        self.client = api_client_for(api)
        self.client.configuration.retries = 0
        self.inventory = KubernetesInventory(self.client, backoff_base_s=0.02, backoff_max_s=0.2).start()
        assert self.inventory.wait_synced(5)
        self.board = DecisionBoard()
        self.load = load
        self.now = 1000.0
        self.elector = LeaderElector(self.client, *LEASE, identity, lease_seconds=15, clock=lambda: self.now)
        self.follow = follow
        follower = Follower(self.inventory.va_status, lambda: self.elector.other_leads) if follow else None
        self.reconciler = Reconciler(self.inventory, load, self.board, workloads=self.inventory,
                                     clock=lambda: self.now, follow=follower)
        self.writer = StatusWriter(self.client, existing=self.inventory.va_status)
        self.reports: list[CycleReport] = []

    def cycle(self, *, before_write=None) -> CycleReport:
        """As `kedascaler serve`'s on_cycle: decide, then write status only while leader."""
        self.now += 30
        self.load.now = self.now
        if self.follow:  # serve's elector thread tries every 2 s: it has looked at the lease before the cycle
            self.elector.try_acquire_or_renew(self.now)
        report = self.reconciler.run_once()
        self.reports.append(report)
        if before_write is not None:
            before_write()
        if self.elector.try_acquire_or_renew(self.now):
            self.writer.write(report.decisions, self.inventory.current(), self.inventory.missing_targets())
        return report

    def close(self) -> None:
        self.inventory.stop()
        self.client.close()


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = RestartableApiServer().start()
    server.put(va("llama-h100", "meta/llama", maxReplicas=8, minReplicas=1))
    server.put(deployment("llama-h100", replicas=2, ready=2))
    for i in (1, 2):
        server.put(pod(f"llama-h100-x-{i}", app="llama-h100", ip=f"10.1.0.{i}", port_name="http"))
    yield server
    server.stop()


def status_desired(api: FakeApiServer) -> int | None:
    obj = api.get("VariantAutoscaling", "demo", "llama-h100")
    return (obj or {}).get("status", {}).get("desiredReplicas")


def test_watch_drops_and_410_gone_between_cycles_lose_nothing(api):
    load = Load(kv=0.95, queue=8)
    replica = Replica(api, "a", load)
    try:
        first = replica.cycle().decisions[0]
        assert status_desired(api) == first.desired_replicas
        for round_ in range(4):
            api.drop_watches()
            if round_ % 2:
                api.compact()  # the resumed watch starts from a compacted resourceVersion: 410 Gone, relist
            replicas = 3 + round_
            api.put(deployment("llama-h100", replicas=replicas, ready=replicas))
            api.put(pod(f"llama-h100-y-{round_}", app="llama-h100", ip=f"10.2.0.{round_}", port_name="http"))
            report = replica.cycle()
            assert replica.board.get(KEY) is not None
            assert report.decisions and report.decisions[0].desired_replicas >= first.desired_replicas
        assert eventually(lambda: replica.inventory.status(replica.reconciler.inventory.current().specs[0])
                          .current_replicas == 6)
        assert replica.inventory.variantautoscalings.lists >= 2  # relisted after 410
        last = replica.cycle().decisions[0]
        assert last.current_replicas == 6
        assert status_desired(api) == last.desired_replicas
    finally:
        replica.close()


def test_api_server_down_then_back_on_the_same_port(api):
    load = Load(kv=0.5, queue=0)
    replica = Replica(api, "a", load)
    port = int(api.url.rsplit(":", 1)[1])
    try:
        before = replica.cycle().decisions[0]
        assert replica.elector.is_leader and status_desired(api) == before.desired_replicas
        api.stop()
        load.kv, load.queue = 0.97, 20  # load arrives while the API server is away
        during = []
        for _ in range(3):
            report = replica.cycle()  # inventory serves its cache; status writes and lease renewals fail
            during.append(report.decisions[0])
            assert replica.board.get(KEY) == report.decisions[0]
        assert not replica.elector.is_leader  # could not renew: stops acting as leader
        assert during[-1].desired_replicas > before.desired_replicas  # decided, and KEDA can read it
        api.start(port)
        assert eventually(lambda: api.open_watches["variantautoscalings"] > 0, timeout=10)
        after = replica.cycle().decisions[0]
        assert replica.elector.is_leader
        assert status_desired(api) == after.desired_replicas == during[-1].desired_replicas
        # and the watches work again: a change made after the restart is seen
        api.put(deployment("llama-h100", replicas=5, ready=5))
        assert eventually(lambda: replica.cycle().decisions[0].current_replicas == 5, timeout=10)
    finally:
        replica.close()


def test_leader_lost_mid_cycle_does_not_write_and_the_new_leader_does(api):
    load = Load(kv=0.95, queue=8)
    a, b = Replica(api, "a", load), Replica(api, "b", load)
    try:
        first = a.cycle().decisions[0]
        assert a.elector.is_leader and status_desired(api) == first.desired_replicas

        def b_takes_the_lease() -> None:  # between a's decision and a's status write
            lease = api.get("Lease", *LEASE)
            lease["spec"]["holderIdentity"] = "b"
            api.put(lease)
            b.elector.try_acquire_or_renew(b.now)
        load.kv, load.queue = 0.3, 0  # less load: a lower decision a must not write
        patches = a.writer.patches
        report = a.cycle(before_write=b_takes_the_lease)
        assert not a.elector.is_leader and a.writer.patches == patches
        assert a.board.get(KEY) == report.decisions[0]  # a still answers KEDA with its decision
        assert b.cycle() and b.elector.is_leader
        assert status_desired(api) == b.reports[-1].decisions[0].desired_replicas
        b.elector.release()
        a.now = b.now
        final = a.cycle().decisions[0]
        assert a.elector.is_leader
        assert status_desired(api) == final.desired_replicas
    finally:
        a.close()
        b.close()


def test_a_conflicting_status_write_is_repaired(api):
    load = Load(kv=0.95, queue=8)
    replica = Replica(api, "a", load)
    try:
        decided = replica.cycle().decisions[0]
        assert status_desired(api) == decided.desired_replicas
        obj = api.get("VariantAutoscaling", "demo", "llama-h100")
        obj["status"]["desiredReplicas"] = 99  # someone else (an old leader, a kubectl edit) writes status
        api.put(obj)
        assert status_desired(api) == 99
        # a changed decision is written over it
        load.kv, load.queue = 0.99, 40
        replica.cycle()
        assert status_desired(api) == replica.reports[-1].decisions[0].desired_replicas
    finally:
        replica.close()


def test_a_conflicting_status_write_is_repaired_even_when_the_decision_is_unchanged(api):
    load = Load(kv=0.95, queue=8)
    replica = Replica(api, "a", load)
    try:
        decided = replica.cycle().decisions[0]
        obj = api.get("VariantAutoscaling", "demo", "llama-h100")
        obj["status"]["desiredReplicas"] = 99
        api.put(obj)
        assert eventually(lambda: (replica.inventory.va_status(KEY) or {}).get("desiredReplicas") == 99)
        for _ in range(3):
            replica.cycle()
        assert replica.reports[-1].decisions[0].desired_replicas == decided.desired_replicas
        assert status_desired(api) == decided.desired_replicas
    finally:
        replica.close()


def test_regaining_leadership_rewrites_a_status_the_other_leader_changed(api):
    a_load, b_load = Load(kv=0.95, queue=8), Load(kv=0.2, queue=0)  # a and b see different load (timing)
    a, b = Replica(api, "a", a_load), Replica(api, "b", b_load)
    try:
        mine = a.cycle().decisions[0]
        a.elector.release()
        b.now = a.now
        theirs = b.cycle().decisions[0]
        assert b.elector.is_leader and status_desired(api) == theirs.desired_replicas != mine.desired_replicas
        b.elector.release()
        a.now = b.now
        again = a.cycle().decisions[0]
        assert a.elector.is_leader and again.desired_replicas == mine.desired_replicas
        assert status_desired(api) == again.desired_replicas
    finally:
        a.close()
        b.close()


def test_a_follower_serves_the_leaders_number_and_keeps_it_when_it_takes_over(api):
    """Two replicas whose views differ (b sees less load): KEDA reads the leader's number from both, through the
    status a writes and b's watch; when a is gone, b takes over holding that number for the takeover window,
    then answers on its own."""
    a = Replica(api, "a", Load(kv=0.95, queue=8))
    b = Replica(api, "b", Load(kv=0.2, queue=0), follow=True)
    try:
        leader = a.cycle().decisions[0]
        b.cycle()  # b's elector sees a's lease from here on
        own = b.reconciler.previous[KEY].desired_replicas
        assert own < leader.desired_replicas  # b alone would answer less
        assert eventually(lambda: b.inventory.va_status(KEY) and
                          b.inventory.va_status(KEY).get("desiredReplicas") == leader.desired_replicas)
        a.elector.try_acquire_or_renew(a.now + 30)  # a's elector renews (every 2 s in serve)
        served = b.cycle().decisions[0]
        assert b.board.get(KEY) == served and served.desired_replicas == leader.desired_replicas
        assert "the leader's decision" in served.reason.message
        assert b.reconciler.previous[KEY].desired_replicas == own  # its own decision runs on in its state
        a.close()  # a is gone: its lease expires in b's eyes 15 s after its last renewal
        taken = [b.cycle().decisions[0] for _ in range(3)]  # 90 s: within the 120 s takeover window
        assert b.elector.is_leader
        assert all(d.desired_replicas >= leader.desired_replicas for d in taken), [str(d.reason) for d in taken]
        later = [b.cycle().decisions[0] for _ in range(2)]
        assert later[-1].desired_replicas == b.reconciler.previous[KEY].desired_replicas < leader.desired_replicas
    finally:
        b.close()
