"""Scale to zero and back, end to end in the emulator, the way a user would see it.

A model with two variants (L40S cost 30, H100 cost 40), both `minReplicas: 0`, idle window 60 s. Nothing
runs. The first request is queued at the gateway (the emulated fleet); the scaler learns of it either from
the gateway's queue metric or from a push (`POST /v1/activate/...`), pushes `true` on the StreamIsActive
stream of the cheapest variant, KEDA (the stand-in below) sets one replica, the pod gets ready, the request is
served. After 60 s without requests the model goes back to zero, and `false` is pushed too.
"""

from __future__ import annotations

import asyncio
import http.client

import grpc
import pytest
from prometheus_client import generate_latest

from kedascaler.engine.types import VariantKey
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.loop.reconcile import Reconciler
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.activate import ActivationServer
from kedascaler.server.app import ScalerServer
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.perf import perf_params_for
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.gateway import GatewayMetricsSource
from kedascaler.sources.scrape import DirectScrapeSource
from kedascaler.spec.inventory import build_inventory

NS = "llm"
MODEL = "meta/llama-3.1-8b"
L40S = VariantKey(NS, "llama-l40s")
H100 = VariantKey(NS, "llama-h100")
WINDOW = 60.0
STARTUP = 5.0
SAFETY = 30.0  # a hung test fails after this; not a latency assert


def documents():
    def va(name, accelerator, cost):
        return ("test", {
            "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": MODEL,
                     "accelerator": accelerator, "variantCost": str(cost), "minReplicas": 0, "maxReplicas": 4,
                     "scaleToZero": {"idleWindowSeconds": WINDOW}},
        })
    return [va("llama-l40s", "L40S", 30), va("llama-h100", "H100", 40)]


@pytest.fixture
def fleet():
    fleet = EmulatedFleet(seed=5, tick=0.05, start_time=1000.0)
    for key, acc in ((L40S, "L40S"), (H100, "H100")):
        fleet.add_deployment(key.name, MODEL, acc, params=perf_params_for(acc, max_num_seqs=16, num_gpu_blocks=600),
                             startup_delay=STARTUP, replicas=0, namespace=NS)
    fleet.start()
    yield fleet
    fleet.close()


class Scaler:
    """The scaler as `kedascaler serve` wires it: gateway reader + push inbox + gRPC + activation endpoint."""

    def __init__(self, fleet: EmulatedFleet) -> None:
        state = build_inventory(documents())
        self.fleet = fleet
        self.board = DecisionBoard()
        self.inbox = ActivationInbox(clock=lambda: fleet.now)
        self.scrape = DirectScrapeSource(timeout=2.0)
        self.gateway = GatewayMetricsSource(fleet.gateway_url)
        self.reconciler = Reconciler(StaticInventory(state), self.scrape, self.board, fleet, clock=lambda: fleet.now,
                                     idle_window=300.0, activation=self.gateway, inbox=self.inbox)
        self.grpc = ScalerServer(self.board, port=0, host="127.0.0.1", grace=0.5)
        self.http = ActivationServer(self.board, self.inbox, host="127.0.0.1", port=0)

    async def __aenter__(self) -> Scaler:
        await self.grpc.start()
        self.http.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc.port}")
        self.stub = pb_grpc.ExternalScalerStub(self.channel)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.channel.close()
        await self.grpc.stop(0)
        self.http.close()
        self.scrape.close()
        self.gateway.close()

    def keda_applies(self, active: bool, key: VariantKey) -> None:
        """KEDA acts on the pushed flag (cooldown 0 here): active → the desired count (≥ 1), inactive → 0."""
        desired = self.board.get(key).desired_replicas
        self.fleet.deployment(key.name).set_replicas(max(1, desired) if active else 0)


def ref(key: VariantKey) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=key.name, namespace=key.namespace)


def serve_until_done(fleet: EmulatedFleet, request_id: int, limit: float = 60.0) -> float:
    """Advance the fleet until the request is finished; returns its end-to-end time from creation."""
    waited = 0.0
    while waited < limit:
        fleet.advance(0.5)
        waited += 0.5
        for done in fleet.drain_finished():
            if done.id == request_id:
                return done.finished_at - done.created
    raise AssertionError(f"request {request_id} not served within {limit}s of emulated time")


async def go_idle(scaler: Scaler, stream) -> int:
    """Cycles every 15 emulated seconds until the model is inactive; the stream must push `false`."""
    cycles = 0
    while scaler.board.get(L40S).active:
        scaler.fleet.advance(15.0)
        await asyncio.to_thread(scaler.reconciler.run_once)
        cycles += 1
        assert cycles <= 10
    assert (await asyncio.wait_for(stream.read(), SAFETY)).result is False
    scaler.keda_applies(False, L40S)
    return cycles


