"""Capacity mode in the cycle: what it keeps between cycles, and the engine's inputs built from it. Pure.

`CapacityState` (one immutable value in `CycleState.capacity`) holds, per model, the recent `DemandSample`s (the
arrival rate from the pods' counters, one per cycle) and the needs of past cycles (the hold); per variant, the
throughputs measured while saturated, the last ITL/prefill its pods showed (a one-point model until a fit is
usable), and its start-up tracker (pod asked for → ready, from `WorkloadStatus` current/ready).

`observe` folds one cycle's usage and statuses into the state; `kedascaler.loop.capacity_models.inputs_for`
builds the engine's `CapacityInputs` for one model from it and the planner's parameters; `record` keeps the need
the engine decided (read back from the decision's steps, so the hold is exactly what was decided).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from kedascaler.engine.capacity_estimate import SMOOTH_CYCLES
from kedascaler.engine.capacity_types import (
    CapacitySettings,
    DemandHistory,
    DemandSample,
    NeedHistory,
    Throughput,
)
from kedascaler.engine.frozen import quick
from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.types import Decision, ModelSnapshot, SaturationConfig, VariantKey
from kedascaler.sources.base import PodSample, PodUsage, WorkloadStatus
from kedascaler.sources.gateway import ModelRef

K = TypeVar("K")
V = TypeVar("V")

KEEP_HISTORY = 1800.0  # s of demand samples and needs kept (the longest window a setting may ask for)
KEEP_SATURATED = 1800.0  # s a saturated throughput counts
STARTUP_SAMPLES = 5  # start-up measurements kept per variant (the largest is used)
CALM_ITL, CALM_TTFT = 0.35, 0.25  # a pod carried its load well within the targets: mean ITL, TTFT at most these
CARRIED_TOP = 3  # the carried rate counted: the mean of the highest few windows (one window's noise is not proof)


@quick
@dataclass(frozen=True)
class Startup:
    """One variant's start-up tracker: when each pod still loading was asked for, and the measured start-ups."""

    pending_since: tuple[float, ...] = ()  # oldest first, one per replica asked for and not ready yet
    samples: tuple[float, ...] = ()  # the last start-ups measured (s)
    seen_at: float | None = None  # the cycle that last saw the variant
    ready: int = 0  # its ready replicas then

    @property
    def measured(self) -> float | None:
        return max(self.samples) if self.samples else None


@quick
@dataclass(frozen=True)
class Point:
    """What a variant's pods showed in one window: a one-point decode/prefill measurement."""

    batch: float  # mean running requests
    itl_ms: float
    prompt_tokens: float
    prefill_ms: float
    at: float
    rate: float = 0.0  # req/s completed per pod


@quick
@dataclass(frozen=True)
class CapacityState:
    """Everything capacity mode keeps between cycles."""

    history: Mapping[ModelRef, DemandHistory] = field(default_factory=dict)  # 30 minutes of samples, as columns
    needs: Mapping[ModelRef, NeedHistory] = field(default_factory=dict)
    lengths: Mapping[ModelRef, tuple[float, float]] = field(default_factory=dict)  # last known means
    saturated: Mapping[VariantKey, tuple[Throughput, ...]] = field(default_factory=dict)
    points: Mapping[VariantKey, Point] = field(default_factory=dict)
    startups: Mapping[VariantKey, Startup] = field(default_factory=dict)
    models: Mapping[VariantKey, tuple[PerfModel, str, float]] = field(default_factory=dict)  # last usable, at
    carried: Mapping[VariantKey, tuple[Throughput, ...]] = field(default_factory=dict)  # calm windows' rates
    estimates: Mapping[VariantKey, tuple[float, ...]] = field(default_factory=dict)  # last cycles' estimates
    # the queueing model's capacity per replica of the rows of the last cycles (a row: a model at the lengths and
    # targets of then), newest first, and the settings they were evaluated with (`kedascaler.loop.capacity_rows`)
    known: tuple[Mapping[tuple[object, ...], float], ...] = ()
    known_settings: CapacitySettings | None = None
    waiting: Mapping[VariantKey, Mapping[str, float]] = field(default_factory=dict)  # last cycle: pod → waiting


