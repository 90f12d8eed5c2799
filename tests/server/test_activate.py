"""The push endpoint: a request for a cold model flips IsActive and pushes `true` on open StreamIsActive streams.

Real servers on loopback: the activation HTTP endpoint, the gRPC ExternalScaler, and the reconcile loop in
push-only mode (no gateway to read) over models at zero replicas.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
from urllib.parse import quote

import grpc

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.loop.reconcile import Reconciler
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.activate import ActivationServer
from kedascaler.server.app import ScalerServer
from kedascaler.server.naming import metric_name
from kedascaler.sources.base import WorkloadStatus
from kedascaler.sources.files import StaticInventory
from kedascaler.spec.inventory import InventoryState
from tests.support.sources import NoMetrics

NS = "llm"
SAFETY = 30.0  # seconds before a hung test fails instead of hanging; not a latency assert


class Deployments:
    """Replica counts per variant, as the actuator (KEDA + HPA) set them: all at zero to start."""

    def __init__(self):
        self.replicas: dict[VariantKey, int] = {}

    def status(self, spec):
        n = self.replicas.get(spec.key, 0)
        return WorkloadStatus(n, n, ())


def model_id(i: int) -> str:
    return f"org/model-{i:03d}"


def inventory(models: int) -> StaticInventory:
    specs = tuple(VariantSpec(VariantKey(NS, f"model-{i:03d}"), model_id(i), f"model-{i:03d}", cost=10.0)
                  for i in range(models))
    return StaticInventory(InventoryState(variants=specs))


class Stack:
    """Board + reconcile loop + gRPC server + activation endpoint, started and stopped together."""

    def __init__(self, models: int) -> None:
        self.board = DecisionBoard()
        self.inbox = ActivationInbox()
        self.deployments = Deployments()
        self.reconciler = Reconciler(inventory(models), NoMetrics(), self.board, self.deployments,
                                     idle_window=300.0, inbox=self.inbox)
        self.grpc = ScalerServer(self.board, port=0, host="127.0.0.1", grace=0.5)
        self.http = ActivationServer(self.board, self.inbox, host="127.0.0.1", port=0)

    async def __aenter__(self) -> Stack:
        self.reconciler.run_once()  # every model at zero and idle: inactive
        await self.grpc.start()
        self.http.start()
        self.loop_task = asyncio.create_task(self.reconciler.run_forever(3600.0))
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc.port}")
        self.stub = pb_grpc.ExternalScalerStub(self.channel)
        return self

    async def __aexit__(self, *exc) -> None:
        self.loop_task.cancel()
        await asyncio.gather(self.loop_task, return_exceptions=True)
        await self.channel.close()
        await self.grpc.stop(0)
        self.http.close()


def post(port: int, path: str, method: str = "POST") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def ref(i: int) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=f"model-{i:03d}", namespace=NS)


async def test_a_request_for_a_cold_model_flips_is_active_and_pushes_true():
    async with Stack(models=3) as s:
        assert (await s.stub.IsActive(ref(1))).result is False
        stream = s.stub.StreamIsActive(ref(1))
        assert (await asyncio.wait_for(stream.read(), SAFETY)).result is False
        status, body = await asyncio.to_thread(post, s.http.port, f"/v1/activate/{NS}/{model_id(1)}")
        assert status == 202 and body["variants"] == ["model-001"]
        assert (await asyncio.wait_for(stream.read(), SAFETY)).result is True
        assert (await s.stub.IsActive(ref(1))).result is True
        key = VariantKey(NS, "model-001")
        metrics = await s.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(1), metricName=metric_name(key)))
        assert metrics.metricValues[0].metricValue == 1
        # the other models stay cold
        assert (await s.stub.IsActive(ref(0))).result is False
        stream.cancel()


async def test_the_model_may_be_url_encoded():
    async with Stack(models=2) as s:
        status, body = await asyncio.to_thread(post, s.http.port, f"/v1/activate/{NS}/{quote(model_id(0), safe='')}")
        assert status == 202 and body["model"] == model_id(0)


async def test_unknown_model_is_404_and_bad_paths_400():
    async with Stack(models=2) as s:
        status, body = await asyncio.to_thread(post, s.http.port, f"/v1/activate/{NS}/org/nope")
        assert status == 404
        assert "org/nope" in body["error"] and model_id(0) not in body["error"]  # no token: no listing
        status, body = await asyncio.to_thread(post, s.http.port, "/v1/activate/other/org/model-000")
        assert status == 404 and "not found in namespace 'other'" in body["error"]
        for path in ("/v1/activate/llm", "/v1/activate/llm/", "/v1/activate/Bad_NS/org/x"):
            status, body = await asyncio.to_thread(post, s.http.port, path)
            assert status == 400, path
            assert "/v1/activate/{namespace}/{model}" in body["error"]
        status, _ = await asyncio.to_thread(post, s.http.port, f"/v1/activate/{NS}/{model_id(0)}", "GET")
        assert status == 405
        assert s.inbox.last_request_at(NS, "org/nope") is None


def test_before_the_first_cycle_it_is_503():
    server = ActivationServer(DecisionBoard(), ActivationInbox())
    status, body = server.activate("POST", f"/v1/activate/{NS}/{model_id(0)}")
    assert status == 503 and "retry" in body["error"]


async def _prewarm_executor() -> None:
    """Start all of the default executor's worker threads now, so that they count in the baseline."""
    n = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default max_workers
    barrier = threading.Barrier(n, timeout=5)
    await asyncio.gather(*(asyncio.to_thread(barrier.wait) for _ in range(n)), return_exceptions=True)