async def test_first_request_wakes_the_model_through_the_gateway_metric_and_is_served(fleet):
    async with Scaler(fleet) as scaler:
        scaler.reconciler.run_once()
        assert not scaler.board.get(L40S).active and scaler.board.get(L40S).desired_replicas == 0
        stream = scaler.stub.StreamIsActive(ref(L40S))
        assert (await asyncio.wait_for(stream.read(), SAFETY)).result is False

        request = fleet.submit(MODEL, 200, 30)
        assert fleet.queued_for(MODEL) == 1  # no ready pod: the gateway holds it
        assert 'target_model_name="meta/llama-3.1-8b"} 1.0' in generate_latest(fleet.gateway_registry).decode()
        report = await asyncio.to_thread(scaler.reconciler.run_once)  # a regular cycle reads the gateway queue
        decided = {d.key: d for d in report.decisions}
        assert decided[L40S].desired_replicas == 1 and decided[H100].desired_replicas == 0
        assert decided[L40S].reason.signal == "gateway_queue"

        assert (await asyncio.wait_for(stream.read(), SAFETY)).result is True  # pushed, not polled
        scaler.keda_applies(True, L40S)
        assert fleet.deployment(L40S.name).current_replicas == 1
        fleet.advance(STARTUP)
        assert fleet.deployment(L40S.name).ready_replicas == 1
        assert serve_until_done(fleet, request) >= STARTUP

        cycles = await go_idle(scaler, stream)
        assert cycles >= WINDOW / 15.0 - 1
        assert fleet.deployment(L40S.name).current_replicas == 0
        assert scaler.board.get(L40S).reason.action == "inactive"
        stream.cancel()


def post(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path)
        return conn.getresponse().status
    finally:
        conn.close()


async def test_first_request_wakes_the_model_through_a_push_at_once(fleet):
    async with Scaler(fleet) as scaler:
        scaler.reconciler.run_once()
        loop_task = asyncio.create_task(scaler.reconciler.run_forever(3600.0))  # no tick will come: push only
        try:
            stream = scaler.stub.StreamIsActive(ref(L40S))
            assert (await asyncio.wait_for(stream.read(), SAFETY)).result is False
            request = fleet.submit(MODEL, 200, 30)
            status = await asyncio.to_thread(post, scaler.http.port, f"/v1/activate/{NS}/{MODEL}")
            assert status == 202
            assert (await asyncio.wait_for(stream.read(), SAFETY)).result is True
            assert scaler.board.get(L40S).desired_replicas == 1
            assert (await scaler.stub.IsActive(ref(L40S))).result is True
            scaler.keda_applies(True, L40S)
            fleet.advance(STARTUP)
            serve_until_done(fleet, request)
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
        await go_idle(scaler, stream)
        stream.cancel()


async def test_a_failing_gateway_reader_never_scales_a_model_to_zero(fleet):
    async with Scaler(fleet) as scaler:
        fleet.deployment(L40S.name).set_replicas(1)
        fleet.advance(STARTUP)
        scaler.gateway.url = "http://127.0.0.1:9/metrics"  # nothing listens there
        for _ in range(10):
            fleet.advance(15.0)
            report = await asyncio.to_thread(scaler.reconciler.run_once)
            assert any("gateway" in e for e in report.errors)
        decision = scaler.board.get(L40S)
        assert decision.active and decision.desired_replicas == 1
        assert "missing data never turns a model inactive" in decision.reason.message


async def test_a_model_the_gateway_never_reports_never_goes_to_zero(fleet):
    """The gateway's metric is read, but this model is not in it (flow control off, the router not scraped, a
    rewritten model name): "never seen" is not an empty queue, so the model is never put where nothing could
    wake it."""
    from kedascaler.sources.gateway import DEFAULT_ACTIVATION_QUERY, PrometheusActivationSource

    prom = FakePrometheus({DEFAULT_ACTIVATION_QUERY: [({"target_model_name": "another/model"}, 0.0)]})
    gateway = PrometheusActivationSource(prom.url)
    scrape = DirectScrapeSource(timeout=2.0)
    try:
        reconciler = Reconciler(StaticInventory(build_inventory(documents())), scrape, DecisionBoard(), fleet,
                                clock=lambda: fleet.now, activation=gateway)
        fleet.deployment(L40S.name).set_replicas(1)
        fleet.advance(STARTUP)
        for _ in range(10):  # 150 s without a request, over the 60 s idle window
            fleet.advance(15.0)
            report = reconciler.run_once()
        decided = {d.key: d for d in report.decisions}
        assert decided[L40S].active and decided[L40S].desired_replicas == 1, decided[L40S].reason.message
        assert "not seen in the gateway's metrics" in decided[L40S].reason.message
    finally:
        scrape.close()
        gateway.close()
        prom.close()


