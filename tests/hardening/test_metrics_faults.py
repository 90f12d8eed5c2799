"""Metrics faults, end to end: a real Reconciler and a real ScalerServer across cycles, with a fault injected.

For each fault: no scale-down or deactivation is caused by the missing data (desired never drops below
the last good decision), the decision is held and marked stale, KEDA's `GetMetrics` keeps the held value
until the decision is older than `stale_after` and then answers UNAVAILABLE (so KEDA's `fallback` takes
over), and the first cycle after the fault ends is fresh again. Time is a fake clock shared by the
reconciler, the fake Prometheus' sample timestamps and the server, so a cycle is 30 "seconds" and the
tests run in about a second of real time per fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pytest

from kedascaler.engine.types import Decision, VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.reconcile import Reconciler
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer
from kedascaler.sources.base import ScrapeTarget, WorkloadStatus
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.prometheus import PrometheusSource
from kedascaler.sources.scrape import DirectScrapeSource

from .faults import BlackHole, FakeMetrics

NS = "llm"
A100 = VariantKey(NS, "llama-a100")
H100 = VariantKey(NS, "llama-h100")
CURRENT = {A100: 3, H100: 2}
INTERVAL = 30.0  # seconds of fake time per cycle
STALE_AFTER = 90.0
FAULT_CYCLES = 5  # 150 s of fault: crosses stale_after
T0 = 1_000_000.0

# Moderately loaded pods: the engine holds them as they are. A cycle that read "no load" would scale down.
LOAD = (0.55, 0.0, 6.0)
RECOVERY_CYCLES = 3  # healed cycles run at most, waiting for a fresh one


def documents(profiles: bool = False):
    """Two variants; `profiles`: each with a variantProfile (so capacity mode has a capacity per replica)."""
    def va(name, accelerator, cost, alpha, beta):
        spec = {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": "meta/llama",
                "accelerator": accelerator, "variantCost": str(cost), "minReplicas": 1, "maxReplicas": 8}
        if profiles:
            spec["variantProfile"] = {"maxBatchSize": 256, "perfParms": {
                "decodeParms": {"alpha": alpha, "beta": beta}, "prefillParms": {"gamma": 20.0, "delta": 0.0005}}}
        return ("test", {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
                         "metadata": {"name": name, "namespace": NS}, "spec": spec})
    return [va("llama-h100", "H100", 40, 7.0, 0.035), va("llama-a100", "A100", 20, 11.0, 0.06)]


def pod_names(key: VariantKey) -> list[str]:
    return [f"{key.name}-7d9f8c6b5-p{i}" for i in range(CURRENT[key])]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Workloads:
    """The Deployments as they stand: fixed replicas, pods scraped at `url_for(pod)`."""

    def __init__(self, url_for: Callable[[str], str]) -> None:
        self.url_for = url_for

    def status(self, spec: VariantSpec) -> WorkloadStatus:
        pods = tuple(ScrapeTarget(spec.key, p, self.url_for(p)) for p in pod_names(spec.key))
        return WorkloadStatus(CURRENT[spec.key], CURRENT[spec.key], pods)


class Rig:
    """Fake Prometheus/pods + Reconciler + ScalerServer on one fake clock."""

    def __init__(self, direct: bool, prometheus_skew: float = 0.0) -> None:
        """`prometheus_skew`: how far the fake Prometheus's clock (its sample timestamps) is ahead of ours."""
        self.clock = Clock()
        self.metrics = FakeMetrics({p: LOAD for k in CURRENT for p in pod_names(k)},
                                   lambda: self.clock() + prometheus_skew).start()
        self.hole = BlackHole()
        self.pod_url: dict[str, str] = {}
        self.board = DecisionBoard()
        if direct:
            self.source = DirectScrapeSource(timeout=0.3, clock=self.clock)
        else:
            self.source = PrometheusSource(self.metrics.url, timeout=0.5, window="5s", clock=self.clock)
        self.reconciler = Reconciler(StaticInventory.from_documents(documents()), self.source, self.board,
                                     workloads=Workloads(lambda p: self.pod_url.get(p, self.metrics.pod_url(p))),
                                     clock=self.clock)
        self.server = ScalerServer(self.board, port=0, host="127.0.0.1", stale_after=STALE_AFTER, clock=self.clock,
                                   grace=0.5)
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Rig:
        port = await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.ExternalScalerStub(self.channel)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.channel is not None
        await self.channel.close()
        await self.server.stop(0)
        self.source.close()
        self.metrics.stop()
        self.hole.close()

    async def cycle(self) -> dict[VariantKey, Decision]:
        self.clock.now += INTERVAL
        report = await asyncio.to_thread(self.reconciler.run_once)
        return {d.key: d for d in report.decisions}

    async def keda_reads(self, key: VariantKey) -> tuple[grpc.StatusCode, int | None]:
        ref = pb.ScaledObjectRef(name=key.name, namespace=key.namespace, scalerMetadata={"scalerAddress": "x"})
        try:
            spec = await self.stub.GetMetricSpec(ref, timeout=5)
            reply = await self.stub.GetMetrics(
                pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricSpecs[0].metricName), timeout=5)
        except grpc.aio.AioRpcError as e:
            return e.code(), None
        return grpc.StatusCode.OK, reply.metricValues[0].metricValue


