"""A vLLM server emulated numerically, and served over HTTP with vLLM's own metric names.

`VLLMEngine` is the model: continuous batching under `max_num_seqs` and a per-step token budget, a KV
cache of 16-token blocks, an FCFS waiting queue, preemption when the cache is full, and step times from
the linear performance model (decode α + β·batch, prefill γ + δ·tokens, in ms). It has no clock of its
own: time moves only when the caller says `step(dt)`, so a run is replayable. `EmulatedPod` wraps one
engine with its own `CollectorRegistry` and a loopback HTTP server, so scrapers and Prometheus see
what they would see on a real vLLM pod.
"""

from __future__ import annotations

import bisect
import heapq
import math
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

# Bucket boundaries (seconds) as vLLM declares them (see docs/reference vllm.md).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)
# Phases of a request (queue, prefill) share the e2e boundaries in vLLM; token counts use 1-2-5 buckets up to
# the model's length (vLLM's build_1_2_5_buckets(max_model_len); 128k here).
PHASE_BUCKETS = E2E_BUCKETS
TOKEN_BUCKETS = tuple(m * 10**e for e in range(6) for m in (1, 2, 5) if m * 10**e <= 131_072)
FINISHED_REASONS = ("stop", "length", "abort")


@dataclass(frozen=True)
class PerfParams:
    """One model on one accelerator: step-time coefficients (ms) and the server's limits."""

    alpha: float = 7.0  # decode step, fixed part (ms)
    beta: float = 0.035  # decode step, per request in the batch (ms)
    gamma: float = 15.4  # prefill step, fixed part (ms)
    delta: float = 0.00034  # prefill step, per prompt token (ms)
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 8192
    num_gpu_blocks: int = 27_000
    block_size: int = 16

    def step_seconds(self, decode_requests: int, prefill_tokens: int) -> float:
        """One engine step: decodes and prefill chunks share the step, so its fixed cost is paid once."""
        fixed = max(self.alpha if decode_requests else 0.0, self.gamma if prefill_tokens else 0.0)
        return (fixed + self.beta * decode_requests + self.delta * prefill_tokens) / 1000.0

    def itl_seconds(self, batch: int) -> float:
        """Inter-token latency of a pure decode step with `batch` requests."""
        return self.step_seconds(batch, 0)

    def max_throughput(self, prompt_tokens: int, output_tokens: int, batch: int | None = None) -> float:
        """WVA's μ(n) = n / (prefill(n) + (out − 1)·ITL(n)) in requests/s: the rate of a full batch in lockstep."""
        n = batch or self.max_num_seqs
        cycle = self.step_seconds(0, prompt_tokens * n) + (output_tokens - 1) * self.itl_seconds(n)
        return n / cycle


# Llama-3.1-8B-class defaults per accelerator (≈, to calibrate): vllm.md's table and vLLM's limits.
ACCELERATOR_PARAMS = MappingProxyType({
    "H100": PerfParams(7.0, 0.035, 15.4, 0.00034, max_num_seqs=1024, max_num_batched_tokens=8192,
                       num_gpu_blocks=27_000),
    "A100": PerfParams(11.0, 0.06, 25.0, 0.0007, max_num_seqs=256, max_num_batched_tokens=2048,
                       num_gpu_blocks=27_000),
    "L40S": PerfParams(22.6, 0.181, 226.0, 0.018, max_num_seqs=256, max_num_batched_tokens=2048,
                       num_gpu_blocks=13_000),
})


def perf_params_for(accelerator: str, **overrides: float) -> PerfParams:
    """Defaults for an accelerator (H100 when unknown), with any field overridden."""
    base = ACCELERATOR_PARAMS.get(accelerator.upper(), ACCELERATOR_PARAMS["H100"])
    return replace(base, **overrides) if overrides else base


