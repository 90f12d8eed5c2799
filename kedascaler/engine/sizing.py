"""SLO-driven sizing: how many replicas of which variants carry a model's load within its service class. Pure.

For every (model, variant) the queueing model (`kedascaler.engine.queueing`) gives the largest arrival rate one
replica carries with ITL and TTFT within the model's targets: its *capacity* (req/s). Then, per model:
- the cheapest allocation: integers N_v in [min_v, max_v] with Σ N_v·capacity_v ≥ λ minimising Σ N_v·cost_v
  (exact branch and bound over the variants sorted by cost per unit of capacity, bounded by the LP relaxation),
  each variant's replicas × acceleratorCount within the accelerators still available of its type;
- models are sized in service-class priority order (1 first), each taking accelerators from a shared pool, so
  when accelerators run short the higher-priority models get theirs and the lower ones get what is left;
- load is assumed spread in proportion to capacity (every replica at the same fraction of its capacity), and
  the predicted ITL/TTFT of each variant are those of one replica at its share.
A model whose inputs are unusable (no workload statistics, no SLO targets, a variant without usable
performance parameters) gets `fallback=True` and a reason: the caller keeps the saturation decision.

`hybrid_targets` combines a model-based plan with the saturation plan: never fewer than saturation demands,
fewer than now only when both agree. Modes (`saturation`, `model`, `hybrid`) are chosen per VA or globally.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.queueing import DEFAULT_MAX_QUEUE, ReplicaArrays, max_arrival_rate, replica_metrics
from kedascaler.engine.types import ModelSnapshot, VariantKey, VariantSpec

SATURATION, MODEL, HYBRID = "saturation", "model", "hybrid"
MODES = (SATURATION, MODEL, HYBRID)
DEFAULT_PRIORITY = 100  # a model without a service class comes after every classed one
SEARCH_BUDGET = 20_000  # branch-and-bound nodes per model; beyond, the best allocation found so far is kept
_COVERED = 1e-9  # relative slack when checking that capacity covers the load


def parse_mode(value: object, default: str = SATURATION) -> tuple[str, str]:
    """A scaling mode from user text (any case); (default, problem) when it is not one of MODES."""
    if value is None or value == "":
        return default, ""
    text = str(value).strip().lower()
    if text in MODES:
        return text, ""
    return default, f"expected one of {', '.join(MODES)}, got {value!r}"


def resolve_mode(variant_mode: str | None, global_mode: str = SATURATION) -> str:
    """The VA's own mode when set, else the global one."""
    return variant_mode if variant_mode in MODES else global_mode


def model_mode(variant_modes: Sequence[str | None], global_mode: str = SATURATION) -> tuple[str, str]:
    """One mode for a model (its variants are decided together): theirs when they agree, else saturation."""
    modes = sorted({resolve_mode(m, global_mode) for m in variant_modes} or {global_mode})
    if len(modes) == 1:
        return modes[0], ""
    return SATURATION, f"variants disagree on the scaling mode ({', '.join(modes)}): saturation, the safe default"


@dataclass(frozen=True)
class SloTargets:
    """A model's targets in ms (None: not constrained): mean ITL per output token, mean TTFT including the queue."""

    itl_ms: float | None
    ttft_ms: float | None


@dataclass(frozen=True)
class Workload:
    """A model's load over the last window: requests/s arriving, and mean prompt and output lengths (tokens)."""

    arrival_rate: float
    prompt_tokens: float
    output_tokens: float


@dataclass(frozen=True)
class VariantOption:
    """One variant as sizing sees it: its price, bounds, accelerators and performance model."""

    key: VariantKey
    cost: float  # per replica
    perf: PerfModel | None
    accelerator: str = ""
    accelerator_count: int = 1
    min_replicas: int = 0
    max_replicas: int | None = None  # None: unbounded
    perf_reason: str = ""  # why perf is None

    @classmethod
    def of(cls, spec: VariantSpec, perf: PerfModel | None, perf_reason: str = "") -> VariantOption:
        return cls(spec.key, spec.cost, perf, spec.accelerator, spec.accelerator_count, spec.min_replicas,
                   spec.max_replicas, perf_reason)