# -- faults: (name, direct scraping?, start, end) --
def _stop(rig: Rig) -> None:
    rig.metrics.stop()


def _restart(rig: Rig) -> None:
    rig.metrics.start()  # the same port


def _hang(rig: Rig) -> None:
    rig.metrics.unhung.clear()
    rig.metrics.mode = "hang"  # the same Prometheus, now accepting queries and never answering


def _unhang(rig: Rig) -> None:
    rig.metrics.mode = "ok"
    rig.metrics.unhung.set()


def _mode(mode: str) -> Callable[[Rig], None]:
    def set_mode(rig: Rig) -> None:
        rig.metrics.mode = mode
    return set_mode


def _garbage_values(rig: Rig) -> None:
    pods = sorted(rig.metrics.pods)
    absurd = [("NaN", 0, 1), (0.5, "-3", 1), ("7.0", 0, 1), (0.5, "1e12", 1), ("+Inf", 0, 1), (0.5, 0, "-1")]
    rig.metrics.garbage = {pod: absurd[i % len(absurd)] for i, pod in enumerate(pods)}
    rig.metrics.mode = "garbage-values"


def _wrong_types(payload) -> Callable[[Rig], None]:
    def set_payload(rig: Rig) -> None:
        rig.metrics.garbage_json = payload
        rig.metrics.mode = "garbage-json"
    return set_payload


def _missing_subset(rig: Rig) -> None:
    rig.metrics.missing = {pod_names(A100)[0], pod_names(H100)[1]}
    rig.metrics.mode = "missing-pods"


def _pods_hang(rig: Rig) -> None:
    for key in CURRENT:
        for pod in pod_names(key):
            rig.pod_url[pod] = rig.hole.url + "/metrics"


def _pods_answer(rig: Rig) -> None:
    rig.pod_url.clear()


OK = _mode("ok")
WRONG_TYPES = {
    "data-not-a-dict": {"status": "success", "data": [1, 2, 3]},
    "result-not-a-list": {"status": "success", "data": {"resultType": "vector", "result": {"a": 1}}},
    "value-an-object": {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"namespace": NS, "pod": "llama-a100-7d9f8c6b5-p0", "model_name": "m"}, "value": [1, {"x": 1}]}]}},
    "labels-not-strings": {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"namespace": NS, "pod": 12345, "model_name": ["m"]}, "value": [1, "0.5"]}]}},
    "value-a-bool": {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"namespace": NS, "pod": "llama-a100-7d9f8c6b5-p0", "model_name": "m"}, "value": [1, True]}]}},
    "top-level-null": None,
}

# name, direct scraping?, inject, heal, held as stale (else: partial data, may only grow)
FAULTS = [
    ("prometheus stopped (connection refused, restarted on the same port)", False, _stop, _restart, True),
    ("prometheus hangs past the query timeout (accepts, never answers)", False, _hang, _unhang, True),
    ("prometheus answers HTTP 500", False, _mode("500"), OK, True),
    ("prometheus answers NaN / negative / kv 7.0 / queue 1e12 / +Inf", False, _garbage_values, OK, True),
    *[(f"prometheus answers wrong JSON types ({name})", False, _wrong_types(payload), OK, True)
      for name, payload in WRONG_TYPES.items()],
    ("prometheus: a subset of pods missing", False, _missing_subset, OK, False),
    ("direct scrape: every pod times out", True, _pods_hang, _pods_answer, True),
    ("direct scrape: pods answer HTTP 503", True, _mode("500"), OK, True),
    ("direct scrape: NaN / negative / kv 7.0 / queue 1e12 values", True, _garbage_values, OK, True),
    ("direct scrape: a subset of pods missing (404)", True, _missing_subset, OK, False),
]


@dataclass
class Cycle:
    """One cycle as the scaler and KEDA saw it."""

    age: float  # seconds of fake time since the last good data
    decisions: dict[VariantKey, Decision]
    reads: dict[VariantKey, tuple[grpc.StatusCode, int | None]]  # GetMetrics right after the cycle


