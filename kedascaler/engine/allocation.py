"""The cheapest allocation of one model: integer replicas per variant whose capacity covers its load. Pure.

Integers N_v in [min_v, max_v] with Σ N_v·capacity_v ≥ λ minimising Σ N_v·cost_v: an exact branch and bound over
the variants sorted by cost per unit of capacity, bounded by the LP relaxation, and each variant's replicas ×
acceleratorCount within the accelerators still free in a pool shared by the models (charged as they are
sized). When nothing within the limits covers the load, every variant as high as its limits allow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kedascaler.engine.demand import VariantOption
from kedascaler.engine.frozen import quick

SEARCH_BUDGET = 20_000  # branch-and-bound nodes per model; beyond, the best allocation found so far is kept
COVERED = 1e-9  # relative slack when checking that capacity covers the load


@quick
@dataclass(frozen=True)
class Row:
    """One variant of a model in the allocation search."""

    index: int  # position in the model's variants
    capacity: float
    cost: float
    low: int  # replicas it must run
    high: int | None  # replicas it may run (None: unbounded)
    accelerator: str
    per_replica: int  # accelerators per replica


def accelerator_room(row: Row, pool: Mapping[str, int]) -> int | None:
    """Replicas of `row` the pool still allows (None: unlimited)."""
    if not row.accelerator or row.accelerator not in pool:
        return None
    return max(0, pool[row.accelerator]) // max(1, row.per_replica)


def _take(pool: dict[str, int], row: Row, replicas: int) -> None:
    if row.accelerator in pool:
        pool[row.accelerator] -= replicas * max(1, row.per_replica)


def _cheapest(rows: list[Row], rate: float, pool: dict[str, int]) -> tuple[list[int], bool] | None:
    """Extra replicas per row (beyond `low`, pool already charged for them) covering `rate` at least cost.

    Branch and bound over rows sorted by cost per capacity; (counts, complete) where complete is False when the
    node budget ran out (the best found is still feasible). None when no allocation within the limits covers it.
    """
    order = sorted(range(len(rows)), key=lambda i: (rows[i].cost / rows[i].capacity, rows[i].cost, i))
    ratios = [rows[i].cost / rows[i].capacity for i in order]
    suffix_best = [min(ratios[j:]) for j in range(len(order))]
    best_cost = math.inf
    best: list[int] | None = None
    counts = [0] * len(rows)
    nodes = 0
    slack = rate * COVERED

    def search(depth: int, remaining: float, cost: float, again: Callable[..., None]) -> None:
        nonlocal best_cost, best, nodes
        nodes += 1
        if remaining <= slack:
            if cost < best_cost:
                best_cost, best = cost, list(counts)
            return
        if depth == len(order) or nodes > SEARCH_BUDGET:
            return
        if cost + remaining * suffix_best[depth] >= best_cost * (1 - 1e-12):
            return
        row = rows[order[depth]]
        need = math.ceil(remaining / row.capacity * (1 - COVERED))
        top = need
        for limit in (None if row.high is None else row.high - row.low, accelerator_room(row, pool)):
            if limit is not None:
                top = min(top, limit)
        next_ratio = suffix_best[depth + 1] if depth + 1 < len(order) else math.inf
        for extra in range(max(0, top), -1, -1):
            left = remaining - extra * row.capacity
            spent = cost + extra * row.cost
            bound = spent if left <= slack else spent + left * next_ratio
            if bound >= best_cost * (1 - 1e-12):
                if left <= slack:
                    continue
                break  # fewer of this row only raises the bound: the rows after it cost more per capacity
            counts[order[depth]] = extra
            _take(pool, row, extra)
            again(depth + 1, remaining - extra * row.capacity, cost + extra * row.cost, again)
            _take(pool, row, -extra)
            if nodes > SEARCH_BUDGET and best is not None:
                break
        counts[order[depth]] = 0

    search(0, rate, 0.0, search)  # itself as an argument: a closure naming itself is a reference cycle per call
    if best is None:
        return None
    return best, nodes <= SEARCH_BUDGET


def _most_capacity(rows: list[Row], pool: dict[str, int]) -> list[int]:
    """When nothing covers the load: every row as high as its limits allow, cheapest per capacity first."""
    extra = [0] * len(rows)
    for i in sorted(range(len(rows)), key=lambda i: (rows[i].cost / rows[i].capacity, rows[i].cost, i)):
        row = rows[i]
        limits = [x for x in (None if row.high is None else row.high - row.low, accelerator_room(row, pool))
                  if x is not None]
        if not limits:
            continue  # unbounded rows exist only when the load is coverable; kept for safety
        extra[i] = max(0, min(limits))
        _take(pool, row, extra[i])
    return extra


def allocate(rate: float, variants: Sequence[VariantOption], capacities: Sequence[float], pool: dict[str, int]
             ) -> tuple[list[int], str, bool]:
    """Replicas per variant of one model carrying `rate` (req/s), charged to `pool`; with a note and whether it
    falls short. `capacities`: what one replica of each variant carries within the targets."""
    rows: list[Row] = []
    notes: list[str] = []
    for i, (v, cap) in enumerate(zip(variants, capacities, strict=True)):
        low = max(0, v.min_replicas)
        # accelerator_room of this variant's row (no row built for it)
        room = (max(0, pool[v.accelerator]) // max(1, v.accelerator_count)
                if v.accelerator and v.accelerator in pool else None)
        if room is not None and room < low:
            notes.append(f"{v.key}: only {room} of minReplicas {low} fit the free {v.accelerator}")
            low = room
        high = None if v.max_replicas is None else max(low, v.max_replicas)
        row = Row(i, float(cap), float(v.cost), low, high, v.accelerator, v.accelerator_count)
        _take(pool, row, low)
        rows.append(row)
    base = [row.low for row in rows]
    remaining = rate - sum(row.low * row.capacity for row in rows)
    useful = [row for row in rows if row.capacity > 0]
    if remaining <= rate * COVERED:
        return base, "; ".join(notes), False
    found = _cheapest(useful, remaining, pool) if useful else None
    if found is None:
        extra = _most_capacity(useful, pool)
        short = True
    else:
        extra, complete = found
        short = False
        if not complete:
            notes.append(f"search stopped after {SEARCH_BUDGET} nodes: cheapest found, maybe not the cheapest")
        for row, e in zip(useful, extra, strict=True):
            _take(pool, row, e)
    out = list(base)
    for row, e in zip(useful, extra, strict=True):
        out[row.index] += e
    return out, "; ".join(notes), short


__all__ = ["COVERED", "SEARCH_BUDGET", "Row", "accelerator_room", "allocate"]
