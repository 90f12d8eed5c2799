"""`hpa-kv`: HPA on vLLM's KV-cache usage, average 0.7 per replica, through KEDA's Prometheus scaler.

What a user puts on a KV-bound vLLM (long prompts: the cache fills before the batch does): the gauge
`vllm:kv_cache_usage_perc` (vllm-project/vllm `vllm/v1/metrics/loggers.py`, a fraction 0–1) as an
AverageValue target of 0.7 per replica — 70% of the cache on average, under WVA's kvCacheThreshold 0.8.
Through KEDA (kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a: `pkg/scalers/scaler.go` refuses
`Utilization` for the Prometheus scaler, so "70% utilisation" is AverageValue 0.7 on the summed gauge):
`sum(vllm:kv_cache_usage_perc{model_name="<model>"})`, threshold 0.7, so HPA computes
desired = ceil(Σ kv ÷ 0.7) within its 10% tolerance; a pod not yet scraped adds nothing (no series).
ScaledObject at KEDA's defaults (pollingInterval 30 s, cooldownPeriod 300 s) with minReplicaCount 1, as
production-stack's chart sets it (`helm/values.yaml`, a6c01db05f65f556235413ba8dbcfb0c01132fff), and HPA's
default behaviour (up without stabilisation by max(100%, 4 pods) per 15 s, down after 300 s by 100% per 15 s).
prometheus-adapter with a Pods metric of averageValue 700m gives the same arithmetic for ready pods.

A plain HPA has no cost-aware choice between accelerators: it runs on the cheapest variant only.
Deliberate deviation: maxReplicaCount is the simulator's variant cap.
"""

from __future__ import annotations

from kedascaler.sim.baselines.base import cheapest
from kedascaler.sim.baselines.keda import KedaBaseline, ScaledObject
from kedascaler.sim.keda_hpa import HPABehavior
from kedascaler.sim.policy_api import Observation

SOURCE = ("kedacore/keda@8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a: pkg/scalers/prometheus_scaler.go, "
          "pkg/scalers/scaler.go; vllm-project/production-stack@a6c01db05f65f556235413ba8dbcfb0c01132fff: "
          "helm/values.yaml (minReplicaCount 1)")


class HPAKVPolicy(KedaBaseline):
    """HPA (via KEDA) on the summed KV-cache usage, `target` per replica, on the cheapest variant."""

    name = "hpa-kv"
    follows = SOURCE
    deviations = ("not an upstream recipe: the setup a user would write (target 0.7 under WVA's 0.8)",
                  "maxReplicaCount: the simulator's variant cap")
    cycle = 15.0  # the query runs whenever KEDA or HPA reads it
    cheapest_only = True

    def __init__(self, target: float = 0.70, min_replicas: int = 1) -> None:
        super().__init__(ScaledObject(
            query='sum(vllm:kv_cache_usage_perc{model_name="<model>"})', threshold=target,
            min_replicas=min_replicas, hpa=HPABehavior(), source=SOURCE))
        self.target = target

    def metric(self, obs: Observation) -> dict[str, float]:
        usage = sum(p.kv_cache_usage for v in obs.variants for p in v.latest)
        return {cheapest(tuple(v.config for v in obs.variants)).name: float(usage)}

    def policy_settings(self) -> dict:
        return {"variants": "the cheapest only (no cost-aware choice between accelerators)"}
