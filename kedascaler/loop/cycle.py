"""One cycle, one way: `step(state, inputs) -> (report, new_state)`, pure.

The inputs are what the shell gathered this cycle — the inventory, each variant's workload status, the
metrics samples, the clock reading, the gateway queues and the pushed wake-ups; the state is everything kept
between cycles — the previous decisions, the last full cycle's SLO plans, the planner's observations and
fits, each directly scraped pod's last counter reading — as one immutable value. `serve`
(`kedascaler.loop.reconcile.Reconciler`) is a thin timer around this function; the simulator's kedascaler
policies call the very same function with simulated inputs.

No I/O and no clock here. One model's failure (engine or sizing) never loses another model's decision: it
keeps its previous decisions and the error is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from kedascaler.engine import decide
from kedascaler.engine.capacity import with_demand, with_rows
from kedascaler.engine.capacity_types import CapacityInputs, CapacityRow
from kedascaler.engine.frozen import quick
from kedascaler.engine.sizing import CAPACITY
from kedascaler.engine.types import Decision, ModelSnapshot, VariantKey
from kedascaler.loop import capacity as capacity_loop
from kedascaler.loop import capacity_models
from kedascaler.loop.capacity import CapacityState
from kedascaler.loop.capacity_rows import evaluate as evaluate_rows
from kedascaler.loop.planner import PlannerSettings, PlannerState, SloPlan, VariantParameters, plan_cycle
from kedascaler.loop.snapshots import assign_samples, build_snapshots, scale_to_zero_settings, with_activation
from kedascaler.sources.base import CollectResult, CounterReading, PodUsage, WorkloadStatus
from kedascaler.sources.gateway import ActivationReading, ModelRef
from kedascaler.sources.scrape import usage_between
from kedascaler.spec.inventory import InventoryState
from kedascaler.spec.variant import VariantAutoscaling

log = logging.getLogger("kedascaler.loop.cycle")

PodRef = tuple[str, str]  # (namespace, pod)


class Stage(StrEnum):
    """Where in the cycle an error happened (the `stage` label of kedascaler_reconcile_errors_total)."""

    COLLECT = "collect"  # the metrics source
    WORKLOAD = "workload"  # a Deployment's replicas or pods
    ACTIVATION = "activation"  # the gateway queue
    SLO = "slo"  # SLO sizing (every model falls back to saturation)
    ENGINE = "engine"  # one model's decision (it keeps its previous decisions)


class CycleError(str):
    """One error of a cycle: the message a user reads, and the stage it comes from (typed, never parsed)."""

    stage: Stage

    def __new__(cls, stage: Stage, message: str) -> CycleError:
        error = super().__new__(cls, message)
        error.stage = stage
        return error


@quick
@dataclass(frozen=True)
class CycleConfig:
    """What a run's cycles share: constant from the first cycle to the last.

    `idle_window` (s): the global scale-to-zero window (None: only VAs with scaleToZero.idleWindowSeconds);
    `gateway`: a gateway queue is read (an activation source); `pushes`: pushed wake-ups arrive (an inbox).
    Without either, nothing could wake a model at zero, so every model is kept warm. `planner`: SLO sizing
    (None: saturation only)."""

    idle_window: float | None = None
    gateway: bool = False
    pushes: bool = False
    planner: PlannerSettings | None = None
    forget_counters_after: float = 600.0  # a pod's last counter reading is kept this long (window clock, s)


@quick
@dataclass(frozen=True)
class CycleState:
    """Everything kept between cycles."""

    config: CycleConfig = field(default_factory=CycleConfig)
    previous: Mapping[VariantKey, Decision] = field(default_factory=dict)
    plans: Mapping[ModelRef, SloPlan] = field(default_factory=dict)  # the last full cycle's, reused by wake-ups
    planner: PlannerState = field(default_factory=PlannerState)
    warnings: tuple[str, ...] = ()  # the metrics source's warnings last cycle (logged when they change)
    counters: Mapping[PodRef, CounterReading] = field(default_factory=dict)  # each pod's last counter reading
    capacity: CapacityState = field(default_factory=CapacityState)  # capacity mode's history, needs, start-ups
    cycles: int = 0


@quick
@dataclass(frozen=True)
class CycleInputs:
    """What the shell gathered for one cycle."""

    inventory: InventoryState
    statuses: Mapping[VariantKey, WorkloadStatus | None]  # per variant decided; None: no workload source
    collect: CollectResult
    now: float
    gateway: ActivationReading | None = None  # the gateway queues read this cycle (None: none read)
    pushed: Mapping[ModelRef, float] | None = None  # newest pushed request per model (None: no push endpoint)
    models: frozenset[ModelRef] | None = None  # a wake-up cycle's models; None: a full cycle
    errors: tuple[CycleError, ...] = ()  # what went wrong gathering the inputs (workload lookups)


@quick
@dataclass(frozen=True)
class CycleReport:
    """What one cycle did: for the board, status, /metrics, records, logs, the demo's printout and tests."""

    decisions: tuple[Decision, ...]
    snapshots: tuple[ModelSnapshot, ...]
    collect: CollectResult
    errors: tuple[CycleError, ...]
    duration_s: float = 0.0  # set by the shell, which has the clock
    models: tuple[ModelRef, ...] | None = None  # a wake-up cycle's models; None: a full cycle
    usage: Mapping[VariantKey, tuple[PodUsage, ...]] = field(default_factory=dict)  # per-pod window usage
    plans: Mapping[ModelRef, SloPlan] = field(default_factory=dict)  # SLO sizing per model (with a planner)
    parameters: Mapping[VariantKey, VariantParameters] = field(default_factory=dict)  # per variant (with a planner)
    warnings_changed: bool = False  # the metrics source's warnings differ from the last cycle's