@dataclass(slots=True)
class Request:
    """One request in flight: mutable, because the engine advances it token by token."""

    id: int
    prompt_tokens: int
    output_tokens: int
    created: float  # when the client sent it (at the fleet)
    arrival: float = -1.0  # when it reached this engine (vLLM's clock for TTFT); -1: same as created
    computed: int = 0  # tokens whose KV is in the cache
    generated: int = 0  # output tokens emitted
    blocks: int = 0  # KV blocks held
    scheduled_at: float | None = None  # first admitted to the running batch (vLLM ignores later preemptions)
    first_token_at: float | None = None
    last_token_at: float | None = None
    preemptions: int = 0

    def __post_init__(self) -> None:
        if self.arrival < 0:
            self.arrival = self.created

    @property
    def pending_tokens(self) -> int:
        """Known tokens (prompt + output so far) without KV yet: the prompt at first, then 1 per decode."""
        return self.prompt_tokens + self.generated - self.computed

    def restart(self, at: float) -> None:
        """Start over on another engine (a client retry): progress lost, creation time kept."""
        self.arrival = at
        self.computed = self.generated = self.blocks = 0
        self.scheduled_at = self.first_token_at = self.last_token_at = None


@dataclass(frozen=True)
class FinishedRequest:
    """A completed request, for SLO accounting: times in the emulated clock (seconds)."""

    id: int
    prompt_tokens: int
    output_tokens: int
    created: float
    arrival: float
    first_token_at: float
    finished_at: float
    preemptions: int = 0
    reason: str = "stop"
    model: str = ""
    pod: str = ""

    @property
    def ttft(self) -> float:
        """Time to first token from the client's point of view (includes any queueing at the fleet)."""
        return self.first_token_at - self.created

    @property
    def mean_itl(self) -> float:
        """Mean inter-token latency after the first token (0 for single-token outputs)."""
        return (self.finished_at - self.first_token_at) / max(1, self.output_tokens - 1)


class BucketHistogram:
    """A Prometheus-style histogram with weighted observations, so a whole batch is one call."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += weight
        self.sum += value * weight

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as the exposition format wants them, ending with +Inf."""
        out, total = [], 0
        for bound, n in zip(self.bounds + (math.inf,), self.counts):
            total += n
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), float(total)))
        return out

    def copy(self) -> BucketHistogram:
        other = BucketHistogram(self.bounds)
        other.counts, other.sum = list(self.counts), self.sum
        return other


@dataclass
class EngineStats:
    """The engine's counters and histograms since start (what vLLM's Prometheus logger accumulates)."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    preemptions: int = 0
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED_REASONS, 0))
    ttft: BucketHistogram = field(default_factory=lambda: BucketHistogram(TTFT_BUCKETS))
    itl: BucketHistogram = field(default_factory=lambda: BucketHistogram(ITL_BUCKETS))
    e2e: BucketHistogram = field(default_factory=lambda: BucketHistogram(E2E_BUCKETS))
    # Observed once per finished request, as vLLM v1 does: queue = first scheduled − arrival, prefill = first
    # token − first scheduled, and the request's prompt and generated lengths.
    queue_time: BucketHistogram = field(default_factory=lambda: BucketHistogram(PHASE_BUCKETS))
    prefill_time: BucketHistogram = field(default_factory=lambda: BucketHistogram(PHASE_BUCKETS))
    request_prompt_tokens: BucketHistogram = field(default_factory=lambda: BucketHistogram(TOKEN_BUCKETS))
    request_generation_tokens: BucketHistogram = field(default_factory=lambda: BucketHistogram(TOKEN_BUCKETS))

    def copy(self) -> EngineStats:
        return EngineStats(self.prompt_tokens, self.generation_tokens, self.preemptions, dict(self.finished),
                           self.ttft.copy(), self.itl.copy(), self.e2e.copy(), self.queue_time.copy(),
                           self.prefill_time.copy(), self.request_prompt_tokens.copy(),
                           self.request_generation_tokens.copy())


@dataclass(frozen=True)
class EngineState:
    """The engine's gauges at one instant."""

    time: float
    running: int
    waiting: int
    used_blocks: int
    num_gpu_blocks: int

    @property
    def kv_cache_usage(self) -> float:
        return self.used_blocks / self.num_gpu_blocks if self.num_gpu_blocks else 0.0


