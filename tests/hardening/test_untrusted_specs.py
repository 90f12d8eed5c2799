"""What a VariantAutoscaling may make the scaler do: in a cluster, anyone who may create a VA is not trusted
with the scaler's network position or its Prometheus token.

- The `kedascaler.llmd.ai/metrics-endpoints` annotation (URLs to scrape) is honoured in local mode, and in
  cluster mode only behind `serve --allow-metrics-endpoints-annotation`; otherwise the pods are found from
  the Deployment, the annotation is ignored and reported.
- `spec.scaleToZero.activationQuery` is arbitrary PromQL run with the scaler's token: it is run only behind
  `serve --allow-activation-queries`; otherwise the default gateway query is used.
"""

from __future__ import annotations

import logging

from kedascaler.engine.types import VariantKey
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.gateway import ActivationReading
from kedascaler.sources.kubernetes import KubernetesInventory
from kedascaler.spec.config import METRICS_ENDPOINTS_ANNOTATION
from kedascaler.spec.inventory import build_inventory
from tests.support.kube import eventually
from tests.support.kube_apiserver import deployment, pod, va
from tests.support.sources import AtZero, NoMetrics

ANNOTATED = {"annotations": {METRICS_ENDPOINTS_ANNOTATION: "http://169.254.169.254/latest/meta-data,http://x:1/"}}


def _annotated_va() -> dict:
    doc = va("llama-h100", "meta/llama")
    doc["metadata"].update(ANNOTATED)
    return doc


def test_cluster_mode_ignores_the_metrics_endpoints_annotation_and_reports_it(apiserver, api_client):
    apiserver.put(_annotated_va())
    apiserver.put(deployment("llama-h100", replicas=1))
    apiserver.put(pod("llama-h100-abc-1", app="llama-h100", ip="10.0.0.1"))
    inv = KubernetesInventory(api_client, controller_namespace="kedascaler-system")
    try:
        inv.start()
        assert inv.wait_synced(5) and eventually(lambda: len(inv.current().variants) == 1)
        state = inv.current()
        assert state.static_targets == {}  # nothing the VA listed is fetched
        (problem,) = [p for p in state.problems if METRICS_ENDPOINTS_ANNOTATION in p.field]
        assert "--allow-metrics-endpoints-annotation" in problem.message
        assert state.variants[0].key == VariantKey("demo", "llama-h100")  # the VA itself is still served
        assert [t.url for t in inv.status(state.specs[0]).pods] == ["http://10.0.0.1:8000/metrics"]
    finally:
        inv.stop()


def test_cluster_mode_honours_the_annotation_when_the_operator_allows_it(apiserver, api_client):
    apiserver.put(_annotated_va())
    inv = KubernetesInventory(api_client, controller_namespace="kedascaler-system",
                              metrics_endpoints_annotation=True)
    try:
        inv.start()
        assert inv.wait_synced(5) and eventually(lambda: len(inv.current().variants) == 1)
        assert list(inv.current().static_targets.values()) == [("http://169.254.169.254/latest/meta-data",
                                                                "http://x:1/")]
    finally:
        inv.stop()


class _Gateway:
    def __init__(self) -> None:
        self.overrides: list[dict] = []

    def read(self, models, overrides={}):  # noqa: B006
        self.overrides.append(dict(overrides))
        return ActivationReading({m: 0.0 for m in models})

    def close(self) -> None:
        pass


def _with_activation_query() -> StaticInventory:
    doc = va("llama-h100", "meta/llama", minReplicas=0,
             scaleToZero={"idleWindowSeconds": 60, "activationQuery": 'sum(secret_metric{team="other"})'})
    return StaticInventory(build_inventory([("va.yaml", doc)]))


def test_a_va_activation_query_is_not_run_unless_the_operator_allows_it(caplog):
    gateway = _Gateway()
    reconciler = Reconciler(_with_activation_query(), NoMetrics(), DecisionBoard(), AtZero(), activation=gateway)
    with caplog.at_level(logging.WARNING, logger="kedascaler.reconcile"):
        reconciler.run_once()
        reconciler.run_once()
    assert gateway.overrides == [{}, {}]  # the default gateway query only
    warned = [r.getMessage() for r in caplog.records if "activationQuery" in r.getMessage()]
    assert len(warned) == 1 and "--allow-activation-queries" in warned[0]  # said once, not every cycle

    allowed = _Gateway()
    Reconciler(_with_activation_query(), NoMetrics(), DecisionBoard(), AtZero(), activation=allowed,
               activation_queries=True).run_once()
    assert allowed.overrides == [{("demo", "meta/llama"): 'sum(secret_metric{team="other"})'}]