def demand_sample(usage: Sequence[PodUsage], now: float, gone_waiting: float = 0.0) -> DemandSample | None:
    """The model's arrivals this cycle from its pods' usage (None: no pod gave request counters).

    `gone_waiting`: the requests that pods gone since the last cycle had waiting. A removed pod hands them back
    and the gateway routes them again, so they come back as backlog growth at the pods that stay: counted once
    when they arrived, they are not counted again (at most the growth seen, so nothing else is taken out)."""
    done = [u for u in usage if u.completed_rate is not None]
    if not done:
        return None
    completed = math.fsum(u.completed_rate or 0.0 for u in done)
    growth = math.fsum(u.backlog_growth_rate for u in usage if u.backlog_growth_rate is not None)
    window = math.fsum(u.window_s for u in done) / len(done)
    values = (completed, growth, window)
    if not all(math.isfinite(v) for v in values) or window <= 0:
        return None
    handed_back = min(max(0.0, gone_waiting) / window, max(0.0, growth)) if math.isfinite(gone_waiting) else 0.0
    return DemandSample(now, max(0.0, completed + growth - handed_back), completed,
                        math.fsum(u.prompt_tokens_rate or 0.0 for u in done),
                        math.fsum(u.output_tokens_rate or 0.0 for u in done), window, handed_back)


def track_startup(found: Startup, status: WorkloadStatus | None, now: float, keep: int = STARTUP_SAMPLES) -> Startup:
    """Follow a variant's pending replicas: each new one is stamped with the previous cycle's clock (it was asked
    for since then, so a start-up is never understated), each that turns ready is measured (oldest first). Pods
    already loading when the variant is first seen have no known start and are not measured. Fewer pending and no
    more ready: replicas asked for were cancelled before they were ready (the ReplicaSet removes pods not ready
    first, the newest first); a cancelled pod measured no start-up."""
    if status is None:
        return found
    pending = max(0, status.current_replicas - status.ready_replicas)
    if found.seen_at is None:
        return Startup((math.nan,) * pending, (), now, status.ready_replicas)
    since, samples = list(found.pending_since), list(found.samples)
    drop = max(0, len(since) - pending)
    turned = min(drop, max(0, status.ready_replicas - found.ready))
    del since[len(since) - (drop - turned):]  # cancelled: the newest
    for start in since[:turned]:  # turned ready: the oldest
        if math.isfinite(start):
            samples.append(max(0.0, now - start))
    del since[:turned]
    while len(since) < pending:
        since.append(found.seen_at)
    return Startup(tuple(since), tuple(samples[-keep:]), now, status.ready_replicas)


def _windows(found: Sequence[PodSample], cfg: SaturationConfig, targets: tuple[float | None, float | None]
             ) -> tuple[list[PodUsage], list[PodUsage], list[PodUsage]]:
    """One variant's pod windows, in order, in one pass: those it completed while saturated (at or over the queue
    or the KV threshold, not draining: backlog growth ≥ 0), those it carried well within the targets (under both
    thresholds, mean ITL and TTFT at most CALM_ITL, CALM_TTFT of the targets; none without targets) and the calm
    ones (under both thresholds)."""
    itl, ttft = targets
    with_targets = itl is not None or ttft is not None
    saturated: list[PodUsage] = []
    carried: list[PodUsage] = []
    calm: list[PodUsage] = []
    queue_at, kv_at = cfg.queue_length_threshold, cfg.kv_cache_threshold
    for s in found:
        u = s.usage
        if u is None:
            continue
        if (u.completed_rate and (s.queue_length >= queue_at or s.kv_cache_usage >= kv_at)
                and (u.backlog_growth_rate or 0.0) >= 0.0):
            saturated.append(u)
        if s.queue_length < queue_at and s.kv_cache_usage < kv_at:
            calm.append(u)
            if (with_targets and u.completed_rate
                    and u.itl_ms is not None and (itl is None or u.itl_ms <= CALM_ITL * itl)
                    and u.ttft_ms is not None and (ttft is None or u.ttft_ms <= CALM_TTFT * ttft)):
                carried.append(u)
    return saturated, carried, calm


def _throughput(rows: Sequence[PodUsage], now: float) -> Throughput:
    rate = math.fsum(u.completed_rate or 0.0 for u in rows)
    itls = [u.itl_ms for u in rows if u.itl_ms is not None]
    return Throughput(rate / len(rows), math.fsum(u.prompt_tokens_rate or 0.0 for u in rows) / rate,
                      math.fsum(u.output_tokens_rate or 0.0 for u in rows) / rate, now,
                      max(itls) if itls else None)


