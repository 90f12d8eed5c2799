"""PrometheusSource against the real Prometheus server scraping emulated vLLM pods, and against a broken one.

No timed asserts: waits poll Prometheus until it holds the scrapes a check needs (failing after a minute)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from kedascaler.loop.board import DecisionBoard
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.prometheus import USAGE, PrometheusSource, cycle_queries, window_seconds
from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import PerfParams
from kedascaler.loop.planner import SloPlanner
from tests.support.prometheus import run_prometheus, wait_until

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
    assert result.warnings == ()  # the usage query answered too
    assert result.queries == 4
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
        # The fleet is frozen: nothing finished while Prometheus watched. A rate is 0 (or unknown with a single
        # scrape in the window); a mean over no observation is 0/0, so unknown, never 0.
        usage = sample.usage
        assert usage is not None and usage.window_s == 60.0
        assert usage.completed_rate in (None, 0.0) and usage.output_tokens_rate in (None, 0.0)
        assert usage.itl_ms is None and usage.ttft_ms is None and usage.prefill_ms is None
        assert usage.prompt_tokens_mean is None
        assert usage.mean_running == pytest.approx(state.running)
        # the KV cache size, from vllm:cache_config_info's labels: it bounds the batch in SLO sizing
        assert usage.kv_capacity_tokens == pod.params.num_gpu_blocks * pod.params.block_size
    assert by_pod[fleet3.deployment("model-2-gpu").pods[0].name].queue_length > 0
    old = by_pod["old-vllm-0"]
    assert (old.namespace, old.model_name, old.kv_cache_usage, old.queue_length, old.running) == (
        "legacy", "old-model", 0.42, 7.0, 3.0)
    # An old vLLM without the counters: only what its gauges give.
    assert old.usage is not None and old.usage.mean_running == 3.0
    assert (old.usage.completed_rate, old.usage.itl_ms, old.usage.prefill_ms) == (None, None, None)
    assert old.usage.kv_capacity_tokens is None  # no cache_config_info: unknown, never 0


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
    assert seen[1] == seen[5] == 4 == len(cycle_queries())
    assert [q.signal for q in cycle_queries()] == ["kv_cache_usage", "queue_length", "running", USAGE]


def test_prometheus_going_away_gives_errors_not_exceptions(fleet3, tmp_path):
    with run_prometheus(scrape_targets(fleet3), tmp_path) as prom:
        source = PrometheusSource(prom.url, timeout=2.0)
        assert source.collect([]).ok
        prom.stop()
        result = source.collect([])
        source.close()
    assert not result.ok and result.samples == ()
    assert len(result.errors) == 3 and all("failed" in e for e in result.errors)
    assert len(result.warnings) == 1 and "usage" in result.warnings[0]
    assert result.queries == 4


# --- a fake Prometheus API that misbehaves ---

def _vector(rows: list[tuple[dict[str, str], str]]) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [1700000000.5, v]} for m, v in rows]}}


def _pod(name: str) -> dict[str, str]:
    return {"namespace": "ns", "pod": name, "model_name": "m"}


CLEAN_PODS = ("llama-7d9f8c6b5-p0", "llama-7d9f8c6b5-p1")


def _usage(pod: str, signal: str, value: str) -> tuple[dict[str, str], str]:
    return {**_pod(pod), "signal": signal}, value


class _FakePrometheus(BaseHTTPRequestHandler):
    mode = "ok"
    authorization: list[str] = []
    usage_rows: list[tuple[dict[str, str], str]] = []

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
        if mode.startswith("clean"):  # every pod well; the usage query answers `usage_rows`, or fails
            if "label_replace" in query:
                if mode == "clean-usage-500":
                    return self._send(500, b'{"status":"error","error":"query timed out in expression evaluation"}')
                if mode == "clean-usage-garbage":
                    return self._send(200, b"<html>not json")
                return self._send(200, json.dumps(_vector(type(self).usage_rows)).encode())
            value = "0.5" if "kv_cache_usage" in query else "1" if "waiting" in query else "4"
            rows = [(_pod(p), value) for p in CLEAN_PODS]
        elif "label_replace" in query:
            rows = []  # the usage query: nothing to say about these pods
        elif "kv_cache_usage" in query:
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
    handler = type("Fake", (_FakePrometheus,), {"mode": "ok", "authorization": [], "usage_rows": []})
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
    assert result.samples == () and result.queries == 4
    assert len(result.errors) == 3  # the saturation queries; the usage query's failure is a warning
    assert len(result.warnings) == 1 and "SLO sizing only" in result.warnings[0]


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
    shown = " ".join(result.errors + result.warnings) + repr(source) + caplog.text
    assert token not in shown


def test_connection_refused_is_an_error():
    source = PrometheusSource("http://127.0.0.1:9", timeout=1.0)  # discard port: nothing listens
    result = source.collect([])
    source.close()
    assert len(result.errors) == 3 and result.samples == () and len(result.warnings) == 1


# --- usage (PodUsage for SLO sizing): the fourth query ---

def test_usage_signals_are_joined_per_pod_in_ms_and_per_second(fake_prometheus):
    url, handler = fake_prometheus
    handler.mode = "clean"
    p0, p1 = CLEAN_PODS
    handler.usage_rows = [
        _usage(p0, "completed", "2.5"), _usage(p0, "prompt_tokens", "575"), _usage(p0, "output_tokens", "500"),
        _usage(p0, "itl", "0.0082"), _usage(p0, "ttft", "0.12"), _usage(p0, "prefill", "0.03"),
        _usage(p0, "prompt_tokens_mean", "230"), _usage(p0, "mean_running", "6.5"), _usage(p0, "backlog_delta", "-3"),
        # p1: nothing finished (0/0), a broken histogram, no backlog series
        _usage(p1, "completed", "0"), _usage(p1, "itl", "NaN"), _usage(p1, "ttft", "+Inf"), _usage(p1, "prefill", "-0.5"),
        _usage(p1, "mean_running", "0"),
        ({**_pod(p0), "signal": "something-else"}, "1"), ({"namespace": "ns", "signal": "completed"}, "1"),
        _usage("gone-pod", "completed", "9"),  # no saturation sample: not a pod of this cycle
    ]
    source = PrometheusSource(url, window="30s")
    result = source.collect([])
    source.close()
    assert result.ok, result.errors
    assert result.queries == 4
    by_pod = {s.pod: s for s in result.samples}
    assert set(by_pod) == set(CLEAN_PODS)
    u0 = by_pod[p0].usage
    assert u0 is not None
    assert (u0.window_s, u0.completed_rate, u0.prompt_tokens_rate, u0.output_tokens_rate) == (30.0, 2.5, 575.0, 500.0)
    assert u0.itl_ms == pytest.approx(8.2) and u0.ttft_ms == pytest.approx(120.0)
    assert u0.prefill_ms == pytest.approx(30.0) and u0.prompt_tokens_mean == 230.0
    assert u0.mean_running == 6.5 and u0.backlog_growth_rate == pytest.approx(-0.1)  # -3 requests over 30 s
    u1 = by_pod[p1].usage
    assert u1 is not None and u1.completed_rate == 0.0 and u1.mean_running == 0.0
    assert (u1.itl_ms, u1.ttft_ms, u1.prefill_ms, u1.backlog_growth_rate, u1.output_tokens_rate) == (
        None, None, None, None, None)
    assert len(result.warnings) == 2  # the unknown signal, the series without a pod: usage only
    assert all("usage" in w for w in result.warnings)


def _one_va_inventory() -> StaticInventory:
    return StaticInventory.from_documents([("test", {
        "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
        "metadata": {"name": "llama", "namespace": "ns"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llama"}, "modelID": "m",
                 "minReplicas": 1, "maxReplicas": 8},
    })])


@pytest.mark.parametrize("failure", ["clean-usage-500", "clean-usage-garbage"])
def test_a_failing_usage_query_leaves_usage_unknown_and_decisions_fresh(fake_prometheus, failure):
    url, handler = fake_prometheus
    handler.mode = "clean"
    handler.usage_rows = [_usage(p, "completed", "1.5") for p in CLEAN_PODS]
    source = PrometheusSource(url, timeout=2.0)
    reconciler = Reconciler(_one_va_inventory(), source, DecisionBoard(), planner=SloPlanner())
    try:
        good = reconciler.run_once()
        assert good.collect.ok and all(s.usage is not None for s in good.collect.samples)
        assert sum(len(u) for u in good.usage.values()) == 2
        assert [d.stale for d in good.decisions] == [False]

        handler.mode = failure
        report = reconciler.run_once()
        assert report.collect.ok, report.collect.errors  # not a metrics failure
        assert report.collect.queries == 4
        assert [s.pod for s in report.collect.samples] == list(CLEAN_PODS)
        assert all(s.usage is None for s in report.collect.samples)
        (warning,) = report.collect.warnings
        assert "usage query failed" in warning and "SLO sizing only" in warning
        assert [d.stale for d in report.decisions] == [False]  # the decision path is not held
        assert report.decisions[0].desired_replicas == good.decisions[0].desired_replicas

        handler.mode = "500"  # the contrast: the saturation queries failing holds the decision as stale
        held = reconciler.run_once()
        assert [d.stale for d in held.decisions] == [True]
    finally:
        source.close()


def test_window_seconds_reads_prometheus_durations():
    assert [window_seconds(w) for w in ("1m", "30s", "1m30s", "500ms", "2h")] == [60, 30, 90, 0.5, 7200]
    for bad in ("", "1", "1 m", "m", "0s", "1.5m"):
        with pytest.raises(ValueError):
            window_seconds(bad)


class _FleetDriver:
    """Runs the (virtual-time) fleet at wall-clock pace in a thread, as Prometheus sees time, and records what
    each pod did: (wall time, {pod: (running + waiting, running, stats)}) every ~0.1 s."""

    def __init__(self, fleet: EmulatedFleet) -> None:
        self.fleet = fleet
        self.history: list[tuple[float, dict[str, tuple[int, int, object]]]] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _record(self) -> None:
        row = {}
        for dep in self.fleet.deployments:
            for pod in dep.pods:
                state, stats = pod.read()
                row[pod.name] = (state.running + state.waiting, state.running, stats)
        with self.lock:
            self.history.append((time.time(), row))

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.1):
            now = time.monotonic()
            self.fleet.advance(now - last)
            last = now
            self._record()

    def __enter__(self) -> _FleetDriver:
        self._record()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def window(self, end: float, seconds: float) -> list[tuple[float, dict[str, tuple[int, int, object]]]]:
        with self.lock:
            return [h for h in self.history if end - seconds <= h[0] <= end]


def test_usage_under_load_is_what_the_emulated_pods_did(tmp_path):
    """Two models under Poisson load, run in wall-clock time while the real Prometheus scrapes them every second:
    the usage query's rates and means match the emulator's own counters over the same window."""
    fleet = EmulatedFleet(seed=7)
    fleet.add_deployment("busy-gpu", "busy", startup_delay=0.0, replicas=2, namespace=NAMESPACE)
    fleet.add_deployment("tiny-gpu", "tiny", params=PerfParams(max_num_seqs=4), startup_delay=0.0, replicas=1,
                         namespace=NAMESPACE)
    fleet.set_load("busy", OfferedLoad(rate=40.0))  # ≈ 20 req/s per pod, well within capacity
    fleet.set_load("tiny", OfferedLoad(rate=8.0))  # 4 sequences ≈ 2.7 req/s: the backlog grows
    fleet.start()
    fleet.advance(5.0)
    window = "10s"
    try:
        with _FleetDriver(fleet) as driver, run_prometheus(scrape_targets(fleet), tmp_path) as prom:
            # Wait until every pod has a full window of scrapes of a moving fleet (no timing asserted).
            wait_until(lambda: (rows := prom.query(f"count_over_time({RUNNING_METRIC}[{window}])"))
                       and len(rows) == 3 and all(float(r["value"][1]) >= 9 for r in rows), 90,
                       what="10 s of scrapes of every pod")
            source = PrometheusSource(prom.url, window=window, timeout=10.0)
            try:
                result = source.collect([])
            finally:
                source.close()
            seen = driver.window(time.time(), window_seconds(window))
    finally:
        fleet.close()
    assert result.ok, result.errors
    assert result.warnings == (), result.warnings
    (t0, first), (t1, last) = seen[0], seen[-1]
    span = t1 - t0
    assert span > 5  # the driver kept recording through the window
    by_pod = {s.pod: s for s in result.samples}
    pods = {p.name: p for d in fleet.deployments for p in d.pods}
    assert set(by_pod) == set(pods)
    for name, pod in pods.items():
        usage = by_pod[name].usage
        assert usage is not None and usage.window_s == 10.0
        (b0, r0, s0), (b1, _r1, s1) = first[name], last[name]

        def delta(h0, h1):
            return h1.sum - h0.sum, h1.count - h0.count

        finished = sum(s1.finished.values()) - sum(s0.finished.values())
        assert finished > 10, f"{name}: too few requests finished ({finished}) to compare"
        assert usage.completed_rate == pytest.approx(finished / span, rel=0.25), name
        assert usage.output_tokens_rate == pytest.approx((s1.generation_tokens - s0.generation_tokens) / span,
                                                         rel=0.25), name
        assert usage.prompt_tokens_rate == pytest.approx((s1.prompt_tokens - s0.prompt_tokens) / span, rel=0.35), name
        itl_sum, itl_count = delta(s0.itl, s1.itl)
        assert usage.itl_ms == pytest.approx(itl_sum / itl_count * 1000, rel=0.1), name
        tokens_sum, tokens_count = delta(s0.request_prompt_tokens, s1.request_prompt_tokens)
        assert usage.prompt_tokens_mean == pytest.approx(tokens_sum / tokens_count, rel=0.2), name
        prefill_sum, prefill_count = delta(s0.prefill_time, s1.prefill_time)
        assert usage.prefill_ms == pytest.approx(prefill_sum / prefill_count * 1000, rel=0.35, abs=2.0), name
        running = [row[name][1] for _, row in seen]
        assert usage.mean_running == pytest.approx(sum(running) / len(running), rel=0.3, abs=1.0), name
        assert usage.ttft_ms is not None and usage.ttft_ms >= usage.prefill_ms * 0.9
        if pod.model == "tiny":  # saturated: always 4 running, the queue growing by arrivals − completions
            assert usage.mean_running == pytest.approx(4.0)
            assert usage.backlog_growth_rate == pytest.approx((b1 - b0) / span, rel=0.35), name
            assert usage.backlog_growth_rate > 1.0
            ttft_sum, ttft_count = delta(s0.ttft, s1.ttft)
            assert usage.ttft_ms > usage.prefill_ms * 5  # waited in the queue
        else:
            assert abs(usage.backlog_growth_rate) < 0.2 * usage.completed_rate, name  # steady
            ttft_sum, ttft_count = delta(s0.ttft, s1.ttft)
            assert usage.ttft_ms == pytest.approx(ttft_sum / ttft_count * 1000, rel=0.35, abs=2.0), name


RUNNING_METRIC = "vllm:num_requests_running"