def scale_to_zero_models(inventory: InventoryState, config: CycleConfig, models: frozenset[ModelRef] | None = None
                         ) -> tuple[list[ModelRef], dict[ModelRef, str]]:
    """The models whose gateway queue a full cycle reads (scale to zero on), and their query overrides.

    The shell calls it before the cycle to know what to read; empty when nothing could wake a model."""
    if not (config.gateway or config.pushes):
        return [], {}
    variants = [v for v in inventory.variants if models is None or (v.key.namespace, v.model_id) in models]
    settings = scale_to_zero_settings(variants, config.idle_window)
    enabled = [m for m, s in settings.items() if s.window is not None]
    return enabled, {m: s.query for m, s in settings.items() if s.query and s.window is not None}


def with_usage(collect: CollectResult, previous: Mapping[PodRef, CounterReading], forget_after: float
               ) -> tuple[CollectResult, dict[PodRef, CounterReading]]:
    """Each directly scraped sample's usage since its pod's previous reading (none on a pod's first read, or
    after a counter reset), and the readings to keep: this cycle's, plus earlier ones younger than `forget_after`."""
    if not any(s.counters is not None for s in collect.samples):
        return collect, dict(previous)
    samples = []
    readings = dict(previous)
    for s in collect.samples:
        reading = s.counters
        if reading is None:
            samples.append(s)
            continue
        ref = (s.namespace, s.pod)
        before = previous.get(ref)
        if before is not None and s.usage is None:
            s = replace(s, usage=usage_between(before, reading, reading.at - before.at))
        readings[ref] = reading
        samples.append(s)
    newest = max(s.counters.at for s in collect.samples if s.counters is not None)
    kept = {ref: r for ref, r in readings.items() if r.at >= newest - forget_after}
    return replace(collect, samples=tuple(samples)), kept


