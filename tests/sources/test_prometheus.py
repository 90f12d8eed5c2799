"""PrometheusSource against the real Prometheus server scraping emulated vLLM pods.

No timed asserts: waits poll Prometheus until it holds the scrapes a check needs (failing after a minute)."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import PerfParams
from kedascaler.sources.prometheus import USAGE, PrometheusSource, cycle_queries, usage_query, window_seconds
from kedascaler.sources.promql import PromQLClient, Series
from tests.support.prometheus import PrometheusHandle, run_prometheus, wait_until

NAMESPACE = "team-a"
RUNNING_METRIC = "vllm:num_requests_running"


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

def test_window_seconds_reads_prometheus_durations():
    assert [window_seconds(w) for w in ("1m", "30s", "1m30s", "500ms", "2h")] == [60, 30, 90, 0.5, 7200]
    for bad in ("", "1", "1 m", "m", "0s", "1.5m"):
        with pytest.raises(ValueError):
            window_seconds(bad)


Snapshot = dict[str, tuple[int, int, Any]]  # pod -> (running + waiting, running, EngineStats)


class _FleetDriver:
    """Runs the (virtual-time) fleet at wall-clock pace in a thread, as Prometheus sees time, and records what
    each pod exposes: (wall time, {pod: (running + waiting, running, stats)}) after each advance, every ~0.1 s."""

    def __init__(self, fleet: EmulatedFleet) -> None:
        self.fleet = fleet
        self.history: list[tuple[float, Snapshot]] = []
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

    def exposed_at(self, t: float) -> Snapshot:
        """What the pods exposed at wall time `t`: the last snapshot taken at or before it (the fleet does not
        move between an advance's snapshot and the next advance)."""
        with self.lock:
            i = bisect.bisect_right([h[0] for h in self.history], t) - 1
            assert 0 <= i < len(self.history) - 1, "the driver did not record around the scrape"
            return self.history[i][1]


def _answers(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Series]]:
    """promql -> its answer, for every query a PromQLClient runs from now on (the sources query at "now"; an
    instant vector stamps each of its series with the evaluation time)."""
    answers: dict[str, list[Series]] = {}
    real = PromQLClient.query

    def query(client: PromQLClient, promql: str) -> list[Series]:
        answers[promql] = real(client, promql)
        return answers[promql]

    monkeypatch.setattr(PromQLClient, "query", query)
    return answers


def _scrapes_read(prom: PrometheusHandle, promql: str, answer: list[Series], window: str) -> dict[str, list[float]]:
    """Every pod's scrape times that the instant query `promql` read over its `[window]` selectors: the raw
    samples of `metric[window]` at its evaluation time, less the last one where the query was answered while
    that scrape was in flight (stamped with its start, stored at its end, milliseconds later): asked again at
    the same time, now that the scrape is stored, Prometheus answers that pod differently."""
    stamps = {ts for _, ts, _ in answer}
    assert len(stamps) == 1, f"not one evaluation time: {stamps}"
    at = stamps.pop()
    scrapes = {r["metric"]["pod"]: [float(ts) for ts, _ in r["values"]]
               for r in prom.query(f"{RUNNING_METRIC}[{window}]", at=at)}

    def by_pod(rows: list[tuple[dict[str, str], float]]) -> dict[str, set[tuple[tuple[str, str], ...]]]:
        out: dict[str, set[tuple[tuple[str, str], ...]]] = {}
        for labels, value in rows:  # the value as text: NaN equals NaN
            out.setdefault(labels.get("pod", ""), set()).add(tuple(sorted({**labels, "v": repr(value)}.items())))
        return out

    before = by_pod([(labels, value) for labels, _, value in answer])
    again = by_pod([(r["metric"], float(r["value"][1])) for r in prom.query(promql, at=at)])
    return {pod: times if before.get(pod) == again.get(pod) else times[:-1] for pod, times in scrapes.items()}


