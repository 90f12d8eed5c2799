"""Scale down without killing work: the leader marks the emptiest pods of a shrinking variant to go first."""

from __future__ import annotations

from kedascaler.actuate.deletion_cost import ANNOTATION, DeletionCostWriter, deletion_costs
from kedascaler.engine.deletion import pod_cost
from kedascaler.engine.types import Decision, ModelSnapshot, PodMetrics, Reason, VariantKey, VariantSpec, VariantState
from tests.support.kube_apiserver import pod

NS = "demo"
A100 = VariantKey(NS, "llama-a100")
H100 = VariantKey(NS, "llama-h100")


def decision(key: VariantKey, desired: int, current: int, *, stale: bool = False) -> Decision:
    return Decision(key, "meta/llama", desired, True, Reason("scale-down", "kv_cache_usage"),
                    current_replicas=current, ready_replicas=current, stale=stale)


def snapshot(loads: dict[VariantKey, list[tuple[str, float, float, float]]]) -> ModelSnapshot:
    """Pods as (name, running, waiting, kv cache usage) per variant."""
    variants = tuple(
        VariantState(VariantSpec(key, "meta/llama", key.name), len(pods), len(pods),
                     tuple(PodMetrics(name, kv, waiting, running, 100.0) for name, running, waiting, kv in pods))
        for key, pods in loads.items())
    return ModelSnapshot(NS, "meta/llama", variants)


LOADS = {A100: [("a-1", 12.0, 0.0, 0.6), ("a-2", 1.0, 0.0, 0.1), ("a-3", 5.0, 2.0, 0.3)],
         H100: [("h-1", 30.0, 0.0, 0.5), ("h-2", 0.0, 0.0, 0.0)]}


def annotations(apiserver, name: str) -> dict:
    return apiserver.get("Pod", NS, name)["metadata"].get("annotations") or {}


def put_pods(apiserver) -> None:
    for key, pods in LOADS.items():
        for i, (name, *_) in enumerate(pods):
            apiserver.put(pod(name, app=key.name, ip=f"10.0.0.{i + 1}", namespace=NS))


def test_the_emptiest_pods_of_a_shrinking_variant_get_the_lowest_cost():
    plan = deletion_costs([decision(A100, 1, 3), decision(H100, 2, 2)], [snapshot(LOADS)])
    assert list(plan) == [A100]  # the H100 holds: its pods are not touched
    assert [c.pod for c in plan[A100]] == ["a-2", "a-3", "a-1"]  # 1 request, then 7, then 12
    assert plan[A100][0].cost == pod_cost(1.0, 0.0, 0.1) < plan[A100][1].cost < plan[A100][2].cost


def test_stale_decisions_and_growing_variants_touch_no_pod():
    assert deletion_costs([decision(A100, 1, 3, stale=True), decision(H100, 4, 2)], [snapshot(LOADS)]) == {}


def test_annotations_are_set_before_the_target_drops_and_not_rewritten_when_the_order_holds(apiserver, api_client):
    put_pods(apiserver)
    clock = [0.0]
    writer = DeletionCostWriter(api_client, min_interval_s=0.0, clock=lambda: clock[0])
    assert writer.write([decision(A100, 1, 3), decision(H100, 2, 2)], [snapshot(LOADS)]) == 3
    costs = {name: int(annotations(apiserver, name)[ANNOTATION]) for name in ("a-1", "a-2", "a-3")}
    assert sorted(costs, key=costs.get) == ["a-2", "a-3", "a-1"]
    assert ANNOTATION not in annotations(apiserver, "h-1") and ANNOTATION not in annotations(apiserver, "h-2")
    clock[0] = 60.0  # the same order a minute later: nothing to write
    assert writer.write([decision(A100, 1, 3)], [snapshot(LOADS)]) == 0
    moved = {A100: [("a-1", 0.0, 0.0, 0.0), ("a-2", 9.0, 0.0, 0.4), ("a-3", 5.0, 2.0, 0.3)], H100: LOADS[H100]}
    assert writer.write([decision(A100, 1, 3)], [snapshot(moved)]) == 3  # a-1 emptied: the order changed
    assert int(annotations(apiserver, "a-1")[ANNOTATION]) < int(annotations(apiserver, "a-3")[ANNOTATION])


