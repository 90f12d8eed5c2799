"""What WVA's two baselines share: their actuation (KEDA on `wva_desired_replicas`), the scale-to-zero
enforcer, the scale-from-zero engine and the VA status they keep between cycles.

Follows llm-d/llm-d-workload-variant-autoscaler:
* `internal/engines/pipeline/enforcer.go` (main b08b1c77c89d284361e40b2a9315e93ef46e7022, and v0.9.0
  d5d586408420fbe0545f827a6ff5dc2f818b16de in the deanlorenz/llm-d-workload-variant-autoscaler mirror):
  scale to zero when `sum(increase(vllm:request_success_total[retention]))` is 0 (retention 10 min, off by
  default: `WVA_SCALE_TO_ZERO` false); with it off, at least one replica on the cheapest variant of those the
  cycle decided, cost then name;
* `internal/engines/scalefromzero/engine.go` (v0.9.0): every 100 ms, a variant at 0 replicas whose model has
  requests queued at the EPP gets its `/scale` patched to 1 and its desired set to 1 (here: the simulator's
  gateway queue, acted on at once through `wake_on_gateway`);
* `docs/integrations/keda-integration.md` (main) and `config/samples/keda/annotations/scaledobject.yaml`
  (v0.9.0): the ScaledObject per variant — Prometheus trigger on `wva_desired_replicas`, threshold 1,
  activationThreshold 0, pollingInterval 5 s, cooldownPeriod 30 s, HPA behaviour without stabilisation, up
  and down by max(100% per 30 s, 5 pods per 15 s); WVA's own metrics scraped every 10 s
  (`charts/workload-variant-autoscaler/templates/manager/wva-servicemonitor.yaml`);
* minReplicaCount 1 on every variant, as WVA's two-variant benchmark runs it (v0.9.0
  `docs/developer-guide/two-variant-wva-benchmark.md`, `hack/benchmark/scenarios/guides/variants/
  v2-tp1-cheaper.yaml`: min/max 1/10 on both variants): the single-variant KEDA examples leave it unset (0),
  but then V1 can never use a second variant (at zero it reports no metrics). With scale to zero on, 0
  (`min_replicas` overrides either); the variants start warm at their minimum.

Deliberate deviations (both baselines): maxReplicaCount is the simulator's variant cap, not the sample's 10 (a
capacity choice, not a scaling behaviour); metricType AverageValue — main's KEDA doc says so, v0.9.0's sample
says `Value`, under which HPA computes ceil(current pods × value ÷ threshold) and would ask N² replicas for a
desired N (KEDA's default, the HPA samples and the README use AverageValue, under which HPA lands on N); the
HPA's sync runs at a fixed phase, 10 s after each cycle (`sync_phase`); the GPU limiter is not modelled.
"""

from __future__ import annotations

from collections import deque

from kedascaler.sim.baselines.keda import KedaBaseline, ScaledObject
from kedascaler.sim.keda_hpa import HPABehavior, HPAPolicy
from kedascaler.sim.policy_api import Observation, VariantView

WVA_HPA = HPABehavior(
    scale_up_stabilization=0.0, scale_down_stabilization=0.0,
    scale_up_policies=(HPAPolicy("Percent", 100, 30.0), HPAPolicy("Pods", 5, 15.0)),
    scale_down_policies=(HPAPolicy("Percent", 100, 30.0), HPAPolicy("Pods", 5, 15.0)))


def wva_scaled_object(source: str, min_replicas: int) -> ScaledObject:
    """The ScaledObject WVA's docs put on each variant's Deployment, with `min_replicas` as minReplicaCount."""
    return ScaledObject(query='wva_desired_replicas{variant_name="<deployment>",exported_namespace="<namespace>"}',
                        threshold=1.0, activation_threshold=0.0, polling_interval=5.0, cooldown_period=30.0,
                        min_replicas=min_replicas, max_replicas=None, hpa=WVA_HPA, metric_type="AverageValue",
                        source=source)


class RequestHistory:
    """`sum(increase(vllm:request_success_total[retention]))` over the model's pods, from their counters."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self.last: dict[str, int] = {}  # pod → completed at its last read
        self.total = 0
        self.points: deque[tuple[float, int]] = deque()  # (t, cumulative completions of the model)

    def observe(self, obs: Observation) -> int:
        """Read every ready pod's counter; the completions within the retention window."""
        for view in obs.variants:
            for pod in view.counters:
                done = pod.counters.completed
                self.total += done - self.last.get(pod.name, 0)
                self.last[pod.name] = done
        self.points.append((obs.now, self.total))
        while len(self.points) > 1 and self.points[1][0] <= obs.now - self.retention:
            self.points.popleft()
        start = self.points[0][1] if self.points[0][0] <= obs.now - self.retention else 0
        return self.total - start


