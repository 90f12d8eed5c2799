"""decide(): one model snapshot and the previous decisions in, one Decision per variant out. Pure.

The pipeline, each step a small function: stale data → hold the previous decisions; else analyse saturation
→ plan the model's total (needed N against Σ current, which counts replicas still starting, so loading pods
never cause a cascade) → split it over the variants with the selector → one Decision per variant whose
Reason names the binding signal, its value and threshold.

Missing data never scales down: with no fresh metrics at all, each variant keeps its previous desired (raised to
current, within min/max), marked stale with the previous `data_at`; with partial data the model may grow but not
shrink. The floor (v1: max(Σ min_replicas, 1)) is `model_floor`, or the caller's `floor=` (for scale to zero).

Thresholds: `snapshot.config` sizes the model; a variant's `VariantSpec.saturation` override only changes how
its own pods are classified (saturated or not, their spare) — see `kedascaler.engine.saturation`.

Hybrid (`sizing=`, a `ModelSizing` from `kedascaler.engine.sizing`): the model-based plan is the plan and the
saturation plan the guard-rail (`hybrid_targets`); the stale and scale-to-zero paths keep priority.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from kedascaler.engine.activation import INACTIVE, Activation, activation
from kedascaler.engine.saturation import ModelSaturation, analysed_pods, analyze
from kedascaler.engine.selector import clamp_replicas, min_total, scale_down_order, scale_up_order, select_targets
from kedascaler.engine.sizing import HYBRID, MODEL, SATURATION, HybridPlan, ModelSizing, hybrid_targets
from kedascaler.engine.types import Decision, ModelSnapshot, Reason, VariantKey, VariantSpec, VariantState

SCALE_UP = "scale-up"
SCALE_DOWN = "scale-down"
HOLD = "hold"
STALE = "stale"
BOUNDS = "bounds"


@dataclass(frozen=True)
class ModelPlan:
    """The model-level outcome of one cycle: what it needs, what it aims at, and the per-variant targets."""

    saturation: ModelSaturation
    floor: int  # the fewest replicas the model may run this cycle
    goal: int  # max(needed, floor): the total the model should run
    mode: str  # SCALE_UP | SCALE_DOWN | HOLD
    targets: Mapping[VariantKey, int]  # per variant, within its min/max

    @property
    def total(self) -> int:
        """What the targets add up to (differs from `goal` when min/max or safety stop it)."""
        return sum(self.targets.values())


def model_floor(snapshot: ModelSnapshot) -> int:
    """v1 keeps every model warm: Σ min_replicas, and never fewer than one replica (scale to zero comes later)."""
    return max(min_total([v.spec for v in snapshot.variants]), 1)


def has_fresh_data(snapshot: ModelSnapshot) -> bool:
    """False when no variant is fresh, or no pod reported while some replicas are ready: nothing to decide on."""
    if not any(v.metrics_fresh for v in snapshot.variants):
        return False
    analysed = sum(len(analysed_pods(v)) for v in snapshot.variants)
    return analysed > 0 or sum(v.ready_replicas for v in snapshot.variants) == 0


def plan_model(snapshot: ModelSnapshot, *, floor: int | None = None) -> ModelPlan:
    """Needed N against Σ current: more → up by the difference; fewer and safe → down; else hold within bounds."""
    sat = analyze(snapshot)
    floor = model_floor(snapshot) if floor is None else max(0, floor)
    goal = max(sat.needed_replicas, floor)
    current = sat.current_replicas
    pairs = [(v.spec, v.current_replicas) for v in snapshot.variants]
    within_bounds = sum(clamp_replicas(s, c) for s, c in pairs)
    # A replica added only to reach a variant's min is not running yet: it never stands in for one removed.
    raised = sum(max(0, clamp_replicas(s, c) - c) for s, c in pairs)
    if goal > current:
        mode, total = SCALE_UP, max(goal, within_bounds)
    elif goal < current and sat.can_scale_down:
        mode, total = SCALE_DOWN, goal + raised
    else:
        # Hold the model's size; a variant pushed under its max hands its excess to the cheapest with room.
        mode, total = HOLD, max(current, within_bounds)
    return ModelPlan(sat, floor, goal, mode, select_targets(pairs, total))


def _label(spec: VariantSpec) -> str:
    return f"{spec.key.name} ({spec.accelerator})" if spec.accelerator else spec.key.name


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _changes(plan: ModelPlan, snapshot: ModelSnapshot) -> str:
    """The per-variant moves, in the order the selector made them, e.g. '+3 on a100 (A100), cost 20, cheapest'."""
    specs = [v.spec for v in snapshot.variants]
    current = {v.spec.key: v.current_replicas for v in snapshot.variants}
    order = scale_down_order(specs) if plan.mode == SCALE_DOWN else scale_up_order(specs)
    cheapest, priciest = scale_up_order(specs)[0].key, scale_down_order(specs)[0].key
    parts = []
    for spec in order:
        diff = plan.targets[spec.key] - current[spec.key]
        if diff == 0:
            continue
        tag = ", cheapest" if diff > 0 and spec.key == cheapest and len(specs) > 1 else ""
        tag = ", most expensive" if diff < 0 and spec.key == priciest and len(specs) > 1 else tag
        parts.append(f"{diff:+d} on {_label(spec)}, cost {spec.cost:g}{tag}")
    return "; ".join(parts)


def _why_no_scale_down(sat: ModelSaturation) -> str:
    """Name the rule that keeps replicas which the load alone would let go."""
    if sat.stale_variants:
        return "metrics not fresh for " + ", ".join(k.name for k in sat.stale_variants)
    if sat.missing_replicas:
        return f"{_plural(sat.missing_replicas, 'ready pod')} without metrics"
    if not sat.replicas:
        return "no replica reported metrics yet"
    return "fewer than 2 replicas"


def _model_message(plan: ModelPlan, snapshot: ModelSnapshot) -> str:
    """The numbers behind the model's plan, in the words of the docs."""
    sat, cfg = plan.saturation, snapshot.config
    text = (f"model needs {_plural(sat.needed_replicas, 'replica')} for kv {sat.estimated_kv_total:.2f} and queue "
            f"{sat.estimated_queue_total:.3g} (spare triggers kv {cfg.kv_spare_trigger:g}, queue "
            f"{cfg.queue_spare_trigger:g}); runs {sat.current_replicas}")
    if sat.pending_replicas:
        text += f" ({sat.pending_replicas} starting)"
    if sat.missing_replicas:
        text += f"; {_plural(sat.missing_replicas, 'ready pod')} without metrics counted at the average"
    if plan.floor > sat.needed_replicas:
        text += f"; floor {plan.floor}"
    if plan.mode == HOLD and plan.goal < sat.current_replicas:
        text += f"; no scale-down: {_why_no_scale_down(sat)}"
    if plan.mode == SCALE_UP and plan.total < plan.goal:
        text += f"; capped at {plan.total} by max_replicas"
    if plan.mode == SCALE_DOWN and plan.total > plan.goal:
        text += f"; held at {plan.total} by min_replicas"
    moves = _changes(plan, snapshot)
    return f"{text}; {moves}" if moves else text


