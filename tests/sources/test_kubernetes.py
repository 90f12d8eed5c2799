"""KubernetesInventory against the fixture API server: list-then-watch follows the cluster."""

from __future__ import annotations

import json

import pytest

from kedascaler.engine.types import VariantKey
from kedascaler.sources.kubernetes import KubernetesInventory, metrics_port, selector_matches
from tests.support.kube import eventually
from tests.support.kube_apiserver import configmap, deployment, pod, va

SAT_DEFAULT = "kvCacheThreshold: 0.7\nqueueLengthThreshold: 4\nkvSpareTrigger: 0.1\nqueueSpareTrigger: 2\n"


@pytest.fixture
def inventory(api_client):
    inv = KubernetesInventory(api_client, controller_namespace="kedascaler-system", backoff_base_s=0.05,
                              backoff_max_s=0.2)
    yield inv
    inv.stop()


def names(inv: KubernetesInventory) -> list[str]:
    return sorted(s.key.name for s in inv.current().variants)


def test_initial_list_then_creates_updates_deletes_are_followed(apiserver, inventory):
    apiserver.put(va("llama-h100", "meta/llama", maxReplicas=4))
    inventory.start()
    assert inventory.wait_synced(5)
    assert names(inventory) == ["llama-h100"]

    apiserver.put(va("llama-a100", "meta/llama", accelerator="A100"))
    assert eventually(lambda: names(inventory) == ["llama-a100", "llama-h100"])

    apiserver.put(va("llama-h100", "meta/llama", maxReplicas=9))
    assert eventually(lambda: {s.key.name: s.max_replicas for s in inventory.current().specs}["llama-h100"] == 9)

    apiserver.delete("VariantAutoscaling", "demo", "llama-a100")
    assert eventually(lambda: names(inventory) == ["llama-h100"])


def test_an_event_re_parses_the_one_object_it_changed(apiserver, inventory):
    apiserver.put(configmap("serviceclass", {"standard": "name: Standard\npriority: 2\ndata:\n" + "".join(
        f"  - model: org/m-{i}\n    slo-tpot: 40\n    slo-ttft: 1000\n" for i in range(30))}))
    for i in range(30):
        apiserver.put(va(f"m-{i}", f"org/m-{i}"))
    inventory.start()
    assert inventory.wait_synced(5)
    assert len(inventory.current().variants) == 30
    before = inventory.parses
    apiserver.put(va("m-7", "org/m-7", maxReplicas=9))
    assert eventually(lambda: {s.key.name: s.max_replicas for s in inventory.current().specs}["m-7"] == 9)
    assert inventory.parses - before == 1
    assert len(inventory.current().service_classes.classes) == 1


def test_workload_status_from_deployment_and_ready_pods(apiserver, inventory):
    apiserver.put(va("llama-h100", "meta/llama"))
    apiserver.put(deployment("llama-h100", replicas=3, ready=2))
    apiserver.put(pod("llama-h100-abc-1", app="llama-h100", ip="10.0.0.1", port_annotation="9000"))
    apiserver.put(pod("llama-h100-abc-2", app="llama-h100", ip="10.0.0.2", port_name="http", port=8080))
    apiserver.put(pod("llama-h100-abc-3", app="llama-h100", ip="10.0.0.3", ready=False))
    apiserver.put(pod("other-1", app="other", ip="10.0.0.9"))
    inventory.start()
    assert inventory.wait_synced(5)
    spec = inventory.current().specs[0]
    status = inventory.status(spec)
    assert (status.current_replicas, status.ready_replicas) == (3, 2)
    assert [t.url for t in status.pods] == ["http://10.0.0.1:9000/metrics", "http://10.0.0.2:8080/metrics"]
    assert all(t.variant == VariantKey("demo", "llama-h100") for t in status.pods)

    apiserver.put(deployment("llama-h100", replicas=5, ready=5))
    assert eventually(lambda: inventory.status(spec).current_replicas == 5)
    apiserver.delete("Deployment", "demo", "llama-h100")
    assert eventually(lambda: inventory.missing_targets() == {spec.key})
    assert inventory.status(spec).current_replicas == 0


def test_watch_resumes_after_connection_drop_without_relisting(apiserver, inventory):
    apiserver.put(va("a", "m"))
    inventory.start()
    assert inventory.wait_synced(5)
    lists = inventory.variantautoscalings.lists

    def watching(n: int) -> bool:  # the reflector's n-th watch is open on the server (a drop reaches it)
        return inventory.variantautoscalings.watches >= n and apiserver.open_watches["variantautoscalings"] == 1
    assert eventually(lambda: watching(1))
    apiserver.drop_watches()
    apiserver.put(va("b", "m"))
    assert eventually(lambda: names(inventory) == ["a", "b"])
    assert eventually(lambda: watching(2))
    apiserver.drop_watches()
    apiserver.delete("VariantAutoscaling", "demo", "a")
    assert eventually(lambda: names(inventory) == ["b"])
    assert eventually(lambda: watching(3))
    assert inventory.variantautoscalings.lists == lists  # resumed from its resourceVersion


