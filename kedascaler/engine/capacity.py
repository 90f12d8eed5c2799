"""Capacity mode: size a model for its arrival rate in capacity units, at the cheapest mix per unit of capacity,
with the hysteresis owned by the engine. Pure; `decide(..., mode=CAPACITY, capacity=CapacityInputs)` calls it.

One cycle, each step recorded in the plan (`CapacityPlan`, in `DecisionSteps.capacity_plan`):
1. every variant's start-up: configured, else measured (pod created → ready, kept by the cycle), else the default;
2. the demand (`kedascaler.engine.arrivals`): rate + drain of the backlog, with headroom; the forecast over the
   start-up horizon for scale-up; the largest need of the hold window for scale-down;
3. the capacity per replica of every variant at the SLO (`kedascaler.engine.capacity_estimate`);
4. saturation as the guard, in capacity units: when the ready pods' KV cache leaves less than its spare
   trigger, the model needs at least what saturation's KV count of those replicas carries;
5. the cheapest mix covering the demand, with the switching penalty (`kedascaler.engine.mix`);
6. safety: with missing or stale data no variant goes below its current replicas; make before break (replicas
   dropped only while the ready capacity that stays covers the demand); the model's floor.
No usage this cycle (a first read, a failed usage query) or no capacity estimate for any variant: the
saturation plan, never below the current replicas, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kedascaler.engine.arrivals import demand_view
from kedascaler.engine.capacity_estimate import (
    Candidates,
    candidates,
    capacity_rows,
    capacity_rows_of_candidates,
    variant_capacities,
)
from kedascaler.engine.capacity_types import (
    CapacityInputs,
    CapacityPlan,
    CapacityRow,
    CapacitySettings,
    DemandView,
    VariantEvidence,
)
from kedascaler.engine.frozen import quick
from kedascaler.engine.mix import cheapest_mix, keep_ready, keep_starting
from kedascaler.engine.saturation import ModelSaturation, analysed_pods, kv_budget, replicas_needed
from kedascaler.engine.types import ModelSnapshot, VariantKey, VariantState


@quick
@dataclass(frozen=True)
class CapacityOutcome:
    """The route's targets, its plan (None when it fell back to saturation) and the reason in numbers."""

    targets: dict[VariantKey, int]
    plan: CapacityPlan | None
    note: str  # the fallback's reason ("" when the plan was made)


def startup_of(evidence: VariantEvidence | None, settings: CapacitySettings) -> tuple[float, str]:
    """A variant's start-up (s) and where it comes from: configured, measured, or the default."""
    if evidence is not None and evidence.startup_configured is not None:
        return max(0.0, evidence.startup_configured), "configured"
    if evidence is not None and evidence.startup_s is not None:
        return max(0.0, evidence.startup_s), "measured"
    return max(0.0, settings.default_startup), "default"


def guard_need(sat: ModelSaturation, snapshot: ModelSnapshot, capacities: Sequence[float]) -> tuple[float, str]:
    """Saturation's guard in capacity units: when the ready replicas' KV cache leaves less than its spare trigger
    and saturation's KV count asks for more replicas than are ready, the ready capacity scaled by how far their
    cache is over its budget (kv total / budget × their mean capacity). Not saturation's whole replica count
    × the mean: a cache 4 % over its budget on an H100 and an A100 then asked for a third replica of their mean
    (+50 %), and the mix started four A100s for it (long-outputs-drop, cancelled a cycle later).

    Only the KV signal, and only while no pod queues: it counts the requests running at the current arrivals,
    not a backlog (a pod burning one down holds a full cache that no new pod can relieve). The queue itself is in
    the demand's drain (`kedascaler.engine.arrivals`), so the guard never asks twice for the same requests."""
    cfg = snapshot.config
    if not sat.replicas or (sat.avg_spare_kv is not None and sat.avg_spare_kv >= cfg.kv_spare_trigger):
        return 0.0, ""
    if any(r.queue_length >= cfg.queue_length_threshold for r in sat.replicas):
        return 0.0, ""  # a cache full of a backlog being burnt down: the drain already counts that queue
    ready = [(v.ready_replicas, c) for v, c in zip(snapshot.variants, capacities, strict=True) if v.ready_replicas]
    count = sum(n for n, _ in ready)
    needed = replicas_needed(sat.estimated_kv_total, 0.0, cfg)
    if count <= 0 or needed <= count:
        return 0.0, ""
    mean = math.fsum(n * c for n, c in ready) / count
    worth = sat.estimated_kv_total / kv_budget(cfg)
    return worth * mean, (f"saturation guard: kv {sat.estimated_kv_total:.2f} over a {kv_budget(cfg):g} budget "
                          f"per replica is {worth:.3g} replicas' worth of {mean:.3g} req/s")


