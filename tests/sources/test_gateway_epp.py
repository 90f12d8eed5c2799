"""Both generations of the llm-d router's EPP metrics: `llm_d_epp_flow_control_queue_size` (router v0.10+) and
`inference_extension_flow_control_queue_size` (before), read from an emulated router's /metrics and through a
real Prometheus; the new queue wins where a router exports both; the other v0.10 signals are in the reading."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import generate_latest

from kedascaler.sim.fleet import EMULATED_POOL, EmulatedFleet
from kedascaler.sources.gateway import (
    DEFAULT_ACTIVATION_QUERY,
    EPP_QUEUE_METRIC,
    LEGACY_QUEUE_METRIC,
    GatewayMetricsSource,
    PrometheusActivationSource,
)
from tests.support.prometheus import run_prometheus, wait_until

NEW, OLD = ("llm", "meta/llama-3.1-8b"), ("llm", "mistral/7b")


def router(generation: str, model: str, queued: int, *, running_model: str | None = None) -> EmulatedFleet:
    """An emulated router with `queued` requests for `model` at zero replicas (and a running model, optionally)."""
    fleet = EmulatedFleet(seed=1, gateway_generation=generation)
    fleet.add_deployment(model.replace("/", "-").replace(".", "-"), model, "H100", replicas=0, namespace="llm")
    if running_model is not None:
        fleet.add_deployment("running", running_model, "H100", replicas=1, startup_delay=0.0, namespace="llm")
        fleet.advance(0.1)
        for _ in range(6):
            fleet.submit(running_model, 400, 300)
        fleet.advance(0.2)
    for _ in range(queued):
        fleet.submit(model, 100, 50)
    fleet.start()
    return fleet


@pytest.fixture
def routers() -> Iterator[list[EmulatedFleet]]:
    made: list[EmulatedFleet] = []
    yield made
    for fleet in made:
        fleet.close()


def test_an_llm_d_v010_router_is_read_from_its_metrics_endpoint(routers):
    fleet = router("llm-d", NEW[1], 3, running_model="org/busy")
    routers.append(fleet)
    exposition = generate_latest(fleet.gateway_registry).decode()
    assert LEGACY_QUEUE_METRIC not in exposition
    assert (f'{EPP_QUEUE_METRIC}{{fairness_id="default",inference_pool="{EMULATED_POOL}",model_name="{NEW[1]}",'
            f'priority="0",target_model_name="{NEW[1]}"}} 3.0') in exposition
    busy = ("llm", "org/busy")
    source = GatewayMetricsSource(fleet.gateway_url)
    try:
        reading = source.read([NEW, busy, ("llm", "idle/model")])
    finally:
        source.close()
    assert reading.errors == ()
    # busy: the router knows it (requests running), nothing queued; idle/model: never seen, so not known
    assert reading.queues == {NEW: 3.0, busy: 0.0, ("llm", "idle/model"): None}
    assert reading.generation[NEW] == EPP_QUEUE_METRIC
    assert reading.signals[busy].requests_running == 6.0 and reading.signals[busy].inflight_tokens > 0
    assert reading.signals[NEW].inflight_tokens == 3 * 150.0  # queued at the router: prompt plus output
    assert {stage for _, stage in reading.pool_saturation} == {"prefill", "decode", "effective"}
    assert 0 < reading.pool_saturation[(EMULATED_POOL, "decode")] <= 1


def test_an_older_router_is_still_read(routers):
    fleet = router("inference-extension", OLD[1], 2)
    routers.append(fleet)
    source = GatewayMetricsSource(fleet.gateway_url)
    try:
        reading = source.read([OLD])
    finally:
        source.close()
    assert reading.queues == {OLD: 2.0} and reading.generation[OLD] == LEGACY_QUEUE_METRIC
    assert reading.signals == {} and reading.pool_saturation == {}


class _Exposition(BaseHTTPRequestHandler):
    text = ""

    def do_GET(self) -> None:  # noqa: N802
        data = self.text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_a_router_exporting_both_generations_is_read_by_the_new_one():
    _Exposition.text = (f'{LEGACY_QUEUE_METRIC}{{target_model_name="a"}} 5\n'
                        f'{LEGACY_QUEUE_METRIC}{{target_model_name="b"}} 4\n'
                        f'{EPP_QUEUE_METRIC}{{fairness_id="x",priority="0",inference_pool="p",model_name="a",'
                        f'target_model_name="a"}} 1\n'
                        f'{EPP_QUEUE_METRIC}{{fairness_id="y",priority="1",inference_pool="p",model_name="a2",'
                        f'target_model_name="a"}} 1\n')
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exposition)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = GatewayMetricsSource(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    try:
        reading = source.read([("ns", "a"), ("ns", "b")])
    finally:
        source.close()
        server.shutdown()
        server.server_close()
    assert reading.queues == {("ns", "a"): 2.0, ("ns", "b"): 4.0}  # a: the new queue summed over fairness ids
    assert reading.generation == {("ns", "a"): EPP_QUEUE_METRIC, ("ns", "b"): LEGACY_QUEUE_METRIC}


def test_prometheus_reads_both_generations_in_one_query(routers, tmp_path):
    """A cluster mid-migration: one router on v0.10, one older; the default query reads both models at once."""
    new, old = router("llm-d", NEW[1], 4, running_model="org/busy"), router("inference-extension", OLD[1], 2)
    routers += [new, old]
    with run_prometheus([(new.gateway_url, {"job": "epp-new"}), (old.gateway_url, {"job": "epp-old"})],
                        tmp_path) as prom:
        source = PrometheusActivationSource(prom.url)
        try:
            reading = wait_until(lambda: (r := source.read([NEW, OLD, ("llm", "org/busy")])).queues.get(NEW)
                                 and r.queues.get(OLD) and r, what="both routers' queues in Prometheus")
        finally:
            source.close()
    assert source.query == DEFAULT_ACTIVATION_QUERY and reading.queries == 1 and reading.errors == ()
    assert reading.queues == {NEW: 4.0, OLD: 2.0, ("llm", "org/busy"): 0.0}
    assert reading.generation[NEW] == EPP_QUEUE_METRIC and reading.generation[OLD] == LEGACY_QUEUE_METRIC
    assert reading.signals[("llm", "org/busy")].requests_running == 6.0
    assert set(reading.pool_saturation) == {(EMULATED_POOL, s) for s in ("prefill", "decode", "effective")}
