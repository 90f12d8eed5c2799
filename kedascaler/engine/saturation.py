"""Saturation analyzer: per-replica saturation, spare capacity, and the replicas a model needs — in one step.

WVA's rule (`reference/wva.md`) adds one replica per cycle while the average spare is below a trigger. Here the
model's total KV-cache and queue load is spread over N replicas and N is the smallest count that leaves both
spare triggers satisfied, so one cycle asks for the right size:

    N = max(ceil(kv_total / (kvCacheThreshold − kvSpareTrigger)),
            ceil(queue_total / (queueLengthThreshold − queueSpareTrigger)))

Scale-down uses WVA's safety rule unchanged (the load fits on fewer replicas with spare ≥ both triggers, and
at least two replicas), and is refused whenever the data is incomplete.

Which data counts: only pods of variants whose metrics are fresh, with finite values. A ready pod that did not
report (or whose variant is not fresh) is *missing*: it is not counted as idle; the estimated load gives it the
average of the pods that did report (safety first for scale-up, since the load balancer spreads requests over
all ready pods), and any missing pod blocks scale-down.

Thresholds: the model's config (`snapshot.config`) sizes the model. A variant's own override
(`VariantSpec.saturation`) only changes which of *its* pods count as saturated and their spare capacity
(the per-replica view and the averages); it does not change N, which is a property of the model as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kedascaler.engine.frozen import quick
from kedascaler.engine.types import (
    ModelSnapshot,
    PodMetrics,
    ReplicaSaturation,
    SaturationConfig,
    VariantKey,
    VariantState,
)

KV_SIGNAL = "kv_cache_usage"
QUEUE_SIGNAL = "queue_length"

_REL_SLACK = 1e-9  # relative float slack: 1.4 KV over a 0.7 budget is 2 replicas, not 3; any load is ≥ 1


@quick
@dataclass(frozen=True)
class ModelSaturation:
    """The model's saturation at one instant: load, spare, the replicas it needs, and what binds them."""

    config: SaturationConfig
    replicas: tuple[ReplicaSaturation, ...]  # the analysed pods, in snapshot order
    kv_total: float  # Σ kv_cache_usage over the analysed pods
    queue_total: float  # Σ queue_length over the analysed pods
    running_total: float  # Σ running requests over the analysed pods
    estimated_kv_total: float  # kv_total with missing ready pods counted at the analysed average
    estimated_queue_total: float
    avg_spare_kv: float | None  # over non-saturated replicas, all variants (None: none is non-saturated)
    avg_spare_queue: float | None
    saturated_replicas: int
    current_replicas: int  # Σ current over the variants (ready + starting)
    ready_replicas: int
    pending_replicas: int  # Σ (current − ready): capacity on its way
    missing_replicas: int  # ready pods without usable metrics (including those of stale variants)
    stale_variants: tuple[VariantKey, ...]  # variants whose metrics are not fresh
    needed_replicas: int  # the smallest N that carries the load, waiting requests admitted, within the budgets
    binding_signal: str  # KV_SIGNAL or QUEUE_SIGNAL: the one that asks for the most replicas
    can_scale_down: bool  # WVA's safety rule holds and the data is complete
    # the analysed replicas per variant (those with any), as `replicas` holds them: what each decision shows
    by_variant: Mapping[VariantKey, tuple[ReplicaSaturation, ...]] = field(default_factory=dict, compare=False,
                                                                            repr=False)

    @property
    def analysed_replicas(self) -> int:
        """Replicas whose metrics went into the analysis."""
        return len(self.replicas)

    @property
    def has_load(self) -> bool:
        """Any request queued or running anywhere in the model, or KV cache in use."""
        return self.queue_total > 0 or self.running_total > 0 or self.kv_total > 0

    @property
    def complete(self) -> bool:
        """Every ready pod reported and every variant is fresh: the only data scale-down may trust."""
        return self.missing_replicas == 0 and not self.stale_variants

    @property
    def binding_threshold(self) -> float:
        """The per-replica load the binding signal may reach: its threshold minus its spare trigger."""
        return kv_budget(self.config) if self.binding_signal == KV_SIGNAL else queue_budget(self.config)

    def binding_load_per_replica(self, replicas: int) -> float:
        """The binding signal's estimated load spread over `replicas` (the total itself when 0)."""
        total = self.estimated_kv_total if self.binding_signal == KV_SIGNAL else self.estimated_queue_total
        return total / replicas if replicas > 0 else total