@dataclass(frozen=True)
class ModelDemand:
    """Everything sizing needs for one model: its load, its targets, its priority and its variants."""

    namespace: str
    model_id: str
    workload: Workload | None
    slo: SloTargets | None
    variants: tuple[VariantOption, ...]
    priority: int = DEFAULT_PRIORITY  # 1 = highest
    slo_reason: str = ""  # why slo is None
    max_queue: int = DEFAULT_MAX_QUEUE


@dataclass(frozen=True)
class VariantSizing:
    """The plan for one variant: replicas, what one replica carries, and the predicted latencies at its share."""

    key: VariantKey
    replicas: int
    capacity: float  # req/s one replica carries within the targets
    load_per_replica: float  # req/s each replica gets under the plan
    itl_ms: float  # predicted (nan with no replicas)
    ttft_ms: float  # predicted (nan with no replicas)
    cost: float  # replicas × cost per replica


@dataclass(frozen=True)
class ModelSizing:
    """The plan for one model, or a fallback to saturation with the reason."""

    namespace: str
    model_id: str
    fallback: bool
    reason: str
    variants: tuple[VariantSizing, ...] = ()
    arrival_rate: float = 0.0
    capacity: float = 0.0  # Σ replicas × capacity
    cost: float = 0.0
    short: bool = False  # True when the allocation cannot carry the load within the targets (limits, accelerators)

    @property
    def targets(self) -> dict[VariantKey, int]:
        return {v.key: v.replicas for v in self.variants}

    @property
    def total(self) -> int:
        return sum(v.replicas for v in self.variants)


def model_demand(snapshot: ModelSnapshot, workload: Workload | None, slo: SloTargets | None,
                 perf: Mapping[VariantKey, tuple[PerfModel | None, str]], *, priority: int = DEFAULT_PRIORITY,
                 slo_reason: str = "", max_queue: int = DEFAULT_MAX_QUEUE) -> ModelDemand:
    """The sizing input of one model from its snapshot; `perf` maps each variant to (model, reason when None)."""
    options = tuple(VariantOption.of(v.spec, *perf.get(v.spec.key, (None, "no performance parameters")))
                    for v in snapshot.variants)
    return ModelDemand(snapshot.namespace, snapshot.model_id, workload, slo, options, priority, slo_reason, max_queue)


def replicas_for(rate: float, capacity: float) -> int | None:
    """The fewest replicas whose per-replica load rate/N is within `capacity` (None: no count will do)."""
    if rate <= 0:
        return 0
    if capacity <= 0 or not math.isfinite(capacity):
        return None if capacity <= 0 else 1
    return max(1, math.ceil(rate / capacity * (1 - _COVERED)))


def _usable(demand: ModelDemand) -> str:
    """Why this model cannot be sized by the model ("" when it can)."""
    w = demand.workload
    if not demand.variants:
        return "no variants"
    if w is None:
        return "no workload statistics (arrival rate, mean prompt and output tokens)"
    values = (w.arrival_rate, w.prompt_tokens, w.output_tokens)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or w.arrival_rate < 0:
        return f"workload not usable (rate={w.arrival_rate!r}, prompt={w.prompt_tokens!r}, output={w.output_tokens!r})"
    if w.arrival_rate > 0 and (w.prompt_tokens <= 0 or w.output_tokens < 1):
        return f"mean prompt/output tokens not known (prompt={w.prompt_tokens:g}, output={w.output_tokens:g})"
    if demand.slo is None or (demand.slo.itl_ms is None and demand.slo.ttft_ms is None):
        return f"no SLO targets ({demand.slo_reason or 'no service class'})"
    missing = [f"{v.key} ({v.perf_reason or 'no performance parameters'})" for v in demand.variants if v.perf is None]
    if missing:
        return "no usable performance model for " + ", ".join(missing)
    return ""


@dataclass(frozen=True)
class _Row:
    """One variant of a model in the allocation search."""

    index: int  # position in demand.variants
    capacity: float
    cost: float
    low: int  # replicas it must run
    high: int | None  # replicas it may run (None: unbounded)
    accelerator: str
    per_replica: int  # accelerators per replica


