"""What an emulated vLLM engine accumulates for its /metrics: histograms, counters and gauges.

`BucketHistogram` takes weighted observations (a whole batch is one call) with vLLM's own bucket
boundaries; `EngineStats` holds the counters and histograms since start, as vLLM's Prometheus logger
does, and `EngineState` the gauges at one instant.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

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
        for bound, n in zip(self.bounds + (math.inf,), self.counts, strict=True):
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