def test_gone_resource_version_relists(apiserver, inventory):
    apiserver.put(va("a", "m"))
    inventory.start()
    assert inventory.wait_synced(5)
    lists = inventory.variantautoscalings.lists
    apiserver.compact()
    apiserver.drop_watches()  # the next watch starts from a compacted resourceVersion: 410
    apiserver.put(va("b", "m"))
    assert eventually(lambda: inventory.variantautoscalings.lists > lists)
    assert eventually(lambda: names(inventory) == ["a", "b"])


def test_bookmarks_advance_the_resource_version(apiserver, inventory):
    apiserver.put(va("a", "m"))
    inventory.start()
    assert inventory.wait_synced(5)
    apiserver.put(configmap("unrelated", {"x": "1"}, namespace="demo"))  # advances the global resourceVersion
    before = inventory.variantautoscalings.resource_version
    assert eventually(lambda: apiserver.open_watches["variantautoscalings"] > 0)
    apiserver.send_bookmarks()
    assert eventually(lambda: inventory.variantautoscalings.resource_version != before)
    lists = inventory.variantautoscalings.lists
    apiserver.compact()
    apiserver.drop_watches()
    apiserver.put(va("b", "m"))
    assert eventually(lambda: names(inventory) == ["a", "b"])
    assert inventory.variantautoscalings.lists >= lists


def test_configmap_hot_reload_and_bad_configmap_keeps_last_good(apiserver, inventory):
    apiserver.put(va("a", "m"))
    apiserver.put(configmap("saturation-scaling-config", {"default": SAT_DEFAULT}))
    apiserver.put(configmap("accelerator-unitcost", {"costs": "H100: 40\nA100: 20\n"}))
    inventory.start()
    assert inventory.wait_synced(5)
    state = inventory.current()
    assert state.saturation.default.kv_cache_threshold == 0.7
    assert dict(state.accelerator_costs) == {"A100": 20.0, "H100": 40.0}
    assert state.specs[0].cost == 40.0

    apiserver.put(configmap("saturation-scaling-config", {"default": SAT_DEFAULT.replace("0.7", "0.9")}))
    assert eventually(lambda: inventory.current().saturation.default.kv_cache_threshold == 0.9)

    apiserver.put(configmap("saturation-scaling-config", {"default": "kvCacheThreshold: lots\n"}))
    assert eventually(lambda: any("last good" in p.message for p in inventory.current().problems))
    state = inventory.current()
    assert state.saturation.default.kv_cache_threshold == 0.9
    bad = [p for p in state.problems if "saturation-scaling-config" in p.obj]
    assert bad and bad[0].field == "data.default.kvCacheThreshold"

    apiserver.put(configmap("saturation-scaling-config", {"default": SAT_DEFAULT}))
    assert eventually(lambda: inventory.current().saturation.default.kv_cache_threshold == 0.7)
    assert not inventory.current().problems


PREMIUM = "name: Premium\npriority: 1\ndata:\n  - model: m\n    slo-tpot: 24\n    slo-ttft: 500\n"


def test_serviceclass_configmap_is_followed_and_a_bad_edit_keeps_the_last_good(apiserver, inventory):
    from kedascaler.spec.serviceclass import model_targets

    apiserver.put(va("a", "m"))
    apiserver.put(configmap("serviceclass", {"premium": PREMIUM}))
    inventory.start()
    assert inventory.wait_synced(5)

    def targets():
        slo, priority, _ = model_targets(inventory.current().service_classes, [("serviceclass", "premium")], "m")
        return None if slo is None else (slo.itl_ms, slo.ttft_ms, priority)
    assert eventually(lambda: targets() == (24.0, 500.0, 1))

    apiserver.put(configmap("serviceclass", {"premium": PREMIUM.replace("slo-tpot: 24", "slo-tpot: 30")}))
    assert eventually(lambda: targets() == (30.0, 500.0, 1))

    apiserver.put(configmap("serviceclass", {"premium": PREMIUM.replace("slo-tpot: 24", "slo-tpot: -3")}))
    assert eventually(lambda: any("last good" in p.message for p in inventory.current().problems))
    assert targets() == (30.0, 500.0, 1)  # sizing keeps the last good targets
    bad = [p for p in inventory.current().problems if "serviceclass" in p.obj]
    assert bad and "slo-tpot" in bad[0].field