@dataclass(frozen=True)
class _Step:
    """One engine step in progress: when it ends and what it computes (request, tokens)."""

    end: float
    work: tuple[tuple[Request, int], ...]


class VLLMEngine:
    """vLLM's scheduler loop, numerically: steps of continuous batching advanced by explicit time."""

    def __init__(self, params: PerfParams, start_time: float = 0.0) -> None:
        self.params = params
        self.stats = EngineStats()
        self._now = start_time
        self._free_at = start_time  # when the engine can start its next step
        self._step: _Step | None = None
        self._running: list[Request] = []
        self._waiting: deque[Request] = deque()
        self._future: list[tuple[float, int, Request]] = []  # requests sent but not yet arrived (heap)
        self._used_blocks = 0
        self._seq = 0

    @property
    def now(self) -> float:
        return self._now

    @property
    def capacity_tokens(self) -> int:
        return self.params.num_gpu_blocks * self.params.block_size

    def add_request(self, req: Request) -> FinishedRequest | None:
        """Queue a request at its `arrival` time (not before now); one that can never fit is aborted."""
        req.arrival = max(req.arrival, self._now)
        if req.prompt_tokens + req.output_tokens > self.capacity_tokens or req.prompt_tokens < 1:
            self.stats.finished["abort"] += 1
            return FinishedRequest(req.id, req.prompt_tokens, req.output_tokens, req.created, req.arrival,
                                   req.arrival, req.arrival, req.preemptions, "abort")
        self._seq += 1
        heapq.heappush(self._future, (req.arrival, self._seq, req))
        return None

    def state(self) -> EngineState:
        waiting = len(self._waiting) + sum(1 for t, _, _ in self._future if t <= self._now)
        return EngineState(self._now, len(self._running), waiting, self._used_blocks, self.params.num_gpu_blocks)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def used_blocks(self) -> int:
        return self._used_blocks

    @property
    def outstanding(self) -> int:
        """Requests this engine owns and has not finished: running, waiting, and sent but not arrived."""
        return len(self._running) + len(self._waiting) + len(self._future)

    def take_waiting(self) -> list[Request]:
        """Hand back every request not running (to be routed elsewhere), oldest first."""
        taken = list(self._waiting) + [r for _, _, r in sorted(self._future)]
        self._waiting.clear()
        self._future.clear()
        return taken

    def step(self, dt: float) -> list[FinishedRequest]:
        """Advance the engine by `dt` seconds, running every step that ends by then; returns what finished."""
        end = self._now + max(0.0, dt)
        finished: list[FinishedRequest] = []
        while True:
            if self._step is not None:
                if self._step.end > end:
                    break
                step, self._step = self._step, None
                self._free_at = step.end
                finished += self._complete(step)
            self._release(self._free_at)
            work = self._schedule()
            if work:
                decodes = sum(1 for r, n in work if n == 1 and r.generated > 0)
                prefill = sum(n for r, n in work) - decodes
                for req, _ in work:
                    if req.scheduled_at is None:
                        req.scheduled_at = self._free_at
                self._step = _Step(self._free_at + self.params.step_seconds(decodes, prefill), tuple(work))
                continue
            if self._future and self._future[0][0] <= end:
                self._free_at = max(self._free_at, self._future[0][0])
                continue
            self._free_at = max(self._free_at, end)
            break
        self._now = end  # arrivals up to `end` stay in the heap: state() counts them as waiting
        return finished

    def _release(self, t: float) -> None:
        """Requests whose arrival time has come join the waiting queue, in arrival order."""
        while self._future and self._future[0][0] <= t:
            self._waiting.append(heapq.heappop(self._future)[2])

    def _schedule(self) -> list[tuple[Request, int]]:
        """vLLM v1's schedule(): running requests first (preempting the newest when blocks run out), then
        waiting ones FCFS while there is room in the batch, the token budget and the cache."""
        p = self.params
        budget = p.max_num_batched_tokens
        free = p.num_gpu_blocks - self._used_blocks
        work: list[tuple[Request, int]] = []
        preempted = False
        i = 0
        while i < len(self._running) and budget > 0:
            req = self._running[i]
            chunk = min(req.pending_tokens, budget)
            need = -(-(req.computed + chunk) // p.block_size) - req.blocks
            while need > free:
                victim = self._running.pop()
                free += victim.blocks
                self._preempt(victim)
                preempted = True
                if victim is req:
                    break
            else:
                req.blocks += need
                free -= need
                budget -= chunk
                work.append((req, chunk))
                i += 1
        while not preempted and self._waiting and budget > 0 and len(self._running) < p.max_num_seqs:
            req = self._waiting[0]
            chunk = min(req.pending_tokens, budget)
            need = -(-(req.computed + chunk) // p.block_size) - req.blocks
            if need > free:
                break
            self._waiting.popleft()
            self._running.append(req)
            req.blocks += need
            free -= need
            budget -= chunk
            work.append((req, chunk))
        self._used_blocks = p.num_gpu_blocks - free
        return work

    def _preempt(self, req: Request) -> None:
        """Free a running request's blocks and put it first in line, to be recomputed (vLLM v1: no swap)."""
        req.computed = 0
        req.blocks = 0
        req.preemptions += 1
        self.stats.preemptions += 1
        self._waiting.appendleft(req)

    def _complete(self, step: _Step) -> list[FinishedRequest]:
        """Apply a finished step: chunks computed, a token sampled for each request that caught up."""
        t, stats = step.end, self.stats
        done: list[FinishedRequest] = []
        for req, chunk in step.work:
            req.computed += chunk
            if req.computed < req.prompt_tokens + req.generated:
                continue  # a prefill chunk; the prompt is not complete yet
            req.generated += 1
            stats.generation_tokens += 1
            if req.first_token_at is None:
                req.first_token_at = t
                stats.prompt_tokens += req.prompt_tokens
                stats.ttft.observe(t - req.arrival)
            else:
                stats.itl.observe(t - (req.last_token_at or t))
            req.last_token_at = t
            if req.generated >= req.output_tokens:
                self._used_blocks -= req.blocks
                req.blocks = 0
                stats.finished["stop"] += 1
                stats.e2e.observe(t - req.arrival)
                scheduled = req.arrival if req.scheduled_at is None else req.scheduled_at
                stats.queue_time.observe(scheduled - req.arrival)
                stats.prefill_time.observe(req.first_token_at - scheduled)
                stats.request_prompt_tokens.observe(req.prompt_tokens)
                stats.request_generation_tokens.observe(req.generated)
                done.append(FinishedRequest(req.id, req.prompt_tokens, req.output_tokens, req.created, req.arrival,
                                            req.first_token_at, t, req.preemptions))
        if done:
            self._running = [r for r in self._running if r.generated < r.output_tokens]
        return done


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


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: CollectorRegistry, host: str) -> None:
        self.registry = registry
        super().__init__((host, 0), _MetricsHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a scraper that gave up mid-answer is its own problem, not a traceback on our stderr


class _MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics (the exposition) and /health, like vLLM's API server."""

    server: _MetricsServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, ctype = generate_latest(self.server.registry), CONTENT_TYPE_LATEST
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
        self._host = host
        self._lock = threading.Lock()
        self._server: _MetricsServer | None = None
        self._thread: threading.Thread | None = None

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

    def exposition(self) -> str:
        """The text a scrape of /metrics returns."""
        return generate_latest(self.registry).decode()

    # --- the HTTP face ---

    def start(self) -> None:
        """Listen on an ephemeral loopback port (idempotent)."""
        if self._server is not None:
            return
        self._server = _MetricsServer(self.registry, self._host)
        # A short poll interval keeps close() quick: shutdown() waits for the serving loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name=f"pod-{self.name}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port (idempotent); the model keeps its state."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server else None

    @property
    def url(self) -> str | None:
        """`http://127.0.0.1:PORT/metrics` while serving, else None."""
        return f"http://{self._host}:{self.port}/metrics" if self._server else None

    def __enter__(self) -> EmulatedPod:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
