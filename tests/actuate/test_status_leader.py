"""StatusWriter (patch only on change, Events) and LeaderElector (one leader, Lease conflicts) on the fixture."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from kedascaler.actuate.leader import LeaderElector
from kedascaler.actuate.status import StatusWriter
from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sources.base import CollectResult, PodSample, ScrapeTarget
from kedascaler.sources.kubernetes import KubernetesInventory
from kedascaler.spec.inventory import InventoryState
from tests.support.kube import eventually
from tests.support.kube_apiserver import deployment, pod, va

KEY = VariantKey("demo", "llama-h100")
SPEC = VariantSpec(KEY, "meta/llama", "llama-h100", accelerator="H100")


def decision(desired: int, *, current: int = 1, stale: bool = False, at: float = 1000.0) -> Decision:
    reason = Reason("stale", "metrics") if stale else Reason("scale-up", "avg_spare_kv", 0.05, 0.1)
    return Decision(KEY, "meta/llama", desired, True, reason, current_replicas=current, ready_replicas=current,
                    decided_at=at, stale=stale)


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in obj["status"]["conditions"]}


def test_status_is_patched_only_when_it_changes(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    writer = StatusWriter(api_client)
    state = InventoryState(variants=(SPEC,))
    assert writer.write([decision(2)], state) == 1
    obj = apiserver.get("VariantAutoscaling", "demo", "llama-h100")
    assert obj["status"]["desiredReplicas"] == 2
    assert obj["status"]["desiredOptimizedAlloc"]["numReplicas"] == 2
    assert conditions(obj)["MetricsAvailable"]["status"] == "True"
    assert obj["spec"]["modelID"] == "meta/llama"  # status patch leaves spec alone

    assert writer.write([decision(2, at=1060.0)], state) == 0  # only the time moved: no patch
    assert apiserver.count("PATCH", "/status") == 1

    assert writer.write([decision(3, at=1120.0)], state) == 1
    assert apiserver.get("VariantAutoscaling", "demo", "llama-h100")["status"]["desiredReplicas"] == 3
    events = apiserver.list("Event", "demo")
    assert [e["reason"] for e in events] == ["ScaleUp", "ScaleUp"]
    assert "2 → 3" in events[-1]["message"] or "2 → 3" in events[0]["message"]
    assert all(e["involvedObject"]["kind"] == "VariantAutoscaling" for e in events)


def test_stale_decision_says_metrics_missing(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    writer = StatusWriter(api_client)
    state = InventoryState(variants=(SPEC,))
    writer.write([decision(2)], state)
    first = conditions(apiserver.get("VariantAutoscaling", "demo", "llama-h100"))
    writer.write([decision(2, stale=True, at=2000.0)], state)
    cond = conditions(apiserver.get("VariantAutoscaling", "demo", "llama-h100"))
    assert cond["MetricsAvailable"]["status"] == "False"
    assert cond["MetricsAvailable"]["reason"] == "MetricsMissing"
    assert "Prometheus" in cond["MetricsAvailable"]["message"]
    assert cond["OptimizationReady"]["lastTransitionTime"] == first["OptimizationReady"]["lastTransitionTime"]
    assert cond["MetricsAvailable"]["lastTransitionTime"] != first["MetricsAvailable"]["lastTransitionTime"]


def test_missing_target_and_problems_become_conditions_and_events(apiserver, api_client):
    from kedascaler.spec.problems import Problem

    apiserver.put(va("llama-h100", "meta/llama"))
    apiserver.put(va("broken", "meta/llama"))
    writer = StatusWriter(api_client)
    problems = (Problem("demo/VariantAutoscaling/broken", "VariantAutoscaling demo/broken", "spec.minReplicas",
                        "must be ≥ 0, got -1"),
                Problem("kedascaler-system/ConfigMap/saturation-scaling-config", "ConfigMap saturation-scaling-config",
                        "data.default.kvCacheThreshold", "expected a number"))
    state = InventoryState(variants=(SPEC,), problems=problems)
    writer.write([decision(1)], state, missing_targets={KEY})
    assert conditions(apiserver.get("VariantAutoscaling", "demo", "llama-h100"))["Ready"]["reason"] == "TargetNotFound"
    broken = conditions(apiserver.get("VariantAutoscaling", "demo", "broken"))
    assert broken["OptimizationReady"]["reason"] == "InvalidSpec"
    assert "spec.minReplicas" in broken["OptimizationReady"]["message"]
    reasons = sorted(e["reason"] for e in apiserver.list("Event"))
    assert reasons == ["InvalidConfiguration", "InvalidSpec"]
    writer.write([decision(1)], state, missing_targets={KEY})  # same problems: no new Events, no patches
    assert len(apiserver.list("Event")) == 2
    assert apiserver.count("PATCH", "/status") == 2


def test_status_of_a_deleted_va_is_not_an_error(apiserver, api_client):
    writer = StatusWriter(api_client)
    assert writer.write([decision(2)], InventoryState(variants=(SPEC,))) == 0


def test_two_electors_one_leader_and_takeover_after_expiry(apiserver, api_client):
    a = LeaderElector(api_client, "kedascaler-system", "kedascaler-leader", "a", lease_seconds=15)
    b = LeaderElector(api_client, "kedascaler-system", "kedascaler-leader", "b", lease_seconds=15)
    assert a.try_acquire_or_renew(0.0) is True
    assert b.try_acquire_or_renew(1.0) is False
    assert a.try_acquire_or_renew(5.0) is True  # renew
    assert b.try_acquire_or_renew(6.0) is False  # record changed: b restarts its expiry clock
    assert b.try_acquire_or_renew(20.0) is False  # 14 s since b saw the last renewal
    assert b.try_acquire_or_renew(22.0) is True  # a stopped renewing: b takes over
    assert a.try_acquire_or_renew(23.0) is False
    lease = apiserver.get("Lease", "kedascaler-system", "kedascaler-leader")
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    b.release()
    assert a.try_acquire_or_renew(24.0) is True  # released: no need to wait for expiry


def test_a_follower_knows_while_another_replica_leads(apiserver, api_client):
    """`other_leads`: whose decisions to serve (loop/follow.py) — true on b while a renews, false once a's lease
    is expired as b saw it, and never on the leader itself."""
    now = [0.0]
    a = LeaderElector(api_client, "kedascaler-system", "kl", "a", lease_seconds=15, clock=lambda: now[0])
    b = LeaderElector(api_client, "kedascaler-system", "kl", "b", lease_seconds=15, clock=lambda: now[0])
    assert not b.other_leads  # has not looked yet
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert b.other_leads and not a.other_leads
    now[0] = 10.0
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()  # renewed: b's view is fresh again
    now[0] = 24.0
    assert b.other_leads  # 14 s since b saw the renewal
    now[0] = 26.0
    assert not b.other_leads  # a stopped renewing: nobody b should follow (it takes over at its next try)
    assert b.try_acquire_or_renew() and not b.other_leads and b.is_leader


def test_stale_resource_version_is_a_conflict(apiserver, api_client):
    a = LeaderElector(api_client, "kedascaler-system", "l", "a")
    b = LeaderElector(api_client, "kedascaler-system", "l", "b")
    assert a.try_acquire_or_renew(0.0)
    stale = a._read()
    assert a.try_acquire_or_renew(1.0)  # bumps the resourceVersion
    stale["spec"]["holderIdentity"] = "b"
    import pytest
    from kubernetes.client.exceptions import ApiException
    with pytest.raises(ApiException) as err:
        b.coordination.replace_namespaced_lease("l", "kedascaler-system", stale)
    assert err.value.status == 409


class PodMetricsStub:
    """A MetricsSource that answers for whichever pods it is given: every pod near KV saturation."""

    def __init__(self, kv: float, queue: float) -> None:
        self.kv, self.queue = kv, queue

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        samples = tuple(PodSample(t.variant.namespace, t.pod, "meta/llama", self.kv, self.queue, 4.0, 1000.0,
                                  variant=t.variant) for t in targets)
        return CollectResult(samples=samples, queries=len(targets))

    def close(self) -> None:
        pass


def test_end_to_end_reconciler_writes_desired_replicas_to_status(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama", maxReplicas=8))
    apiserver.put(deployment("llama-h100", replicas=2, ready=2))
    apiserver.put(pod("llama-h100-x-1", app="llama-h100", ip="10.1.0.1", port_name="http"))
    apiserver.put(pod("llama-h100-x-2", app="llama-h100", ip="10.1.0.2", port_name="http"))
    inventory = KubernetesInventory(api_client)
    inventory.start()
    try:
        assert inventory.wait_synced(5)
        board = DecisionBoard()
        reconciler = Reconciler(inventory, PodMetricsStub(kv=0.95, queue=8), board, workloads=inventory,
                                clock=lambda: 1000.0)
        writer = StatusWriter(api_client)
        elector = LeaderElector(api_client, "kedascaler-system", "kedascaler-leader", "me")
        report = reconciler.run_once()
        assert elector.try_acquire_or_renew(1000.0)
        writer.write(report.decisions, inventory.current(), inventory.missing_targets())
        status = apiserver.get("VariantAutoscaling", "demo", "llama-h100")["status"]
        (d,) = report.decisions
        assert d.desired_replicas > 2
        assert status["desiredReplicas"] == d.desired_replicas
        assert status["currentReplicas"] == 2
        assert status["desiredOptimizedAlloc"]["numReplicas"] == d.desired_replicas
        assert board.get(KEY).desired_replicas == d.desired_replicas
        assert eventually(lambda: any(e["reason"] == "ScaleUp" for e in apiserver.list("Event", "demo")))
    finally:
        inventory.stop()


def test_status_says_why_a_model_is_not_sized_by_its_slo(apiserver, api_client):
    from kedascaler.loop.planner import PlannerSettings

    apiserver.put(va("llama-h100", "meta/llama", maxReplicas=8))  # no sloClassRef, no perfParms
    apiserver.put(deployment("llama-h100", replicas=2, ready=2))
    apiserver.put(pod("llama-h100-x-1", app="llama-h100", ip="10.1.0.1", port_name="http"))
    inventory = KubernetesInventory(api_client)
    inventory.start()
    try:
        assert inventory.wait_synced(5)
        planner = PlannerSettings("hybrid")
        reconciler = Reconciler(inventory, PodMetricsStub(kv=0.5, queue=0), DecisionBoard(), workloads=inventory,
                                clock=lambda: 1000.0, planner=planner)
        report = reconciler.run_once()
        LeaderElector(api_client, "kedascaler-system", "kedascaler-leader", "me").try_acquire_or_renew(1000.0)
        StatusWriter(api_client).write(report.decisions, inventory.current(), inventory.missing_targets(),
                                       plans=reconciler.plans, parameters=reconciler.parameters)
        status = apiserver.get("VariantAutoscaling", "demo", "llama-h100")["status"]
        assert status["scalingMode"] == "hybrid"
        (sizing,) = [c for c in status["conditions"] if c["type"] == "ModelBasedSizing"]
        assert sizing["status"] == "False" and sizing["reason"] == "FallbackToSaturation"
        assert "vllm:request_success_total" in sizing["message"]  # the pods gave no request counters yet
        assert status["desiredReplicas"] == report.decisions[0].desired_replicas
    finally:
        inventory.stop()


def test_a_new_leader_adopts_the_status_the_cluster_holds(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    StatusWriter(api_client).write([decision(2)], InventoryState(variants=(SPEC,)))
    held = apiserver.get("VariantAutoscaling", "demo", "llama-h100")["status"]
    successor = StatusWriter(api_client, existing=lambda key: apiserver.get(
        "VariantAutoscaling", key.namespace, key.name)["status"])
    assert successor.write([decision(2, at=5000.0)], InventoryState(variants=(SPEC,))) == 0
    assert successor.write([decision(2, stale=True, at=6000.0)], InventoryState(variants=(SPEC,))) == 1
    now = conditions(apiserver.get("VariantAutoscaling", "demo", "llama-h100"))
    before = {c["type"]: c for c in held["conditions"]}
    assert now["OptimizationReady"]["lastTransitionTime"] == before["OptimizationReady"]["lastTransitionTime"]


def test_elector_thread_renews_and_releases(apiserver, api_client):
    a = LeaderElector(api_client, "kedascaler-system", "bg", "a", lease_seconds=3).start(renew_every_s=0.05)
    try:
        assert eventually(lambda: a.is_leader)
        first = apiserver.get("Lease", "kedascaler-system", "bg")["metadata"]["resourceVersion"]
        assert eventually(
            lambda: apiserver.get("Lease", "kedascaler-system", "bg")["metadata"]["resourceVersion"] != first)
    finally:
        a.stop()
    assert apiserver.get("Lease", "kedascaler-system", "bg")["spec"]["holderIdentity"] == ""
    assert not a.is_leader


def test_written_status_matches_the_crd_status_schema():
    from pathlib import Path

    import jsonschema
    import yaml

    from kedascaler.actuate.status import invalid_status, status_for
    from kedascaler.spec.problems import Problem

    crd_file = Path(__file__).resolve().parents[2] / "charts/kedascaler/crds/variantautoscalings.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    for status in (status_for(decision(3)), status_for(decision(1, stale=True), target_missing=True),
                   invalid_status([Problem("s", "VariantAutoscaling demo/x", "spec.minReplicas", "bad")])):
        for cond in status["conditions"]:
            cond["lastTransitionTime"] = "2026-01-01T00:00:00Z"
        validator.validate(status)


def test_status_is_rendered_from_the_decisions_steps():
    # One of three ready pods did not report: the decision says so, and MetricsAvailable tells the user.
    from kedascaler.actuate.status import status_for
    from kedascaler.engine import decide
    from kedascaler.engine.types import ModelSnapshot, PodMetrics, SaturationConfig, VariantState

    pods = (PodMetrics("llama-h100-0", 0.5, 0.0, 2.0, 999.0), PodMetrics("llama-h100-1", 0.4, 0.0, 2.0, 999.0))
    snap = ModelSnapshot("demo", "meta/llama", (VariantState(SPEC, 3, 3, pods),), SaturationConfig(), 1000.0)
    (d,) = decide(snap, {})
    status = status_for(d)
    metrics = {c["type"]: c for c in status["conditions"]}["MetricsAvailable"]
    assert (metrics["status"], metrics["reason"]) == ("True", "MetricsFresh")
    assert metrics["message"].startswith("metrics from 2 of the variant's 3 ready replica(s)")
    assert "no scale-down happens until they report" in metrics["message"]
    assert status["lastDecision"]["reason"] == str(d.reason) and "1 ready pod without metrics" in str(d.reason)
    # Every pod reported: the message it always had.
    (full,) = decide(replace(snap, variants=(VariantState(SPEC, 2, 2, pods),)), {})
    metrics = {c["type"]: c for c in status_for(full)["conditions"]}["MetricsAvailable"]
    assert metrics["message"] == "metrics from the variant's 2 ready replica(s)"


def test_scale_to_zero_is_a_condition_a_user_can_act_on():
    """`ScaleToZero` says whether a model with minReplicas 0 can go to zero, and if not, what is missing."""
    from kedascaler.actuate.status import status_for
    from kedascaler.engine.types import Activation, DecisionSteps

    def to_zero(d: Decision, **kw) -> dict | None:
        return {c["type"]: c for c in status_for(d, **kw)["conditions"]}.get("ScaleToZero")

    warm = decision(1)
    none = to_zero(warm, min_replicas=0, wake_up=False)
    assert none is not None and (none["status"], none["reason"]) == ("False", "NoWakeUpSignal")
    assert "--gateway-queue" in none["message"] and "--activation-port" in none["message"]
    assert to_zero(warm, min_replicas=1, wake_up=False) is None  # minReplicas 1: not asked for
    assert to_zero(warm, min_replicas=0, wake_up=True) is None  # another variant of the model keeps it warm

    def active(signal: str, idle: float) -> Decision:
        act = Activation(True, 900.0, idle, 300.0, signal, idle, False, f"active: {signal} {idle}")
        return replace(warm, steps=DecisionSteps(activation=act))
    unknown = to_zero(active("missing_data", 400.0), min_replicas=0)
    assert unknown is not None and (unknown["status"], unknown["reason"]) == ("False", "WakeUpSignalUnknown")
    assert "gateway's metrics do not mention the model" in unknown["message"]
    on = [to_zero(active("recent", idle), min_replicas=0) for idle in (10.0, 200.0)]
    assert on[0] == on[1] and on[0] is not None and (on[0]["status"], on[0]["reason"]) == ("True", "Enabled")