def test_namespace_and_label_selector_scope(apiserver, api_client):
    apiserver.put(va("mine", "m", labels={"team": "a"}))
    apiserver.put(va("theirs", "m", labels={"team": "b"}))
    apiserver.put(va("elsewhere", "m", namespace="other", labels={"team": "a"}))
    inv = KubernetesInventory(api_client, namespace="demo", label_selector="team=a")
    try:
        inv.start()
        assert inv.wait_synced(5)
        assert names(inv) == ["mine"]
        apiserver.put(va("second", "m", labels={"team": "a"}))
        apiserver.put(va("third", "m", namespace="other", labels={"team": "a"}))
        assert eventually(lambda: names(inv) == ["mine", "second"])
    finally:
        inv.stop()


def test_invalid_va_is_a_problem_not_a_crash(apiserver, inventory):
    apiserver.put(va("good", "m"))
    bad = va("bad", "m", minReplicas=-1)
    apiserver.put(bad)
    inventory.start()
    assert inventory.wait_synced(5)
    state = inventory.current()
    assert [s.key.name for s in state.variants] == ["good"]
    assert any(p.field == "spec.minReplicas" for p in state.problems)


def test_selector_and_port_helpers():
    sel = {"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}
    assert selector_matches(sel, {"app": "x", "tier": "a"})
    assert not selector_matches(sel, {"app": "x", "tier": "b"})
    assert not selector_matches(None, {"app": "x"})
    named_port = {"containers": [{"ports": [{"name": "metrics", "containerPort": 9100}]}]}
    assert metrics_port({"metadata": {}, "spec": named_port}) == 9100
    assert metrics_port({"metadata": {}, "spec": {}}) == 8000


def test_backoff_is_exponential_capped_and_jittered():
    import random

    from kedascaler.sources.kube_watch import backoff_delay

    rng = random.Random(7)
    delays = [backoff_delay(n, 0.5, 8.0, rng) for n in range(1, 10)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(4.0 <= d <= 8.0 for d in delays[5:])  # capped at 8 s, never below half of it
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jittered, not lockstep


def test_fixture_speaks_the_official_watch_protocol(apiserver, api_client):
    """The fixture's 410 is what the official client's own Watch recognises (it raises ApiException 410)."""
    import kubernetes
    from kubernetes.client.exceptions import ApiException

    core = kubernetes.client.CoreV1Api(api_client)
    apiserver.put(configmap("a", {"k": "v"}))
    old = core.list_namespaced_config_map("kedascaler-system").metadata.resource_version
    apiserver.put(configmap("b", {"k": "v"}))
    seen = [e["object"].metadata.name for e in kubernetes.watch.Watch().stream(
        core.list_namespaced_config_map, "kedascaler-system", resource_version=old, timeout_seconds=1)]
    assert seen == ["b"]
    apiserver.compact()
    with pytest.raises(ApiException) as err:
        list(kubernetes.watch.Watch().stream(core.list_namespaced_config_map, "kedascaler-system",
                                             resource_version=old, timeout_seconds=1))
    assert err.value.status == 410


def test_bad_configmap_is_an_event_on_the_configmap(apiserver, api_client, inventory):
    from kedascaler.actuate.status import StatusWriter

    apiserver.put(configmap("saturation-scaling-config", {"default": SAT_DEFAULT}))
    inventory.start()
    assert inventory.wait_synced(5)
    apiserver.put(configmap("saturation-scaling-config", {"default": "kvSpareTrigger: 0.95\n"}))
    assert eventually(lambda: bool(inventory.current().problems))
    StatusWriter(api_client).write([], inventory.current())
    (event,) = apiserver.list("Event", "kedascaler-system")
    assert event["type"] == "Warning" and event["reason"] == "InvalidConfiguration"
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "kedascaler-system",
                                       "name": "saturation-scaling-config"}
    assert "kvSpareTrigger" in event["message"] and "last good" in event["message"]


# --- CRD-free variants: ScaledObjects watched (serve --scaledobjects) ---------------------------------------------

def crd_free_scaled_object(name: str, namespace: str, **metadata: str) -> dict:
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"name": name}, "minReplicaCount": 1, "maxReplicaCount": 6,
                     "triggers": [{"type": "external", "metadata": {"scalerAddress": "kedascaler:9090",
                                                                    **metadata}}]}}


class _Load:
    """Every pod reports the same KV cache and queue (a MetricsSource)."""

    def collect(self, targets):
        from kedascaler.sources.base import CollectResult, PodSample

        return CollectResult(tuple(PodSample(t.variant.namespace, t.pod, "meta/llama", 0.92, 6.0, 8.0, 1000.0,
                                             variant=t.variant) for t in targets), queries=len(targets))

    def close(self):
        pass


