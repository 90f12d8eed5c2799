"""A baseline actuated as its own docs set it up: a KEDA ScaledObject with one Prometheus trigger per variant.

The simulator runs one KEDA+HPA configuration (`SimConfig.keda`, `SimConfig.hpa`) for the policies it
actuates; a baseline whose docs prescribe other settings (WVA's KEDA sample: pollingInterval 5, no HPA
stabilisation) would be misjudged under them. So a `KedaBaseline` is a `direct` policy that carries its own
`ScaledObject` and runs the same state machines (`kedascaler.sim.keda_hpa`) on its own clocks:

* its cycle (`cycle` s): the value the trigger will read, per variant (`metric`);
* the Prometheus scrape of its own exporter (`exporter_scrape` s; 0 when the trigger's query reads vLLM's
  metrics, which the simulator scrapes already, so the value is evaluated when KEDA or HPA asks);
* KEDA's polling (`polling_interval`: activation 0 ↔ 1, cooldownPeriod, minReplicaCount);
* HPA's sync (`hpa.sync_period`, at `sync_phase` + k·period: AverageValue arithmetic with its tolerance,
  windows and policies).

`decide` is called every `interval` s, the greatest common divisor of those clocks, and answers the
replicas of the variants its ScaledObjects target (others are left as they are).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from kedascaler.sim.baselines.base import _Base, cheapest
from kedascaler.sim.config import SimConfig, VariantConfig
from kedascaler.sim.keda_hpa import HPABehavior, KEDAConfig, ScalingState, hpa_step, keda_activation
from kedascaler.sim.policy_api import Observation


@dataclass(frozen=True)
class ScaledObject:
    """One Prometheus trigger on a ScaledObject and the HPA KEDA makes of it (KEDA's defaults unless set)."""

    query: str  # the trigger's PromQL, as a user writes it (what the value stands for)
    threshold: float  # target per replica (AverageValue: desired = ceil(value / threshold))
    activation_threshold: float = 0.0  # active while value > activationThreshold
    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    min_replicas: int = 0  # minReplicaCount
    max_replicas: int | None = None  # maxReplicaCount; None: the variant's cap in the simulator
    hpa: HPABehavior = field(default_factory=HPABehavior)
    metric_type: str = "AverageValue"
    source: str = ""  # the upstream file(s) these settings follow

    def keda(self, variant: VariantConfig) -> KEDAConfig:
        cap = variant.max_replicas if self.max_replicas is None else min(self.max_replicas, variant.max_replicas)
        return KEDAConfig(self.polling_interval, self.cooldown_period, self.min_replicas, cap)

    def settings(self) -> dict:
        return {"trigger": "prometheus", "query": self.query, "threshold": self.threshold,
                "activationThreshold": self.activation_threshold, "metricType": self.metric_type,
                "pollingInterval_s": self.polling_interval, "cooldownPeriod_s": self.cooldown_period,
                "minReplicaCount": self.min_replicas,
                "maxReplicaCount": "the variant's cap" if self.max_replicas is None else self.max_replicas,
                "hpa": self.hpa.settings()}


class _Clock:
    """Fires at phase + k·period, k = 0, 1, … (never when period is 0)."""

    def __init__(self, period: float, phase: float = 0.0) -> None:
        self.period = period
        self.phase = phase
        self.next = phase

    def due(self, now: float) -> bool:
        if self.period <= 0 or now + 1e-6 < self.next:
            return False
        self.next = self.phase + (math.floor((now + 1e-6 - self.phase) / self.period) + 1) * self.period
        return True


class Actuation:
    """KEDA's polling and HPA's sync for the variants a baseline's ScaledObject targets."""

    def __init__(self, scaled_object: ScaledObject, sync_phase: float = 0.0) -> None:
        self.scaled_object = scaled_object
        self.states: dict[str, ScalingState] = {}
        self.poll = _Clock(scaled_object.polling_interval)
        self.sync = _Clock(scaled_object.hpa.sync_period, sync_phase)

    def patch(self, name: str, replicas: int) -> None:
        """Someone else wrote the Deployment's replicas (WVA's scale-from-zero engine patches `/scale`)."""
        state = self.states.get(name, ScalingState(replicas=0))
        self.states[name] = ScalingState(replicas=replicas, last_active=state.last_active)

    def step(self, obs: Observation, values: Mapping[str, float]) -> dict[str, int]:
        """One call at `obs.now`: KEDA and HPA act if their clocks say so; the replicas of the targeted variants."""
        so = self.scaled_object
        poll, sync = self.poll.due(obs.now), self.sync.due(obs.now)
        out: dict[str, int] = {}
        for view in obs.variants:
            name = view.config.name
            if name not in values and name not in self.states:
                continue
            value = values.get(name, 0.0)  # no series: KEDA's ignoreNullValues (default true) reads 0
            keda = so.keda(view.config)
            state = self.states.get(name) or ScalingState(replicas=view.current)
            if poll:
                state = keda_activation(state, value > so.activation_threshold, obs.now, keda)
            if sync and state.replicas > 0:
                state = hpa_step(state, value, obs.now, so.hpa, keda, target=so.threshold)
            self.states[name] = state
            out[name] = state.replicas
        return out


def _gcd(*periods: float) -> float:
    ticks = [round(p * 4) for p in periods if p > 0]  # quarter seconds: the simulator's default tick
    return math.gcd(*ticks) / 4 if ticks else 15.0


class KedaBaseline(_Base):
    """A baseline that answers replicas itself, through its own ScaledObject (see the module's docstring)."""

    direct = True
    follows = ""  # upstream repository, files and commit
    deviations: tuple[str, ...] = ()  # what this model does differently from upstream, on purpose
    cycle = 15.0
    exporter_scrape = 0.0
    sync_phase = 0.0  # HPA's sync runs at sync_phase + k·sync_period

    def __init__(self, scaled_object: ScaledObject) -> None:
        self.scaled_object = scaled_object
        self.actuation = Actuation(scaled_object, self.sync_phase)
        self.interval = _gcd(self.cycle, self.exporter_scrape, scaled_object.polling_interval,
                             scaled_object.hpa.sync_period, self.sync_phase)
        self._cycle = _Clock(self.cycle)
        self._scrape = _Clock(self.exporter_scrape)
        self.published: dict[str, float] = {}  # what the policy exports (or what the query would return)
        self.visible: dict[str, float] = {}  # what Prometheus holds, hence what KEDA and HPA read

    cheapest_only = False  # one ScaledObject on the cheapest variant (a plain trigger), else one per variant

    def keda_min_replicas(self, variant: VariantConfig) -> int:
        return self.scaled_object.min_replicas

    def initial(self, config: SimConfig) -> dict[str, int]:
        """One warm replica of the cheapest variant, and every targeted variant at its minReplicaCount: the
        state a ScaledObject that ran before t = 0 leaves."""
        out = super().initial(config)
        targeted = (cheapest(config.variants),) if self.cheapest_only else config.variants
        for v in targeted:
            out[v.name] = max(out.get(v.name, 0), min(self.scaled_object.min_replicas, v.max_replicas))
        return out

    def metric(self, obs: Observation) -> dict[str, float]:
        """The trigger's value per targeted variant, computed at a cycle."""
        raise NotImplementedError

    def before_actuation(self, obs: Observation) -> None:
        """Hook run at every call after the cycle, before KEDA and HPA (WVA's scale-from-zero engine)."""

    def decide(self, obs: Observation) -> dict[str, int]:
        self.last_note = None
        if self.exporter_scrape > 0 and self._scrape.due(obs.now):
            self.visible = dict(self.published)  # the scrape sees what was exported before this call
        if self._cycle.due(obs.now):
            self.published = self.metric(obs)
            if self.exporter_scrape <= 0:
                self.visible = dict(self.published)
        self.before_actuation(obs)
        return self.actuation.step(obs, self.visible)

    def settings(self) -> dict:
        """This baseline's configuration as data, for the report: what it follows, its clocks, its ScaledObject."""
        return {"follows": self.follows, "deviations": list(self.deviations), "cycle_s": self.cycle,
                "exporter_scrape_s": self.exporter_scrape,
                "hpa_sync_phase_s": self.sync_phase, "scaled_object": self.scaled_object.settings(),
                **self.policy_settings()}

    def policy_settings(self) -> dict:
        return {}