def _reason(plan: ModelPlan, variant: VariantState, message: str) -> Reason:
    """This variant's reason: the model's action when the variant moved with it, else hold or bounds."""
    sat, spec = plan.saturation, variant.spec
    current, target = variant.current_replicas, plan.targets[spec.key]
    load = Reason(HOLD, sat.binding_signal, sat.binding_load_per_replica(sat.current_replicas),
                  sat.binding_threshold, message)
    clamped = clamp_replicas(spec, current)
    if target == current:
        return load
    if plan.mode == SCALE_UP and target > clamped:
        if sat.needed_replicas > sat.current_replicas:
            return Reason(SCALE_UP, load.signal, load.value, load.threshold, message)
        return Reason(BOUNDS, "min_replicas", float(sat.current_replicas), float(plan.floor), message)
    if plan.mode == SCALE_DOWN and target < clamped:
        return Reason(SCALE_DOWN, load.signal, load.value, load.threshold, message)
    if current < spec.min_replicas:
        return Reason(BOUNDS, "min_replicas", float(current), float(spec.min_replicas), message)
    if spec.max_replicas is not None and current > spec.max_replicas:
        return Reason(BOUNDS, "max_replicas", float(current), float(spec.max_replicas), message)
    return Reason(BOUNDS, "max_replicas", float(current), None,
                  message + "; takes the replicas other variants may not run above their max")


def _data_at(snapshot: ModelSnapshot) -> float:
    """Newest timestamp among the pods analysed (a sample without one counts as taken at `taken_at`)."""
    stamps = [p.timestamp for v in snapshot.variants for p in analysed_pods(v) if p.timestamp > 0]
    return max(stamps) if stamps else snapshot.taken_at


