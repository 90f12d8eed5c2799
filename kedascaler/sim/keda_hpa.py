"""KEDA + HPA as a Deployment sees them, modelled as pure state machines (no clock inside: time comes in).

KEDA owns 0 ↔ 1 (activation, cooldownPeriod); HPA owns 1 ↔ N on an AverageValue metric with target 1:
desired = ceil(value), unchanged within the 10% tolerance, with scale-up/-down policies and stabilisation
windows as Kubernetes defaults them. Used by the demo's stand-in and by the simulator.

A ScaledObject that spells its HPA `behavior` out (the baselines' own, `kedascaler.sim.baselines`) gives
`HPABehavior` explicit `HPAPolicy` lists: `hpa_step` then follows Kubernetes' arithmetic for them
(pkg/controller/podautoscaler/horizontal.go: stabilisation over the windows, then each policy's limit from the
replicas at the start of its period, selectPolicy Max). `keda_activation` is KEDA's part alone, for callers
that run KEDA's polling and HPA's sync on their own clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class HPAPolicy:
    """One `HPAScalingPolicy` of autoscaling/v2: `Pods` (that many) or `Percent` (of the replicas at the start of
    the period) per `period` seconds."""

    kind: str  # "Pods" | "Percent"
    value: int
    period: float

    def limit(self, start: int, up: bool) -> int:
        """The replica count this policy allows from `start` replicas at the beginning of its period."""
        if self.kind == "Pods":
            return start + self.value if up else start - self.value
        if up:  # rounded up, as Kubernetes does, so that a small fleet can always grow
            return math.ceil(start * (1 + self.value / 100))
        return math.floor(start * (1 - self.value / 100))


@dataclass(frozen=True)
class HPABehavior:
    """HPA defaults (autoscaling/v2): 10% tolerance, up: max(100%, 4 pods)/15 s, down: 100%/15 s after 300 s.

    `scale_up_policies` / `scale_down_policies`, when given, are the ScaledObject's own `behavior` rules
    (selectPolicy Max); a direction left None keeps the default rules above."""

    tolerance: float = 0.10
    sync_period: float = 15.0
    scale_up_stabilization: float = 0.0
    scale_down_stabilization: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_down_percent: float = 100.0
    policy_period: float = 15.0
    scale_up_policies: tuple[HPAPolicy, ...] | None = None
    scale_down_policies: tuple[HPAPolicy, ...] | None = None

    @property
    def explicit(self) -> bool:
        return self.scale_up_policies is not None or self.scale_down_policies is not None

    def up_policies(self) -> tuple[HPAPolicy, ...]:
        if self.scale_up_policies is not None:
            return self.scale_up_policies
        return (HPAPolicy("Percent", round(self.scale_up_percent), self.policy_period),
                HPAPolicy("Pods", self.scale_up_pods, self.policy_period))

    def down_policies(self) -> tuple[HPAPolicy, ...]:
        if self.scale_down_policies is not None:
            return self.scale_down_policies
        return (HPAPolicy("Percent", round(self.scale_down_percent), self.policy_period),)

    def settings(self) -> dict:
        """The behaviour as a ScaledObject's `advanced.horizontalPodAutoscalerConfig.behavior` states it."""
        def rules(policies: tuple[HPAPolicy, ...]) -> list[str]:
            return [f"{p.kind} {p.value} per {p.period:g} s" for p in policies]

        return {"tolerance": self.tolerance, "sync_period_s": self.sync_period,
                "scale_up": {"stabilization_window_s": self.scale_up_stabilization,
                             "policies": rules(self.up_policies()), "select_policy": "Max"},
                "scale_down": {"stabilization_window_s": self.scale_down_stabilization,
                               "policies": rules(self.down_policies()), "select_policy": "Max"}}


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
    changes: tuple[tuple[float, int], ...] = ()  # (time, signed change): Kubernetes' scale events (explicit rules)


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
    if behavior.explicit:
        return _hpa_step_rules(state, value, now, behavior, keda, target)
    current = state.replicas
    rec = hpa_recommendation(current, value, target, behavior.tolerance)
    raw = min(keda.max_replicas, max(max(1, keda.min_replicas), rec))
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


def _hpa_step_rules(state: ScalingState, value: float, now: float, behavior: HPABehavior, keda: KEDAConfig,
                    target: float) -> ScalingState:
    """`hpa_step` with explicit rules, as Kubernetes computes it: the recommendation stabilised over the windows
    (the lowest of the up window, the highest of the down window, bounding the current count), then limited by
    the policies from the replicas at the start of each policy's period (selectPolicy Max), then min/max."""
    current = state.replicas
    lowest = max(1, keda.min_replicas)
    raw = hpa_recommendation(current, value, target, behavior.tolerance)
    up_cut, down_cut = now - behavior.scale_up_stabilization, now - behavior.scale_down_stabilization
    keep = now - max(behavior.scale_up_stabilization, behavior.scale_down_stabilization)
    past = tuple((t, r) for t, r in state.recommendations if t > keep)
    up = min([r for t, r in past if t > up_cut] + [raw])
    down = max([r for t, r in past if t > down_cut] + [raw])
    desired = min(max(current, up), down)

    def started(period: float) -> int:  # replicas at the start of the period: current minus the changes in it
        return current - sum(c for t, c in state.changes if t > now - period)

    if desired > current:
        limit = max(max(p.limit(started(p.period), True) for p in behavior.up_policies()), current)
        desired = min(desired, limit, keda.max_replicas)
    elif desired < current:
        limit = min(min(p.limit(started(p.period), False) for p in behavior.down_policies()), current)
        desired = max(desired, limit, lowest)
    longest = max(p.period for p in behavior.up_policies() + behavior.down_policies())
    changes = tuple((t, c) for t, c in state.changes if t > now - longest)
    if desired != current:
        changes += ((now, desired - current),)
    return replace(state, replicas=desired, recommendations=past + ((now, raw),), changes=changes)


def keda_activation(state: ScalingState, active: bool, now: float, keda: KEDAConfig) -> ScalingState:
    """KEDA's own part at a polling interval, HPA left to its sync: 0 → max(1, minReplicaCount) when a trigger is
    active; to 0 once no trigger has been active for cooldownPeriod (minReplicaCount 0 only); up to
    minReplicaCount whenever the Deployment has fewer."""
    if active:
        state = replace(state, last_active=now)
    if 0 < state.replicas < keda.min_replicas:
        return replace(state, replicas=keda.min_replicas)
    if state.replicas == 0 and keda.min_replicas > 0:
        return replace(state, replicas=keda.min_replicas, recommendations=(), events=(), changes=())
    if state.replicas == 0:
        if active:
            return replace(state, replicas=max(1, keda.min_replicas), recommendations=(), events=(), changes=())
        return state
    idle_for = now - state.last_active if state.last_active is not None else math.inf
    if not active and keda.min_replicas == 0 and idle_for >= keda.cooldown_period:
        return replace(state, replicas=0, recommendations=(), events=(), changes=())
    return state


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
