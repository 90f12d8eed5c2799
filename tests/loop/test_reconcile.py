"""End to end without a cluster: emulated vLLM pods → metrics source → engine → board → gRPC answers.

These scenarios read like the README: a model with two variants (H100 cost 40, A100 cost 20) comes under
load; the scaler asks for the replicas it needs in one cycle, on the cheapest variant first, and KEDA reads
that count over gRPC. When the metrics go away, the decision is held, never lowered.
"""

from __future__ import annotations

import asyncio
import os
import threading

import grpc
import pytest

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.loop.reconcile import Reconciler
from kedascaler.loop.snapshots import owner_of
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import perf_params_for
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.prometheus import PrometheusSource
from kedascaler.sources.scrape import DirectScrapeSource
from kedascaler.spec.inventory import InventoryState
from tests.support.prometheus import run_prometheus
from tests.support.sources import AtZero, NoMetrics

MODEL = "meta/llama-3.1-8b"
H100 = VariantKey("llm", "llama-h100")
A100 = VariantKey("llm", "llama-a100")


def documents(a100_max: int = 3):
    def va(name, accelerator, cost, max_replicas):
        return ("test", {
            "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": "llm"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": MODEL,
                     "accelerator": accelerator, "variantCost": str(cost), "minReplicas": 1,
                     "maxReplicas": max_replicas},
        })
    return [va("llama-h100", "H100", 40, 10), va("llama-a100", "A100", 20, a100_max)]


def overloaded_fleet() -> EmulatedFleet:
    """One ready replica per variant, small servers, offered far more than two replicas can take."""
    fleet = EmulatedFleet(seed=3, tick=0.05)
    for name, acc in (("llama-h100", "H100"), ("llama-a100", "A100")):
        fleet.add_deployment(name, MODEL, acc, params=perf_params_for(acc, max_num_seqs=16, num_gpu_blocks=600),
                             startup_delay=5.0, replicas=1, namespace="llm")
    fleet.advance(5.0)  # both pods ready
    fleet.set_load(MODEL, OfferedLoad(rate=40.0))
    fleet.advance(20.0)
    return fleet


@pytest.fixture
def fleet():
    fleet = overloaded_fleet()
    fleet.start()
    yield fleet
    fleet.close()


def test_overload_scales_up_in_one_cycle_on_the_cheapest_variant_first(fleet):
    board = DecisionBoard()
    source = DirectScrapeSource(timeout=2.0)
    reconciler = Reconciler(StaticInventory.from_documents(documents(a100_max=3)), source, board, workloads=fleet)
    try:
        report = reconciler.run_once()
    finally:
        source.close()
    decided = {d.key: d for d in report.decisions}
    assert report.collect.ok and len(report.collect.samples) == 2
    # The cheap A100 variant is filled to its max before the H100 variant gets anything.
    assert decided[A100].desired_replicas == 3
    assert decided[H100].desired_replicas > 1
    assert decided[A100].reason.action == "scale-up"
    total = decided[A100].desired_replicas + decided[H100].desired_replicas
    assert total > 2 + 1, "more than one replica added in a single cycle"
    assert all(d.active for d in decided.values())


async def test_keda_reads_the_decision_over_grpc(fleet):
    board = DecisionBoard()
    source = DirectScrapeSource(timeout=2.0)
    reconciler = Reconciler(StaticInventory.from_documents(documents()), source, board, workloads=fleet)
    server = ScalerServer(board, port=0, host="127.0.0.1", stale_after=60.0)
    port = await server.start()
    try:
        report = reconciler.run_once()
        desired = {d.key: d.desired_replicas for d in report.decisions}
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            ref = pb.ScaledObjectRef(name="llama-a100", namespace="llm", scalerMetadata={"scalerAddress": "x:9090"})
            spec = await stub.GetMetricSpec(ref)
            name = spec.metricSpecs[0].metricName
            metrics = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=name))
            assert metrics.metricValues[0].metricValue == desired[A100]
            assert metrics.metricValues[0].metricValueFloat == float(desired[A100])
            assert (await stub.IsActive(ref)).result is True
    finally:
        await server.stop(0.5)
        source.close()


