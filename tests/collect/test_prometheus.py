"""PrometheusSource against the real Prometheus server scraping emulated vLLM pods, and against a broken one."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from kedascaler.collect.prometheus import PrometheusSource
from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.sim.emulator import PerfParams
from kedascaler.sim.fleet import EmulatedFleet, OfferedLoad
from tests.support.prometheus import run_prometheus

NAMESPACE = "team-a"


def loaded_fleet(models: int) -> EmulatedFleet:
    """`models` models with one or two pods each, under different loads; the last one has a queue."""
    fleet = EmulatedFleet(seed=21)
    for i in range(models):
        model = f"model-{i}"
        small = i == models - 1
        fleet.add_deployment(f"{model}-gpu", model, params=PerfParams(max_num_seqs=4) if small else PerfParams(),
                             startup_delay=0.0, replicas=1 if small else 2, namespace=NAMESPACE)
        fleet.set_load(model, OfferedLoad(rate=10.0 + 5 * i))
    fleet.start()
    fleet.advance(5.0)
    return fleet  # frozen from here on: every scrape sees the same values


def scrape_targets(fleet: EmulatedFleet) -> list[tuple[str, dict[str, str]]]:
    out = []
    for dep in fleet.deployments:
        spec = VariantSpec(key=VariantKey(NAMESPACE, dep.name), model_id=dep.model, target_name=dep.name)
        status = fleet.status(spec)
        assert status is not None
        out += [(t.url, {"namespace": NAMESPACE, "pod": t.pod}) for t in status.pods]
    return out


@pytest.fixture
def fleet3() -> Iterator[EmulatedFleet]:
    fleet = loaded_fleet(3)
    yield fleet
    fleet.close()


class _V0Pod(BaseHTTPRequestHandler):
    """An old vLLM (v0 metric names) for the fallback query."""

    body = (b'vllm:gpu_cache_usage_perc{model_name="old-model"} 0.42\n'
            b'vllm:num_requests_waiting{model_name="old-model"} 7\n'
            b'vllm:num_requests_running{model_name="old-model"} 3\n')

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def v0_pod() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _V0Pod)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()
    thread.join()


def test_samples_are_what_the_pods_expose(fleet3, v0_pod, tmp_path):
    targets = scrape_targets(fleet3) + [(v0_pod, {"namespace": "legacy", "pod": "old-vllm-0"})]
    with run_prometheus(targets, tmp_path) as prom:
        source = PrometheusSource(prom.url)
        try:
            result = source.collect([])
        finally:
            source.close()
    assert result.ok, result.errors
    assert result.queries == 3
    pods = {p.name: p for d in fleet3.deployments for p in d.pods}
    by_pod = {s.pod: s for s in result.samples}
    assert set(by_pod) == set(pods) | {"old-vllm-0"}
    for name, pod in pods.items():
        sample, state = by_pod[name], pod.state()
        assert (sample.namespace, sample.model_name) == (NAMESPACE, pod.model)
        assert sample.kv_cache_usage == pytest.approx(state.kv_cache_usage)
        assert sample.queue_length == state.waiting
        assert sample.running == state.running
        assert sample.variant is None  # matched by pod name later
        assert abs(sample.timestamp - time.time()) < 3600
    assert by_pod[fleet3.deployment("model-2-gpu").pods[0].name].queue_length > 0
    old = by_pod["old-vllm-0"]
    assert (old.namespace, old.model_name, old.kv_cache_usage, old.queue_length, old.running) == (
        "legacy", "old-model", 0.42, 7.0, 3.0)


def test_queries_per_cycle_do_not_grow_with_the_number_of_models(tmp_path):
    seen = {}
    for models in (1, 5):
        fleet = loaded_fleet(models)
        try:
            with run_prometheus(scrape_targets(fleet), tmp_path) as prom:
                source = PrometheusSource(prom.url)
                result = source.collect([])
                source.close()
        finally:
            fleet.close()
        assert result.ok, result.errors
        assert {s.model_name for s in result.samples} == {f"model-{i}" for i in range(models)}
        seen[models] = result.queries
    assert seen[1] == seen[5] == 3


def test_prometheus_going_away_gives_errors_not_exceptions(fleet3, tmp_path):
    with run_prometheus(scrape_targets(fleet3), tmp_path) as prom:
        source = PrometheusSource(prom.url, timeout=2.0)
        assert source.collect([]).ok
        prom.stop()
        result = source.collect([])
        source.close()
    assert not result.ok and result.samples == ()
    assert len(result.errors) == 3 and all("failed" in e for e in result.errors)
    assert result.queries == 3


# --- a fake Prometheus API that misbehaves ---

def _vector(rows: list[tuple[dict[str, str], str]]) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [1700000000.5, v]} for m, v in rows]}}


def _pod(name: str) -> dict[str, str]:
    return {"namespace": "ns", "pod": name, "model_name": "m"}


class _FakePrometheus(BaseHTTPRequestHandler):
    mode = "ok"
    authorization: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).authorization.append(self.headers.get("Authorization", ""))
        query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
        mode = type(self).mode
        if mode == "500":
            return self._send(500, b'{"status":"error","error":"boom"}')
        if mode == "garbage":
            return self._send(200, b"<html>not json")
        if mode == "no-data":
            return self._send(200, b'{"status":"success"}')
        if mode == "hang":
            self.server.release.wait(timeout=5)  # type: ignore[attr-defined]  # set at teardown
            return
        if "kv_cache_usage" in query:
            rows = [(_pod("a"), "NaN"), (_pod("b"), "0.5"), (_pod("c"), "0.25"), (_pod("d"), "+Inf")]
            rows.append(({"namespace": "ns", "model_name": "m"}, "0.9"))  # no pod label
        elif "waiting" in query:
            rows = [(_pod("a"), "1"), (_pod("b"), "-1"), (_pod("c"), "2"), (_pod("d"), "0")]
        else:
            rows = [(_pod("a"), "1"), (_pod("b"), "1"), (_pod("c"), "3"), (_pod("d"), "1")]
        self._send(200, json.dumps(_vector(rows)).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[str, type[_FakePrometheus]]]:
    handler = type("Fake", (_FakePrometheus,), {"mode": "ok", "authorization": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def test_nan_infinite_negative_and_unlabelled_values_are_dropped_for_their_pod_only(fake_prometheus):
    url, _ = fake_prometheus
    source = PrometheusSource(url)
    result = source.collect([])
    source.close()
    assert [s.pod for s in result.samples] == ["c"]
    (c,) = result.samples
    assert (c.namespace, c.model_name, c.kv_cache_usage, c.queue_length, c.running, c.timestamp) == (
        "ns", "m", 0.25, 2.0, 3.0, 1700000000.5)
    assert sorted(result.failed_pods) == ["ns/a", "ns/b", "ns/d"]
    assert any("without a pod label" in e for e in result.errors)
    assert len(result.errors) == 4


@pytest.mark.parametrize("mode", ["500", "garbage", "no-data", "hang"])
def test_a_broken_prometheus_gives_errors_not_exceptions(fake_prometheus, mode):
    url, handler = fake_prometheus
    handler.mode = mode
    source = PrometheusSource(url, timeout=0.5)
    result = source.collect([])
    source.close()
    assert result.samples == () and result.queries == 3
    assert len(result.errors) == 3


def test_the_bearer_token_is_sent_and_never_shown(fake_prometheus, caplog):
    url, handler = fake_prometheus
    token = "s3cr3t-t0ken-value"
    caplog.set_level(logging.DEBUG)
    source = PrometheusSource(url, bearer_token=token, timeout=0.5)
    source.collect([])
    handler.mode = "500"
    result = source.collect([])
    source.close()
    assert handler.authorization and all(a == f"Bearer {token}" for a in handler.authorization)
    shown = " ".join(result.errors) + repr(source) + caplog.text
    assert token not in shown


def test_connection_refused_is_an_error():
    source = PrometheusSource("http://127.0.0.1:9", timeout=1.0)  # discard port: nothing listens
    result = source.collect([])
    source.close()
    assert len(result.errors) == 3 and result.samples == ()
