"""Direct scraping: read every vLLM pod's /metrics concurrently, for running without Prometheus.

One thread pool and one HTTP session for the life of the source; every pod has its own timeout and a
failing pod is reported in `failed_pods` and `errors`, never raised, so one dead pod costs a cycle
nothing but its own sample.

Usage (`PodUsage`: rates and means for SLO sizing) comes from vLLM's counters and histogram `_sum`/`_count`
differenced between two consecutive scrapes of the same pod, so the source keeps each pod's previous
reading: the first scrape of a pod, and a window in which a counter went down (the pod restarted), give
no usage. Usage is optional: a pod without those metrics, or with broken ones, still gives its sample.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families
from requests.adapters import HTTPAdapter

from kedascaler.sources.base import CollectResult, CounterReading, PodSample, PodUsage, ScrapeTarget

log = logging.getLogger("kedascaler.sources.scrape")

KV_USAGE = "vllm:kv_cache_usage_perc"
KV_USAGE_V0 = "vllm:gpu_cache_usage_perc"
WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
_SATURATION = frozenset({KV_USAGE, KV_USAGE_V0, WAITING, RUNNING})
# Usage: counters (exposed, and stored by Prometheus, with the `_total` suffix) and histograms (their
# `_sum` and `_count` samples; the buckets are never read).
SUCCESS = "vllm:request_success_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
ITL = "vllm:inter_token_latency_seconds"
ITL_OLD = "vllm:time_per_output_token_seconds"  # older vLLM's name of the same histogram
PREFILL = "vllm:request_prefill_time_seconds"
QUEUE = "vllm:request_queue_time_seconds"
TTFT = "vllm:time_to_first_token_seconds"
REQUEST_PROMPT = "vllm:request_prompt_tokens"
CACHE_CONFIG = "vllm:cache_config_info"  # an info gauge: the KV cache size is in its labels
_COUNTERS = (SUCCESS, PROMPT_TOKENS, GENERATION_TOKENS)
_HISTOGRAMS = (ITL, ITL_OLD, PREFILL, QUEUE, TTFT, REQUEST_PROMPT)
_TOTALS = frozenset(_COUNTERS) | {h + s for h in _HISTOGRAMS for s in ("_sum", "_count")}
_WANTED = _SATURATION | _TOTALS | {CACHE_CONFIG}
MAX_KV_USAGE = 1.0 + 1e-6  # a fraction of the KV cache: 1 means 100 %; more is a broken exporter
MAX_BODY_BYTES = 16 << 20  # a vLLM exposition is a few hundred KB; more is not a vLLM pod
MAX_REQUESTS = 1_000_000  # waiting or running requests on one pod; more is a broken exporter, not load


def implausible(signal: str, value: float) -> str | None:
    """Why a signal's value cannot be real (NaN, infinite, negative, above its range), or None when it can."""
    if not math.isfinite(value) or value < 0:
        return f"{signal} is {value}: not a finite number >= 0"
    limit = MAX_KV_USAGE if signal == "kv_cache_usage" else MAX_REQUESTS
    if value > limit:
        return f"{signal} is {value}: above the largest plausible value {limit:g}"
    return None


class ScrapeError(Exception):
    """A pod's metrics could not be read or made no sense."""


@dataclass(frozen=True)
class VLLMReading:
    """The saturation signals of one pod's exposition: KV max over engines, requests summed over them."""

    kv_cache_usage: float
    queue_length: float
    running: float
    model_name: str
    totals: dict[str, float] = field(default_factory=dict)  # usage counters and _sum/_count, summed over engines
    kv_capacity_tokens: int | None = None  # Σ over engines of num_gpu_blocks × block_size (cache_config_info)


def _wanted_lines(text: str) -> str:
    """Only the lines of the metrics we read: a vLLM exposition is mostly histogram buckets we skip.

    Counters' and histograms' `# TYPE` lines name the family (`vllm:request_success`, not `…_total`), so they
    are dropped with the buckets and the kept samples parse as untyped ones, under their own names."""
    keep = []
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            if not line.startswith("# "):
                continue
            parts = line.split(None, 3)
            name = parts[2] if len(parts) > 2 else ""
        else:
            brace = line.find("{")
            name = line[:brace] if brace >= 0 else line.split(None, 1)[0]
            if name.endswith("_bucket"):  # the bulk of the exposition: one test, no set lookup
                continue
        if name in _WANTED:
            keep.append(line)
    return "\n".join(keep) + "\n"


