"""Capacity mode in the cycle: what it keeps between cycles, and the engine's inputs built from it. Pure.

`CapacityState` (one immutable value in `CycleState.capacity`) holds, per model, the recent `DemandSample`s (the
arrival rate from the pods' counters, one per cycle) and the needs of past cycles (the hold); per variant, the
throughputs measured while saturated, the last ITL/prefill its pods showed (a one-point model until a fit is
usable), and its start-up tracker (pod asked for → ready, from `WorkloadStatus` current/ready).

`observe` folds one cycle's usage and statuses into the state; `inputs_for` builds the engine's
`CapacityInputs` for one model from it and the planner's parameters; `record` keeps the need the engine
decided (read back from the decision's steps, so the hold is exactly what was decided).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from kedascaler.engine.capacity_estimate import SMOOTH_CYCLES
from kedascaler.engine.capacity_types import (
    CapacityInputs,
    CapacitySettings,
    DemandHistory,
    DemandSample,
    NeedHistory,
    Throughput,
    VariantEvidence,
)
from kedascaler.engine.estimation import MAX_PREFILL_SHARE, prefill_mode_for, prefill_stall
from kedascaler.engine.frozen import quick
from kedascaler.engine.perfmodel import DEFAULT_MAX_BATCH_SIZE, EFFECTIVE, MIXED, Estimated, PerfModel, perf_model
from kedascaler.engine.types import Decision, ModelSnapshot, VariantKey
from kedascaler.loop.planner import PlannerState, VariantParameters, variant_parameters
from kedascaler.sources.base import PodSample, PodUsage, WorkloadStatus
from kedascaler.sources.gateway import ModelRef
from kedascaler.spec.variant import VariantAutoscaling

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


def demand_sample(usage: Sequence[PodUsage], now: float) -> DemandSample | None:
    """The model's arrivals this cycle from its pods' usage (None: no pod gave request counters)."""
    done = [u for u in usage if u.completed_rate is not None]
    if not done:
        return None
    completed = math.fsum(u.completed_rate or 0.0 for u in done)
    growth = math.fsum(u.backlog_growth_rate for u in usage if u.backlog_growth_rate is not None)
    window = math.fsum(u.window_s for u in done) / len(done)
    values = (completed, growth, window)
    if not all(math.isfinite(v) for v in values) or window <= 0:
        return None
    return DemandSample(now, max(0.0, completed + growth), completed,
                        math.fsum(u.prompt_tokens_rate or 0.0 for u in done),
                        math.fsum(u.output_tokens_rate or 0.0 for u in done), window)


def track_startup(found: Startup, status: WorkloadStatus | None, now: float, keep: int = STARTUP_SAMPLES) -> Startup:
    """Follow a variant's pending replicas: each new one is stamped with the previous cycle's clock (it was asked
    for since then, so a start-up is never understated), each that turns ready is measured (oldest first). Pods
    already loading when the variant is first seen have no known start and are not measured."""
    if status is None:
        return found
    pending = max(0, status.current_replicas - status.ready_replicas)
    if found.seen_at is None:
        return Startup((math.nan,) * pending, (), now)
    since, samples = list(found.pending_since), list(found.samples)
    while len(since) > pending:  # fewer pending: the oldest turned ready (or pods were removed, not ready first)
        start = since.pop(0)
        if status.ready_replicas > 0 and math.isfinite(start):
            samples.append(max(0.0, now - start))
    while len(since) < pending:
        since.append(found.seen_at)
    return Startup(tuple(since), tuple(samples[-keep:]), now)


def saturated_throughput(snapshot: ModelSnapshot, samples: Mapping[VariantKey, Sequence[PodSample]], now: float
                         ) -> dict[VariantKey, Throughput]:
    """Per variant, what its pods completed this cycle while saturated: at or over the queue threshold (or the KV
    threshold), and not draining (backlog growth ≥ 0) — the most a replica carries."""
    cfg = snapshot.config
    out: dict[VariantKey, Throughput] = {}
    for v in snapshot.variants:
        rows = [s.usage for s in samples.get(v.spec.key, ())
                if s.usage is not None and s.usage.completed_rate
                and (s.queue_length >= cfg.queue_length_threshold or s.kv_cache_usage >= cfg.kv_cache_threshold)
                and (s.usage.backlog_growth_rate or 0.0) >= 0.0]
        if not rows:
            continue
        rate = math.fsum(u.completed_rate or 0.0 for u in rows)
        out[v.spec.key] = Throughput(rate / len(rows), math.fsum(u.prompt_tokens_rate or 0.0 for u in rows) / rate,
                                     math.fsum(u.output_tokens_rate or 0.0 for u in rows) / rate, now)
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
    itl, ttft = targets
    if itl is None and ttft is None:
        return {}
    cfg = snapshot.config
    out: dict[VariantKey, Throughput] = {}
    for v in snapshot.variants:
        rows = [x.usage for x in samples.get(v.spec.key, ()) if x.usage is not None and x.usage.completed_rate
                and x.queue_length < cfg.queue_length_threshold and x.kv_cache_usage < cfg.kv_cache_threshold
                and x.usage.itl_ms is not None and (itl is None or x.usage.itl_ms <= CALM_ITL * itl)
                and x.usage.ttft_ms is not None and (ttft is None or x.usage.ttft_ms <= CALM_TTFT * ttft)]
        if rows:
            rate = math.fsum(u.completed_rate or 0.0 for u in rows)
            out[v.spec.key] = Throughput(rate / len(rows), math.fsum(u.prompt_tokens_rate or 0.0 for u in rows) / rate,
                                         math.fsum(u.output_tokens_rate or 0.0 for u in rows) / rate, now)
    return out


def observe(state: CapacityState, snapshots: Sequence[ModelSnapshot], samples: Mapping[VariantKey, Sequence[PodSample]],
            statuses: Mapping[VariantKey, WorkloadStatus | None], now: float,
            targets: Mapping[ModelRef, tuple[float | None, float | None]] | None = None,
            usage: Mapping[VariantKey, Sequence[PodUsage]] | None = None) -> CapacityState:
    """This cycle's demand samples, saturated and carried throughputs, one-point measurements and start-ups.
    `usage`: each variant's samples' usage, in order (the cycle has it; else taken from `samples`)."""
    carried = dict(state.carried)
    history, lengths = dict(state.history), dict(state.lengths)
    saturated, points, startups = dict(state.saturated), dict(state.points), dict(state.startups)
    if usage is None:
        usage = {k: [s.usage for s in found if s.usage is not None] for k, found in samples.items()}
    for snap in snapshots:
        model = (snap.namespace, snap.model_id)
        pods = [u for v in snap.variants for u in usage.get(v.spec.key, ())]
        sample = demand_sample(pods, now)
        history[model] = history.get(model, DemandHistory()).kept(now - KEEP_HISTORY, now).append(sample)
        if sample is not None and sample.completed > 0 and sample.output_rate > 0:
            lengths[model] = (sample.prompt_rate / sample.completed, sample.output_rate / sample.completed)
        for key, t in saturated_throughput(snap, samples, now).items():
            saturated[key] = tuple(x for x in saturated.get(key, ()) if x.at > now - KEEP_SATURATED)[-19:] + (t,)
        for key, t in carried_throughput(snap, samples, now, (targets or {}).get(model, (None, None))).items():
            carried[key] = tuple(x for x in carried.get(key, ()) if x.at > now - KEEP_SATURATED)[-19:] + (t,)
        cfg = snap.config
        for v in snap.variants:
            calm = [x.usage for x in samples.get(v.spec.key, ()) if x.usage is not None
                    and x.queue_length < cfg.queue_length_threshold and x.kv_cache_usage < cfg.kv_cache_threshold]
            point = point_of(calm, now)  # an overloaded pod's ITL tells its overload, not its capacity
            if point is not None:
                points[v.spec.key] = point
            startups[v.spec.key] = track_startup(startups.get(v.spec.key, Startup()), statuses.get(v.spec.key), now)
    return replace(state, history=history, lengths=lengths, saturated=saturated, points=points, startups=startups,
                   carried=carried)


def one_point(point: Point, batch: int | None, kv: int | None, decode: tuple[float, float] | None = None,
              prefill: tuple[float, float] | None = None) -> PerfModel | None:
    """A model from what the pods showed in one window, with a usable fitted line in place of either half.

    Prefill, with no fitted decode line: the line through (p, prefill) with γ = min(prefill, ITL) (a busy pod's
    prefill includes the decodes of its steps: on the safe side). Decode, as step times (`mixed`): the ITL seen
    less the share of the prefill stalls at the load it carried (ρ = rate · δ·p), on a line that reaches the
    compute roofline at the batch limit B — a decode step does the compute of one prompt token per running
    request, so ITL(B) ≥ B·δ — and is flat when the point is above it (memory-bound). A fitted line is effective
    (stalls inside): with one, the model is `effective`, and the prefill half is the stall one prompt adds to the
    step it joins (`estimation.prefill_stall`: under load a request's prefill also holds the prompts admitted
    with it, so P − ITL read as one prompt's work made the capacity fall as the load rose), per prompt token δ,
    on the decode line's intercept γ = α̂ (a prompt joins a decode step)."""
    if prefill is not None:
        gamma, delta = prefill
    elif decode is not None:  # the window's own stall per prompt token, on the fitted decode line's intercept
        _, stall = prefill_stall(point.itl_ms, point.prefill_ms, point.rate)
        gamma, delta = decode[0], stall / max(1.0, point.prompt_tokens)
    else:
        gamma = min(point.prefill_ms, point.itl_ms)
        delta = max(0.0, (point.prefill_ms - gamma) / max(1.0, point.prompt_tokens))
    if decode is not None:
        alpha, beta = decode
        mode = EFFECTIVE
    else:
        share = min(MAX_PREFILL_SHARE, max(0.0, point.rate * delta * point.prompt_tokens / 1000.0))
        step = point.itl_ms * (1.0 - share)
        limit = float(batch or DEFAULT_MAX_BATCH_SIZE)
        roof = max(step, limit * delta)
        beta = (roof - step) / max(1.0, limit - point.batch) if limit > point.batch else 0.0
        alpha = max(0.0, step - beta * point.batch)
        gamma = max(gamma, alpha) if prefill is None else gamma
        mode = MIXED
    built, _ = perf_model(Estimated(alpha, beta, gamma, delta), batch, kv_capacity_tokens=kv, prefill_mode=mode)
    return built


def _half_fits(planner: PlannerState, key: VariantKey) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """The decode and prefill lines of the variant's fit that are usable on their own (either may be None)."""
    found = planner.learned.get(key)
    est = found.estimate if found is not None else None
    if est is None:
        return None, None
    decode = (est.decode.intercept, max(0.0, est.decode.slope)) if est.decode.usable else None
    prefill = (est.prefill.intercept, max(0.0, est.prefill.slope)) if est.prefill.usable else None
    return decode, prefill


def _params(planner: PlannerState, key: VariantKey, va: VariantAutoscaling | None,
            fresh: Mapping[VariantKey, VariantParameters] | None) -> VariantParameters:
    """The variant's parameters: this cycle's from the planner (`fresh`: `plan_cycle` computed them from the same
    state and inventory), else computed."""
    found = fresh.get(key) if fresh is not None else None
    return found if found is not None else variant_parameters(planner, key, va)


def _perf(key: VariantKey, va: VariantAutoscaling | None, planner: PlannerState, point: Point | None,
          kept: tuple[PerfModel, str, float] | None, fresh: Mapping[VariantKey, VariantParameters] | None = None,
          now: float | None = None) -> tuple[PerfModel | None, str, str]:
    """The variant's model: given or learned coefficients, else the last usable fit, else a one-point model
    from what its pods showed (with whichever fitted line is usable). `now`: the cycle's clock, when
    `keep_models` ran in it (a model it kept at `now` is the one these parameters build)."""
    params = _params(planner, key, va, fresh)
    if params.coefficients is not None and kept is not None and now is not None and kept[2] == now \
            and kept[1] == params.source:
        return kept[0], params.source, ""
    batch = va.profile.max_batch_size if va is not None else None
    kv = planner.kv_tokens.get(key)
    if params.coefficients is not None:
        built, problem = perf_model(params.coefficients, batch, kv_capacity_tokens=kv,
                                    prefill_mode=prefill_mode_for(params.source))
        if built is not None:
            return built, params.source, ""
        return None, "", problem
    if kept is not None:
        return kept[0], f"{kept[1]} (the last usable fit, t={kept[2]:g}; now: {params.reason})", ""
    if point is not None and point.itl_ms > 0:
        decode, prefill = _half_fits(planner, key)
        built = one_point(point, batch, kv, decode, prefill)
        if built is not None:
            halves = ", ".join(n for n, line in (("decode", decode), ("prefill", prefill)) if line is not None)
            return built, (f"one-point (ITL {point.itl_ms:.3g} ms at batch {point.batch:.3g}, prefill "
                           f"{point.prefill_ms:.3g} ms at {point.prompt_tokens:.0f} tokens"
                           + (f"; fitted {halves}" if halves else "") + f"; {params.reason})"), ""
    return None, "", params.reason


def keep_models(state: CapacityState, snapshots: Sequence[ModelSnapshot], planner: PlannerState,
                variants: Mapping[VariantKey, VariantAutoscaling], now: float,
                fresh: Mapping[VariantKey, VariantParameters] | None = None) -> CapacityState:
    """Remember each variant's last usable model, so that a fit that turns unusable for a while (too few
    distinct batches in the window) does not send sizing back to a one-point guess."""
    models = dict(state.models)
    for snap in snapshots:
        for v in snap.variants:
            key = v.spec.key
            va = variants.get(key)
            params = _params(planner, key, va, fresh)
            if params.coefficients is None:
                continue
            built, _ = perf_model(params.coefficients, va.profile.max_batch_size if va is not None else None,
                                  kv_capacity_tokens=planner.kv_tokens.get(key),
                                  prefill_mode=prefill_mode_for(params.source))
            if built is not None:
                models[key] = (built, params.source, now)
    return replace(state, models=models)


def inputs_for(state: CapacityState, settings: CapacitySettings, snapshot: ModelSnapshot, planner: PlannerState,
               variants: Mapping[VariantKey, VariantAutoscaling], slo: tuple[float | None, float | None],
               slo_reason: str = "", available: Mapping[str, int] | None = None,
               fresh: Mapping[VariantKey, VariantParameters] | None = None, now: float | None = None
               ) -> CapacityInputs:
    """The engine's inputs for one model from the state, the planner's parameters and the inventory. `now`: the
    cycle's clock when `keep_models` ran in this cycle with the same `fresh` (its models are reused)."""
    model = (snapshot.namespace, snapshot.model_id)
    evidence = []
    for v in snapshot.variants:
        key = v.spec.key
        va = variants.get(key)
        perf, source, reason = _perf(key, va, planner, state.points.get(key), state.models.get(key), fresh, now)
        measured = state.saturated.get(key, ())
        best = max(measured, key=lambda t: t.per_replica) if measured else None
        startup = state.startups.get(key)
        calm = sorted(state.carried.get(key, ()), key=lambda t: -t.per_replica)[:CARRIED_TOP]
        carried = None
        if calm:
            carried = Throughput(math.fsum(t.per_replica for t in calm) / len(calm),
                                 math.fsum(t.prompt_tokens for t in calm) / len(calm),
                                 math.fsum(t.output_tokens for t in calm) / len(calm), max(t.at for t in calm))
        evidence.append(VariantEvidence(
            key, perf, source, reason, best, va.profile.max_batch_size if va is not None else None,
            planner.kv_tokens.get(key), startup.measured if startup is not None else None,
            va.startup_s if va is not None else None, carried, state.estimates.get(key, ())))
    return CapacityInputs(settings, state.history.get(model, DemandHistory()), state.needs.get(model, NeedHistory()),
                          tuple(evidence), slo[0], slo[1], slo_reason, state.lengths.get(model),
                          tuple(sorted((available or {}).items())))


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
                         kept_only(state.estimates, keep_variants), state.known, state.known_settings)


__all__ = ["CALM_ITL", "CALM_TTFT", "CapacityState", "Point", "Startup", "carried_throughput", "demand_sample",
           "forget", "inputs_for", "keep_models", "kept_only", "observe", "one_point", "point_of", "record",
           "saturated_throughput", "track_startup"]
