"""SLO-driven sizing: how many replicas of which variants carry a model's load within its service class. Pure.

For every (model, variant) the queueing model (`kedascaler.engine.queueing`) gives the largest arrival rate one
replica carries with ITL and TTFT within the model's targets: its *capacity* (req/s). Then, per model:
- the cheapest allocation (`kedascaler.engine.allocation`): integers N_v in [min_v, max_v] with
  Σ N_v·capacity_v ≥ λ minimising Σ N_v·cost_v, each variant's replicas × acceleratorCount within the
  accelerators still available of its type;
- models are sized in service-class priority order (1 first), each taking accelerators from a shared pool, so
  when accelerators run short the higher-priority models get theirs and the lower ones get what is left;
- load is assumed spread in proportion to capacity (every replica at the same fraction of its capacity), and
  the predicted ITL/TTFT of each variant are those of one replica at its share.
A model whose inputs are unusable (no workload statistics, no SLO targets, a variant without usable
performance parameters) gets `fallback=True` and a reason: the caller keeps the saturation decision.

The inputs and plans are in `kedascaler.engine.demand`; the modes (`saturation`, `model`, `hybrid`) and how
hybrid combines a model-based plan with the saturation plan in `kedascaler.engine.modes`. Both are re-exported
here, so `kedascaler.engine.sizing` stays the one import for SLO sizing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from kedascaler.engine.allocation import COVERED, SEARCH_BUDGET, allocate
from kedascaler.engine.demand import (
    DEFAULT_PRIORITY,
    ModelDemand,
    ModelSizing,
    SloTargets,
    VariantOption,
    VariantSizing,
    Workload,
    model_demand,
)
from kedascaler.engine.modes import (
    CAPACITY,
    HYBRID,
    MODEL,
    MODES,
    SATURATION,
    HybridPlan,
    hybrid_reason,
    hybrid_targets,
    model_mode,
    parse_mode,
    resolve_mode,
)
from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.queueing import ReplicaArrays, max_arrival_rate, replica_metrics


def replicas_for(rate: float, capacity: float) -> int | None:
    """The fewest replicas whose per-replica load rate/N is within `capacity` (None: no count will do)."""
    if rate <= 0:
        return 0
    if capacity <= 0 or not math.isfinite(capacity):
        return None if capacity <= 0 else 1
    return max(1, math.ceil(rate / capacity * (1 - COVERED)))


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


def _workload(d: ModelDemand) -> Workload:
    """The workload of a demand that passed `_usable`."""
    assert d.workload is not None
    return d.workload


def _slo(d: ModelDemand) -> SloTargets:
    """The targets of a demand that passed `_usable`."""
    assert d.slo is not None
    return d.slo


def _perf(v: VariantOption) -> PerfModel:
    """The performance model of a variant of a demand that passed `_usable`."""
    assert v.perf is not None
    return v.perf


def _fmt(value: float | None, unit: str) -> str:
    return "unbounded" if value is None else f"{value:g} {unit}"


def _arrays(rows: Sequence[tuple[ModelDemand, VariantOption]]) -> ReplicaArrays:
    """Queueing-model rows for (model, variant) pairs: the variant's performance, the model's workload."""
    workloads = [_workload(d) for d, _ in rows]
    return ReplicaArrays.from_models([_perf(v) for _, v in rows], [w.prompt_tokens for w in workloads],
                                     [w.output_tokens for w in workloads], [d.max_queue for d, _ in rows])


def _target(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _share(rate: float, capacities: Sequence[float], counts: Sequence[int], j: int) -> float:
    """The load of one replica of variant j: the model's load spread in proportion to capacity."""
    if counts[j] == 0:
        return 0.0
    total = sum(n * c for n, c in zip(counts, capacities, strict=True))
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
        found = max_arrival_rate(_arrays(rows), np.array([_target(_slo(d).itl_ms) for d, _ in rows]),
                                 np.array([_target(_slo(d).ttft_ms) for d, _ in rows]))
        for (m, _), (d, v), cap in zip(pairs, rows, found, strict=True):
            w = _workload(d)
            fits = _perf(v).batch_limit(w.prompt_tokens, w.output_tokens) >= 1
            caps[m].append(float(cap) if fits else 0.0)

    pool = dict(available or {})
    plans: dict[int, tuple[list[int], str, bool]] = {}
    for m in sorted(sizable, key=lambda m: (demands[m].priority, demands[m].namespace, demands[m].model_id)):
        plans[m] = allocate(_workload(demands[m]).arrival_rate, demands[m].variants, caps[m], pool)

    # Predicted latencies of every variant at its share, in one vectorised call.
    loads = {(m, j): _share(_workload(demands[m]).arrival_rate, caps[m], plans[m][0], j) for m, j in pairs}
    running = [(m, j) for m, j in pairs if plans[m][0][j] > 0]
    predicted: dict[tuple[int, int], tuple[float, float]] = {}
    if running:
        metrics = replica_metrics(_arrays([(demands[m], demands[m].variants[j]) for m, j in running]),
                                  [loads[mj] for mj in running])
        predicted = {mj: (float(itl), float(ttft))
                     for mj, itl, ttft in zip(running, metrics.itl_ms, metrics.ttft_ms, strict=True)}

    out: list[ModelSizing] = []
    for m, d in enumerate(demands):
        if checks[m]:
            out.append(ModelSizing(d.namespace, d.model_id, True, f"fallback to saturation: {checks[m]}"))
            continue
        counts, note, short = plans[m]
        sized = [VariantSizing(v.key, n, caps[m][j], loads[(m, j)], *predicted.get((m, j), (math.nan, math.nan)),
                               n * v.cost) for j, (v, n) in enumerate(zip(d.variants, counts, strict=True))]
        rate = _workload(d).arrival_rate
        capacity = sum(n * c for n, c in zip(counts, caps[m], strict=True))
        cost = sum(v.cost for v in sized)
        short = short or capacity < rate * (1 - COVERED)
        out.append(ModelSizing(d.namespace, d.model_id, False, _reason(d, sized, capacity, cost, short, note),
                               tuple(sized), rate, capacity, cost, short))
    return tuple(out)


def size_model(demand: ModelDemand, available: Mapping[str, int] | None = None) -> ModelSizing:
    """One model's plan (see size_models)."""
    return size_models([demand], available)[0]


def _reason(d: ModelDemand, sized: list[VariantSizing], capacity: float, cost: float, short: bool, note: str) -> str:
    w, slo = _workload(d), _slo(d)
    head = (f"{w.arrival_rate:.3g} req/s ({w.prompt_tokens:.0f} prompt / {w.output_tokens:.0f} output tokens) "
            f"within ITL {_fmt(slo.itl_ms, 'ms')}, TTFT {_fmt(slo.ttft_ms, 'ms')}")
    parts: list[str] = []
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


__all__ = ["CAPACITY", "DEFAULT_PRIORITY", "HYBRID", "MODEL", "MODES", "SATURATION", "SEARCH_BUDGET", "HybridPlan",
           "ModelDemand", "ModelSizing", "SloTargets", "VariantOption", "VariantSizing", "Workload", "hybrid_reason",
           "hybrid_targets", "model_demand", "model_mode", "parse_mode", "replicas_for", "resolve_mode", "size_model",
           "size_models"]
