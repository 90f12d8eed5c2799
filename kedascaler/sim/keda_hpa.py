"""KEDA + HPA as a Deployment sees them, modelled as pure state machines (no clock inside: time comes in).

KEDA owns 0 ↔ 1 (activation, cooldownPeriod); HPA owns 1 ↔ N on an AverageValue metric with target 1:
desired = ceil(value), unchanged within the 10% tolerance, with scale-up/-down policies and stabilisation
windows as Kubernetes defaults them. Used by the demo's stand-in and by the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class HPABehavior:
    """HPA defaults (autoscaling/v2): 10% tolerance, up: max(100%, 4 pods)/15 s, down: 100%/15 s after 300 s."""

    tolerance: float = 0.10
    sync_period: float = 15.0
    scale_up_stabilization: float = 0.0
    scale_down_stabilization: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_down_percent: float = 100.0
    policy_period: float = 15.0


@dataclass(frozen=True)
class KEDAConfig:
    """ScaledObject settings that matter here: pollingInterval, cooldownPeriod, min/max replica counts."""

    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    min_replicas: int = 0
    max_replicas: int = 100


@dataclass(frozen=True)
class ScalingState:
    """What KEDA+HPA remember between syncs: recommendations in the stabilisation window, last active time."""

    replicas: int
    recommendations: tuple[tuple[float, int], ...] = ()  # (time, recommended replicas)
    last_active: float | None = None
    events: tuple[tuple[float, int], ...] = field(default=())  # (time, replicas after a change), for policies


def hpa_recommendation(current: int, value: float, target: float, tolerance: float) -> int:
    """HPA's AverageValue arithmetic: ceil(value / target), kept at current within the tolerance."""
    if current <= 0:
        return max(1, math.ceil(value / target))
    ratio = value / (target * current)
    if abs(ratio - 1.0) <= tolerance + 1e-9:  # 11 at 10 replicas is inside, as documented
        return current
    return max(1, math.ceil(value / target))


def hpa_step(state: ScalingState, value: float, now: float, behavior: HPABehavior, keda: KEDAConfig,
             target: float = 1.0) -> ScalingState:
    """One HPA sync: stabilise the raw recommendation over the windows, then apply the rate policies."""
    current = state.replicas
    raw = min(keda.max_replicas, max(max(1, keda.min_replicas), hpa_recommendation(current, value, target, behavior.tolerance)))
    window = max(behavior.scale_up_stabilization, behavior.scale_down_stabilization)
    recs = tuple((t, r) for t, r in state.recommendations if now - t < window) + ((now, raw),)
    # Scale-down: the highest recommendation within the down window; scale-up: the lowest within the up window.
    down_floor = max(r for t, r in recs if now - t <= behavior.scale_down_stabilization)
    up_recs = [r for t, r in recs if now - t <= behavior.scale_up_stabilization] or [raw]
    up_ceiling = min(up_recs)
    desired = current
    if raw > current:
        desired = min(raw, up_ceiling) if behavior.scale_up_stabilization > 0 else raw
    elif raw < current:
        desired = max(raw, min(down_floor, current))
    recent = [r for t, r in state.events if now - t < behavior.policy_period]
    base = min(recent + [current]) if desired > current else max(recent + [current])
    if desired > current:
        limit = max(math.floor(base * (1 + behavior.scale_up_percent / 100)), base + behavior.scale_up_pods)
        desired = min(desired, limit)
    elif desired < current:
        limit = math.ceil(base * (1 - behavior.scale_down_percent / 100))
        desired = max(desired, limit, 1)
    events = tuple((t, r) for t, r in state.events if now - t < behavior.policy_period)
    if desired != current:
        events += ((now, desired),)
    return replace(state, replicas=desired, recommendations=recs, events=events)


def keda_step(state: ScalingState, active: bool, value: float, now: float, behavior: HPABehavior,
              keda: KEDAConfig) -> ScalingState:
    """KEDA's part: 0 → 1 on activation, N → min after cooldown without activity; HPA in between."""
    if active:
        state = replace(state, last_active=now)
    if state.replicas == 0:
        if active:
            return replace(state, replicas=max(1, keda.min_replicas), recommendations=(), events=())
        return state
    idle_for = now - state.last_active if state.last_active is not None else math.inf
    if not active and keda.min_replicas == 0 and idle_for >= keda.cooldown_period:
        return replace(state, replicas=0, recommendations=(), events=())
    return hpa_step(state, value, now, behavior, keda)
