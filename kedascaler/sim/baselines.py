"""The policies kedascaler is judged against, each following its upstream source (see docs/simulator.md).

* `wva`: WVA's saturation scaling (reference/wva.md): +1 replica per cycle to the cheapest variant without
  pending replicas when the average spare KV or queue falls under its trigger, −1 from the most expensive
  when the N → N−1 check passes, a previous desired that differs from current is kept; every 60 s; through
  HPA with target 1 (KEDA reading `wva_desired_replicas`).
* `keda-queue`: KEDA's Prometheus scaler on the model's total queue (waiting in all pods + the gateway),
  threshold 5 per replica, AverageValue, on the cheapest variant only (minReplicaCount 1).
* `hpa-util`: HPA on a utilisation-like metric, running / max_num_seqs averaged over the pods, target 70%,
  on the cheapest variant only (min 1).
* `static-peak`: the oracle's fleet for the peak rate, ready from the start, never changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from kedascaler.engine.types import SaturationConfig
from kedascaler.sim.config import SimConfig, VariantConfig
from kedascaler.sim.policy_api import Observation, Target


def cheapest(variants: tuple[VariantConfig, ...]) -> VariantConfig:
    """The variant new replicas go to first: lowest cost, then name (the engine's scale-up order)."""
    return min(variants, key=lambda v: (v.cost, v.name))


class _Base:
    """Shared defaults: KEDA+HPA actuation, one warm replica of the cheapest variant at the start."""

    name = "base"
    interval = 15.0
    direct = False
    instant_start = False
    last_note: str | None = None

    def initial(self, config: SimConfig) -> dict[str, int]:
        return {cheapest(config.variants).name: 1}

    def keda_min_replicas(self, variant: VariantConfig) -> int:
        return max(0, variant.min_replicas)


class WVAPolicy(_Base):
    """WVA's saturation scaling: one replica up or down per cycle (reference/wva.md, steps 1-5)."""

    name = "wva"

    def __init__(self, interval: float = 60.0, config: SaturationConfig | None = None) -> None:
        self.interval = interval
        self.config = config or SaturationConfig()
        self.previous: dict[str, int] = {}

    def decide(self, obs: Observation) -> dict[str, Target]:
        cfg = self.config
        current = {v.config.name: v.current for v in obs.variants}
        pods = [p for v in obs.variants for p in v.pods]
        free = [p for p in pods if p.kv_cache_usage < cfg.kv_cache_threshold and p.queue_length < cfg.queue_length_threshold]
        targets = dict(current)
        preserved = any(self.previous.get(n, c) != c for n, c in current.items())
        action = "hold"
        if preserved:
            targets = {n: self.previous.get(n, c) for n, c in current.items()}
            action = "preserve"
        elif pods:
            up = not free
            if free:
                spare_kv = sum(cfg.kv_cache_threshold - p.kv_cache_usage for p in free) / len(free)
                spare_q = sum(cfg.queue_length_threshold - p.queue_length for p in free) / len(free)
                up = spare_kv < cfg.kv_spare_trigger or spare_q < cfg.queue_spare_trigger
            if up:
                for v in sorted(obs.variants, key=lambda v: (v.config.cost, v.config.name)):
                    if v.current == v.ready and v.current < v.config.max_replicas:
                        targets[v.config.name] += 1
                        action = f"+1 {v.config.name}"
                        break
            elif len(free) >= 2 and sum(current.values()) >= 2:
                kv = sum(p.kv_cache_usage for p in free) / (len(free) - 1)
                q = sum(p.queue_length for p in free) / (len(free) - 1)
                if (cfg.kv_cache_threshold - kv >= cfg.kv_spare_trigger
                        and cfg.queue_length_threshold - q >= cfg.queue_spare_trigger):
                    for v in sorted(obs.variants, key=lambda v: (v.config.cost, v.config.name), reverse=True):
                        if targets[v.config.name] > v.config.min_replicas:
                            targets[v.config.name] -= 1
                            action = f"-1 {v.config.name}"
                            break
        if sum(targets.values()) == 0:
            targets[cheapest(tuple(v.config for v in obs.variants)).name] = 1
        self.previous = dict(targets)
        self.last_note = action if action not in ("hold", "preserve") else None
        return {n: Target(float(t), t > 0) for n, t in targets.items()}


class KedaQueuePolicy(_Base):
    """KEDA's Prometheus scaler on the model's total waiting requests, `threshold` per replica."""

    name = "keda-queue"

    def __init__(self, threshold: float = 5.0, interval: float = 15.0) -> None:
        self.threshold = threshold
        self.interval = interval

    def keda_min_replicas(self, variant: VariantConfig) -> int:
        return max(1, variant.min_replicas)

    def decide(self, obs: Observation) -> dict[str, Target]:
        queue = sum(p.queue_length for v in obs.variants for p in v.latest) + obs.gateway_queue
        target = cheapest(tuple(v.config for v in obs.variants))
        return {target.name: Target(queue / self.threshold, queue > 0)}


class HPAUtilPolicy(_Base):
    """HPA on running / max_num_seqs averaged over the cheapest variant's pods, target `target`."""

    name = "hpa-util"

    def __init__(self, target: float = 0.70, interval: float = 15.0) -> None:
        self.target = target
        self.interval = interval

    def keda_min_replicas(self, variant: VariantConfig) -> int:
        return max(1, variant.min_replicas)

    def decide(self, obs: Observation) -> dict[str, Target]:
        v = min(obs.variants, key=lambda v: (v.config.cost, v.config.name))
        util = sum(min(1.0, p.running / v.config.params.max_num_seqs) for p in v.latest)
        # Pods without a sample yet count at the average (HPA skips them; the average is what it uses).
        if v.latest and v.ready > len(v.latest):
            util *= v.ready / len(v.latest)
        return {v.config.name: Target(util / self.target, True)}


class StaticPolicy(_Base):
    """A fixed fleet, ready from the start: `replicas` per variant."""

    name = "static-peak"
    direct = True
    interval = 3600.0 * 24

    def __init__(self, replicas: Mapping[str, int]) -> None:
        self.replicas = dict(replicas)

    def initial(self, config: SimConfig) -> dict[str, int]:
        return dict(self.replicas)

    def decide(self, obs: Observation) -> dict[str, int]:
        return dict(self.replicas)