@dataclass
class Outcome:
    """A fault's run: the good cycle, the FAULT_CYCLES under the fault, the cycles after it healed."""

    good: Cycle
    fault: list[Cycle] = field(default_factory=list)
    recovery: list[Cycle] = field(default_factory=list)  # up to the first fresh one (RECOVERY_CYCLES at most)


async def run_fault(direct: bool, inject: Callable[[Rig], None], heal: Callable[[Rig], None],
                    prometheus_skew: float = 0.0) -> Outcome:
    """One good cycle, FAULT_CYCLES cycles under the fault, then cycles until fresh again; asserts nothing.

    The test below asserts each row's promises on it; `scripts/fault_table.py` prints it as docs/hardening.md's table.
    """
    rig = Rig(direct, prometheus_skew)
    async with rig:
        async def cycle(good_at: float | None) -> Cycle:
            decisions = await rig.cycle()
            reads = {key: await rig.keda_reads(key) for key in CURRENT}
            return Cycle(0.0 if good_at is None else rig.clock.now - good_at, decisions, reads)

        outcome = Outcome(await cycle(None))
        good_at = rig.clock.now
        inject(rig)
        for _ in range(FAULT_CYCLES):
            outcome.fault.append(await cycle(good_at))
        heal(rig)
        while len(outcome.recovery) < RECOVERY_CYCLES:
            outcome.recovery.append(await cycle(good_at))
            if all(not d.stale for d in outcome.recovery[-1].decisions.values()):
                break
    return outcome


@pytest.mark.parametrize("name,direct,inject,heal,held", FAULTS, ids=[f[0] for f in FAULTS])
async def test_metrics_fault_holds_then_goes_unavailable_then_recovers(name, direct, inject, heal, held):
    """The promises of each row of docs/hardening.md's metrics-fault table."""
    assert_promises(name, await run_fault(direct, inject, heal), held)


@pytest.mark.parametrize("skew", [STALE_AFTER + 60, -(STALE_AFTER + 60)], ids=["prometheus-ahead", "prometheus-behind"])
async def test_a_prometheus_clock_off_by_more_than_stale_after(skew):
    """Prometheus's clock 150 s ahead of or behind ours (stale_after 90 s): the decisions are fresh and served
    while it answers, and held, then UNAVAILABLE once its last answer is older than stale_after, on our clock.
    Its timestamps used to be compared with our clock: behind, every decision was UNAVAILABLE from the first
    cycle; ahead, a stopped Prometheus stayed "fresh" for 150 s more than stale_after."""
    assert_promises(f"prometheus skewed {skew:+g} s", await run_fault(False, _stop, _restart, skew), True)


def assert_promises(name: str, outcome: Outcome, held: bool) -> None:
    good = outcome.good.decisions
    for key in CURRENT:
        assert not good[key].stale and good[key].active, good[key].reason
        assert outcome.good.reads[key] == (grpc.StatusCode.OK, good[key].desired_replicas)

    answered_unavailable = False
    for cycle in outcome.fault:
        for key in CURRENT:
            d = cycle.decisions[key]
            assert d.desired_replicas >= good[key].desired_replicas, (name, d.reason)  # never below the last good
            assert d.active, (name, d.reason)
            if not held:  # partial data: decided on the pods that reported, fresh
                assert not d.stale, (name, d.reason)
                assert cycle.reads[key] == (grpc.StatusCode.OK, d.desired_replicas), (name, cycle.age)
                continue
            assert d.stale and d.reason.action == "stale", (name, d.reason)
            assert d.data_at == good[key].data_at
            code, value = cycle.reads[key]
            if cycle.age > STALE_AFTER:
                assert code == grpc.StatusCode.UNAVAILABLE, (name, cycle.age)
                answered_unavailable = True
            else:
                assert (code, value) == (grpc.StatusCode.OK, d.desired_replicas), (name, cycle.age)
    assert answered_unavailable or not held

    assert len(outcome.recovery) == 1, f"{name}: recovered in {len(outcome.recovery)} cycles"
    after = outcome.recovery[-1]
    for key in CURRENT:
        assert not after.decisions[key].stale, (name, after.decisions[key].reason)
        assert after.reads[key] == (grpc.StatusCode.OK, after.decisions[key].desired_replicas)


