"""What a simulated policy sees at a reconcile and what it answers: the contract between `simulate` and a policy.

A policy gets an `Observation` (each variant's `VariantView`: replicas, ready pods, their metrics as the
scaler's queries read them, and, for policies that learn, each pod's counters as `PodCounters`) and answers
per variant either a `Target` (the value KEDA reads, and activity) or, for `direct` policies, replicas.
Model-based policies record their predicted latencies as `Prediction`s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from kedascaler.engine.types import PodMetrics
from kedascaler.sim.config import SimConfig, VariantConfig
from kedascaler.sim.replica import Counters
from kedascaler.sources.base import PodUsage


@dataclass(frozen=True)
class PodCounters:
    """One ready pod's vLLM counters as a collector would read them at a reconcile (cumulative since the pod
    started: a policy that learns takes the difference with its previous read)."""

    name: str
    counters: Counters
    backlog: int  # running + waiting now (vllm:num_requests_running + vllm:num_requests_waiting)

    def usage_since(self, before: PodCounters) -> PodUsage | None:
        """The pod's usage between an earlier read and this one, with the fields and units that
        `kedascaler.sources.scrape.usage_between` computes from real vLLM metrics: rates from the counters'
        deltas, means from the histograms' Δ_sum ÷ Δ_count (None when nothing was observed), except
        `mean_running`, the exact time average ∫ running dt ÷ span (a scrape only has the two end points).
        None when the span is not positive."""
        a, b = self.counters, before.counters
        span = a.t - b.t
        if not span > 0:
            return None
        gaps, prefilled, first = a.gaps - b.gaps, a.prefilled - b.prefilled, a.first_tokens - b.first_tokens
        return PodUsage(
            window_s=span, completed_rate=(a.completed - b.completed) / span,
            prompt_tokens_rate=(a.prompt_tokens - b.prompt_tokens) / span,
            output_tokens_rate=(a.output_tokens - b.output_tokens) / span,
            backlog_growth_rate=(self.backlog - before.backlog) / span,
            mean_running=(a.running_time - b.running_time) / span,
            itl_ms=(a.gap_sum - b.gap_sum) / gaps * 1000.0 if gaps > 0 else None,
            prefill_ms=(a.prefill_sum - b.prefill_sum) / prefilled * 1000.0 if prefilled > 0 else None,
            prompt_tokens_mean=(a.prefill_prompt - b.prefill_prompt) / prefilled if prefilled > 0 else None,
            ttft_ms=(a.ttft_sum - b.ttft_sum) / first * 1000.0 if first > 0 else None)


@dataclass(frozen=True)
class VariantView:
    """A variant as a policy sees it at a reconcile: Deployment replicas, ready pods, their metrics."""

    config: VariantConfig
    current: int
    ready: int
    pods: tuple[PodMetrics, ...]  # worst value of each ready pod over the metrics window (kedascaler's, WVA's queries)
    latest: tuple[PodMetrics, ...] = ()  # the last scrape of each ready pod (an instant PromQL query)
    counters: tuple[PodCounters, ...] = ()  # each ready pod's counters, for policies with `reads_counters`


@dataclass(frozen=True)
class Observation:
    now: float
    variants: tuple[VariantView, ...]
    gateway_queue: int  # requests waiting for any ready pod


@dataclass(frozen=True)
class Target:
    """A policy's answer for one variant: the metric value KEDA reads (AverageValue, target 1) and activity."""

    value: float
    active: bool


class Policy(Protocol):
    name: str
    interval: float  # seconds between reconciles
    direct: bool  # True: sets replicas itself (no KEDA/HPA); False: answers through KEDA + HPA
    instant_start: bool  # True: its pods are ready at once (the oracle)

    def initial(self, config: SimConfig) -> dict[str, int]: ...

    def decide(self, obs: Observation) -> dict[str, Target] | dict[str, int]: ...

    def keda_min_replicas(self, variant: VariantConfig) -> int: ...


class Prediction(NamedTuple):
    """A model-based decision's predicted latencies for one variant, and what its pods showed over the next
    reconcile interval (token-weighted mean ITL, mean TTFT from the arrival at the pod; NaN: nothing observed)."""

    t: float  # the decision
    variant: str
    itl_pred_ms: float
    itl_obs_ms: float
    ttft_pred_ms: float
    ttft_obs_ms: float
    settled: bool  # the variant ran the planned replicas, all ready, throughout the interval
    # the same model and parameters evaluated at the load each of the variant's ready pods actually took
    # over the interval (the fleet that ran, which lags the plan while pods start or HPA holds a scale-down)
    itl_ran_ms: float = math.nan
    ttft_ran_ms: float = math.nan
