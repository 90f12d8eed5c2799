"""PrometheusSource against a fake Prometheus: bad values, broken answers, the bearer token, the usage query."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.planner import PlannerSettings
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.prometheus import PrometheusSource

EVALUATED = 1700000000.5  # the fake Prometheus's evaluation time: its own clock, not ours


def _vector(rows: list[tuple[dict[str, str], str]], lag: dict[str, float] | None = None) -> dict:
    """An instant vector; `lag`: pods whose series is that many seconds older than the evaluation time."""
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": m, "value": [EVALUATED - (lag or {}).get(m.get("pod", ""), 0.0), v]} for m, v in rows]}}


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
            if mode == "clean-lagging":  # one pod's series 200 s behind the evaluation (in its queue query)
                lag = {CLEAN_PODS[1]: 200.0} if "waiting" in query else {}
                return self._send(200, json.dumps(_vector(rows, lag)).encode())
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
    source = PrometheusSource(url, clock=lambda: 5000.0)
    result = source.collect([])
    source.close()
    assert [s.pod for s in result.samples] == ["c"]
    (c,) = result.samples
    assert (c.namespace, c.model_name, c.kv_cache_usage, c.queue_length, c.running, c.timestamp) == (
        "ns", "m", 0.25, 2.0, 3.0, 5000.0)  # stamped on arrival, on our clock: never Prometheus's time
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
        _usage(p1, "completed", "0"), _usage(p1, "itl", "NaN"), _usage(p1, "ttft", "+Inf"),
        _usage(p1, "prefill", "-0.5"), _usage(p1, "mean_running", "0"),
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
    reconciler = Reconciler(_one_va_inventory(), source, DecisionBoard(), planner=PlannerSettings())
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


def test_a_series_lagging_the_evaluation_time_is_as_old_on_our_clock(fake_prometheus):
    """Ages are Prometheus's differences, carried onto our clock: a series 200 s behind the answer's evaluation
    time is stamped 200 s before the answer arrived, whatever Prometheus's clock reads."""
    url, handler = fake_prometheus
    handler.mode = "clean-lagging"
    source = PrometheusSource(url, clock=lambda: 5000.0)
    result = source.collect([])
    source.close()
    stamps = {s.pod: s.timestamp for s in result.samples}
    assert stamps == {CLEAN_PODS[0]: 5000.0, CLEAN_PODS[1]: 4800.0}