def sized_for(demand: DemandView, guard: float, running: float) -> tuple[float, float | None]:
    """What the mix covers, and the capacity the hold kept when it asked for more than runs (else None).

    The need now and the forecast may start replicas; the hold only keeps them: it is the largest need of the
    last start-up, so that a dip does not remove what the next cycle may want back. Past the need, the target is
    at most the capacity of the replicas running now (at this cycle's estimates): when an estimate falls while
    the load does, the hold would otherwise start replicas for a need that has passed."""
    need = max(demand.need, demand.up, guard)
    if demand.held <= max(need, running):
        return max(need, demand.held), None
    return max(need, running), max(need, running)


def _variant_startups(snapshot: ModelSnapshot, inputs: CapacityInputs) -> list[tuple[float, str]]:
    by_key = {e.key: e for e in inputs.variants}
    return [startup_of(by_key.get(v.spec.key), inputs.settings) for v in snapshot.variants]


def _floor(snapshot: ModelSnapshot, targets: dict[VariantKey, int], floor: int) -> dict[VariantKey, int]:
    """Raise the model to its floor where it costs least: a variant with ready replicas first (nothing to start),
    then one with replicas starting, then the cheapest per replica (the floor carries no load to speak of)."""
    out = dict(targets)
    order = sorted(snapshot.variants, key=lambda v: (v.ready_replicas == 0, v.current_replicas == 0, v.spec.cost,
                                                     v.spec.key.name))
    for v in order:
        while sum(out.values()) < floor and (v.spec.max_replicas is None or out[v.spec.key] < v.spec.max_replicas):
            out[v.spec.key] += 1
        if sum(out.values()) >= floor:
            break
    return out


def _demand(snapshot: ModelSnapshot, inputs: CapacityInputs) -> tuple[list[tuple[float, str]], DemandView | None]:
    """Every variant's start-up, and the model's demand over the longest (None: no usage, nothing waiting)."""
    if inputs.demand_of is not None and inputs.demand_of[0] is snapshot:
        return list(inputs.demand_of[1]), inputs.demand_of[2]
    startups = _variant_startups(snapshot, inputs)
    startup = max((t for t, _ in startups), default=inputs.settings.default_startup)
    backlog = math.fsum(max(0.0, p.queue_length) for v in snapshot.variants for p in analysed_pods(v))
    return startups, demand_view(inputs, snapshot.taken_at, backlog, snapshot.gateway_queue, startup)


def _known_candidates(snapshot: ModelSnapshot, inputs: CapacityInputs) -> Candidates | None:
    """The candidates `with_rows` worked out for this very snapshot (None: none)."""
    of = inputs.demand_of
    found = of[3] if of is not None and of[0] is snapshot else None
    return found if isinstance(found, Candidates) else None


def with_demand(snapshot: ModelSnapshot, inputs: CapacityInputs) -> CapacityInputs:
    """`inputs` carrying this snapshot's start-ups and demand, so that the cycle's `capacity_rows_of` and the
    model's `plan_capacity` work them out once (the same numbers: the same function of the same inputs)."""
    startups, demand = _demand(snapshot, inputs)
    return inputs.carrying(demand_of=(snapshot, tuple(startups), demand, None))


def _rows(inputs: CapacityInputs, demand: DemandView, found: Candidates) -> list[CapacityRow]:
    return capacity_rows_of_candidates(found, demand.prompt_tokens, demand.output_tokens, inputs.itl_ms,
                                       inputs.ttft_ms)


def with_rows(snapshot: ModelSnapshot, inputs: CapacityInputs) -> tuple[CapacityInputs, list[CapacityRow]]:
    """`capacity_rows_of`, and `inputs` carrying the capacity candidates those rows come from (`with_demand`'s
    inputs: the candidates are those of its demand's lengths), so `plan_capacity` does not find them again."""
    startups, demand = _demand(snapshot, inputs)
    if demand is None or not snapshot.variants:
        return inputs, []
    found = candidates([v.spec for v in snapshot.variants], inputs.variants, demand.prompt_tokens,
                       demand.output_tokens, inputs.settings)
    return inputs.carrying(demand_of=(snapshot, tuple(startups), demand, found)), _rows(inputs, demand, found)


def capacity_rows_of(snapshot: ModelSnapshot, inputs: CapacityInputs) -> list[CapacityRow]:
    """The queueing-model rows `plan_capacity` evaluates for this model this cycle, so that the cycle can evaluate
    every model's at once (`row_capacities`) and hand them in as `CapacityInputs.known`."""
    _, demand = _demand(snapshot, inputs)
    if demand is None or not snapshot.variants:
        return []
    found = _known_candidates(snapshot, inputs)
    if found is not None:
        return _rows(inputs, demand, found)
    return capacity_rows([v.spec for v in snapshot.variants], inputs.variants, demand.prompt_tokens,
                         demand.output_tokens, inputs.itl_ms, inputs.ttft_ms, inputs.settings)