async def test_a_real_prometheus_stopped_then_restarted(tmp_path):
    """The same promises against a real Prometheus process, stopped and started again on its port (real time)."""
    import subprocess
    import time

    from tests.support.prometheus import run_prometheus, wait_until

    pods = FakeMetrics({p: LOAD for k in CURRENT for p in pod_names(k)}, time.time).start()
    targets = [(pods.pod_url(p), {"namespace": NS, "pod": p}) for k in CURRENT for p in pod_names(k)]
    board = DecisionBoard()
    stale_after = 3.0
    server = ScalerServer(board, port=0, host="127.0.0.1", stale_after=stale_after, grace=0.5)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.ExternalScalerStub(channel)

    async def keda_reads(key: VariantKey) -> grpc.StatusCode:
        ref = pb.ScaledObjectRef(name=key.name, namespace=key.namespace)
        name = (await stub.GetMetricSpec(ref, timeout=5)).metricSpecs[0].metricName
        try:
            await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=name), timeout=5)
        except grpc.aio.AioRpcError as e:
            return e.code()
        return grpc.StatusCode.OK

    try:
        with run_prometheus(targets, tmp_path) as prom:
            source = PrometheusSource(prom.url, timeout=1.0, window="5s")
            reconciler = Reconciler(StaticInventory.from_documents(documents()), source, board,
                                    workloads=Workloads(pods.pod_url))
            try:
                good = {d.key: d for d in (await asyncio.to_thread(reconciler.run_once)).decisions}
                assert all(not d.stale for d in good.values()), [d.reason for d in good.values()]
                args = prom.process.args
                prom.stop()
                held = {d.key: d for d in (await asyncio.to_thread(reconciler.run_once)).decisions}
                for key in CURRENT:
                    assert held[key].stale and held[key].desired_replicas >= good[key].desired_replicas
                    assert held[key].active
                await asyncio.sleep(stale_after + 0.5)
                await asyncio.to_thread(reconciler.run_once)
                assert {await keda_reads(k) for k in CURRENT} == {grpc.StatusCode.UNAVAILABLE}
                with prom.log_path.open("ab") as log:  # the same binary, config, data and port
                    again = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                try:
                    wait_until(lambda: prom.targets_up() == len(targets), 60, what="restarted prometheus")
                    after = {d.key: d for d in (await asyncio.to_thread(reconciler.run_once)).decisions}
                    assert all(not d.stale for d in after.values()), [d.reason for d in after.values()]
                    assert {await keda_reads(k) for k in CURRENT} == {grpc.StatusCode.OK}
                finally:
                    again.terminate()
                    again.wait(10)
            finally:
                source.close()
    finally:
        await channel.close()
        await server.stop(0)
        pods.stop()


@pytest.mark.parametrize("mode", [None, "saturation", "capacity", "hybrid", "model"])
async def test_fewer_pods_reporting_holds_in_every_mode(mode):
    """Local inventory + Prometheus (no workload source: the pods that report are all the scaler sees). At constant
    load, 5 pods report, then 3, then 1: the vanished pods are missing data, not a smaller fleet, so the desired
    count holds at the last good decision in every scaling mode; a decision that the scaler itself lowered is
    followed once the pods are gone."""
    from kedascaler.loop.planner import PlannerSettings

    clock = Clock()
    metrics = FakeMetrics({p: LOAD for k in CURRENT for p in pod_names(k)}, clock).start()
    source = PrometheusSource(metrics.url, timeout=0.5, window="5s")
    reconciler = Reconciler(StaticInventory.from_documents(documents(profiles=True)), source, DecisionBoard(),
                            workloads=None,
                            clock=clock, planner=None if mode is None else PlannerSettings(mode))
    try:
        def cycle() -> dict[VariantKey, Decision]:
            clock.now += INTERVAL
            return {d.key: d for d in reconciler.run_once().decisions}

        good = cycle()
        assert all(not d.stale for d in good.values()), [d.reason for d in good.values()]
        metrics.mode = "missing-pods"
        for missing in ({pod_names(A100)[0], pod_names(H100)[0]},
                        {*pod_names(A100)[:2], pod_names(H100)[0], pod_names(H100)[1]}):
            metrics.missing = missing
            for _ in range(3):
                decided = cycle()
                for key in CURRENT:
                    assert decided[key].desired_replicas >= good[key].desired_replicas, (mode, decided[key].reason)

        # Every pod back, now idle: the scaler lowers the A100 variant; once HPA removed the pods it let go,
        # the scaler counts the ones left and holds nothing.
        metrics.mode, metrics.missing = "ok", set()
        metrics.pods = {p: (0.02, 0.0, 0.0) for p in metrics.pods}
        metrics.usage = {p: {"completed": 0.0, "prompt_tokens": 0.0, "output_tokens": 0.0} for p in metrics.pods}
        for _ in range(8):
            decided = cycle()
            if decided[A100].desired_replicas < CURRENT[A100]:
                break
        kept = decided[A100].desired_replicas
        assert kept < CURRENT[A100], decided[A100].reason.message
        metrics.mode, metrics.missing = "missing-pods", set(pod_names(A100)[kept:])
        after = cycle()[A100]
        assert (after.current_replicas, after.ready_replicas) == (kept, kept), after.reason
        assert not after.stale and after.desired_replicas <= kept, after.reason
    finally:
        source.close()
        metrics.stop()