def kv_budget(config: SaturationConfig) -> float:
    """KV-cache fraction one replica may carry and still have kvSpareTrigger to spare."""
    return config.kv_cache_threshold - config.kv_spare_trigger


def queue_budget(config: SaturationConfig) -> float:
    """Queue length one replica may carry and still have queueSpareTrigger to spare."""
    return config.queue_length_threshold - config.queue_spare_trigger


def _check_config(config: SaturationConfig) -> None:
    """A trigger at or above its threshold leaves no room on any replica: refuse rather than divide by zero."""
    if kv_budget(config) <= 0:
        raise ValueError(f"kvSpareTrigger ({config.kv_spare_trigger:g}) must be below kvCacheThreshold "
                         f"({config.kv_cache_threshold:g})")
    if queue_budget(config) <= 0:
        raise ValueError(f"queueSpareTrigger ({config.queue_spare_trigger:g}) must be below queueLengthThreshold "
                         f"({config.queue_length_threshold:g})")


def _ceil(x: float) -> int:
    """ceil that forgives float noise just above an integer, yet keeps any positive load at ≥ 1."""
    return max(0, math.ceil(x * (1 - _REL_SLACK)))


def replicas_needed(kv_total: float, queue_total: float, config: SaturationConfig) -> int:
    """Smallest N with kv_total/N ≤ kv budget and queue_total/N ≤ queue budget; 0 only when there is no load."""
    _check_config(config)
    return max(_ceil(kv_total / kv_budget(config)), _ceil(queue_total / queue_budget(config)))


def fits_on(kv_total: float, queue_total: float, replicas: int, config: SaturationConfig) -> bool:
    """Whether the load spread over `replicas` leaves both spare triggers satisfied (WVA's scale-down test)."""
    if replicas <= 0:
        return kv_total <= 0 and queue_total <= 0
    return replicas_needed(kv_total, queue_total, config) <= replicas


def demand_replicas(kv_total: float, queue_total: float, running_total: float, full_batch: float,
                    config: SaturationConfig) -> tuple[int, str]:
    """Replicas for the load once the waiting requests are admitted, and the signal that binds.

    A waiting request will need the KV cache of a running one and a batch slot, and a pod that queues holds
    as many running requests as it can (`full_batch`): sizing for that, not for the queue length spread
    over N, keeps a backlog from asking for one replica per two waiting requests.
    """
    _check_config(config)
    if queue_total <= 0 or running_total < 1 or full_batch < 1:  # no batch to learn from: the queue spread rule
        return replicas_needed(kv_total, queue_total, config), binding_signal(kv_total, queue_total, config)
    kv_per_request = min(1.0, kv_total / running_total)  # one request never holds more than a whole cache
    by_kv = _ceil((kv_total + queue_total * kv_per_request) / kv_budget(config))
    by_batch = _ceil((running_total + queue_total) / (full_batch + queue_budget(config)))
    return max(by_kv, by_batch, 1), (QUEUE_SIGNAL if by_batch > by_kv else KV_SIGNAL)


def binding_signal(kv_total: float, queue_total: float, config: SaturationConfig) -> str:
    """The signal that asks for more replicas (ties and no load: KV cache)."""
    _check_config(config)
    return QUEUE_SIGNAL if queue_total / queue_budget(config) > kv_total / kv_budget(config) else KV_SIGNAL


def replica_saturation(variant: VariantKey, pod: PodMetrics, config: SaturationConfig) -> ReplicaSaturation:
    """Saturated when kv ≥ kvCacheThreshold or queue ≥ queueLengthThreshold (negative readings count as 0)."""
    kv, queue = max(0.0, pod.kv_cache_usage), max(0.0, pod.queue_length)
    saturated = kv >= config.kv_cache_threshold or queue >= config.queue_length_threshold
    return ReplicaSaturation(variant, pod.pod, kv, queue, saturated,
                             config.kv_cache_threshold - kv, config.queue_length_threshold - queue)