def _stale_decisions(snapshot: ModelSnapshot, previous: Mapping[VariantKey, Decision]) -> tuple[Decision, ...]:
    """No fresh data: keep each previous decision (never below current, always within min/max), marked stale."""
    if not any(v.metrics_fresh for v in snapshot.variants):
        why = "metrics could not be read for any variant"
    else:
        ready = sum(v.ready_replicas for v in snapshot.variants)
        why = f"none of {_plural(ready, 'ready replica')} reported metrics"
    out = []
    for v in snapshot.variants:
        key, prev = v.spec.key, previous.get(v.spec.key)
        if prev is not None:
            desired = clamp_replicas(v.spec, max(prev.desired_replicas, v.current_replicas))
            active, data_at = prev.active or desired > 0, prev.data_at
            held = f"holding the decision of t={prev.decided_at:g} ({prev.desired_replicas} replicas)"
        else:
            desired = clamp_replicas(v.spec, max(v.current_replicas, v.spec.min_replicas))
            active, data_at = desired > 0, snapshot.taken_at
            held = "no previous decision, holding current replicas"
        message = f"no fresh metrics for model {snapshot.model_id}: {why}; {held}; never scales down on missing data"
        out.append(Decision(key=key, model_id=v.spec.model_id, desired_replicas=desired, active=active,
                            reason=Reason(STALE, "metrics", None, None, message),
                            current_replicas=v.current_replicas, ready_replicas=v.ready_replicas,
                            decided_at=snapshot.taken_at, data_at=data_at, stale=True))
    return tuple(out)


def _inactive_decisions(snapshot: ModelSnapshot, act: Activation) -> tuple[Decision, ...]:
    """The model is idle past its window: zero replicas for every variant, inactive."""
    message = f"model {snapshot.model_id} {act.message}; every variant to 0"
    reason = Reason(INACTIVE, act.signal, act.idle_for, act.window, message)
    return tuple(
        Decision(key=v.spec.key, model_id=v.spec.model_id, desired_replicas=0, active=False, reason=reason,
                 current_replicas=v.current_replicas, ready_replicas=v.ready_replicas, decided_at=snapshot.taken_at,
                 data_at=_data_at(snapshot), last_activity_at=act.last_activity_at)
        for v in snapshot.variants
    )


def _with_activation(decisions: tuple[Decision, ...], act: Activation) -> tuple[Decision, ...]:
    """Scale-to-zero models: a variant is active exactly when it is asked to run (KEDA 0→1 agrees with HPA 1→N)."""
    out = []
    for d in decisions:
        reason = d.reason
        if act.waking and d.desired_replicas > 0:
            reason = Reason(SCALE_UP, act.signal, act.value, None, f"woken from zero, {act.message}; {reason.message}")
        else:
            reason = replace(reason, message=f"{reason.message}; {act.message}")
        out.append(replace(d, active=d.desired_replicas > 0, reason=reason, last_activity_at=act.last_activity_at))
    return tuple(out)


def decide(snapshot: ModelSnapshot, previous: Mapping[VariantKey, Decision], *,
           floor: int | None = None, sizing: ModelSizing | None = None, mode: str = HYBRID) -> tuple[Decision, ...]:
    """One Decision per variant of the snapshot, in snapshot order; `floor` overrides model_floor.

    With `snapshot.idle_window` set and every minReplicas 0, the model may go to zero: see
    `kedascaler.engine.activation` (inactive → 0 everywhere; active → at least one replica, cheapest first).

    `sizing` (hybrid mode, `kedascaler.engine.sizing`): the model-based plan is the plan and saturation the
    safety net (`hybrid_targets`: never fewer than saturation asks, down only when both agree). A fallback
    sizing keeps the saturation decision, its reason appended. Stale data and scale to zero come first.
    `mode`: HYBRID (as above), MODEL (the model-based plan alone, within min/max and the floor) or SATURATION
    (`sizing` ignored).
    """
    if not snapshot.variants:
        return ()
    if mode == SATURATION:
        sizing = None
    model_only = mode == MODEL
    act = activation(snapshot, previous)
    if act is None:
        return _decide_warm(snapshot, previous, floor, sizing, model_only)
    if not act.active:
        return _inactive_decisions(snapshot, act)
    if act.waking or has_fresh_data(snapshot):  # coming back from zero needs no metrics: there are no pods
        return _with_activation(_planned(snapshot, floor, sizing, model_only), act)
    return _with_activation(_stale_decisions(snapshot, previous), act)


def _decide_warm(snapshot: ModelSnapshot, previous: Mapping[VariantKey, Decision],
                 floor: int | None, sizing: ModelSizing | None = None, model_only: bool = False
                 ) -> tuple[Decision, ...]:
    """v1: the model is always kept warm (floor ≥ 1 unless the caller says otherwise)."""
    if not has_fresh_data(snapshot):
        return _stale_decisions(snapshot, previous)
    return _planned(snapshot, floor, sizing, model_only)


