"""Direct scraping: read every vLLM pod's /metrics concurrently, for running without Prometheus.

One thread pool and one HTTP session for the life of the source; every pod has its own timeout and a
failing pod is reported in `failed_pods` and `errors`, never raised, so one dead pod costs a cycle
nothing but its own sample.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families
from requests.adapters import HTTPAdapter

from kedascaler.collect.base import CollectResult, PodSample, ScrapeTarget

log = logging.getLogger("kedascaler.collect.scrape")

KV_USAGE = "vllm:kv_cache_usage_perc"
KV_USAGE_V0 = "vllm:gpu_cache_usage_perc"
WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
_WANTED = frozenset({KV_USAGE, KV_USAGE_V0, WAITING, RUNNING})
MAX_KV_USAGE = 1.0 + 1e-6  # a fraction of the KV cache: 1 means 100 %; more is a broken exporter
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


def _wanted_lines(text: str) -> str:
    """Only the lines of the metrics we read: a vLLM exposition is mostly histogram buckets we skip."""
    keep = []
    for line in text.splitlines():
        if line.startswith("# "):
            parts = line.split(None, 3)
            name = parts[2] if len(parts) > 2 else ""
        else:
            name = line.split("{", 1)[0].split(None, 1)[0] if line else ""
        if name in _WANTED:
            keep.append(line)
    return "\n".join(keep) + "\n"


def parse_vllm_metrics(text: str) -> VLLMReading:
    """Read KV usage (v1 name, else the v0 one), waiting and running from a Prometheus text exposition."""
    values: dict[str, list[float]] = {name: [] for name in _WANTED}
    models: set[str] = set()
    try:
        for family in text_string_to_metric_families(_wanted_lines(text)):
            for sample in family.samples:
                if sample.name in values:
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
    for name, found in values.items():
        if any(not math.isfinite(v) or v < 0 for v in found):
            raise ScrapeError(f"{name} has a value that is not a finite number >= 0: {found}")
    reading = VLLMReading(max(kv), sum(values[WAITING]), sum(values[RUNNING]), min(models) if models else "")
    for signal in ("kv_cache_usage", "queue_length", "running"):
        why = implausible(signal, getattr(reading, signal))
        if why is not None:
            raise ScrapeError(why)
    return reading


class DirectScrapeSource:
    """A `MetricsSource` that GETs each target's /metrics itself (a thread per pod, up to `max_workers`)."""

    def __init__(self, timeout: float = 2.0, max_workers: int = 32) -> None:
        self.timeout = timeout
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

    def _scrape(self, target: ScrapeTarget) -> PodSample:
        try:
            response = self._session.get(target.url, timeout=self.timeout)
        except requests.Timeout:
            raise ScrapeError(f"timed out after {self.timeout} s") from None
        except requests.RequestException as e:
            raise ScrapeError(f"{type(e).__name__}: {e}") from None
        if response.status_code != 200:
            raise ScrapeError(f"HTTP {response.status_code}")
        read_at = time.time()
        reading = parse_vllm_metrics(response.text)
        return PodSample(namespace=target.variant.namespace, pod=target.pod, model_name=reading.model_name,
                         kv_cache_usage=reading.kv_cache_usage, queue_length=reading.queue_length,
                         running=reading.running, timestamp=read_at, variant=target.variant)

    def close(self) -> None:
        """Stop the threads and close the connections; pods still hanging are not waited for."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()