WVA_DEVIATIONS = (
    "maxReplicaCount: the simulator's variant cap, not the sample's 10",
    "metricType AverageValue (v0.9.0's KEDA sample says Value, under which HPA would ask ceil(pods × desired))",
    "HPA syncs 10 s after each cycle (a fixed phase; real phases are random)",
    "the GPU limiter (enableLimiter, off by default) is not modelled",
)


class WVABaseline(KedaBaseline):
    """WVA's engine around an analyzer: VA status (`desired`), enforcer, scale-from-zero, KEDA actuation."""

    exporter_scrape = 10.0  # WVA's ServiceMonitor
    # HPA's sync phase against the cycle: cycles at 0, 15, 30 … (V1: 0, 30, 60 …), WVA scraped at 0, 10, 20 …
    # (before a cycle that falls on the same instant), HPA syncs at 10, 25, 40 …: every decision reaches the
    # Deployment 10 s after it is made, before the next cycle reads the replicas — a constant near the 12.5 s
    # mean of a 10 s scrape and a 15 s sync at random phases. At the worst phase (sync at the cycle, after its
    # read) every value lands one cycle late and V2 oscillates between two holds; a bursty trace's results
    # move with the phase (docs/simulator.md).
    sync_phase = 10.0
    wake_on_gateway = True  # the scale-from-zero engine polls every 100 ms
    reads_counters: bool = False  # the analyzer reads pods' counters (V2); the enforcer does with scale to zero

    def __init__(self, source: str, scale_to_zero: bool = False, retention: float = 600.0,
                 min_replicas: int | None = None) -> None:
        """`min_replicas`: each variant's minReplicaCount; None: 1, or 0 with scale to zero."""
        if min_replicas is None:
            min_replicas = 0 if scale_to_zero else 1
        super().__init__(wva_scaled_object(source, min_replicas))
        self.scale_to_zero = scale_to_zero
        self.retention = retention
        self.reads_counters = scale_to_zero or self.reads_counters
        self.requests = RequestHistory(retention)
        self.desired: dict[str, int] = {}  # VA status.desiredOptimizedAlloc.numReplicas, per variant
        self._first = True

    def analyse(self, obs: Observation) -> dict[str, int] | None:
        """The analyzer and optimizer: targets for the variants they decide, None when the model is skipped."""
        raise NotImplementedError

    def enforce(self, obs: Observation, targets: dict[str, int], costs: dict[str, float]) -> dict[str, int]:
        """The enforcer: all to 0 after `retention` without a request (scale to zero on), else ≥ 1 in total on
        the cheapest decided variant (cost, then name)."""
        if self.scale_to_zero and self.scaled_object.min_replicas == 0:  # v0.9: not with a minReplicas > 0
            if self.requests.observe(obs) == 0:
                return dict.fromkeys(targets, 0)
            return targets
        if targets and sum(targets.values()) == 0:
            keep = min(targets, key=lambda n: (costs[n], n))
            targets = {**targets, keep: 1}
        return targets

    def metric(self, obs: Observation) -> dict[str, float]:
        targets = self.analyse(obs)
        if targets is not None:  # a skipped model keeps its VAs' previous desired (applySaturationDecisions)
            self.desired.update(targets)
        return {v.config.name: float(self.desired.get(v.config.name, 0)) for v in obs.variants}

    def before_actuation(self, obs: Observation) -> None:
        if self._first and self.published:  # the exporter ran before t = 0: its value is already in Prometheus
            self.visible = dict(self.published)
            self._first = False
        if obs.gateway_queue <= 0:
            return
        for view in obs.variants:  # scale from zero: every inactive variant of the model to 1
            if view.current == 0:
                self.desired[view.config.name] = 1
                self.published[view.config.name] = 1.0
                self.actuation.patch(view.config.name, 1)
                self.last_note = f"scale from zero: {view.config.name} → 1 (requests at the EPP)"

    def policy_settings(self) -> dict:
        return {"minReplicaCount_from": "WVA's two-variant benchmark (min/max 1/10 per variant); 0 with scale to zero",
                "scale_to_zero": self.scale_to_zero, "retention_s": self.retention,
                "scale_from_zero": "every inactive variant to 1 when requests wait at the gateway"}


def pending(view: VariantView) -> int:
    """current − ready, clamped at 0 (BuildVariantStates)."""
    return max(0, view.current - view.ready)