def analysed_pods(variant: VariantState) -> tuple[PodMetrics, ...]:
    """The pods of a variant that go into the analysis: none when its metrics are not fresh."""
    return variant.analysed


def variant_thresholds(variant: VariantState, snapshot: ModelSnapshot) -> SaturationConfig:
    """The thresholds that classify a variant's pods: its own override, else the model's config."""
    return variant.spec.saturation or snapshot.config


def variant_replicas(variant: VariantState, config: SaturationConfig) -> tuple[ReplicaSaturation, ...]:
    """The variant's analysed pods, each against `config` (its thresholds)."""
    return tuple(replica_saturation(variant.spec.key, p, config) for p in analysed_pods(variant))


def spare_means(replicas: Sequence[ReplicaSaturation]) -> tuple[float | None, float | None]:
    """Mean spare KV and queue over the non-saturated replicas; (None, None) when none is."""
    free = [r for r in replicas if not r.saturated]
    return _mean([r.spare_kv for r in free]), _mean([r.spare_queue for r in free])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def analyze(snapshot: ModelSnapshot) -> ModelSaturation:
    """Analyse all variants of a model together: per-replica saturation, totals, needed N, scale-down safety."""
    config = snapshot.config
    _check_config(config)
    replicas: list[ReplicaSaturation] = []
    by_variant: dict[VariantKey, list[ReplicaSaturation]] = {}
    running = 0.0
    full_batch = 0.0  # the most requests a queueing pod runs: what one replica holds when full
    missing = 0
    kv_total: float = 0  # Σ over the replicas in order, as sum() adds them (from the int 0)
    queue_total: float = 0
    for variant in snapshot.variants:
        pods = variant.analysed
        own = variant_replicas(variant, variant.spec.saturation or config)
        replicas += own
        if own:
            by_variant.setdefault(variant.spec.key, []).extend(own)
        for r in own:
            kv_total += r.kv_cache_usage
            queue_total += r.queue_length
        part: float = 0  # this variant's Σ running, added to the model's as one sum
        for p in pods:
            load = max(0.0, p.running)
            part += load
            if p.queue_length > 0 and load > full_batch:
                full_batch = load
        running += part
        missing += max(0, variant.ready_replicas - len(pods))
    scale = (len(replicas) + missing) / len(replicas) if replicas else 1.0
    est_kv, est_queue = kv_total * scale, queue_total * scale
    needed, signal = demand_replicas(est_kv, est_queue, running * scale, full_batch, config)
    current = sum(v.current_replicas for v in snapshot.variants)
    if needed < current:  # going down, the load must also fit spread as it is now (WVA's conservative rule)
        needed = min(current, max(needed, replicas_needed(est_kv, est_queue, config)))
    free = [r for r in replicas if not r.saturated]
    avg_spare_kv, avg_spare_queue = spare_means(replicas)
    stale = tuple(v.spec.key for v in snapshot.variants if not v.metrics_fresh)
    complete = missing == 0 and not stale
    # WVA's rule: the load of the current replicas fits on one fewer, with at least two to start from.
    can_down = complete and bool(replicas) and current >= 2 and fits_on(est_kv, est_queue, current - 1, config)
    return ModelSaturation(
        config=config,
        replicas=tuple(replicas),
        kv_total=kv_total,
        queue_total=queue_total,
        running_total=running,
        estimated_kv_total=est_kv,
        estimated_queue_total=est_queue,
        avg_spare_kv=avg_spare_kv,
        avg_spare_queue=avg_spare_queue,
        saturated_replicas=len(replicas) - len(free),
        current_replicas=current,
        ready_replicas=sum(v.ready_replicas for v in snapshot.variants),
        pending_replicas=sum(v.pending_replicas for v in snapshot.variants),
        missing_replicas=missing,
        stale_variants=stale,
        needed_replicas=needed,
        binding_signal=signal,
        can_scale_down=can_down,
        by_variant={k: tuple(v) for k, v in by_variant.items()},
    )


__all__ = ["KV_SIGNAL", "QUEUE_SIGNAL", "ModelSaturation", "ReplicaSaturation", "analysed_pods", "analyze",
           "binding_signal", "demand_replicas", "fits_on", "kv_budget", "queue_budget", "replica_saturation",
           "replicas_needed", "spare_means", "variant_replicas", "variant_thresholds"]
