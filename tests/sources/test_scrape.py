"""Direct scraping against emulated vLLM pods over real HTTP, including pods that die or hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import PerfParams
from kedascaler.sources.base import ScrapeTarget
from kedascaler.sources.scrape import DirectScrapeSource, ScrapeError, parse_vllm_metrics

H100 = VariantKey("team-a", "llama-h100")
A100 = VariantKey("team-a", "llama-a100")


@pytest.fixture
def fleet() -> Iterator[EmulatedFleet]:
    """Two variants of one model, three ready pods, all serving."""
    fleet = EmulatedFleet(seed=11)
    fleet.add_deployment("llama-h100", "llama", "H100", startup_delay=0.0, replicas=2)
    fleet.add_deployment("llama-a100", "llama", params=PerfParams(max_num_seqs=4, num_gpu_blocks=200),
                         startup_delay=0.0, replicas=1)
    fleet.set_load("llama", OfferedLoad(rate=40.0))
    fleet.start()
    fleet.advance(10.0)
    yield fleet
    fleet.close()


@pytest.fixture
def source() -> Iterator[DirectScrapeSource]:
    src = DirectScrapeSource(timeout=0.5)
    yield src
    src.close()


def targets_of(fleet: EmulatedFleet) -> list[ScrapeTarget]:
    out: list[ScrapeTarget] = []
    for key, target in ((H100, "llama-h100"), (A100, "llama-a100")):
        status = fleet.status(VariantSpec(key=key, model_id="llama", target_name=target))
        assert status is not None
        out += status.pods
    return out


def test_samples_match_the_pods_state(fleet, source):
    targets = targets_of(fleet)
    before = time.time()
    result = source.collect(targets)
    assert result.ok and result.failed_pods == ()
    assert result.queries == 3
    pods = {p.name: p for d in fleet.deployments for p in d.pods}
    assert {s.pod for s in result.samples} == set(pods)
    for sample in result.samples:
        state = pods[sample.pod].state()
        assert sample.kv_cache_usage == pytest.approx(state.kv_cache_usage)
        assert sample.queue_length == state.waiting
        assert sample.running == state.running
        assert sample.namespace == "team-a" and sample.model_name == "llama"
        assert sample.variant == (A100 if sample.pod.startswith("llama-a100") else H100)
        assert before <= sample.timestamp <= time.time()
    assert all(s.running > 0 and s.kv_cache_usage > 0 for s in result.samples)  # the fixture really loaded them


def test_a_killed_pod_is_reported_and_the_others_still_returned(fleet, source):
    targets = targets_of(fleet)
    victim = fleet.deployment("llama-h100").pods[0]
    victim.close()
    result = source.collect(targets)
    assert result.failed_pods == (f"team-a/{victim.name}",)
    assert len(result.errors) == 1 and victim.name in result.errors[0]
    assert len(result.samples) == 2 and victim.name not in {s.pod for s in result.samples}


def test_a_hanging_pod_times_out_without_holding_up_the_others(fleet, source):
    hung = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    try:
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/metrics"
        targets = targets_of(fleet) + [ScrapeTarget(H100, "llama-h100-hung1", url)]
        result = source.collect(targets)
    finally:
        hung.close()
    assert result.failed_pods == ("team-a/llama-h100-hung1",)
    assert "timed out" in result.errors[0] or "no answer" in result.errors[0]
    assert len(result.samples) == 3


class _Stub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        status, body = self.server.answers[self.path]  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_bad_answers_fail_only_their_pod(source):
    answers = {
        "/ok": (200, 'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\nvllm:num_requests_waiting{model_name="m"} 2\n'),
        "/500": (500, "oops"),
        "/garbage": (200, "\x00\x01 this is { not an exposition"),
        "/nan": (200, 'vllm:kv_cache_usage_perc{model_name="m"} NaN\nvllm:num_requests_waiting 1\n'),
        "/negative": (200, "vllm:kv_cache_usage_perc 0.1\nvllm:num_requests_waiting -3\n"),
        "/other": (200, "process_cpu_seconds_total 12\n"),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.answers = answers  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        result = source.collect([ScrapeTarget(H100, path.strip("/"), base + path) for path in answers])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert [s.pod for s in result.samples] == ["ok"]
    (ok,) = result.samples
    assert (ok.kv_cache_usage, ok.queue_length, ok.running, ok.model_name) == (0.5, 2.0, 0.0, "m")
    assert sorted(result.failed_pods) == sorted(f"team-a/{p}" for p in ("500", "garbage", "nan", "negative", "other"))
    assert len(result.errors) == 5


def test_parse_sums_requests_over_engines_and_takes_the_fullest_kv_cache():
    text = "\n".join([
        "# TYPE vllm:kv_cache_usage_perc gauge",
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25',
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75',
        'vllm:num_requests_waiting{engine="0",model_name="m"} 3',
        'vllm:num_requests_waiting{engine="1",model_name="m"} 4',
        'vllm:num_requests_running{engine="0",model_name="m"} 10',
        'vllm:num_requests_running{engine="1",model_name="m"} 11',
        'vllm:num_requests_waiting_by_reason{reason="capacity"} 99',
        'vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 5',
    ]) + "\n"
    reading = parse_vllm_metrics(text)
    assert (reading.kv_cache_usage, reading.queue_length, reading.running, reading.model_name) == (0.75, 7, 21, "m")
    assert reading.kv_capacity_tokens is None  # no cache_config_info
    info = "".join(f'vllm:cache_config_info{{block_size="16",engine="{e}",num_gpu_blocks="{b}"}} 1.0\n'
                   for e, b in ((0, 1000), (1, 500)))
    assert parse_vllm_metrics("# TYPE vllm:cache_config_info gauge\n" + info + text).kv_capacity_tokens == 24_000
    broken = info.replace('num_gpu_blocks="500"', 'num_gpu_blocks="None"')  # vLLM before profiling the cache
    assert parse_vllm_metrics(broken + text).kv_capacity_tokens is None
    with pytest.raises(ScrapeError):
        parse_vllm_metrics("vllm:num_requests_waiting 1\n")


def test_scraping_while_the_fleet_advances_in_another_thread(fleet, source):
    targets = targets_of(fleet)
    stop = threading.Event()

    def drive() -> None:
        while not stop.is_set():
            fleet.advance(0.2)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        results = [source.collect(targets) for _ in range(20)]
    finally:
        stop.set()
        driver.join()
    assert all(r.ok and len(r.samples) == 3 for r in results)
    assert all(0.0 <= s.kv_cache_usage <= 1.0 for r in results for s in r.samples)


class _Hostile(BaseHTTPRequestHandler):
    """A pod that answers too much, lies about its length, or redirects elsewhere."""

    protocol_version = "HTTP/1.1"
    GOOD = 'vllm:kv_cache_usage_perc{model_name="m"} 0.5\nvllm:num_requests_waiting{model_name="m"} 2\n'

    def do_GET(self) -> None:  # noqa: N802
        hits = self.server.hits  # type: ignore[attr-defined]
        hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/elsewhere":
            body = self.GOOD.encode()
        elif self.path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"# padding\n" * 1000)
            return
        else:  # /huge-chunked: no Content-Length, megabytes of comments until the client stops reading
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"# " + b"x" * 65_000 + b"\n"
            try:
                for _ in range(2_000):  # 130 MB if nobody stops reading
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_body_over_the_cap_fails_its_pod_and_a_redirect_is_not_followed():
    from kedascaler.sources.scrape import MAX_BODY_BYTES

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    source = DirectScrapeSource(timeout=5.0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        paths = ("huge-declared", "huge-chunked", "redirect", "elsewhere")
        result = source.collect([ScrapeTarget(H100, path, f"{base}/{path}") for path in paths])
    finally:
        source.close()
        server.shutdown()
        server.server_close()
    assert [s.pod for s in result.samples] == ["elsewhere"]
    errors = dict(zip(result.failed_pods, result.errors, strict=True))
    limit = f"{MAX_BODY_BYTES // (1 << 20)} MiB"
    assert limit in errors["team-a/huge-declared"] and limit in errors["team-a/huge-chunked"], errors
    assert "HTTP 302" in errors["team-a/redirect"] and "not followed" in errors["team-a/redirect"]
    assert server.hits.count("/elsewhere") == 1  # type: ignore[attr-defined]  # only its own target