# --- the gateway reader and the per-VA settings ---

class FakePrometheus:
    """Answers /api/v1/query from a dict of PromQL → vector rows; anything else is a 400. Counts queries."""

    def __init__(self, answers):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        owner = self
        self.queries: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
                owner.queries.append(query)
                if query in answers:
                    rows = [{"metric": labels, "value": [1.0, str(v)]} for labels, v in answers[query]]
                    body, code = {"status": "success", "data": {"resultType": "vector", "result": rows}}, 200
                else:
                    body, code = {"status": "error", "error": "parse error"}, 400
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_one_batched_query_for_all_models_errors_are_not_known_never_idle():
    from kedascaler.sources.gateway import DEFAULT_ACTIVATION_QUERY, PrometheusActivationSource

    override = 'sum(my_queue{model="c"})'
    prom = FakePrometheus({
        DEFAULT_ACTIVATION_QUERY: [({"target_model_name": "org/a"}, 3.0), ({"target_model_name": "other"}, 9.0)],
        override: [({}, 1.0), ({"x": "y"}, 1.0)],
    })
    source = PrometheusActivationSource(prom.url)
    try:
        models = [("llm", "org/a"), ("llm", "org/b"), ("llm", "c"), ("llm", "d")]
        reading = source.read(models, {("llm", "c"): override, ("llm", "d"): "broken("})
        # org/b is absent from the answer, never seen at the gateway: not known, like a failed query
        assert reading.queues == {("llm", "org/a"): 3.0, ("llm", "org/b"): None, ("llm", "c"): 2.0, ("llm", "d"): None}
        assert reading.queries == 3 and len(prom.queries) == 3
        assert any("broken(" in e for e in reading.errors)
        prom.queries.clear()
        many = [("llm", f"org/m-{i}") for i in range(500)]
        assert source.read(many).queries == 1 and len(prom.queries) == 1  # does not grow with the models
    finally:
        source.close()
        prom.close()
    down = PrometheusActivationSource(prom.url, timeout=0.5)
    try:
        assert down.read([("llm", "org/a")]).queues == {("llm", "org/a"): None}
    finally:
        down.close()


def test_scale_to_zero_settings_come_from_the_variant_autoscalings():
    from kedascaler.engine.types import VariantSpec
    from kedascaler.loop.snapshots import ScaleToZeroSetting, scale_to_zero_setting
    from kedascaler.spec.variant import VariantAutoscaling, parse_scale_to_zero

    def variants(**per):
        return [VariantAutoscaling(VariantSpec(VariantKey(NS, k), MODEL, k),
                                   scale_to_zero=parse_scale_to_zero(per.get(k, {})))
                for k in ("a", "b")]

    assert scale_to_zero_setting(variants(), 300.0) == ScaleToZeroSetting(300.0, None)
    assert scale_to_zero_setting(variants(), None) == ScaleToZeroSetting(None, None)
    got = variants(a={"idleWindowSeconds": 60}, b={"idleWindowSeconds": "600", "activationQuery": "q"})
    assert scale_to_zero_setting(got, 300.0) == ScaleToZeroSetting(600.0, "q")
    assert scale_to_zero_setting(variants(a={"idleWindowSeconds": 60}), None) == ScaleToZeroSetting(60.0, None)
    assert scale_to_zero_setting(variants(b={"enabled": False}), 300.0) == ScaleToZeroSetting(None, None)
    unusable = variants(a={"idleWindowSeconds": "soon"})[:1]
    assert scale_to_zero_setting(unusable, 300.0) == ScaleToZeroSetting(300.0, None)


def test_without_anything_to_wake_a_model_every_model_stays_warm(fleet):
    state = build_inventory(documents())
    scrape = DirectScrapeSource(timeout=1.0)
    try:
        reconciler = Reconciler(StaticInventory(state), scrape, DecisionBoard(), fleet, clock=lambda: fleet.now,
                                idle_window=60.0)  # no activation source, no inbox
        for _ in range(3):
            fleet.advance(60.0)
            report = reconciler.run_once()
        assert sum(d.desired_replicas for d in report.decisions) == 1
        assert all(s.idle_window is None for s in report.snapshots)
    finally:
        scrape.close()