def test_metrics_gone_holds_the_decision_instead_of_scaling_down(fleet):
    board = DecisionBoard()
    source = DirectScrapeSource(timeout=0.5)
    reconciler = Reconciler(StaticInventory.from_documents(documents()), source, board, workloads=fleet)
    try:
        first = {d.key: d for d in reconciler.run_once().decisions}
        fleet.close()  # every pod stops answering /metrics
        second = {d.key: d for d in reconciler.run_once().decisions}
    finally:
        source.close()
    for key in (A100, H100):
        assert second[key].stale
        assert second[key].desired_replicas >= first[key].desired_replicas
        assert second[key].reason.action == "stale"
    assert board.get(A100).desired_replicas == first[A100].desired_replicas


def test_the_prometheus_source_gives_the_same_decision_as_direct_scraping(fleet, tmp_path):
    targets = [(t.url, {"namespace": "llm", "pod": t.pod})
               for dep in fleet.deployments for t in dep.targets(VariantKey("llm", dep.name))]
    fleet.set_load(MODEL, None)  # freeze the load so both sources see the same state
    fleet.advance(0.0)
    inventory = StaticInventory.from_documents(documents())
    with run_prometheus(targets, tmp_path) as prom:
        prom_source = PrometheusSource(prom.url, window="5s")
        direct = DirectScrapeSource()
        try:
            via_prometheus = Reconciler(inventory, prom_source, DecisionBoard(), workloads=fleet).run_once()
            via_pods = Reconciler(inventory, direct, DecisionBoard(), workloads=fleet).run_once()
        finally:
            prom_source.close()
            direct.close()
    assert via_prometheus.collect.ok, via_prometheus.collect.errors
    # Prometheus labels carry namespace and pod only: samples are matched to variants by pod name.
    assert {(s.namespace, s.pod) for s in via_prometheus.collect.samples} == {
        (s.namespace, s.pod) for s in via_pods.collect.samples}
    assert {d.key: d.desired_replicas for d in via_prometheus.decisions} == {
        d.key: d.desired_replicas for d in via_pods.decisions}


def test_pods_belong_to_the_deployment_whose_name_prefixes_them():
    specs = {s.key: s for s in StaticInventory.from_documents(documents()).current().specs}
    by_target = {("llm", s.target_name): s for s in specs.values()}
    assert owner_of("llama-h100-7d9f8c6b5-x2k4q", "llm", by_target).key == H100
    assert owner_of("llama-a100-5c4b-abcde", "llm", by_target).key == A100
    assert owner_of("llama-a100-5c4b-abcde", "other", by_target) is None
    assert owner_of("unrelated-pod", "llm", by_target) is None


async def test_a_stop_that_lands_as_a_push_wakes_the_loop_still_stops_it():
    """serve stops by cancelling the loop. A push that sets the wake-up event in the same instant must not eat that
    cancel (Python 3.11's asyncio.wait_for returned normally then, and the loop slept on for its interval)."""
    spec = VariantSpec(VariantKey("llm", "m"), "org/m", "m", cost=10.0)
    for turns in range(6):  # the cancel lands 0..5 loop turns after the event is set
        reconciler = Reconciler(StaticInventory(InventoryState(variants=(spec,))), NoMetrics(), DecisionBoard(),
                                AtZero(), idle_window=300.0, inbox=ActivationInbox())
        wake = asyncio.Event()
        task = asyncio.create_task(reconciler.run_forever(3600.0, wake=wake))
        for _ in range(50):  # the first full cycle, then the wait on the event
            await asyncio.sleep(0.01)
        wake.set()
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5.0)
        assert task in done and task.cancelled(), f"the cancel {turns} turns after the push was lost"


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")
async def test_cycles_run_niced_and_the_loop_thread_keeps_its_priority():
    """serve's cycles yield the CPU to the process answering KEDA: their thread runs niced (`ps -L` shows it),
    the event loop's thread does not."""
    spec = VariantSpec(VariantKey("llm", "m"), "org/m", "m", cost=10.0)
    reconciler = Reconciler(StaticInventory(InventoryState(variants=(spec,))), NoMetrics(), DecisionBoard(), AtZero())
    seen: list[int] = []
    task = asyncio.create_task(reconciler.run_forever(
        0.05, on_cycle=lambda _: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())), nice=7))
    try:
        while len(seen) < 2:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen[0] == min(19, ours + 7) and seen[-1] == seen[0]  # niced once, not again each cycle