def test_writes_are_rate_limited_per_variant(apiserver, api_client):
    put_pods(apiserver)
    clock = [0.0]
    writer = DeletionCostWriter(api_client, min_interval_s=30.0, clock=lambda: clock[0])
    assert writer.write([decision(A100, 1, 3)], [snapshot(LOADS)]) == 3
    moved = {H100: LOADS[H100]}
    moved[A100] = [("a-1", 0.0, 0.0, 0.0), ("a-2", 9.0, 0.0, 0.4), ("a-3", 5.0, 2.0, 0.3)]
    clock[0] = 10.0
    assert writer.write([decision(A100, 1, 3)], [snapshot(moved)]) == 0  # changed, but written 10 s ago
    clock[0] = 31.0
    assert writer.write([decision(A100, 1, 3)], [snapshot(moved)]) == 3


def test_a_pod_that_cannot_be_patched_does_not_stop_the_others(apiserver, api_client, caplog):
    put_pods(apiserver)
    gone = {A100: [("a-1", 12.0, 0.0, 0.6), ("a-9", 0.0, 0.0, 0.0)], H100: LOADS[H100]}  # a-9 is not in the API
    writer = DeletionCostWriter(api_client, min_interval_s=0.0)
    assert writer.write([decision(A100, 1, 2)], [snapshot(gone)]) == 1  # a-1 patched, a-9 reported
    assert ANNOTATION in annotations(apiserver, "a-1")
    assert "a-9" in caplog.text and ANNOTATION in caplog.text


def test_submit_writes_in_the_writers_thread_and_only_while_leading(apiserver, api_client):
    put_pods(apiserver)
    leading = [False]
    writer = DeletionCostWriter(api_client, min_interval_s=0.0, leading=lambda: leading[0])
    writer.submit([decision(A100, 1, 3)], [snapshot(LOADS)])
    assert writer.wait_idle(10)
    assert ANNOTATION not in annotations(apiserver, "a-1")  # not the leader: nothing written
    leading[0] = True
    writer.submit([decision(A100, 1, 3)], [snapshot(LOADS)])
    assert writer.wait_idle(10)
    assert writer.patches == 3 and ANNOTATION in annotations(apiserver, "a-2")
    writer.close()


def test_metrics_count_the_pods_annotated_and_the_requests_protected(apiserver, api_client, caplog):
    import logging

    from prometheus_client import CollectorRegistry, generate_latest

    caplog.set_level(logging.INFO, logger="kedascaler.actuate.deletion_cost")

    put_pods(apiserver)
    writer = DeletionCostWriter(api_client, min_interval_s=0.0)
    registry = CollectorRegistry()
    registry.register(writer.collector())

    def scraped() -> str:
        return generate_latest(registry).decode()
    assert "kedascaler_pod_deletion_cost_pods_annotated_total 0.0" in scraped()
    writer.write([decision(A100, 1, 3)], [snapshot(LOADS)])
    text = scraped()
    assert "kedascaler_pod_deletion_cost_pods_annotated_total 3.0" in text
    # a-2 (1 running) goes first; a-3 (5 running + 2 waiting) and a-1 (12 running) are kept longest
    assert "kedascaler_pod_deletion_cost_requests_protected_total 19.0" in text
    assert "deleted first to last: a-2 (1010), a-3 (7030), a-1 (12060); 19 request(s)" in caplog.text


def test_fewer_requests_go_first_and_kv_in_use_breaks_ties():
    """Each request on a deleted pod is aborted and retried: the request count ranks first (engine/deletion.py),
    the KV cache in use only breaks ties between pods with as many requests."""
    loads = {A100: [("long", 1.0, 0.0, 0.6), ("short", 3.0, 0.0, 0.1), ("idle", 0.0, 0.0, 0.0),
                    ("one", 1.0, 0.0, 0.2), ("queued", 0.0, 2.0, 0.0)]}
    plan = deletion_costs([decision(A100, 1, 5)], [snapshot(loads)])
    assert [c.pod for c in plan[A100]] == ["idle", "one", "long", "queued", "short"]
    assert [c.requests for c in plan[A100]] == [0, 1, 1, 2, 3]


def test_the_counters_are_on_the_scalers_metrics_endpoint(apiserver, api_client):
    """As serve wires it: the writer's collector registered with the Observer is in what /metrics serves."""
    from kedascaler.observe.metrics import Observer

    put_pods(apiserver)
    writer = DeletionCostWriter(api_client, min_interval_s=0.0)
    observer = Observer()
    observer.register(writer.collector())
    writer.write([decision(A100, 1, 3)], [snapshot(LOADS)])
    text = observer.exposition().decode()
    assert "kedascaler_pod_deletion_cost_pods_annotated_total 3.0" in text
    assert "kedascaler_reconcile_cycles_total" in text  # beside the scaler's own families
