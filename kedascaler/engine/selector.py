"""Variant selector: turn the model's replica total into per-variant targets, cheapest first up, priciest first down.

Pure and deterministic: the same (spec, current) list and total always give the same targets. Every variant
first comes within its own [min_replicas, max_replicas]; the difference to the total is then added to the
cheapest variant with room (ties: name ascending), filled to its max before the next, or removed from the most
expensive (ties: name descending), never below its min. When the limits make the total unreachable, the
targets stop at the limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from kedascaler.engine.types import VariantKey, VariantSpec


class Priced(Protocol):
    """Anything that names a variant and its cost per replica (a VariantSpec, a plan's VariantTarget)."""

    @property
    def key(self) -> VariantKey: ...

    @property
    def cost(self) -> float: ...


P = TypeVar("P", bound=Priced)


def clamp_replicas(spec: VariantSpec, replicas: int) -> int:
    """`replicas` within the variant's [min_replicas, max_replicas] (max None: unbounded)."""
    low = max(0, spec.min_replicas)
    out = max(low, replicas)
    if spec.max_replicas is not None:
        out = min(out, max(low, spec.max_replicas))
    return out


def scale_up_order(specs: Sequence[P]) -> list[P]:
    """Where new replicas go first: cheapest per replica, then name ascending."""
    return sorted(specs, key=lambda s: (s.cost, s.key.namespace, s.key.name))


def scale_down_order(specs: Sequence[P]) -> list[P]:
    """Where replicas are removed first: most expensive per replica, then name descending."""
    return sorted(specs, key=lambda s: (s.cost, s.key.namespace, s.key.name), reverse=True)


def room(spec: VariantSpec, replicas: int) -> int | None:
    """How many more replicas the variant may take (None: unbounded)."""
    if spec.max_replicas is None:
        return None
    return max(0, spec.max_replicas - replicas)


def select_targets(variants: Sequence[tuple[VariantSpec, int]], total: int) -> dict[VariantKey, int]:
    """Per-variant targets (from each (spec, current)) that sum to `total` as closely as min/max allow."""
    targets = {spec.key: clamp_replicas(spec, current) for spec, current in variants}
    specs = [spec for spec, _ in variants]
    delta = total - sum(targets.values())
    if delta > 0:
        for spec in scale_up_order(specs):
            free = room(spec, targets[spec.key])
            add = delta if free is None else min(delta, free)
            targets[spec.key] += add
            delta -= add
            if delta == 0:
                break
    elif delta < 0:
        for spec in scale_down_order(specs):
            cut = min(-delta, targets[spec.key] - max(0, spec.min_replicas))
            targets[spec.key] -= max(0, cut)
            delta += max(0, cut)
            if delta == 0:
                break
    return targets


def max_total(specs: Sequence[VariantSpec]) -> int | None:
    """The most replicas the model's variants may run together (None: unbounded)."""
    if any(s.max_replicas is None for s in specs):
        return None
    return sum(clamp_replicas(s, s.max_replicas or 0) for s in specs)


def min_total(specs: Sequence[VariantSpec]) -> int:
    """The fewest replicas the model's variants may run together."""
    return sum(max(0, s.min_replicas) for s in specs)