def saturated_throughput(snapshot: ModelSnapshot, samples: Mapping[VariantKey, Sequence[PodSample]], now: float
                         ) -> dict[VariantKey, Throughput]:
    """Per variant, what its pods completed this cycle while saturated: at or over the queue threshold (or the KV
    threshold), and not draining (backlog growth ≥ 0) — the most a replica carries."""
    out: dict[VariantKey, Throughput] = {}
    for v in snapshot.variants:
        rows = _windows(samples.get(v.spec.key, ()), snapshot.config, (None, None))[0]
        if rows:
            out[v.spec.key] = _throughput(rows, now)
    return out


def point_of(usage: Sequence[PodUsage], now: float) -> Point | None:
    """The variant's pods' mean batch, ITL and prefill this cycle, weighted by batch (None: not measured)."""
    rows = [u for u in usage if u.mean_running and u.itl_ms and u.prefill_ms and u.prompt_tokens_mean]
    batch = [u.mean_running or 0.0 for u in rows]
    weight = math.fsum(batch)
    if weight <= 0:
        return None
    itl = math.fsum([b * float(u.itl_ms or 0.0) for b, u in zip(batch, rows, strict=True)]) / weight
    prompt = math.fsum([b * float(u.prompt_tokens_mean or 0.0) for b, u in zip(batch, rows, strict=True)]) / weight
    prefill = math.fsum([b * float(u.prefill_ms or 0.0) for b, u in zip(batch, rows, strict=True)]) / weight
    rate = math.fsum([u.completed_rate or 0.0 for u in rows]) / len(rows)
    return Point(weight / len(rows), itl, prompt, prefill, now, rate)


def carried_throughput(snapshot: ModelSnapshot, samples: Mapping[VariantKey, Sequence[PodSample]], now: float,
                       targets: tuple[float | None, float | None]) -> dict[VariantKey, Throughput]:
    """Per variant, what its pods carried this cycle well within the targets (under the queue and KV thresholds,
    mean ITL and TTFT at most CALM_ITL, CALM_TTFT of the targets): a replica carries at least that."""
    out: dict[VariantKey, Throughput] = {}
    for v in snapshot.variants:
        rows = _windows(samples.get(v.spec.key, ()), snapshot.config, targets)[1]
        if rows:
            out[v.spec.key] = _throughput(rows, now)
    return out


def _gone(before: Mapping[str, float], found: Sequence[PodSample], status: WorkloadStatus | None, namespace: str,
          unread: set[str]) -> tuple[float, dict[str, float]]:
    """What the variant's pods gone since the last cycle had waiting, and this cycle's pod → waiting to remember.

    A pod is gone when it is not read this cycle, its metrics did not fail, the Deployment does not list it, and
    the Deployment has fewer ready pods than were read last cycle: a ready pod that only missed a read is not gone.
    Of the pods that may be gone, only as many as the ready count fell by, those with the fewest waiting."""
    seen = {s.pod: s.queue_length for s in found}
    unseen = [(pod, w) for pod, w in before.items() if pod not in seen]
    if not unseen:  # the usual cycle: every pod read again
        return 0.0, seen
    still = {pod: w for pod, w in unseen if f"{namespace}/{pod}" in unread}
    listed = {t.pod for t in status.pods} if status is not None else set()
    missing = sorted(w for pod, w in unseen if pod not in still and pod not in listed and math.isfinite(w))
    left = len(missing) if status is None else min(len(missing), max(0, len(before) - status.ready_replicas))
    return math.fsum(missing[:left]), {**still, **seen}