async def test_a_thousand_streams_over_a_hundred_models_all_get_their_push_and_leak_nothing():
    models, per_model = 100, 10
    async with Stack(models=models) as s:
        await _prewarm_executor()
        baseline_threads = threading.active_count()
        baseline_subs = s.board.subscriber_count
        streams = [(i, s.stub.StreamIsActive(ref(i))) for i in range(models) for _ in range(per_model)]
        first = await asyncio.wait_for(asyncio.gather(*(st.read() for _, st in streams)), SAFETY)
        assert all(m.result is False for m in first)
        assert s.board.subscriber_count == baseline_subs + models * per_model

        async def wake(i: int) -> int:
            status, _ = await asyncio.to_thread(post, s.http.port, f"/v1/activate/{NS}/{model_id(i)}")
            return status

        statuses = await asyncio.wait_for(asyncio.gather(*(wake(i) for i in range(models))), SAFETY)
        assert set(statuses) == {202}
        pushed = await asyncio.wait_for(asyncio.gather(*(st.read() for _, st in streams)), SAFETY)
        assert all(m.result is True for m in pushed)
        assert all(s.board.get(VariantKey(NS, f"model-{i:03d}")).desired_replicas == 1 for i in range(models))

        for _, st in streams:
            st.cancel()
        for _ in range(int(SAFETY * 10)):  # wait for the server side to notice the cancellations
            if s.board.subscriber_count == baseline_subs and threading.active_count() <= baseline_threads:
                break
            await asyncio.sleep(0.1)
        assert s.board.subscriber_count == baseline_subs
        assert threading.active_count() <= baseline_threads


async def test_a_push_reconciles_only_its_model_and_never_starves_the_regular_cycles():
    board, inbox = DecisionBoard(), ActivationInbox()
    reconciler = Reconciler(inventory(3), NoMetrics(), board, Deployments(), idle_window=300.0, inbox=inbox)
    reports = []
    task = asyncio.create_task(reconciler.run_forever(0.2, on_cycle=reports.append))
    try:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SAFETY
        # a push every 10 ms, far more often than the interval: the full cycles must still come
        while sum(r.models is None for r in reports) < 3 and loop.time() < give_up:
            inbox.record(NS, model_id(1))
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    full = [r for r in reports if r.models is None]
    woken = [r for r in reports if r.models is not None]
    assert len(full) >= 3
    assert woken and all(r.models == ((NS, model_id(1)),) and len(r.decisions) == 1 for r in woken)
    assert all(len(r.decisions) == 3 for r in full)
    assert board.get(VariantKey(NS, "model-001")).active and not board.get(VariantKey(NS, "model-000")).active
