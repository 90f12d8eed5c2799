"""decide(): one model snapshot and the previous decisions in, one Decision per variant out. Pure.

The pipeline, each step a small function:
1. activation (`kedascaler.engine.activation`): with scale to zero on for the model, whether it is active;
2. one route for the model, each giving the model's steps and a target per variant:
   - *inactive*: idle past its window, every variant to zero;
   - *stale*: no fresh data (and not waking from zero), each variant holds its previous decision;
   - *planned*: analyse saturation → plan the model's total (needed N against Σ current, which counts
     replicas still starting, so loading pods never cause a cascade) → split it over the variants with the
     selector; with a usable model-based sizing, the model plan in hybrid or model mode;
   - *capacity* (mode CAPACITY with `capacity=` inputs, `kedascaler.engine.capacity`): the arrival rate in
     capacity units at the cheapest mix per unit of capacity, with the engine's own hold;
3. one Decision per variant, built in one place (`_decision`): its target within min/max (the one clamp of a
   decision), its active flag, its `DecisionSteps` (every number above) and the Reason rendered from them
   (`kedascaler.engine.explain`).

Missing data never scales down: with no fresh metrics at all, each variant keeps its previous desired (raised to
current, within min/max), marked stale with the previous `data_at`; with partial data the model may grow but not
shrink. The floor, the fewest replicas a model runs while it is active, is `model_floor` (Σ min_replicas, and
at least one) or the caller's `floor=`; a model idle past its window goes to zero by the inactive route.

Thresholds: `snapshot.config` sizes the model; a variant's `VariantSpec.saturation` override only changes how
its own pods are classified (saturated or not, their spare) — see `kedascaler.engine.saturation`.

Hybrid (`sizing=`, a `ModelSizing` from `kedascaler.engine.sizing`): the model-based plan is the plan and the
saturation plan the guard-rail (`hybrid_targets`); the stale and scale-to-zero routes keep priority.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from kedascaler.engine import explain
from kedascaler.engine.activation import INACTIVE, activation
from kedascaler.engine.capacity import plan_capacity
from kedascaler.engine.capacity_types import CapacityInputs
from kedascaler.engine.demand import ModelSizing
from kedascaler.engine.explain_capacity import capacity_message
from kedascaler.engine.frozen import evolve, quick
from kedascaler.engine.modes import HYBRID, MODEL, SATURATION, HybridPlan, hybrid_targets
from kedascaler.engine.saturation import (
    ModelSaturation,
    analysed_pods,
    analyze,
    spare_means,
    variant_replicas,
    variant_thresholds,
)
from kedascaler.engine.selector import clamp_replicas, min_total, select_targets
from kedascaler.engine.types import (
    Action,
    Activation,
    Decision,
    DecisionSteps,
    ModelSnapshot,
    ReplicaSaturation,
    Route,
    ScalingMode,
    VariantKey,
    VariantState,
    VariantTarget,
)

SCALE_UP = Action.SCALE_UP
SCALE_DOWN = Action.SCALE_DOWN
HOLD = Action.HOLD
STALE = Action.STALE
BOUNDS = Action.BOUNDS
SLO_CAPACITY = "slo_capacity"
DEMAND = "capacity_demand"  # capacity mode: the demand (req/s) against the mix's capacity

_NO_STEPS = DecisionSteps()  # every field at its default: the records below are it, evolved (engine/frozen.py)
_Why = tuple[Action, str, float | None, float | None]  # a variant's reason in numbers: action, signal, value, threshold
_Latencies = tuple[float | None, float | None]  # predicted ITL and TTFT (ms)


@quick
@dataclass(frozen=True)
class ModelPlan:
    """The model-level outcome of the saturation plan: what it needs, what it aims at, and the per-variant targets."""

    saturation: ModelSaturation
    floor: int  # the fewest replicas the model may run this cycle
    goal: int  # max(needed, floor): the total the model should run
    mode: Action  # SCALE_UP | SCALE_DOWN | HOLD
    targets: Mapping[VariantKey, int]  # per variant, within its min/max

    @property
    def total(self) -> int:
        """What the targets add up to (differs from `goal` when min/max or safety stop it)."""
        return sum(self.targets.values())


@quick
@dataclass(frozen=True)
class _Outcome:
    """One route's outcome for the model: its steps (targets in `plan`), and per variant its reason in numbers."""

    steps: DecisionSteps
    why: Mapping[VariantKey, _Why]
    predicted: Mapping[VariantKey, _Latencies] = field(default_factory=dict)
    # per variant, its analysed pods as the saturation analysis classified them (None: not analysed)
    pods: Mapping[VariantKey, tuple[ReplicaSaturation, ...]] | None = None