def _accelerator_room(row: _Row, pool: Mapping[str, int]) -> int | None:
    """Replicas of `row` the pool still allows (None: unlimited)."""
    if not row.accelerator or row.accelerator not in pool:
        return None
    return max(0, pool[row.accelerator]) // max(1, row.per_replica)


def _take(pool: dict[str, int], row: _Row, replicas: int) -> None:
    if row.accelerator in pool:
        pool[row.accelerator] -= replicas * max(1, row.per_replica)


def _cheapest(rows: list[_Row], rate: float, pool: dict[str, int]) -> tuple[list[int], bool] | None:
    """Extra replicas per row (beyond `low`, pool already charged for them) covering `rate` at least cost.

    Branch and bound over rows sorted by cost per capacity; (counts, complete) where complete is False when the
    node budget ran out (the best found is still feasible). None when no allocation within the limits covers it.
    """
    order = sorted(range(len(rows)), key=lambda i: (rows[i].cost / rows[i].capacity, rows[i].cost, i))
    ratios = [rows[i].cost / rows[i].capacity for i in order]
    suffix_best = [min(ratios[j:]) for j in range(len(order))]
    best: list[float | list[int] | None] = [math.inf, None]
    counts = [0] * len(rows)
    nodes = [0]
    slack = rate * _COVERED

    def search(depth: int, remaining: float, cost: float) -> None:
        nodes[0] += 1
        if remaining <= slack:
            if cost < best[0]:
                best[0], best[1] = cost, list(counts)
            return
        if depth == len(order) or nodes[0] > SEARCH_BUDGET:
            return
        if cost + remaining * suffix_best[depth] >= best[0] * (1 - 1e-12):
            return
        row = rows[order[depth]]
        need = math.ceil(remaining / row.capacity * (1 - _COVERED))
        top = need
        for limit in (None if row.high is None else row.high - row.low, _accelerator_room(row, pool)):
            if limit is not None:
                top = min(top, limit)
        next_ratio = suffix_best[depth + 1] if depth + 1 < len(order) else math.inf
        for extra in range(max(0, top), -1, -1):
            left = remaining - extra * row.capacity
            spent = cost + extra * row.cost
            bound = spent if left <= slack else spent + left * next_ratio
            if bound >= best[0] * (1 - 1e-12):
                if left <= slack:
                    continue
                break  # fewer of this row only raises the bound: the rows after it cost more per capacity
            counts[order[depth]] = extra
            _take(pool, row, extra)
            search(depth + 1, remaining - extra * row.capacity, cost + extra * row.cost)
            _take(pool, row, -extra)
            if nodes[0] > SEARCH_BUDGET and best[1] is not None:
                break
        counts[order[depth]] = 0

    search(0, rate, 0.0)
    if best[1] is None:
        return None
    return best[1], nodes[0] <= SEARCH_BUDGET  # type: ignore[return-value]


def _most_capacity(rows: list[_Row], pool: dict[str, int]) -> list[int]:
    """When nothing covers the load: every row as high as its limits allow, cheapest per capacity first."""
    extra = [0] * len(rows)
    for i in sorted(range(len(rows)), key=lambda i: (rows[i].cost / rows[i].capacity, rows[i].cost, i)):
        row = rows[i]
        limits = [x for x in (None if row.high is None else row.high - row.low, _accelerator_room(row, pool))
                  if x is not None]
        if not limits:
            continue  # unbounded rows exist only when the load is coverable; kept for safety
        extra[i] = max(0, min(limits))
        _take(pool, row, extra[i])
    return extra


