"""Small builders so engine tests read like the docs: variants by name, cost and replicas, pods by load."""

from __future__ import annotations

from kedascaler.engine.types import (
    ModelSnapshot,
    PodMetrics,
    SaturationConfig,
    VariantKey,
    VariantSpec,
    VariantState,
)

NS = "llm"
MODEL = "meta/llama-3.1-8b"


def key(name: str) -> VariantKey:
    return VariantKey(NS, name)


def pods(name: str, *loads: tuple[float, float], at: float = 100.0, running: float = 0.0) -> tuple[PodMetrics, ...]:
    """One pod per (kv_cache_usage, queue_length), named like a Deployment's pods."""
    return tuple(PodMetrics(f"{name}-{i}", kv, queue, running, at) for i, (kv, queue) in enumerate(loads))


def variant(name: str, *, cost: float = 10.0, current: int = 1, ready: int | None = None,
            loads: tuple[tuple[float, float], ...] | list[tuple[float, float]] = (), min_replicas: int = 0,
            max_replicas: int | None = None, accelerator: str = "", fresh: bool = True,
            saturation: SaturationConfig | None = None, at: float = 100.0, running: float = 0.0) -> VariantState:
    """A variant whose ready replicas default to its current ones; `loads` are the pods that reported."""
    spec = VariantSpec(key(name), MODEL, name, accelerator=accelerator, cost=cost, min_replicas=min_replicas,
                       max_replicas=max_replicas, saturation=saturation)
    return VariantState(spec, current, current if ready is None else ready,
                        pods(name, *loads, at=at, running=running), fresh)


def snapshot(*variants: VariantState, config: SaturationConfig | None = None, taken_at: float = 120.0) -> ModelSnapshot:
    return ModelSnapshot(NS, MODEL, tuple(variants), config or SaturationConfig(), taken_at)


def by_key(decisions) -> dict[str, object]:
    """Decisions by variant name."""
    return {d.key.name: d for d in decisions}