def test_usage_under_load_is_what_the_emulated_pods_did(tmp_path, monkeypatch):
    """Two models under Poisson load, run in wall-clock time while the real Prometheus scrapes them every second:
    the usage query's rates and means match the emulator's own counters over the same window.

    The same window as Prometheus's, to the scrape: the usage query's evaluation time T, the scrapes its
    `[10s]` selectors read (the raw samples of `metric[10s]` at T), and the driver's snapshots of what the pods
    exposed at those scrapes. A window cut at the wall clock's "now" instead is off by up to a scrape at each
    end, and the 2.7 req/s pod has ~25 requests in 10 s: two requests more or less move its means by 20 %.
    """
    fleet = EmulatedFleet(seed=7)
    fleet.add_deployment("busy-gpu", "busy", startup_delay=0.0, replicas=2, namespace=NAMESPACE)
    fleet.add_deployment("tiny-gpu", "tiny", params=PerfParams(max_num_seqs=4), startup_delay=0.0, replicas=1,
                         namespace=NAMESPACE)
    fleet.set_load("busy", OfferedLoad(rate=40.0))  # ≈ 20 req/s per pod, well within capacity
    fleet.set_load("tiny", OfferedLoad(rate=8.0))  # 4 sequences ≈ 2.7 req/s: the backlog grows
    fleet.start()
    fleet.advance(5.0)
    window = "10s"
    answers = _answers(monkeypatch)
    try:
        with _FleetDriver(fleet) as driver, run_prometheus(scrape_targets(fleet), tmp_path) as prom:
            # Wait until every pod has been scraped for more than a window (12 scrapes in 20 s), so the usage
            # query's window opens within a scrape of its first one: rate() extrapolates all the way to the edges.
            wait_until(lambda: (rows := prom.query(f"count_over_time({RUNNING_METRIC}[20s])"))
                       and len(rows) == 3 and all(float(r["value"][1]) >= 12 for r in rows), 90,
                       what="11 s of scrapes of every pod")
            source = PrometheusSource(prom.url, window=window, timeout=10.0)
            try:
                result = source.collect([])
            finally:
                source.close()
            query = usage_query(window)
            scrapes = _scrapes_read(prom, query, answers[query], window)
            at = answers[query][0][1]
            wait_until(lambda: driver.history[-1][0] > at, 10, what="a snapshot after the evaluation time")
            exposed = {pod: [driver.exposed_at(t)[pod] for t in times] for pod, times in scrapes.items()}
    finally:
        fleet.close()
    assert result.ok, result.errors
    assert result.warnings == (), result.warnings
    by_pod = {s.pod: s for s in result.samples}
    pods = {p.name: p for d in fleet.deployments for p in d.pods}
    assert set(by_pod) == set(pods) == set(scrapes)
    for name, pod in pods.items():
        usage = by_pod[name].usage
        assert usage is not None and usage.window_s == 10.0
        # rate() extrapolates the first-to-last scrape change to the window's edges (the scrapes are ~1 s apart,
        # so all the way): a rate is Δ ÷ (last − first scrape). The means (Δ_sum ÷ Δ_count) are exact.
        span = scrapes[name][-1] - scrapes[name][0]
        assert span > 5, scrapes[name]  # Prometheus scraped through the window
        (b0, _r0, s0), (b1, _r1, s1) = exposed[name][0], exposed[name][-1]

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
        running = [r for _b, r, _s in exposed[name]]  # avg_over_time: the mean of the scraped values
        assert usage.mean_running == pytest.approx(sum(running) / len(running), rel=0.3, abs=1.0), name
        assert usage.ttft_ms is not None and usage.ttft_ms >= usage.prefill_ms * 0.9
        if pod.model == "tiny":  # saturated: always 4 running, the queue growing by arrivals − completions
            assert usage.mean_running == pytest.approx(4.0)
            assert usage.backlog_growth_rate == pytest.approx((b1 - b0) / span, rel=0.35), name
            assert usage.backlog_growth_rate > 1.0
            assert usage.ttft_ms > usage.prefill_ms * 5  # waited in the queue
        else:
            assert abs(usage.backlog_growth_rate) < 0.2 * usage.completed_rate, name  # steady
            ttft_sum, ttft_count = delta(s0.ttft, s1.ttft)
            assert usage.ttft_ms == pytest.approx(ttft_sum / ttft_count * 1000, rel=0.35, abs=2.0), name
