"""What SLO sizing reads and writes: a model's demand (load, targets, variants) and the plan made for it. Pure.

The vocabulary of `kedascaler.engine.sizing`: `ModelDemand` in (the workload over the last window, the service
class's ITL/TTFT targets, the variants with their price, bounds, accelerators and performance model), and
`ModelSizing` out (replicas per variant, what one replica carries, the predicted latencies at its share, or a
fallback to saturation with the reason).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kedascaler.engine.frozen import quick
from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.queueing import DEFAULT_MAX_QUEUE
from kedascaler.engine.types import ModelSnapshot, VariantKey, VariantSpec

DEFAULT_PRIORITY = 100  # a model without a service class comes after every classed one


@quick
@dataclass(frozen=True)
class SloTargets:
    """A model's targets in ms (None: not constrained): mean ITL per output token, mean TTFT including the queue."""

    itl_ms: float | None
    ttft_ms: float | None


@quick
@dataclass(frozen=True)
class Workload:
    """A model's load over the last window: requests/s arriving, and mean prompt and output lengths (tokens)."""

    arrival_rate: float
    prompt_tokens: float
    output_tokens: float


@quick
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


@quick
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


@quick
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


@quick
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


__all__ = ["DEFAULT_PRIORITY", "ModelDemand", "ModelSizing", "SloTargets", "VariantOption", "VariantSizing", "Workload",
           "model_demand"]