def _pods_by_variant(sat: ModelSaturation) -> Mapping[VariantKey, tuple[ReplicaSaturation, ...]]:
    """The analysis' replicas per variant (`analyze` classifies each variant's pods against its own thresholds,
    as a decision shows them): the decisions reuse them instead of classifying every pod again."""
    return sat.by_variant


def model_floor(snapshot: ModelSnapshot) -> int:
    """The fewest replicas an active model runs: Σ min_replicas, and never fewer than one (an idle model goes to
    zero by the inactive route, not by its floor)."""
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


def decide(snapshot: ModelSnapshot, previous: Mapping[VariantKey, Decision], *,
           floor: int | None = None, sizing: ModelSizing | None = None, mode: str = HYBRID,
           capacity: CapacityInputs | None = None) -> tuple[Decision, ...]:
    """One Decision per variant of the snapshot, in snapshot order; `floor` overrides model_floor.

    With `snapshot.idle_window` set and every minReplicas 0, the model may go to zero: see
    `kedascaler.engine.activation` (inactive → 0 everywhere; active → at least one replica, cheapest first).

    `sizing` (hybrid mode, `kedascaler.engine.sizing`): the model-based plan is the plan and saturation the
    safety net (`hybrid_targets`: never fewer than saturation asks, down only when both agree). A fallback
    sizing keeps the saturation decision, its reason appended. Stale data and scale to zero come first.
    `mode`: HYBRID (as above), MODEL (the model-based plan alone, within min/max and the floor) or SATURATION
    (`sizing` ignored), or CAPACITY with `capacity` (`kedascaler.engine.capacity`: the arrival rate in capacity
    units, the cheapest mix per unit of capacity, the engine's own hold; saturation without `capacity`).
    """
    if not snapshot.variants:
        return ()
    act = activation(snapshot, previous)
    if act is not None and not act.active:
        outcome = _inactive(snapshot, act)
    elif (act is not None and act.waking) or has_fresh_data(snapshot):  # waking needs no metrics: no pods yet
        if mode == ScalingMode.CAPACITY and capacity is not None:
            outcome = _capacity(plan_model(snapshot, floor=floor), snapshot, capacity, previous)
        else:
            outcome = _planned(snapshot, floor, None if mode in (SATURATION, ScalingMode.CAPACITY) else sizing,
                               mode == MODEL)
    else:
        outcome = _held(snapshot, previous)
    steps = _within_bounds(outcome.steps, snapshot, act)
    data_at = _data_at(snapshot)
    # a capacity plan's message is the model's, whichever variant it is told for: rendered once
    message = (capacity_message(steps.capacity_plan)
               if steps.route == Route.CAPACITY and steps.capacity_plan is not None else None)
    return tuple(_decision(snapshot, v, steps, outcome, previous.get(v.spec.key), data_at, message)
                 for v in snapshot.variants)


def _within_bounds(steps: DecisionSteps, snapshot: ModelSnapshot, act: Activation | None = None) -> DecisionSteps:
    """Every target within its variant's min/max: the one clamp every decision goes through; with the model's
    activation (`act`) in the same record."""
    specs = {v.spec.key: v.spec for v in snapshot.variants}
    plan = []
    for t in steps.plan:
        target = clamp_replicas(specs[t.key], t.target)
        plan.append(t if target == t.target else evolve(t, target=target))  # within bounds already: the same
    return evolve(steps, plan=tuple(plan), activation=act)