def kv_cache_tokens(labels: dict[str, str]) -> int:
    """num_gpu_blocks × block_size of one engine's cache_config_info (0 when a label is missing or not a count)."""
    try:
        blocks, size = int(labels.get("num_gpu_blocks", "")), int(labels.get("block_size", ""))
    except ValueError:
        return 0
    return blocks * size if blocks > 0 and size > 0 else 0


def parse_vllm_metrics(text: str) -> VLLMReading:
    """Read KV usage (v1 name, else the v0 one), waiting and running from a Prometheus text exposition, and
    the usage totals that are there; a usage total that is not a finite number >= 0 is left out (usage is
    optional: it never fails the pod's sample)."""
    values: dict[str, list[float]] = {name: [] for name in _WANTED}
    models: set[str] = set()
    kv_tokens: list[int] = []
    try:
        for family in text_string_to_metric_families(_wanted_lines(text)):
            for sample in family.samples:
                if sample.name == CACHE_CONFIG:
                    kv_tokens.append(kv_cache_tokens(sample.labels))
                elif sample.name in values:
                    values[sample.name].append(float(sample.value))
                    if "model_name" in sample.labels:
                        models.add(sample.labels["model_name"])
    except Exception as e:  # noqa: BLE001 - the parser raises several types on malformed text
        raise ScrapeError(f"unparsable metrics: {type(e).__name__}: {e}") from None
    kv = values[KV_USAGE] or values[KV_USAGE_V0]
    if not kv:
        raise ScrapeError(f"no {KV_USAGE} (nor {KV_USAGE_V0}) in the exposition")
    if not values[WAITING]:
        raise ScrapeError(f"no {WAITING} in the exposition")
    for name in _SATURATION:
        found = values[name]
        if any(not math.isfinite(v) or v < 0 for v in found):
            raise ScrapeError(f"{name} has a value that is not a finite number >= 0: {found}")
    totals = {name: sum(values[name]) for name in _TOTALS
              if values[name] and all(math.isfinite(v) and v >= 0 for v in values[name])}
    capacity = sum(kv_tokens) if kv_tokens and all(t > 0 for t in kv_tokens) else None
    reading = VLLMReading(max(kv), sum(values[WAITING]), sum(values[RUNNING]), min(models) if models else "",
                          totals, capacity)
    for signal in ("kv_cache_usage", "queue_length", "running"):
        why = implausible(signal, getattr(reading, signal))
        if why is not None:
            raise ScrapeError(why)
    return reading


def usage_between(before: CounterReading, after: CounterReading, span_s: float) -> PodUsage | None:
    """A pod's usage over the `span_s` seconds between two readings of it: rates from the counters' deltas,
    means from the histograms' Δ_sum ÷ Δ_count. None when the span is not positive or a counter went down
    (the pod restarted: the deltas mean nothing); a field is None when a reading lacks its metric or nothing
    was observed in the span (Δ_count = 0). Rates of 0 are real: nothing finished."""
    if not span_s > 0 or not math.isfinite(span_s):
        return None
    b, a = before.totals, after.totals
    if any(name in b and value < b[name] for name, value in a.items()):
        return None

    def rate(name: str) -> float | None:
        return (a[name] - b[name]) / span_s if name in a and name in b else None

    def has(family: str) -> bool:
        return all(family + s in t for s in ("_sum", "_count") for t in (a, b))

    def mean(family: str, scale: float = 1.0) -> float | None:
        if not has(family):
            return None
        count = a[family + "_count"] - b[family + "_count"]
        total = a[family + "_sum"] - b[family + "_sum"]
        return total / count * scale if count > 0 else None

    itl = mean(ITL, 1000.0) if has(ITL) else mean(ITL_OLD, 1000.0)
    ttft = mean(TTFT, 1000.0)
    if has(PREFILL):
        prefill = mean(PREFILL, 1000.0)
    else:  # older vLLM: TTFT (from arrival) less the time queued
        queued = mean(QUEUE, 1000.0)
        prefill = ttft - queued if ttft is not None and queued is not None and ttft >= queued else None
    backlog = (after.running + after.queue_length) - (before.running + before.queue_length)
    return PodUsage(window_s=span_s, completed_rate=rate(SUCCESS), prompt_tokens_rate=rate(PROMPT_TOKENS),
                    output_tokens_rate=rate(GENERATION_TOKENS), backlog_growth_rate=backlog / span_s,
                    mean_running=(before.running + after.running) / 2, itl_ms=itl, prefill_ms=prefill,
                    prompt_tokens_mean=mean(REQUEST_PROMPT), ttft_ms=ttft, kv_capacity_tokens=after.kv_capacity_tokens)