def observe(state: CapacityState, snapshots: Sequence[ModelSnapshot], samples: Mapping[VariantKey, Sequence[PodSample]],
            statuses: Mapping[VariantKey, WorkloadStatus | None], now: float,
            targets: Mapping[ModelRef, tuple[float | None, float | None]] | None = None,
            usage: Mapping[VariantKey, Sequence[PodUsage]] | None = None,
            failed: Sequence[str] = ()) -> CapacityState:
    """This cycle's demand samples, saturated and carried throughputs, one-point measurements and start-ups.
    `usage`: each variant's samples' usage, in order (the cycle has it; else taken from `samples`); `failed`: the
    pods (namespace/pod) whose metrics could not be read this cycle (not gone: nothing of theirs is handed back)."""
    carried = dict(state.carried)
    history, lengths = dict(state.history), dict(state.lengths)
    saturated, points, startups = dict(state.saturated), dict(state.points), dict(state.startups)
    waiting = dict(state.waiting)
    unread = set(failed)
    if usage is None:
        usage = {k: [s.usage for s in found if s.usage is not None] for k, found in samples.items()}
    for snap in snapshots:
        model = (snap.namespace, snap.model_id)
        pods = [u for v in snap.variants for u in usage.get(v.spec.key, ())]
        gone = 0.0
        for v in snap.variants:
            key = v.spec.key
            gone_waiting, waiting[key] = _gone(state.waiting.get(key, {}), samples.get(key, ()), statuses.get(key),
                                               snap.namespace, unread)
            gone += gone_waiting
        sample = demand_sample(pods, now, gone)
        history[model] = history.get(model, DemandHistory()).kept(now - KEEP_HISTORY, now).append(sample)
        if sample is not None and sample.completed > 0 and sample.output_rate > 0:
            lengths[model] = (sample.prompt_rate / sample.completed, sample.output_rate / sample.completed)
        cfg, limits = snap.config, (targets or {}).get(model, (None, None))
        found = [(v.spec.key, _windows(samples.get(v.spec.key, ()), cfg, limits)) for v in snap.variants]
        for key, (busy, _, _) in found:  # saturated_throughput
            if busy:
                t = _throughput(busy, now)
                saturated[key] = tuple(x for x in saturated.get(key, ()) if x.at > now - KEEP_SATURATED)[-19:] + (t,)
        for key, (_, easy, _) in found:  # carried_throughput
            if easy:
                t = _throughput(easy, now)
                carried[key] = tuple(x for x in carried.get(key, ()) if x.at > now - KEEP_SATURATED)[-19:] + (t,)
        for key, (_, _, calm) in found:
            point = point_of(calm, now)  # an overloaded pod's ITL tells its overload, not its capacity
            if point is not None:
                points[key] = point
            startups[key] = track_startup(startups.get(key, Startup()), statuses.get(key), now)
    return replace(state, history=history, lengths=lengths, saturated=saturated, points=points, startups=startups,
                   carried=carried, waiting=waiting)


def record(state: CapacityState, decisions: Sequence[Decision], now: float) -> CapacityState:
    """Keep each capacity-planned model's need of this cycle (forecast included) for the hold, and each
    variant's capacity estimate (the smoothing's window)."""
    needs = dict(state.needs)
    estimates = dict(state.estimates)
    seen: set[ModelRef] = set()
    for d in decisions:
        plan = d.steps.capacity_plan
        model = (d.key.namespace, d.model_id)
        if plan is None or model in seen:
            continue
        seen.add(model)
        needs[model] = needs.get(model, NeedHistory()).kept(now - KEEP_HISTORY, now).append(
            now, max(plan.demand.need, plan.demand.up))
        for c in plan.variants:
            if c.estimate is not None and c.source != "none":
                estimates[c.key] = (*estimates.get(c.key, ())[-(SMOOTH_CYCLES - 2):], c.estimate)
    return replace(state, needs=needs, estimates=estimates)


def kept_only(found: Mapping[K, V], keep: set[K]) -> Mapping[K, V]:
    """`found` without the keys that are not in `keep`; `found` itself when none is gone, checked set against set
    on the hashes the dict and the set hold already (no key is hashed again: a variant's key hashes in Python)."""
    if keep.issuperset(set(found)):
        return found
    return {k: v for k, v in found.items() if k in keep}


def forget(state: CapacityState, keep_variants: set[VariantKey], keep_models: set[ModelRef]) -> CapacityState:
    """The state without the variants and models that left the inventory."""
    return CapacityState(kept_only(state.history, keep_models), kept_only(state.needs, keep_models),
                         kept_only(state.lengths, keep_models), kept_only(state.saturated, keep_variants),
                         kept_only(state.points, keep_variants), kept_only(state.startups, keep_variants),
                         kept_only(state.models, keep_variants), kept_only(state.carried, keep_variants),
                         kept_only(state.estimates, keep_variants), state.known, state.known_settings,
                         kept_only(state.waiting, keep_variants))


__all__ = ["CALM_ITL", "CALM_TTFT", "CapacityState", "Point", "Startup", "carried_throughput", "demand_sample",
           "forget", "kept_only", "observe", "point_of", "record",
           "saturated_throughput", "track_startup"]