def _decision(snapshot: ModelSnapshot, variant: VariantState, model: DecisionSteps, outcome: _Outcome,
              prev: Decision | None, data_at: float, message: str | None = None) -> Decision:
    """The one place a Decision is built: the model's steps with this variant's view, and the reason from them."""
    key = variant.spec.key
    action, signal, value, threshold = outcome.why[key]
    thresholds = variant_thresholds(variant, snapshot)
    found = outcome.pods.get(key) if outcome.pods is not None else None
    pods = found if found is not None else variant_replicas(variant, thresholds)
    spare_kv, spare_queue = spare_means(pods)
    steps = evolve(model, variant=key, action=action, signal=signal, value=value, threshold=threshold,
                    thresholds=thresholds, pods=pods, spare_kv=spare_kv, spare_queue=spare_queue,
                    saturation_level=max((p.kv_cache_usage for p in pods), default=0.0))
    desired = next(t.target for t in steps.plan if t.key is key or t.key == key)  # `is`: the same key, no __eq__
    stale = steps.route == Route.STALE
    # A variant asked for 0 is not woken by KEDA just because its model has load; a held decision keeps its flag.
    active = desired > 0 or (stale and steps.activation is None and prev is not None and prev.active)
    if stale:
        data_at = prev.data_at if prev is not None else snapshot.taken_at
        if prev is not None:
            steps = evolve(steps, held_decided_at=prev.decided_at, held_desired=prev.desired_replicas)
    itl, ttft = outcome.predicted.get(key, (None, None))
    return Decision(key=key, model_id=variant.spec.model_id, desired_replicas=desired, active=active,
                    reason=explain.reason(steps, snapshot.model_id, message), current_replicas=variant.current_replicas,
                    ready_replicas=variant.ready_replicas, decided_at=snapshot.taken_at, data_at=data_at,
                    stale=stale, last_activity_at=steps.activation.last_activity_at if steps.activation else None,
                    predicted_itl_ms=itl, predicted_ttft_ms=ttft, steps=steps)


def _data_at(snapshot: ModelSnapshot) -> float:
    """Newest timestamp among the pods analysed (a sample without one counts as taken at `taken_at`)."""
    stamps = [p.timestamp for v in snapshot.variants for p in analysed_pods(v) if p.timestamp > 0]
    return max(stamps) if stamps else snapshot.taken_at


def _targets(snapshot: ModelSnapshot, target: Mapping[VariantKey, int],
             saturation: Mapping[VariantKey, int] | None = None, model: Mapping[VariantKey, int] | None = None
             ) -> tuple[VariantTarget, ...]:
    """The plan in snapshot order: each variant's price, its replicas now, and what each plan asks."""
    return tuple(VariantTarget(v.spec.key, v.spec.accelerator, v.spec.cost, v.current_replicas, target[v.spec.key],
                               None if saturation is None else saturation[v.spec.key],
                               None if model is None else model[v.spec.key])
                 for v in snapshot.variants)


def _counted(snapshot: ModelSnapshot, route: Route) -> DecisionSteps:
    """The model's replica counts when it is not analysed (stale or inactive)."""
    analysed = [len(analysed_pods(v)) for v in snapshot.variants]
    return evolve(
        _NO_STEPS, route=route, current_total=sum(v.current_replicas for v in snapshot.variants),
        ready_total=sum(v.ready_replicas for v in snapshot.variants),
        pending_total=sum(v.pending_replicas for v in snapshot.variants),
        missing_total=sum(max(0, v.ready_replicas - n) for v, n in zip(snapshot.variants, analysed, strict=True)),
        analysed_total=sum(analysed),
        stale_variants=tuple(v.spec.key for v in snapshot.variants if not v.metrics_fresh),
        model_thresholds=snapshot.config)


def _inactive(snapshot: ModelSnapshot, act: Activation) -> _Outcome:
    """The model is idle past its window: zero replicas for every variant, inactive."""
    zero = {v.spec.key: 0 for v in snapshot.variants}
    steps = evolve(_counted(snapshot, Route.INACTIVE), plan=_targets(snapshot, zero))
    why: _Why = (INACTIVE, act.signal, act.idle_for, act.window)
    return _Outcome(steps, {v.spec.key: why for v in snapshot.variants})