def _bounded_body(response: requests.Response) -> bytes:
    """The body, read up to MAX_BODY_BYTES; ScrapeError beyond (a declared length over it is not read at all)."""
    limit = f"{MAX_BODY_BYTES // (1 << 20)} MiB"
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ScrapeError(f"metrics body of {int(declared)} bytes (Content-Length) is larger than {limit}: not read")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ScrapeError(f"metrics body is larger than {limit}: stopped reading")
        chunks.append(chunk)
    return b"".join(chunks)


class DirectScrapeSource:
    """A `MetricsSource` that GETs each target's /metrics itself (a thread per pod, up to `max_workers`).

    Stateless between calls: each sample carries the pod's raw counters (`PodSample.counters`), and the
    cycle, which keeps the previous reading of every pod in its state, turns two readings into usage."""

    def __init__(self, timeout: float = 2.0, max_workers: int = 32,
                 window_clock: Callable[[], float] | None = None, clock: Callable[[], float] | None = None) -> None:
        """`clock`: what samples are stamped with on receipt (the clock the staleness check reads; default the
        wall clock);
        `window_clock`: what the usage windows are measured on (default `clock`; an emulated fleet runs on its
        own, and its counters' rates are per emulated second)."""
        self.timeout = timeout
        self.clock = clock
        self.window_clock = window_clock
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=max_workers, pool_maxsize=max_workers, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="scrape")

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        """One sample per target that answered in time; the rest in `failed_pods` with why in `errors`."""
        futures: dict[Future[PodSample], ScrapeTarget] = {self._pool.submit(self._scrape, t): t for t in targets}
        # The per-request timeout bounds connect and each read; this bounds a pod that trickles bytes.
        _, late = wait(futures, timeout=2 * self.timeout + 0.5)
        samples: list[PodSample] = []
        errors: list[str] = []
        failed: list[str] = []
        for future, target in futures.items():
            pod = f"{target.variant.namespace}/{target.pod}"
            if future in late:
                future.cancel()
                failed.append(pod)
                errors.append(f"{pod}: {target.url}: no answer within {2 * self.timeout + 0.5:.1f} s")
                continue
            try:
                samples.append(future.result())
            except Exception as e:  # noqa: BLE001 - one pod's failure, of any kind, is only that pod's
                failed.append(pod)
                errors.append(f"{pod}: {target.url}: {e}")
        if errors:
            log.debug("scrape: %d of %d pods failed: %s", len(failed), len(futures), "; ".join(errors))
        return CollectResult(tuple(samples), tuple(errors), queries=len(futures), failed_pods=tuple(failed))

    def _now(self) -> float:
        return self.window_clock() if self.window_clock is not None else self._stamp()

    def _stamp(self) -> float:
        return self.clock() if self.clock is not None else time.time()

    def _scrape(self, target: ScrapeTarget) -> PodSample:
        try:
            # A redirect is not followed: a pod's metrics are where the pod says, never somewhere else.
            with self._session.get(target.url, timeout=self.timeout, stream=True, allow_redirects=False) as response:
                if response.is_redirect:
                    raise ScrapeError(f"HTTP {response.status_code} redirect to "
                                      f"{response.headers.get('Location', '?')[:200]!r}: not followed")
                if response.status_code != 200:
                    raise ScrapeError(f"HTTP {response.status_code}")
                body = _bounded_body(response)
        except requests.Timeout:
            raise ScrapeError(f"timed out after {self.timeout} s") from None
        except requests.RequestException as e:
            raise ScrapeError(f"{type(e).__name__}: {e}") from None
        read_at = self._stamp()
        at = self._now()
        reading = parse_vllm_metrics(body.decode("utf-8", errors="replace"))
        counters = CounterReading(at, reading.totals, reading.running, reading.queue_length, reading.kv_capacity_tokens)
        return PodSample(namespace=target.variant.namespace, pod=target.pod, model_name=reading.model_name,
                         kv_cache_usage=reading.kv_cache_usage, queue_length=reading.queue_length,
                         running=reading.running, timestamp=read_at, variant=target.variant, counters=counters)

    def close(self) -> None:
        """Stop the threads and close the connections; pods still hanging are not waited for."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()