def test_a_crd_free_scaledobject_is_decided_like_its_crd_twin(apiserver, api_client):
    """Namespace `crd`: a VariantAutoscaling and a ScaledObject naming it; `crdfree`: the same variant in a
    ScaledObject alone. Same pods, same load: the same decision; status is written only where there is a VA."""
    from kedascaler.actuate.status import StatusWriter
    from kedascaler.loop.board import DecisionBoard
    from kedascaler.loop.reconcile import Reconciler

    for ns in ("crd", "crdfree"):
        apiserver.put(deployment("llama", namespace=ns, replicas=2, ready=2))
        for i in (1, 2):
            apiserver.put(pod(f"llama-{i}", app="llama", ip=f"10.0.{len(ns)}.{i}", namespace=ns))
    apiserver.put(va("llama", "meta/llama", namespace="crd", accelerator="A100", variantCost="20", minReplicas=1,
                     maxReplicas=6))
    apiserver.put(crd_free_scaled_object("llama", "crd", variantAutoscaling="llama"))  # the CRD way: not a variant
    apiserver.put(crd_free_scaled_object("llama", "crdfree", modelID="meta/llama", accelerator="A100",
                                         variantCost="20"))
    inventory = KubernetesInventory(api_client, scaled_objects=True, backoff_base_s=0.05, backoff_max_s=0.2)
    try:
        inventory.start()
        assert inventory.wait_synced(5)
        state = inventory.current()
        assert state.problems == ()
        twin, crd_free = (VariantKey("crd", "llama"), VariantKey("crdfree", "llama"))
        assert {v.key for v in state.variants} == {twin, crd_free} and state.from_scaled_objects == {crd_free}
        specs = {v.key: v.spec for v in state.variants}
        assert specs[twin].__class__(**{**specs[twin].__dict__, "key": crd_free}) == specs[crd_free]
        reconciler = Reconciler(inventory, _Load(), DecisionBoard(), workloads=inventory, clock=lambda: 1000.0)
        decisions = {d.key: d for d in reconciler.run_once().decisions}
        assert decisions[crd_free].desired_replicas == decisions[twin].desired_replicas > 2
        assert str(decisions[crd_free].reason) == str(decisions[twin].reason)

        writer = StatusWriter(api_client, existing=inventory.va_status, uid_of=inventory.va_uid)
        assert writer.write(decisions.values(), state, inventory.missing_targets()) == 1  # the twin's VA only
        assert apiserver.count("PATCH", "/namespaces/crdfree/") == 0

        apiserver.delete("ScaledObject", "crdfree", "llama")  # the ScaledObject goes: so does the variant
        assert eventually(lambda: {v.key for v in inventory.current().variants} == {twin})
    finally:
        inventory.stop()


def test_scaledobjects_are_not_watched_unless_asked(apiserver, inventory):
    apiserver.put(crd_free_scaled_object("llama", "demo", modelID="meta/llama"))
    inventory.start()
    assert inventory.wait_synced(5)
    assert inventory.current().variants == () and inventory.scaledobjects is None
    assert apiserver.count("GET", "/scaledobjects") == 0


def test_the_pod_cache_keeps_only_what_the_scaler_reads():
    """A trimmed pod answers readiness, labels and the metrics URL as the whole one does, in a few KiB."""
    from kedascaler.sources.kubernetes import metrics_url, pod_is_ready, trim_pod
    from tests.support.kube_apiserver import pod
    from tests.support.pods import vllm_pod

    cases = [vllm_pod("llama-0"), pod("a", app="x", ip="fd00::1", port_name="metrics", port=9090),
             pod("b", app="x", ip="10.0.0.2", ready=False), pod("c", app="x", ip="10.0.0.3", port_annotation="7000"),
             {**pod("d", app="x", ip="10.0.0.4"), "metadata": {**pod("d", app="x", ip="10.0.0.4")["metadata"],
                                                                "deletionTimestamp": "2026-11-23T10:00:00Z"}}]
    for whole in cases:
        trimmed = trim_pod(whole)
        assert pod_is_ready(trimmed) == pod_is_ready(whole)
        assert metrics_url(trimmed) == metrics_url(whole)
        assert trimmed["metadata"]["labels"] == whole["metadata"]["labels"]
        assert trimmed["metadata"]["name"] == whole["metadata"]["name"]
    big = vllm_pod("llama-0")
    assert len(json.dumps(big)) > 15_000 and len(json.dumps(trim_pod(big))) < 1_000