def _held(snapshot: ModelSnapshot, previous: Mapping[VariantKey, Decision]) -> _Outcome:
    """No fresh data: keep each previous decision, never below current (`_within_bounds` keeps it in min/max)."""
    held = {v.spec.key: max(previous[v.spec.key].desired_replicas, v.current_replicas) if v.spec.key in previous
            else v.current_replicas for v in snapshot.variants}
    why: _Why = (STALE, "metrics", None, None)
    return _Outcome(evolve(_counted(snapshot, Route.STALE), plan=_targets(snapshot, held)), {k: why for k in held})


def _saturation_fields(plan: ModelPlan, snapshot: ModelSnapshot, route: Route) -> dict[str, object]:
    """The fields of `_saturation_steps` but its plan (a route that takes another plan sets its own)."""
    sat = plan.saturation
    return dict(
        route=route, taken=ScalingMode.SATURATION, binding_signal=sat.binding_signal, model_action=plan.mode,
        signal=sat.binding_signal, value=sat.binding_load_per_replica(sat.current_replicas),
        threshold=sat.binding_threshold, needed_replicas=sat.needed_replicas, floor=plan.floor, goal=plan.goal,
        current_total=sat.current_replicas, ready_total=sat.ready_replicas, pending_total=sat.pending_replicas,
        missing_total=sat.missing_replicas, analysed_total=sat.analysed_replicas, stale_variants=sat.stale_variants,
        estimated_kv_total=sat.estimated_kv_total, estimated_queue_total=sat.estimated_queue_total,
        avg_spare_kv=sat.avg_spare_kv, avg_spare_queue=sat.avg_spare_queue, model_thresholds=snapshot.config)


def _saturation_steps(plan: ModelPlan, snapshot: ModelSnapshot, route: Route) -> DecisionSteps:
    """The steps of the saturation plan: the analysis and the plan's numbers, its targets as the plan taken."""
    return evolve(_NO_STEPS, **_saturation_fields(plan, snapshot, route),
                  plan=_targets(snapshot, plan.targets, plan.targets))


def _planned(snapshot: ModelSnapshot, floor: int | None, sizing: ModelSizing | None, model_only: bool) -> _Outcome:
    """Plan the model and split it over its variants (hybrid with the model-based plan when `sizing` is usable)."""
    plan = plan_model(snapshot, floor=floor)
    if sizing is not None and not sizing.fallback:
        return _hybrid(plan, snapshot, sizing, model_only)
    steps = evolve(_saturation_steps(plan, snapshot, Route.SATURATION),
                    sizing_note=None if sizing is None else sizing.reason)
    return _Outcome(steps, {v.spec.key: _variant_why(plan, steps, v) for v in snapshot.variants},
                    pods=_pods_by_variant(plan.saturation))


def _variant_why(plan: ModelPlan, steps: DecisionSteps, variant: VariantState) -> _Why:
    """This variant's reason: the model's action when the variant moved with it, else hold or bounds."""
    sat, spec = plan.saturation, variant.spec
    current, target = variant.current_replicas, plan.targets[spec.key]
    load: _Why = (HOLD, steps.signal, steps.value, steps.threshold)
    clamped = clamp_replicas(spec, current)
    if target == current:
        return load
    if plan.mode == SCALE_UP and target > clamped:
        if sat.needed_replicas > sat.current_replicas:
            return (SCALE_UP, *load[1:])
        return (BOUNDS, "min_replicas", float(sat.current_replicas), float(plan.floor))
    if plan.mode == SCALE_DOWN and target < clamped:
        return (SCALE_DOWN, *load[1:])
    if current < spec.min_replicas:
        return (BOUNDS, "min_replicas", float(current), float(spec.min_replicas))
    if spec.max_replicas is not None and current > spec.max_replicas:
        return (BOUNDS, "max_replicas", float(current), float(spec.max_replicas))
    return (BOUNDS, "max_replicas", float(current), None)  # takes the excess of others (explain.EXCESS_NOTE)


