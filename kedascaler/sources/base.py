"""The interfaces between the edges and the reconcile loop: inventory, workloads, metrics.

Each edge (files, Kubernetes, Prometheus, direct scraping, the emulator) implements one of these small
protocols; the reconcile loop joins what they return into engine snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.spec.inventory import InventoryState


class Inventory(Protocol):
    """Source of VariantAutoscalings and ConfigMaps (a folder of YAML, or the Kubernetes API)."""

    def current(self) -> InventoryState: ...


@dataclass(frozen=True)
class ScrapeTarget:
    """One pod's metrics endpoint, and the variant it belongs to."""

    variant: VariantKey
    pod: str
    url: str


@dataclass(frozen=True)
class WorkloadStatus:
    """The scaled Deployment of a variant as it is now: asked-for and ready replicas, and its pods."""

    current_replicas: int
    ready_replicas: int
    pods: tuple[ScrapeTarget, ...] = ()


class Workloads(Protocol):
    """Source of Deployment replicas and pod endpoints (Kubernetes, the emulator, or static files)."""

    def status(self, spec: VariantSpec) -> WorkloadStatus | None: ...


@dataclass(frozen=True)
class PodUsage:
    """What one pod did over the collector's window, from vLLM's counters and histograms (SLO sizing and
    online estimation). A field is None when the pod does not export the metric or nothing happened in the
    window (no request finished, no token produced): never 0 for "unknown"."""

    window_s: float  # the span the rates and means cover (s)
    completed_rate: float | None = None  # req/s: rate of vllm:request_success_total
    prompt_tokens_rate: float | None = None  # tokens/s: rate of vllm:prompt_tokens_total
    output_tokens_rate: float | None = None  # tokens/s: rate of vllm:generation_tokens_total
    backlog_growth_rate: float | None = None  # req/s: change of running + waiting over the window ÷ its span
    mean_running: float | None = None  # mean of vllm:num_requests_running over the window
    itl_ms: float | None = None  # mean ITL of the window: Δ inter_token_latency_seconds _sum ÷ Δ _count, in ms
    prefill_ms: float | None = None  # mean prefill time (request_prefill_time_seconds; else TTFT − queue time)
    prompt_tokens_mean: float | None = None  # mean request_prompt_tokens of the requests finished in the window
    ttft_ms: float | None = None  # mean time_to_first_token_seconds of the window, in ms (observed, for records)
    kv_capacity_tokens: int | None = None  # KV cache size: num_gpu_blocks × block_size of vllm:cache_config_info


@dataclass(frozen=True)
class CounterReading:
    """One pod's cumulative vLLM counters and histogram sums at one read, taken at `at` on the window clock.

    A direct scrape gives one per pod; the cycle differences it with the pod's previous reading
    (`kedascaler.sources.scrape.usage_between`) and keeps it in its state for the next cycle."""

    at: float
    totals: Mapping[str, float]  # counters and histogram _sum/_count, summed over the pod's engines
    running: float
    queue_length: float
    kv_capacity_tokens: int | None = None  # Σ num_gpu_blocks × block_size of vllm:cache_config_info


@dataclass(frozen=True)
class PodSample:
    """One pod's vLLM metrics as a collector read them."""

    namespace: str
    pod: str
    model_name: str
    kv_cache_usage: float
    queue_length: float
    running: float
    timestamp: float
    variant: VariantKey | None = None  # known when scraped directly; else matched by pod name
    usage: PodUsage | None = None  # rates and means over the window; None when the source could not tell
    counters: CounterReading | None = None  # a direct scrape's raw counters: the cycle derives the usage


@dataclass(frozen=True)
class CollectResult:
    """The metrics of one cycle, plus how it went: queries made, errors (empty when all went well), and
    warnings: what went wrong with usage alone (the saturation signals, and so the decisions, are unaffected)."""

    samples: tuple[PodSample, ...] = ()
    errors: tuple[str, ...] = ()
    queries: int = 0
    failed_pods: tuple[str, ...] = ()  # pods (namespace/pod) whose metrics could not be read
    # Problems with the optional usage signals only (SLO sizing): never make a decision stale, unlike `errors`.
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


class MetricsSource(Protocol):
    """Source of vLLM per-pod metrics: Prometheus (ignores targets) or direct scraping (uses them)."""

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult: ...

    def close(self) -> None: ...
