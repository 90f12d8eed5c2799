"""Scaling modes: which plan sizes a model (`capacity`, `saturation`, `model`, `hybrid`), and how hybrid combines two.

`capacity` (`kedascaler.engine.capacity`): the arrival rate in capacity units at the cheapest mix per unit of
capacity, with the engine's own hysteresis; the default. Pure.

A mode is chosen per VariantAutoscaling (`spec.scalingMode`) or globally; the variants of one model are decided
together, so they must agree (else saturation, the safe default). In hybrid mode the model-based plan is the
plan and the saturation plan the guard-rail: never fewer replicas than saturation asks, fewer than now only
when both plans agree (`hybrid_targets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kedascaler.engine.frozen import quick
from kedascaler.engine.types import ScalingMode, VariantKey

SATURATION, MODEL, HYBRID = ScalingMode.SATURATION, ScalingMode.MODEL, ScalingMode.HYBRID
CAPACITY = ScalingMode.CAPACITY
MODES = (CAPACITY, SATURATION, MODEL, HYBRID)


def parse_mode(value: object, default: ScalingMode = SATURATION) -> tuple[ScalingMode, str]:
    """A scaling mode from user text (any case); (default, problem) when it is not one of MODES."""
    if value is None or value == "":
        return default, ""
    text = str(value).strip().lower()
    if text in MODES:
        return ScalingMode(text), ""
    return default, f"expected one of {', '.join(MODES)}, got {value!r}"


def resolve_mode(variant_mode: str | None, global_mode: str = SATURATION) -> ScalingMode:
    """The VA's own mode when set, else the global one."""
    return ScalingMode(variant_mode if variant_mode in MODES else global_mode)


def model_mode(variant_modes: Sequence[str | None], global_mode: str = SATURATION) -> tuple[ScalingMode, str]:
    """One mode for a model (its variants are decided together): theirs when they agree, else saturation."""
    modes = sorted({resolve_mode(m, global_mode) for m in variant_modes} or {ScalingMode(global_mode)})
    if len(modes) == 1:
        return modes[0], ""
    return SATURATION, f"variants disagree on the scaling mode ({', '.join(modes)}): saturation, the safe default"


@quick
@dataclass(frozen=True)
class HybridPlan:
    """The hybrid outcome: per-variant targets, which plan they come from, and why."""

    targets: Mapping[VariantKey, int]
    source: ScalingMode  # MODEL | SATURATION
    reason: str


def hybrid_reason(source: ScalingMode, model_total: int, saturation_total: int, total: int, current_total: int
                  ) -> str:
    """Why hybrid took the plan it took (`total`: what it adds up to), from the plans' totals and the current one."""
    if source == MODEL:
        why = f"model plan {model_total} ≥ saturation plan {saturation_total}"
    else:
        why = f"saturation plan {saturation_total} > model plan {model_total}: the guard-rail holds"
    if total < current_total:
        why += f"; both plans are below the current {current_total}: scale down"
    return why


def hybrid_targets(model_targets: Mapping[VariantKey, int], saturation_targets: Mapping[VariantKey, int],
                   current: Mapping[VariantKey, int]) -> HybridPlan:
    """Model plan with saturation as the guard-rail: never fewer than saturation demands, down only when both agree.

    Compared as model totals: the model plan is taken (its cheaper mix included) when it runs at least as many
    replicas as the saturation plan; otherwise the saturation plan is taken. So the result's total is
    max(model, saturation): above the current total when either wants more, below it only when both want less.
    """
    model_total = sum(model_targets.values())
    saturation_total = sum(saturation_targets.values())
    if model_total >= saturation_total:
        source, targets = MODEL, dict(model_targets)
    else:
        source, targets = SATURATION, dict(saturation_targets)
    for key in current:
        targets.setdefault(key, current[key] if source == MODEL else saturation_targets.get(key, current[key]))
    reason = hybrid_reason(source, model_total, saturation_total, sum(targets.values()), sum(current.values()))
    return HybridPlan(targets, source, reason)


__all__ = ["CAPACITY", "HYBRID", "MODEL", "MODES", "SATURATION", "HybridPlan", "hybrid_reason", "hybrid_targets",
           "model_mode", "parse_mode", "resolve_mode"]