def step(state: CycleState, inputs: CycleInputs) -> tuple[CycleReport, CycleState]:
    """One cycle for every model of the inventory, or (a wake-up cycle) for `inputs.models` only."""
    config, wanted = state.config, inputs.models
    variants = tuple(v for v in inputs.inventory.variants
                     if wanted is None or (v.key.namespace, v.model_id) in wanted)
    specs = tuple(v.spec for v in variants)
    errors: list[CycleError] = list(inputs.errors)
    collect, counters = with_usage(inputs.collect, state.counters, config.forget_counters_after)
    samples = assign_samples(collect.samples, specs)
    snapshots = build_snapshots(specs, inputs.statuses, samples, collect,
                                inputs.inventory.saturation.for_model, inputs.now, state.previous)
    if config.gateway or config.pushes:  # else nothing could wake a model at zero: keep every model warm
        reading = inputs.gateway if config.gateway else None
        if config.gateway and reading is None:
            reading = ActivationReading()
        if reading is not None:
            errors += [CycleError(Stage.ACTIVATION, e) for e in reading.errors]
        snapshots = with_activation(snapshots, scale_to_zero_settings(variants, config.idle_window), reading,
                                    inputs.pushed if config.pushes else None)
    usage = {key: tuple(s.usage for s in found if s.usage is not None) for key, found in samples.items()}
    plans, planner = state.plans, state.planner
    by_key = {v.key: v for v in inputs.inventory.variants}  # once per cycle: every model below looks up its own
    fresh: Mapping[VariantKey, VariantParameters] | None = None  # this cycle's parameters, once planned
    if config.planner is not None and wanted is None:
        try:
            plans, planner = plan_cycle(planner, config.planner, snapshots, usage, by_key,
                                        inputs.inventory.service_classes, inputs.now)
            fresh = planner.parameters
        except Exception as exc:  # noqa: BLE001 - sizing is an improvement on saturation, never a reason to stop
            log.exception("SLO sizing failed; every model is decided by saturation this cycle")
            errors.append(CycleError(Stage.SLO, f"slo sizing: {exc}"))
            plans = {}
    cap_state = state.capacity
    capacity: dict[ModelRef, CapacityInputs | Exception] = {}
    if config.planner is not None and wanted is None:
        cap_state = capacity_loop.forget(cap_state, set(by_key),
                                         {(v.key.namespace, v.model_id) for v in by_key.values()})
        targets = {m: (p.slo.itl_ms, p.slo.ttft_ms) for m, p in plans.items() if p.slo is not None}
        cap_state = capacity_loop.observe(cap_state, snapshots, samples, inputs.statuses, inputs.now, targets, usage,
                                          collect.failed_pods)
        cap_state = capacity_models.keep_models(cap_state, snapshots, planner, by_key, inputs.now, fresh)
        capacity, cap_state = _capacity_inputs(cap_state, config.planner, snapshots, plans, planner, by_key, fresh,
                                               inputs.now)
    elif config.planner is not None:  # a wake-up cycle: the memory as the last full cycle left it, read only
        capacity, _ = _capacity_inputs(cap_state, config.planner, snapshots, plans, planner, by_key)
    decisions: list[Decision] = []
    for snap in snapshots:
        model = (snap.namespace, snap.model_id)
        plan = plans.get(model)  # a wake-up cycle: the last full cycle's plan
        try:
            if model in capacity:
                cap_inputs = capacity[model]
                if isinstance(cap_inputs, Exception):
                    raise cap_inputs
                decisions += decide(snap, state.previous, mode=CAPACITY, capacity=cap_inputs)
            elif plan is not None:
                decisions += decide(snap, state.previous, sizing=plan.sizing, mode=plan.mode)
            else:
                decisions += decide(snap, state.previous)
        except Exception as exc:  # noqa: BLE001 - keep the other models' decisions
            log.exception("engine failed for model %s/%s; holding its last decisions", snap.namespace, snap.model_id)
            errors.append(CycleError(Stage.ENGINE, f"engine {snap.namespace}/{snap.model_id}: {exc}"))
            decisions += [state.previous[v.spec.key] for v in snap.variants if v.spec.key in state.previous]
    decided = {d.key: d for d in decisions}
    previous = decided if wanted is None else {**state.previous, **decided}
    warnings = collect.warnings
    full = wanted is None
    sized = config.planner is not None and full
    errors += [CycleError(Stage.COLLECT, e) for e in collect.errors]
    report = CycleReport(tuple(decisions), tuple(snapshots), collect, tuple(errors),
                         models=None if full else tuple(sorted(wanted or ())), usage=usage,
                         plans=dict(plans) if sized else {}, parameters=dict(planner.parameters) if sized else {},
                         warnings_changed=bool(warnings) and warnings != state.warnings)
    if config.planner is not None and wanted is None:
        cap_state = capacity_loop.record(cap_state, decisions, inputs.now)
    return report, replace(state, previous=previous, plans=plans, planner=planner, warnings=warnings,
                           counters=counters, capacity=cap_state, cycles=state.cycles + 1)


def _capacity_inputs(cap: CapacityState, settings: PlannerSettings, snapshots: Sequence[ModelSnapshot],
                     plans: Mapping[ModelRef, SloPlan], planner: PlannerState,
                     by_key: Mapping[VariantKey, VariantAutoscaling],
                     fresh: Mapping[VariantKey, VariantParameters] | None = None, kept_at: float | None = None
                     ) -> tuple[dict[ModelRef, CapacityInputs | Exception], CapacityState]:
    """Capacity mode's inputs for every capacity-planned model (the kept history, the planner's parameters, the
    class's targets), with the queueing rows of all of them evaluated at once (`kedascaler.loop.capacity_rows`).
    `kept_at`: this full cycle's clock (`capacity_models.keep_models` kept its models at it)."""
    out: dict[ModelRef, CapacityInputs | Exception] = {}
    rows: list[CapacityRow] = []
    for snap in snapshots:
        model = (snap.namespace, snap.model_id)
        plan = plans.get(model)
        if plan is None or plan.mode != CAPACITY:
            continue
        slo = plan.slo
        targets = (slo.itl_ms, slo.ttft_ms) if slo is not None else (None, None)
        try:
            found = capacity_models.inputs_for(cap, settings.capacity, snap, planner, by_key, targets,
                                             plan.note if slo is None else "", settings.available, fresh, kept_at)
        except Exception as exc:  # noqa: BLE001 - raised again where the model is decided: it alone fails
            out[model] = exc
            continue
        try:
            found = with_demand(snap, found)
            found, more = with_rows(snap, found)
            rows += more
        except Exception:  # noqa: BLE001 - decide meets the same failure for this model alone, and reports it
            pass
        out[model] = found
    try:
        known, cap = evaluate_rows(cap, settings.capacity, rows)
    except Exception:  # noqa: BLE001 - each model then evaluates its own rows (and fails alone)
        log.exception("capacity evaluation for every model at once failed; each model evaluates its own")
        return out, cap
    return {m: c if isinstance(c, Exception) else c.carrying(known=known) for m, c in out.items()}, cap