def _in_flight_due(variants: Sequence[VariantState], inputs: CapacityInputs, startups: Sequence[tuple[float, str]]
                   ) -> bool:
    """Whether every replica still starting was asked for within its variant's start-up (so it is due soon); a pod
    starting for longer, or since before the scaler saw it, may be stuck (no GPU free, an image that will not pull)."""
    starting = [(v.spec.key, startup) for v, (startup, _) in zip(variants, startups, strict=True)
                if v.current_replicas > v.ready_replicas]
    if not starting:
        return True
    pending = {e.key: e.pending_for for e in inputs.variants}
    return all((p := pending.get(key)) is not None and p <= startup for key, startup in starting)


def plan_capacity(snapshot: ModelSnapshot, sat: ModelSaturation, inputs: CapacityInputs, floor: int,
                  saturation_targets: dict[VariantKey, int],
                  previous: Mapping[VariantKey, int] | None = None) -> CapacityOutcome:
    """The capacity route for one model (see the module docstring); `previous`: every variant's target of the
    last cycle (the mix keeps it within `switch_tolerance`), None when some variant has none."""
    s = inputs.settings
    variants = list(snapshot.variants)
    current = {v.spec.key: v.current_replicas for v in variants}
    startups, demand = _demand(snapshot, inputs)
    held = {k: max(n, saturation_targets.get(k, n)) for k, n in current.items()}
    if demand is None:
        return CapacityOutcome(held, None, "capacity: no usage from the pods yet and nothing waiting (a first read, "
                                           "or the usage query failed): current replicas held, saturation may add")
    caps = variant_capacities([v.spec for v in variants], inputs.variants, demand.prompt_tokens, demand.output_tokens,
                              inputs.itl_ms, inputs.ttft_ms, s, startups, inputs.known,
                              _known_candidates(snapshot, inputs))
    per = [c.per_replica for c in caps]
    if not any(c > 0 for c in per):
        return CapacityOutcome(held, None, "capacity: no variant has a capacity estimate ("
                               + "; ".join(f"{c.key.name}: {c.reason}" for c in caps) + "): current replicas held")
    guard, guard_note = guard_need(sat, snapshot, per)
    current_capacity = math.fsum(v.current_replicas * c for v, c in zip(variants, per, strict=True))
    target, hold_kept = sized_for(demand, guard, current_capacity)
    mix = cheapest_mix(variants, per, target, [t for t, _ in startups], s.switch_horizon, dict(inputs.available),
                       in_flight_due=_in_flight_due(variants, inputs, startups), previous=previous,
                       tolerance=s.switch_tolerance)
    targets = dict(mix.replicas)
    notes = [mix.note]
    complete = sat.complete and not sat.stale_variants
    # no pod reporting while replicas are asked for: the arrivals are not seen (they wait at the gateway)
    seen = sat.analysed_replicas > 0 or sum(current.values()) == 0
    if not (complete and seen and demand.measured):
        why = ("pods without metrics" if not complete else "no pod ready to measure the arrivals" if not seen
               else "no usage this cycle")
        targets = {k: max(n, current[k]) for k, n in targets.items()}
        notes.append(f"data incomplete ({why}): no variant below its current replicas")
    targets, kept = keep_ready(variants, per, targets, target)
    if kept:
        notes.append(f"make before break: {kept} ready replica(s) kept until the new ones are ready")
    targets, starting = keep_starting(variants, per, targets, target, s.switch_tolerance)
    if starting:
        notes.append(f"{starting} starting replica(s) kept: without them the mix carries less than "
                     f"{s.switch_tolerance:.0%} over the need")
    if sum(targets.values()) < floor:
        targets = _floor(snapshot, targets, floor)
    cap_of = {v.spec.key: c for v, c in zip(variants, per, strict=True)}
    plan = CapacityPlan(
        demand=demand, variants=caps, mix=tuple((v.spec.key, targets[v.spec.key]) for v in variants),
        mix_capacity=math.fsum(n * cap_of[k] for k, n in targets.items()),
        mix_cost=math.fsum(targets[v.spec.key] * v.spec.cost for v in variants),
        current_capacity=current_capacity,
        ready_capacity=math.fsum(v.ready_replicas * c for v, c in zip(variants, per, strict=True)),
        switch_note="; ".join(n for n in notes if n),
        held=demand.held > max(demand.need, demand.up) * (1 + 1e-9) and demand.held > guard,
        guard=guard_note if guard > demand.target else "", short=mix.short, hold_kept=hold_kept)
    return CapacityOutcome(targets, plan, "")


__all__ = ["CapacityOutcome", "capacity_rows_of", "guard_need", "plan_capacity", "sized_for", "startup_of",
           "with_demand", "with_rows"]