def _allocate(demand: ModelDemand, capacities: np.ndarray, pool: dict[str, int]) -> tuple[list[int], str, bool]:
    """Replicas per variant of one model, charged to `pool`; with a note and whether it falls short."""
    rate = demand.workload.arrival_rate  # type: ignore[union-attr]
    rows = []
    notes = []
    for i, (v, cap) in enumerate(zip(demand.variants, capacities)):
        low = max(0, v.min_replicas)
        room = _accelerator_room(_Row(i, 0, 0, 0, None, v.accelerator, v.accelerator_count), pool)
        if room is not None and room < low:
            notes.append(f"{v.key}: only {room} of minReplicas {low} fit the free {v.accelerator}")
            low = room
        high = None if v.max_replicas is None else max(low, v.max_replicas)
        row = _Row(i, float(cap), float(v.cost), low, high, v.accelerator, v.accelerator_count)
        _take(pool, row, low)
        rows.append(row)
    base = [row.low for row in rows]
    remaining = rate - sum(row.low * row.capacity for row in rows)
    useful = [row for row in rows if row.capacity > 0]
    if remaining <= rate * _COVERED:
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
        for row, e in zip(useful, extra):
            _take(pool, row, e)
    out = list(base)
    for row, e in zip(useful, extra):
        out[row.index] += e
    return out, "; ".join(notes), short


def _fmt(value: float | None, unit: str) -> str:
    return "unbounded" if value is None else f"{value:g} {unit}"


def _arrays(rows: Sequence[tuple[ModelDemand, VariantOption]]) -> ReplicaArrays:
    """Queueing-model rows for (model, variant) pairs: the variant's performance, the model's workload."""
    workloads = [d.workload for d, _ in rows]
    return ReplicaArrays.from_models([v.perf for _, v in rows],  # type: ignore[misc]
                                     [w.prompt_tokens for w in workloads],  # type: ignore[union-attr]
                                     [w.output_tokens for w in workloads],  # type: ignore[union-attr]
                                     [d.max_queue for d, _ in rows])


def _target(value: float | None) -> float:
    return np.inf if value is None else float(value)


def _share(rate: float, capacities: Sequence[float], counts: Sequence[int], j: int) -> float:
    """The load of one replica of variant j: the model's load spread in proportion to capacity."""
    if counts[j] == 0:
        return 0.0
    total = sum(n * c for n, c in zip(counts, capacities))
    if total > 0:
        return rate * capacities[j] / total
    return rate / sum(counts)  # nothing meets the targets: spread per replica, to predict the miss


def size_models(demands: Sequence[ModelDemand], available: Mapping[str, int] | None = None) -> tuple[ModelSizing, ...]:
    """Plans for all models at once (one vectorised capacity computation), in the order given.

    `available`: accelerators (units, not replicas) per accelerator type that these models may use in total,
    including those they already run on; types not listed are unlimited. Shared in priority order.
    """
    checks = [_usable(d) for d in demands]
    sizable = [m for m in range(len(demands)) if not checks[m]]
    pairs = [(m, j) for m in sizable for j in range(len(demands[m].variants))]
    rows = [(demands[m], demands[m].variants[j]) for m, j in pairs]
    caps: dict[int, list[float]] = {m: [] for m in sizable}
    if rows:
        found = max_arrival_rate(_arrays(rows), np.array([_target(d.slo.itl_ms) for d, _ in rows]),  # type: ignore[union-attr]
                                 np.array([_target(d.slo.ttft_ms) for d, _ in rows]))  # type: ignore[union-attr]
        for (m, _), (d, v), cap in zip(pairs, rows, found):
            w = d.workload
            fits = v.perf.batch_limit(w.prompt_tokens, w.output_tokens) >= 1  # type: ignore[union-attr]
            caps[m].append(float(cap) if fits else 0.0)

    pool = dict(available or {})
    plans: dict[int, tuple[list[int], str, bool]] = {}
    for m in sorted(sizable, key=lambda m: (demands[m].priority, demands[m].namespace, demands[m].model_id)):
        plans[m] = _allocate(demands[m], np.array(caps[m]), pool)

    # Predicted latencies of every variant at its share, in one vectorised call.
    loads = {(m, j): _share(demands[m].workload.arrival_rate, caps[m], plans[m][0], j)  # type: ignore[union-attr]
             for m, j in pairs}
    running = [(m, j) for m, j in pairs if plans[m][0][j] > 0]
    predicted: dict[tuple[int, int], tuple[float, float]] = {}
    if running:
        metrics = replica_metrics(_arrays([(demands[m], demands[m].variants[j]) for m, j in running]),
                                  [loads[mj] for mj in running])
        predicted = {mj: (float(itl), float(ttft)) for mj, itl, ttft in zip(running, metrics.itl_ms, metrics.ttft_ms)}

    out = []
    for m, d in enumerate(demands):
        if checks[m]:
            out.append(ModelSizing(d.namespace, d.model_id, True, f"fallback to saturation: {checks[m]}"))
            continue
        counts, note, short = plans[m]
        sized = [VariantSizing(v.key, n, caps[m][j], loads[(m, j)], *predicted.get((m, j), (math.nan, math.nan)),
                               n * v.cost) for j, (v, n) in enumerate(zip(d.variants, counts))]
        rate = d.workload.arrival_rate  # type: ignore[union-attr]
        capacity = sum(n * c for n, c in zip(counts, caps[m]))
        cost = sum(v.cost for v in sized)
        short = short or capacity < rate * (1 - _COVERED)
        out.append(ModelSizing(d.namespace, d.model_id, False, _reason(d, sized, capacity, cost, short, note),
                               tuple(sized), rate, capacity, cost, short))
    return tuple(out)