def _model_targets(plan: ModelPlan, snapshot: ModelSnapshot, sizing: ModelSizing) -> dict[VariantKey, int]:
    """The sizing's replicas per variant within min/max (a variant it does not name keeps its current),
    raised to the model's floor (cheapest first)."""
    planned = sizing.targets
    pairs = [(v.spec, clamp_replicas(v.spec, planned.get(v.spec.key, v.current_replicas))) for v in snapshot.variants]
    targets = {spec.key: n for spec, n in pairs}
    if sum(targets.values()) < plan.floor:
        targets = select_targets(pairs, plan.floor)
    return targets


def _hybrid(plan: ModelPlan, snapshot: ModelSnapshot, sizing: ModelSizing, model_only: bool) -> _Outcome:
    """Hybrid: the model plan, saturation as the guard-rail (none with `model_only`); reasons name the plan taken."""
    current = {v.spec.key: v.current_replicas for v in snapshot.variants}
    model = _model_targets(plan, snapshot, sizing)
    if model_only:
        hybrid = HybridPlan(model, MODEL, explain.MODEL_ONLY_NOTE)
    else:
        hybrid = hybrid_targets(model, plan.targets, current)
    targets = {k: hybrid.targets[k] for k in current}
    steps = evolve(_saturation_steps(plan, snapshot, Route.MODEL if model_only else Route.HYBRID),
                    taken=hybrid.source, plan=_targets(snapshot, targets, plan.targets, model),
                    arrival_rate=sizing.arrival_rate, capacity=sizing.capacity, sizing_note=sizing.reason)
    if hybrid.source == MODEL:
        steps = evolve(steps, signal=SLO_CAPACITY, value=sizing.arrival_rate, threshold=sizing.capacity)
    predicted = {v.key: (_finite(v.itl_ms), _finite(v.ttft_ms)) for v in sizing.variants}
    why: dict[VariantKey, _Why] = {}
    latencies: dict[VariantKey, _Latencies] = {}
    for key, target in targets.items():
        action = SCALE_UP if target > current[key] else SCALE_DOWN if target < current[key] else HOLD
        why[key] = (action, steps.signal, steps.value, steps.threshold)
        if hybrid.source == MODEL and target > 0:
            latencies[key] = predicted.get(key, (None, None))
    return _Outcome(steps, why, latencies, _pods_by_variant(plan.saturation))


def _capacity(plan: ModelPlan, snapshot: ModelSnapshot, inputs: CapacityInputs,
              previous: Mapping[VariantKey, Decision]) -> _Outcome:
    """Capacity mode: the capacity plan's targets (saturation's, never below current, when it cannot plan)."""
    last = ({v.spec.key: previous[v.spec.key].desired_replicas for v in snapshot.variants}
            if all(v.spec.key in previous for v in snapshot.variants) else None)
    out = plan_capacity(snapshot, plan.saturation, inputs, plan.floor, dict(plan.targets), last)
    fields = _saturation_fields(plan, snapshot, Route.CAPACITY)  # the saturation steps, with the route's plan
    current = {v.spec.key: v.current_replicas for v in snapshot.variants}
    if out.plan is None:
        fields.update(plan=_targets(snapshot, out.targets, plan.targets), sizing_note=out.note)
    else:
        d = out.plan.demand
        fields.update(taken=ScalingMode.CAPACITY, signal=DEMAND, value=d.target, threshold=out.plan.mix_capacity,
                      plan=_targets(snapshot, out.targets, plan.targets), arrival_rate=d.target,
                      capacity=out.plan.mix_capacity, capacity_plan=out.plan)
    steps = evolve(_NO_STEPS, **fields)
    why: dict[VariantKey, _Why] = {}
    for key, target in out.targets.items():
        action = SCALE_UP if target > current[key] else SCALE_DOWN if target < current[key] else HOLD
        why[key] = (action, steps.signal, steps.value, steps.threshold)
    return _Outcome(steps, why, pods=_pods_by_variant(plan.saturation))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


__all__ = ["BOUNDS", "DEMAND", "HOLD", "INACTIVE", "SCALE_DOWN", "SCALE_UP", "SLO_CAPACITY", "STALE", "ModelPlan",
           "decide", "has_fresh_data", "model_floor", "plan_model"]
