"""`keda-queue`: KEDA's Prometheus scaler on vLLM's waiting requests, as vLLM's production-stack sets it up.

Follows vllm-project/production-stack a6c01db05f65f556235413ba8dbcfb0c01132fff (2026-08-05):
`helm/values.yaml` (`servingEngineSpec.modelSpec[].keda`) and `helm/templates/scaledobject-vllm.yaml` — the
default trigger `type: prometheus`, query `vllm:num_requests_waiting{model="<model>"}`, threshold 5,
minReplicaCount 1, pollingInterval 15 s, cooldownPeriod 360 s, HPA `behavior: {}` (Kubernetes' defaults:
up without stabilisation by max(100%, 4 pods) per 15 s, down after a 300 s window by 100% per 15 s);
`tutorials/20-keda-autoscaling.md` and `tutorials/assets/keda-scaled-object.yaml` say the same. KEDA
(kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a, `pkg/scalers/prometheus_scaler.go`,
`pkg/scalers/scaler.go`): metricType AverageValue unless set, activationThreshold 0, an empty result read as 0
(ignoreNullValues), so HPA computes desired = ceil(value ÷ 5) within its 10% tolerance.

A plain KEDA trigger has no cost-aware choice between accelerators: one ScaledObject scales one Deployment,
so it runs on the cheapest variant only and the others stay at zero.

llm-d's own KEDA guide (`guides/workload-autoscaling/keda-epp-queue/optimized-baseline`, as WVA's e2e pins it
in deanlorenz/llm-d-workload-variant-autoscaler 2976e4eeee137e3ac1b708dc7d5d333cdddf0e81,
`test/e2e/keda_epp_guide_test.go`) triggers on the router's flow-control queue (threshold 1) and running
requests (16) instead, with the same HPA behaviour (up 0 s, down 300 s, 100% per 15 s): a different signal
(requests held at the gateway), not this baseline.

Deliberate deviations: the query is summed, `sum(vllm:num_requests_waiting{model_name="<model>"})` — the
chart's query returns one series per pod, which KEDA's Prometheus scaler rejects as soon as there are two
("returned multiple elements"), so any working setup sums it; maxReplicaCount is the simulator's variant cap
(the chart's 5, the tutorial's 2, are capacity choices); the gateway's own queue is not in the metric (vLLM's
router does not queue).
"""

from __future__ import annotations

from kedascaler.sim.baselines.base import cheapest
from kedascaler.sim.baselines.keda import KedaBaseline, ScaledObject
from kedascaler.sim.keda_hpa import HPABehavior
from kedascaler.sim.policy_api import Observation

SOURCE = ("vllm-project/production-stack@a6c01db05f65f556235413ba8dbcfb0c01132fff: helm/values.yaml, "
          "helm/templates/scaledobject-vllm.yaml, tutorials/20-keda-autoscaling.md; "
          "kedacore/keda@8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a: pkg/scalers/prometheus_scaler.go")


class KedaQueuePolicy(KedaBaseline):
    """KEDA on `sum(vllm:num_requests_waiting)`, `threshold` per replica, on the cheapest variant."""

    name = "keda-queue"
    follows = SOURCE
    deviations = ("the query is summed: production-stack's returns one series per pod, which KEDA rejects from two",
                  "maxReplicaCount: the simulator's variant cap (the chart's 5, the tutorial's 2)",
                  "the gateway's own queue is not in the metric (vLLM's router does not queue)")
    cycle = 15.0  # the query runs whenever KEDA or HPA reads it
    cheapest_only = True

    def __init__(self, threshold: float = 5.0, polling_interval: float = 15.0, cooldown_period: float = 360.0,
                 min_replicas: int = 1) -> None:
        super().__init__(ScaledObject(
            query='sum(vllm:num_requests_waiting{model_name="<model>"})', threshold=threshold,
            polling_interval=polling_interval, cooldown_period=cooldown_period, min_replicas=min_replicas,
            hpa=HPABehavior(), source=SOURCE))
        self.threshold = threshold

    def metric(self, obs: Observation) -> dict[str, float]:
        waiting = sum(p.queue_length for v in obs.variants for p in v.latest)
        return {cheapest(tuple(v.config for v in obs.variants)).name: float(waiting)}

    def policy_settings(self) -> dict:
        return {"variants": "the cheapest only (no cost-aware choice between accelerators)"}
