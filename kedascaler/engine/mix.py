"""The cheapest integer mix of variants by cost per unit of capacity, with a switching penalty. Pure.

`allocation.allocate` finds the integers N_v in [min_v, max_v] (and within the accelerators free of each type)
with Σ N_v·capacity_v ≥ demand at the least Σ N_v·cost_v. Three candidates are weighed here:
- the cheapest mix over every variant with a capacity estimate;
- the cheapest mix over the variants that run now (replicas asked for, ready or starting);
- the cheapest mix within the replicas that run now (it starts none);
each charged Σ_v max(0, N_v − current_v) · cost_v · start-up_v ÷ `switch_horizon`: a replica started is billed
while it loads, and the saving of a swap must pay that back within the horizon. So one H100 that carries what
three A100s do wins as soon as it is cheaper, and swapping accelerators for a small gain does not churn: of
mixes that cost the same, the one that starts nothing wins (the search alone picks one of a tie by its order,
and two A100s started beside a running H100 cost what that H100 does). While the ready replicas fall short of
the demand and the replicas asked for cover it, the mix starts nothing: those in flight are ready sooner than any
started now (cancelling four A100s asked for 15 s ago to start one H100 left the demand uncovered 15 s longer),
and a cheaper swap can wait until they are ready. Not when a replica has been starting for longer than its
start-up (or since before the scaler saw it): it may be stuck, and the mix may then start others.

**As decided** (`CapacitySettings.switch_tolerance`, 10 %): the last cycle's mix, within the replicas running
now, is kept while it covers the demand and costs at most that much more than the cheapest. A swap among running
replicas pays no start-up, so the penalty above does not see it: on three-accelerators the estimates' drift
flipped the mix between an H100 (40) and an A100 + an L40S (37.5) every few cycles, and KEDA's cooldown kept
all three running.

Then **make before break** (`keep_ready`): replicas that the mix drops are removed only while the ready
capacity that stays covers the demand; until the new pods are ready, the old ones keep serving. And **a pod
asked for is not cancelled for a few per cent** (`keep_starting`, the same tolerance): replicas still starting
stay while the mix without them carries less than 10 % over the demand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from kedascaler.engine.allocation import allocate
from kedascaler.engine.demand import VariantOption
from kedascaler.engine.frozen import quick
from kedascaler.engine.types import VariantKey, VariantState


@quick
@dataclass(frozen=True)
class Mix:
    """The chosen replicas per variant, what they carry and cost, and the switching penalty's account."""

    replicas: dict[VariantKey, int]
    capacity: float
    cost: float
    note: str
    short: bool  # no mix within the limits covers the demand


def _options(variants: Sequence[VariantState], only: set[VariantKey] | None, *, started: bool = True
             ) -> list[VariantOption]:
    """The variants the search may use: every one (`only` None) or those in `only`; without `started`, none
    above the replicas it runs now (a mix that starts nothing)."""
    out = []
    for v in variants:
        s = v.spec
        high = s.max_replicas
        if only is not None and s.key not in only:
            high = max(0, s.min_replicas)
        if not started:
            high = max(s.min_replicas, v.current_replicas if high is None else min(high, v.current_replicas))
        out.append(VariantOption(s.key, s.cost, None, s.accelerator, s.accelerator_count, s.min_replicas, high))
    return out


def _cost(variants: Sequence[VariantState], counts: Sequence[int]) -> float:
    return math.fsum(n * v.spec.cost for v, n in zip(variants, counts, strict=True))


def _capacity(counts: Sequence[int], capacities: Sequence[float]) -> float:
    return math.fsum(n * c for n, c in zip(counts, capacities, strict=True))


def start_penalty(variants: Sequence[VariantState], counts: Sequence[int], startups: Sequence[float],
                  horizon: float) -> float:
    """What the replicas this mix starts cost while they load, spread over the horizon (per replica-hour units)."""
    if horizon <= 0:
        return 0.0
    return math.fsum(max(0, n - v.current_replicas) * v.spec.cost * s / horizon
                     for v, n, s in zip(variants, counts, startups, strict=True))


@quick
@dataclass(frozen=True)
class _Candidate:
    total: float  # cost + start-up penalty
    rank: int  # on a tie, the higher wins: within the replicas running now, then the variants running now
    counts: list[int]
    short: bool
    note: str
    cost: float


def _as_decided(variants: Sequence[VariantState], capacities: Sequence[float], demand: float,
               startups: Sequence[float], horizon: float, previous: Mapping[VariantKey, int] | None,
               tolerance: float, best: _Candidate) -> _Candidate | None:
    """The last cycle's mix, within the replicas running now, when `best` swaps variants (more of one, fewer of
    another), the last mix covers the demand and it costs at most `tolerance` more (else None). A swap among
    running replicas pays no start-up, so without this a few per cent of drift in the estimates flips the mix
    between near-equal ones every cycle, and KEDA's cooldown then keeps every variant the flips touch. Fewer
    replicas of the same variants is no swap: when to scale down is the hold's to say."""
    if previous is None or tolerance <= 0 or best.short:
        return None
    counts = [max(v.spec.min_replicas, min(previous.get(v.spec.key, 0), v.current_replicas)) for v in variants]
    if all(b <= n for b, n in zip(best.counts, counts, strict=True)):
        return None
    if _capacity(counts, capacities) < demand:
        return None
    cost = _cost(variants, counts)
    total = cost + start_penalty(variants, counts, startups, horizon)
    if total > best.total * (1 + tolerance):
        return None
    return _Candidate(total, 3, counts, False, f"as decided last cycle: cost {cost:g}, within {tolerance:.0%} of "
                                               f"the cheapest", cost)


