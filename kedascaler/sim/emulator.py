"""A vLLM pod emulated: one numerical engine served over HTTP with vLLM's own metric names.

`EmulatedPod` wraps one `VLLMEngine` (`kedascaler.sim.vllm_engine`) with its own `CollectorRegistry` and a
loopback HTTP server (`kedascaler.kits.httpserver`), so scrapers and Prometheus see what they would see on a
real vLLM pod. The engine's model of time and performance lives in `vllm_engine`, `vllm_stats` and `perf`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from kedascaler.kits.httpserver import HttpServerThread, OwnedServer
from kedascaler.sim.perf import PerfParams, perf_params_for
from kedascaler.sim.vllm_engine import FinishedRequest, Request, VLLMEngine
from kedascaler.sim.vllm_stats import BucketHistogram, EngineState, EngineStats


class _VLLMCollector:
    """Exposes one engine's state under vLLM's names (labels model_name and engine), read under the pod's lock."""

    def __init__(self, pod: EmulatedPod) -> None:
        self._pod = pod

    def collect(self) -> Iterator[Metric]:
        state, stats = self._pod.read()
        p = self._pod.params
        names, values = ["model_name", "engine"], [self._pod.model, "0"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=names)
            g.add_metric(values, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=names)  # exposed as name + "_total"
            c.add_metric(values, value)
            return c

        def histogram(name: str, doc: str, h: BucketHistogram) -> HistogramMetricFamily:
            m = HistogramMetricFamily(name, doc, labels=names)
            m.add_metric(values, h.cumulative(), h.sum)
            return m

        yield gauge("vllm:num_requests_running", "Number of requests in model execution batches.", state.running)
        yield gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", state.waiting)
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", state.kv_cache_usage)
        yield gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage (v0 name).", state.kv_cache_usage)
        yield counter("vllm:num_preemptions", "Cumulative number of preemptions.", stats.preemptions)
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", stats.prompt_tokens)
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", stats.generation_tokens)
        success = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                                      labels=names + ["finished_reason"])
        for reason, n in stats.finished.items():
            success.add_metric(values + [reason], n)
        yield success
        yield histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                        stats.ttft)
        yield histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                        stats.itl)
        yield histogram("vllm:time_per_output_token_seconds",
                        "Histogram of time per output token in seconds (deprecated name of ITL).", stats.itl)
        yield histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                        stats.e2e)
        yield histogram("vllm:request_queue_time_seconds",
                        "Histogram of time spent in WAITING phase for request.", stats.queue_time)
        yield histogram("vllm:request_prefill_time_seconds",
                        "Histogram of time spent in PREFILL phase for request.", stats.prefill_time)
        yield histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                        stats.request_prompt_tokens)
        yield histogram("vllm:request_generation_tokens", "Number of generation tokens processed.",
                        stats.request_generation_tokens)
        info = GaugeMetricFamily("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                                 labels=["block_size", "cache_dtype", "enable_prefix_caching",
                                         "gpu_memory_utilization", "num_gpu_blocks", "engine"])
        info.add_metric([str(p.block_size), "auto", "False", "0.9", str(p.num_gpu_blocks), "0"], 1.0)
        yield info


class MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics (the exposition of the owner, a `CollectorRegistry`) and /health, like vLLM's API server."""

    server: OwnedServer[CollectorRegistry]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, ctype = generate_latest(self.server.owner), CONTENT_TYPE_LATEST
        elif path == "/health":
            body, ctype = b"", "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # scrapes every second would flood the test output


class EmulatedPod:
    """One vLLM pod: an engine, its own registry, and (once started) an HTTP server on a loopback port."""

    def __init__(self, name: str, model: str, params: PerfParams | None = None, *, start_time: float = 0.0,
                 ready_at: float | None = None, host: str = "127.0.0.1") -> None:
        self.name = name
        self.model = model
        self.params = params or PerfParams()
        self.ready_at = start_time if ready_at is None else ready_at
        self.engine = VLLMEngine(self.params, start_time)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_VLLMCollector(self))
        self._lock = threading.Lock()
        self._http = HttpServerThread(MetricsHandler, host=host, name=f"pod-{name}", what=f"pod {name}'s /metrics",
                                      owner=self.registry)

    def __repr__(self) -> str:
        return f"EmulatedPod({self.name!r}, model={self.model!r}, url={self.url!r})"

    # --- the model, under the lock scrapes read with ---

    def add_request(self, req: Request) -> FinishedRequest | None:
        with self._lock:
            done = self.engine.add_request(req)
        return replace(done, model=self.model, pod=self.name) if done else None

    def step(self, dt: float) -> list[FinishedRequest]:
        with self._lock:
            done = self.engine.step(dt)
        return [replace(f, model=self.model, pod=self.name) for f in done]

    def take_waiting(self) -> list[Request]:
        with self._lock:
            return self.engine.take_waiting()

    def state(self) -> EngineState:
        with self._lock:
            return self.engine.state()

    def read(self) -> tuple[EngineState, EngineStats]:
        """A consistent copy of gauges and counters, for the exposition."""
        with self._lock:
            return self.engine.state(), self.engine.stats.copy()

    # --- the HTTP face ---

    def start(self) -> None:
        """Listen on an ephemeral loopback port (idempotent)."""
        if not self._http.started:
            self._http.start()

    def close(self) -> None:
        """Stop serving and free the port (idempotent); the model keeps its state."""
        self._http.close()

    @property
    def port(self) -> int | None:
        return self._http.port

    @property
    def url(self) -> str | None:
        """`http://127.0.0.1:PORT/metrics` while serving, else None."""
        base = self._http.url
        return f"{base}/metrics" if base is not None else None

    def __enter__(self) -> EmulatedPod:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# PerfParams and perf_params_for live in `kedascaler.sim.perf`; re-exported for `sim/policies.py` and `cli/demo.py`
# until they import them from there.
__all__ = ["EmulatedPod", "MetricsHandler", "PerfParams", "perf_params_for"]