def size_model(demand: ModelDemand, available: Mapping[str, int] | None = None) -> ModelSizing:
    """One model's plan (see size_models)."""
    return size_models([demand], available)[0]


def _reason(d: ModelDemand, sized: list[VariantSizing], capacity: float, cost: float, short: bool, note: str) -> str:
    w, slo = d.workload, d.slo
    assert w is not None and slo is not None
    head = (f"{w.arrival_rate:.3g} req/s ({w.prompt_tokens:.0f} prompt / {w.output_tokens:.0f} output tokens) "
            f"within ITL {_fmt(slo.itl_ms, 'ms')}, TTFT {_fmt(slo.ttft_ms, 'ms')}")
    parts = []
    for s in sized:
        if s.replicas:
            parts.append(f"{s.replicas} × {s.key.name} ({s.capacity:.3g} req/s each; predicted ITL "
                         f"{s.itl_ms:.3g} ms, TTFT {s.ttft_ms:.3g} ms)")
        elif s.capacity <= 0:
            parts.append(f"0 × {s.key.name} (cannot meet the targets even with one request)")
    plan = ", ".join(parts) or "no replicas"
    text = f"{head}: {plan}; capacity {capacity:.3g} req/s, cost {cost:g}"
    if short:
        text = f"short: {text} — the limits (maxReplicas, free accelerators) do not allow enough capacity"
    return f"{text}; {note}" if note else text


def allocation_order(demands: Sequence[ModelDemand]) -> list[ModelDemand]:
    """Who gets scarce accelerators first: priority 1 first, then namespace and model id."""
    return sorted(demands, key=lambda d: (d.priority, d.namespace, d.model_id))


@dataclass(frozen=True)
class HybridPlan:
    """The hybrid outcome: per-variant targets, which plan they come from, and why."""

    targets: Mapping[VariantKey, int]
    source: str  # MODEL | SATURATION
    reason: str


def hybrid_targets(model_targets: Mapping[VariantKey, int], saturation_targets: Mapping[VariantKey, int],
                   current: Mapping[VariantKey, int]) -> HybridPlan:
    """Model plan with saturation as the guard-rail: never fewer than saturation demands, down only when both agree.

    Compared as model totals: the model plan is taken (its cheaper mix included) when it runs at least as many
    replicas as the saturation plan; otherwise the saturation plan is taken. So the result's total is
    max(model, saturation): above the current total when either wants more, below it only when both want less.
    """
    model_total = sum(model_targets.values())
    saturation_total = sum(saturation_targets.values())
    current_total = sum(current.values())
    if model_total >= saturation_total:
        source, targets = MODEL, dict(model_targets)
        why = f"model plan {model_total} ≥ saturation plan {saturation_total}"
    else:
        source, targets = SATURATION, dict(saturation_targets)
        why = f"saturation plan {saturation_total} > model plan {model_total}: the guard-rail holds"
    for key in current:
        targets.setdefault(key, current[key] if source == MODEL else saturation_targets.get(key, current[key]))
    total = sum(targets.values())
    if total < current_total:
        why += f"; both plans are below the current {current_total}: scale down"
    return HybridPlan(targets, source, why)
