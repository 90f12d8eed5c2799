"""Status by server-side apply: kedascaler writes only its own keys and conditions, removes what it stops sending,
leaves other controllers' conditions alone, and sends nothing while its part is unchanged."""

from __future__ import annotations

import kubernetes.client

from kedascaler.actuate.status import FIELD_MANAGER, StatusWriter
from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec
from kedascaler.loop.planner import SloPlan
from kedascaler.sources.kubernetes import KubernetesInventory
from kedascaler.spec.inventory import InventoryState
from tests.support.kube import eventually
from tests.support.kube_apiserver import va

KEY = VariantKey("demo", "llama-h100")
SPEC = VariantSpec(KEY, "meta/llama", "llama-h100", accelerator="H100")
STATE = InventoryState(variants=(SPEC,))
PLAN = {("demo", "meta/llama"): SloPlan("demo", "meta/llama", "saturation", None, None)}


def decision(desired: int, at: float = 1000.0) -> Decision:
    return Decision(KEY, "meta/llama", desired, True, Reason("scale-up", "avg_spare_kv", 0.05, 0.1),
                    current_replicas=1, ready_replicas=1, decided_at=at)


def apply_status(api_client, manager: str, status: dict) -> None:
    """Another controller's own server-side apply of the VA status."""
    body = {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": KEY.name, "namespace": KEY.namespace}, "status": status}
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        "llmd.ai", "v1alpha1", KEY.namespace, "variantautoscalings", KEY.name, body, field_manager=manager,
        force=True, _content_type="application/apply-patch+yaml")


def status_of(apiserver) -> dict:
    return apiserver.get("VariantAutoscaling", KEY.namespace, KEY.name)["status"]


def types(status: dict) -> list[str]:
    return [c["type"] for c in status.get("conditions", [])]


def held(apiserver):
    return lambda key: (apiserver.get("VariantAutoscaling", key.namespace, key.name) or {}).get("status")


def test_the_fixture_keeps_field_ownership_per_manager(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    apply_status(api_client, "a", {"x": 1, "y": 2, "conditions": [{"type": "A", "status": "True"}]})
    apply_status(api_client, "b", {"z": 3, "conditions": [{"type": "B", "status": "False"}]})
    assert status_of(apiserver) == {"x": 1, "y": 2, "z": 3, "conditions": [{"type": "A", "status": "True"},
                                                                          {"type": "B", "status": "False"}]}
    apply_status(api_client, "a", {"x": 5})  # a stops sending y and its condition: removed; b's stay
    assert status_of(apiserver) == {"x": 5, "z": 3, "conditions": [{"type": "B", "status": "False"}]}
    assert set(apiserver.owners("VariantAutoscaling", "demo", "llama-h100")) == {"a", "b"}


def test_another_controllers_condition_survives_kedascalers_writes(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    apply_status(api_client, "wva-controller", {"conditions": [
        {"type": "TargetResolved", "status": "True", "reason": "Found", "message": "by the other controller"}]})
    writer = StatusWriter(api_client, existing=held(apiserver))
    assert writer.write([decision(2)], STATE) == 1
    assert writer.write([decision(3, at=1060.0)], STATE) == 1  # a changed decision: written again
    status = status_of(apiserver)
    assert status["desiredReplicas"] == 3
    assert "TargetResolved" in types(status)
    assert {"MetricsAvailable", "OptimizationReady", "Ready"} <= set(types(status))
    other = next(c for c in status["conditions"] if c["type"] == "TargetResolved")
    assert other["message"] == "by the other controller"
    assert FIELD_MANAGER in apiserver.owners("VariantAutoscaling", "demo", "llama-h100")


def test_a_key_kedascaler_stops_sending_disappears(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    writer = StatusWriter(api_client, existing=held(apiserver))
    writer.write([decision(2)], STATE, plans=PLAN)  # SLO sizing on: scalingMode and ModelBasedSizing
    status = status_of(apiserver)
    assert status["scalingMode"] == "saturation" and "ModelBasedSizing" in types(status)
    assert writer.write([decision(2, at=1060.0)], STATE) == 1  # sizing off: neither is sent any more
    status = status_of(apiserver)
    assert "scalingMode" not in status
    assert "ModelBasedSizing" not in types(status)
    assert status["desiredReplicas"] == 2


def test_an_unchanged_status_sends_nothing_over_many_cycles(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    apply_status(api_client, "wva-controller", {"conditions": [{"type": "TargetResolved", "status": "True"}]})
    inventory = KubernetesInventory(api_client).start()
    try:
        assert inventory.wait_synced(5)
        writer = StatusWriter(api_client, existing=inventory.va_status)
        theirs = apiserver.count("PATCH", "/status")
        writer.write([decision(2)], STATE, plans=PLAN)
        writer.write([decision(2, at=1015.0)], STATE)  # the sizing keys dropped: one write removes them
        patches = apiserver.count("PATCH", "/status")
        assert patches == theirs + 2
        for cycle in range(6):
            assert eventually(lambda: inventory.va_status(KEY) == status_of(apiserver))  # the watch caught up
            assert writer.write([decision(2, at=1030.0 + 15 * cycle)], STATE) == 0
        assert apiserver.count("PATCH", "/status") == patches
        assert "TargetResolved" in types(status_of(apiserver))
    finally:
        inventory.stop()


def test_a_new_leader_removes_what_the_old_one_wrote_and_it_no_longer_sends(apiserver, api_client):
    apiserver.put(va("llama-h100", "meta/llama"))
    StatusWriter(api_client, existing=held(apiserver)).write([decision(2)], STATE, plans=PLAN)
    successor = StatusWriter(api_client, existing=held(apiserver))  # a restart: nothing in its cache
    assert successor.write([decision(2, at=2000.0)], STATE) == 1
    assert "scalingMode" not in status_of(apiserver)
    assert successor.write([decision(2, at=2015.0)], STATE) == 0