def cheapest_mix(variants: Sequence[VariantState], capacities: Sequence[float], demand: float,
                 startups: Sequence[float], horizon: float, pool: Mapping[str, int] | None = None, *,
                 in_flight_due: bool = True, previous: Mapping[VariantKey, int] | None = None,
                 tolerance: float = 0.0) -> Mix:
    """The mix to run (see the module docstring); `capacities` per replica in `variants` order. `in_flight_due`:
    the replicas still starting were asked for within their start-up (False: some may be stuck, so a mix that
    starts others is not held back for them). `previous`: every variant's target of the last cycle, kept while
    it runs, covers the demand and costs at most `tolerance` more than the cheapest."""
    running = {v.spec.key for v in variants if v.current_replicas > 0}

    def candidate(rank: int, only: set[VariantKey] | None, started: bool) -> _Candidate | None:
        counts, note, short = allocate(max(0.0, demand), _options(variants, only, started=started), list(capacities),
                                       dict(pool or {}))
        if short and not started:
            return None  # the replicas running now fall short: a mix that starts none is no candidate
        penalty = start_penalty(variants, counts, startups, horizon)
        label = ("over every variant" if only is None else
                 "over the variants running now" if started else "over the replicas running now")
        cost = _cost(variants, counts)
        return _Candidate(cost + penalty, -1 if short else rank, counts, short,
                          f"{label}: cost {cost:g} + start-up {penalty:.3g}" + (f"; {note}" if note else ""), cost)

    held = candidate(2, running, False) if running else None
    ready = math.fsum(v.ready_replicas * c for v, c in zip(variants, capacities, strict=True))
    if held is not None and in_flight_due and ready < demand:
        # short of ready capacity, and the replicas asked for cover the demand: those in flight are ready sooner
        # than any started now, so nothing is started (a cheaper swap can wait until they are ready)
        candidates = [replace(held, note=f"{held.note}; nothing started: the replicas asked for cover the demand "
                                         f"and are ready sooner")]
    else:
        found = [candidate(0, None, True)]
        if running and running != {v.spec.key for v in variants}:  # else the same search as over every variant
            found.append(candidate(1, running, True))
        candidates = [c for c in (*found, held) if c is not None]
    candidates.sort(key=lambda c: (c.short, c.total, -c.rank))
    kept = _as_decided(variants, capacities, demand, startups, horizon, previous, tolerance, candidates[0])
    if kept is not None:
        candidates.insert(0, kept)
    best = candidates[0]
    note = best.note
    if len(candidates) > 1:
        note = f"{note} (beats {candidates[1].note})"
    replicas = {v.spec.key: n for v, n in zip(variants, best.counts, strict=True)}
    capacity = _capacity(best.counts, capacities)
    return Mix(replicas, capacity, best.cost, note, best.short)


def _by_capacity_per_cost(variants: Sequence[VariantState], capacities: Sequence[float]) -> list[int]:
    """Indices of `variants`, the most capacity per unit of cost first (by name on a tie)."""
    return sorted(range(len(variants)), key=lambda i: (-(capacities[i] / max(variants[i].spec.cost, 1e-9)),
                                                        variants[i].spec.key.name))


def keep_ready(variants: Sequence[VariantState], capacities: Sequence[float], targets: Mapping[VariantKey, int],
               demand: float) -> tuple[dict[VariantKey, int], int]:
    """Make before break: give back replicas the mix drops while the ready capacity that stays is short of the
    demand (the variants with the most ready capacity per cost first); returns the targets and how many kept."""
    out = dict(targets)

    def ready_capacity() -> float:
        return math.fsum(min(out[v.spec.key], v.ready_replicas) * c for v, c in zip(variants, capacities, strict=True))

    kept = 0
    for i in _by_capacity_per_cost(variants, capacities):
        v = variants[i]
        while ready_capacity() < demand * (1 - 1e-9) and out[v.spec.key] < min(v.current_replicas, v.ready_replicas):
            out[v.spec.key] += 1
            kept += 1
    return out, kept


def keep_starting(variants: Sequence[VariantState], capacities: Sequence[float], targets: Mapping[VariantKey, int],
                  demand: float, tolerance: float) -> tuple[dict[VariantKey, int], int]:
    """Replicas still starting are not cancelled for a mix that carries less than `tolerance` over the demand
    (the best capacity per cost first); returns the targets and how many kept. An estimate that rises a few per
    cent while a pod loads would otherwise cancel it, and the next cycle's estimate may ask for it again a
    start-up later: on overlapping-jobs-high (seed 6) the third A100, asked for at the step to 50 req/s, was
    cancelled 15 s later when the A100's estimate rose from 23.8 to 27.1 req/s (two then carried 54.3 for a need
    of 53), and the load then ran 15 points of the SLO short until one asked for again at 255 s was ready."""
    out = dict(targets)
    if tolerance <= 0:
        return out, 0
    carried = _capacity([out[v.spec.key] for v in variants], capacities)
    want = demand * (1 + tolerance)
    kept = 0
    for i in _by_capacity_per_cost(variants, capacities):
        v = variants[i]
        key = v.spec.key
        if capacities[i] <= 0 or out[key] < v.ready_replicas:
            continue  # below its ready replicas: make before break decides what a ready one does
        while carried < want * (1 - 1e-9) and out[key] < v.current_replicas:
            out[key] += 1
            carried += capacities[i]
            kept += 1
    return out, kept


__all__ = ["Mix", "cheapest_mix", "keep_ready", "keep_starting", "start_penalty"]
