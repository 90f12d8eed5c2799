"""Capacity mode's performance models and the engine's inputs, from the capacity memory and the planner. Pure.

`keep_models` remembers each variant's last usable model (rebuilt only when its numbers change); `inputs_for`
builds the engine's `CapacityInputs` for one model from the memory (`kedascaler.loop.capacity.CapacityState`), the
planner's parameters and the inventory: per variant its model (given or learned coefficients, else the last usable
fit, else a one-point model from what its pods showed), its measured and carried throughputs, its start-up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from kedascaler.engine.capacity_types import (
    ONE_POINT,
    CapacityInputs,
    CapacitySettings,
    DemandHistory,
    NeedHistory,
    Throughput,
    VariantEvidence,
)
from kedascaler.engine.estimation import MAX_PREFILL_SHARE, prefill_mode_for, prefill_stall
from kedascaler.engine.perfmodel import (
    DEFAULT_MAX_BATCH_SIZE,
    EFFECTIVE,
    MIXED,
    Coefficients,
    Estimated,
    PerfModel,
    perf_model,
)
from kedascaler.engine.types import ModelSnapshot, VariantKey
from kedascaler.loop.capacity import CARRIED_TOP, CapacityState, Point, Startup
from kedascaler.loop.planner import PlannerState, VariantParameters, variant_parameters
from kedascaler.spec.variant import VariantAutoscaling


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


def _pending_for(startup: Startup | None, now: float | None) -> float | None:
    """Seconds since the variant's oldest replica still starting was asked for (None: none is; inf: not known)."""
    if startup is None or not startup.pending_since:
        return None
    oldest = startup.pending_since[0]
    return max(0.0, now - oldest) if now is not None and math.isfinite(oldest) else math.inf


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
            return built, (f"{ONE_POINT} (ITL {point.itl_ms:.3g} ms at batch {point.batch:.3g}, prefill "
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
            batch = va.profile.max_batch_size if va is not None else None
            kv = planner.kv_tokens.get(key)
            mode = prefill_mode_for(params.source)
            kept = models.get(key)
            if kept is not None and kept[1] == params.source and _built_of(kept[0], params.coefficients, batch, kv,
                                                                          mode):
                built: PerfModel | None = kept[0]  # the very numbers perf_model would take: the same model
            else:
                built, _ = perf_model(params.coefficients, batch, kv_capacity_tokens=kv, prefill_mode=mode)
            if built is not None:
                models[key] = (built, params.source, now)
    return replace(state, models=models)


def _same(a: object, b: object) -> bool:
    return a is b or (type(a) is type(b) and a == b)


def _built_of(model: PerfModel, c: Coefficients, batch: int | None, kv: int | None, mode: str) -> bool:
    """Whether `perf_model(c, batch, kv_capacity_tokens=kv, prefill_mode=mode)` builds `model` (a usable model
    kept from a cycle before): the same objects, or equal ones of the same type, field by field."""
    return (_same(model.alpha, c.alpha) and _same(model.beta, c.beta) and _same(model.gamma, c.gamma)
            and _same(model.delta, c.delta) and model.prefill_mode == mode and _same(model.kv_capacity_tokens, kv)
            and _same(model.max_batch_size, batch if batch is not None else DEFAULT_MAX_BATCH_SIZE))


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
            va.startup_s if va is not None else None, carried, state.estimates.get(key, ()),
            _pending_for(startup, now), recent_saturated=measured[-1] if measured else None))
    return CapacityInputs(settings, state.history.get(model, DemandHistory()), state.needs.get(model, NeedHistory()),
                          tuple(evidence), slo[0], slo[1], slo_reason, state.lengths.get(model),
                          tuple(sorted((available or {}).items())))


__all__ = ["inputs_for", "keep_models", "one_point"]