SLO_CAPACITY = "slo_capacity"


def _model_targets(plan: ModelPlan, snapshot: ModelSnapshot, sizing: ModelSizing) -> dict[VariantKey, int]:
    """The sizing's replicas per variant within min/max (a variant it does not name keeps its current),
    raised to the model's floor (cheapest first)."""
    planned = sizing.targets
    pairs = [(v.spec, clamp_replicas(v.spec, planned.get(v.spec.key, v.current_replicas))) for v in snapshot.variants]
    targets = {spec.key: n for spec, n in pairs}
    if sum(targets.values()) < plan.floor:
        targets = select_targets(pairs, plan.floor)
    return targets


def _hybrid(plan: ModelPlan, snapshot: ModelSnapshot, sizing: ModelSizing, model_only: bool = False
            ) -> tuple[Decision, ...]:
    """Hybrid: the model plan, saturation as the guard-rail (none with `model_only`); reasons name the plan taken."""
    current = {v.spec.key: v.current_replicas for v in snapshot.variants}
    model = _model_targets(plan, snapshot, sizing)
    if model_only:
        hybrid = HybridPlan(model, MODEL, "model mode: saturation is not consulted")
    else:
        hybrid = hybrid_targets(model, plan.targets, current)
    predicted = {v.key: (v.itl_ms, v.ttft_ms) for v in sizing.variants}
    targets = {k: hybrid.targets[k] for k in current}
    total, now = sum(targets.values()), sum(current.values())
    mode = SCALE_UP if total > now else SCALE_DOWN if total < now else HOLD
    taken = replace(plan, mode=mode, targets=targets)
    sat_message = _model_message(plan, snapshot)
    label = "model" if model_only else "hybrid"
    message = f"{label}, {hybrid.source} plan taken ({hybrid.reason}); slo: {sizing.reason}; saturation: {sat_message}"
    moves = _changes(taken, snapshot)
    if moves:
        message += f"; {label} moves: {moves}"
    data_at = _data_at(snapshot)
    out = []
    for v in snapshot.variants:
        target = targets[v.spec.key]
        action = SCALE_UP if target > v.current_replicas else SCALE_DOWN if target < v.current_replicas else HOLD
        if hybrid.source == MODEL:
            reason = Reason(action, SLO_CAPACITY, sizing.arrival_rate, sizing.capacity, message)
        else:
            sat = plan.saturation
            reason = Reason(action, sat.binding_signal, sat.binding_load_per_replica(sat.current_replicas),
                            sat.binding_threshold, message)
        itl, ttft = predicted.get(v.spec.key, (None, None)) if hybrid.source == MODEL and target > 0 else (None, None)
        out.append(Decision(key=v.spec.key, model_id=v.spec.model_id, desired_replicas=target, active=target > 0,
                            reason=reason, current_replicas=v.current_replicas, ready_replicas=v.ready_replicas,
                            decided_at=snapshot.taken_at, data_at=data_at, predicted_itl_ms=_finite(itl),
                            predicted_ttft_ms=_finite(ttft)))
    return tuple(out)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _planned(snapshot: ModelSnapshot, floor: int | None, sizing: ModelSizing | None = None,
             model_only: bool = False) -> tuple[Decision, ...]:
    """Plan the model and split it over its variants (hybrid with the model-based plan when `sizing` is usable)."""
    plan = plan_model(snapshot, floor=floor)
    if sizing is not None and not sizing.fallback:
        return _hybrid(plan, snapshot, sizing, model_only)
    message = _model_message(plan, snapshot)
    if sizing is not None:
        message += f"; {sizing.reason}"
    data_at = _data_at(snapshot)
    return tuple(
        Decision(key=v.spec.key, model_id=v.spec.model_id, desired_replicas=plan.targets[v.spec.key],
                 # per variant: a variant asked for 0 is not woken by KEDA just because its model has load
                 active=plan.targets[v.spec.key] > 0,
                 reason=_reason(plan, v, message), current_replicas=v.current_replicas,
                 ready_replicas=v.ready_replicas, decided_at=snapshot.taken_at, data_at=data_at)
        for v in snapshot.variants
    )


__all__ = ["BOUNDS", "HOLD", "INACTIVE", "SCALE_DOWN", "SCALE_UP", "SLO_CAPACITY", "STALE", "ModelPlan", "decide",
           "has_fresh_data", "model_floor", "plan_model"]
