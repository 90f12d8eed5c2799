"""`wva`: WVA's V1 saturation scaling as upstream ran it before v0.9.

Follows llm-d/llm-d-workload-variant-autoscaler at main b08b1c77c89d284361e40b2a9315e93ef46e7022 (2026-02-19):
* `internal/engines/saturation/engine.go`: the loop every 30 s (the polling executor's hard-coded interval);
  a model without any replica metrics is skipped (its VAs keep their previous desired);
  `BuildVariantStates`: current = Deployment replicas, pending = current − ready, desired = the VA's last
  decision;
* `internal/collector/registration/saturation.go` and `internal/collector/replica_metrics.go`: per pod
  `max_over_time(vllm:kv_cache_usage_perc[1m])` and `max_over_time(vllm:num_requests_waiting[1m])` (the
  simulator's `pods` view: the worst of the last minute's scrapes), the queue as an integer;
* `internal/saturation/analyzer.go`: a replica is saturated at kv ≥ kvCacheThreshold or queue ≥
  queueLengthThreshold; average spare KV and queue over the non-saturated replicas of the whole model;
  scale up when either is under its trigger; scale-down safe only with ≥ 2 non-saturated replicas whose
  load, spread over N − 1, leaves both spares at or above the triggers (a veto: it never starts a
  scale-down by itself). `CalculateSaturationTargets`: the variants analysed are those with metrics; the
  whole model is held (desired kept where it differs from current, else current) while any of them has
  desired ≠ 0 and desired ≠ current, or fewer replicas reporting metrics than current; otherwise the base is
  the replicas reporting metrics, +1 on the cheapest variant without pending replicas (cost, then name
  ascending), else −1 on the most expensive variant whose base is above 1 (cost, then name descending):
  at most ±1 per model per cycle; never a variant's last replica;
* `internal/saturation/constants.go`: MinNonSaturatedReplicasForScaleDown 2; thresholds from the
  `saturation-scaling-config` defaults (kvCacheThreshold 0.80, queueLengthThreshold 5, kvSpareTrigger 0.1,
  queueSpareTrigger 3);
* enforcer, scale from zero and the KEDA actuation: `kedascaler.sim.baselines.wva_common`.

What follows from upstream and may surprise: a variant at zero replicas reports no metrics, so V1 never
scales it up (only the scale-from-zero engine does, when no pod of the model is ready); its +1 goes to the
cheapest variant per replica, not per unit of capacity.

Deliberate deviations: the GPU limiter (`enableLimiter`, off by default) is not modelled; pods that report
metrics are the simulator's ready pods that have been scraped (upstream maps Prometheus series to pods, and
a terminated pod's series stays in the 1 m window for up to a minute); see also `wva_common`.
"""

from __future__ import annotations

from kedascaler.engine.types import SaturationConfig
from kedascaler.sim.baselines.wva_common import WVA_DEVIATIONS, WVABaseline, pending
from kedascaler.sim.policy_api import Observation

SOURCE = ("llm-d/llm-d-workload-variant-autoscaler@b08b1c77c89d284361e40b2a9315e93ef46e7022: "
          "internal/saturation/analyzer.go, internal/engines/saturation/engine.go, "
          "internal/engines/pipeline/enforcer.go, "
          "internal/collector/registration/saturation.go, docs/integrations/keda-integration.md")


class WVAPolicy(WVABaseline):
    """WVA's V1 saturation loop: ±1 replica per model per 30 s cycle, through KEDA (see the module's docstring)."""

    name = "wva"
    follows = SOURCE
    deviations = (*WVA_DEVIATIONS,
                  "pods reporting metrics are the ready pods already scraped (no lingering series of removed pods)")
    cycle = 30.0

    def __init__(self, config: SaturationConfig | None = None, scale_to_zero: bool = False,
                 retention: float = 600.0, min_replicas: int | None = None) -> None:
        super().__init__(SOURCE, scale_to_zero, retention, min_replicas)
        self.config = config or SaturationConfig()

    def analyse(self, obs: Observation) -> dict[str, int] | None:
        cfg = self.config
        analysed = [v for v in obs.variants if v.pods]
        if not analysed:
            return None
        kv_t, q_t = cfg.kv_cache_threshold, cfg.queue_length_threshold
        pods = [(p.kv_cache_usage, float(int(p.queue_length))) for v in analysed for p in v.pods]
        free = [(kv, q) for kv, q in pods if kv < kv_t and q < q_t]
        spare_kv = sum(kv_t - kv for kv, _ in free) / len(free) if free else 0.0
        spare_q = sum(q_t - q for _, q in free) / len(free) if free else 0.0
        up = spare_kv < cfg.kv_spare_trigger or spare_q < cfg.queue_spare_trigger
        safe = False
        if len(free) >= 2:
            grow = len(free) / (len(free) - 1)
            safe = (kv_t - (kv_t - spare_kv) * grow >= cfg.kv_spare_trigger
                    and q_t - (q_t - spare_q) * grow >= cfg.queue_spare_trigger)
        reasons = []
        for v in analysed:
            desired = self.desired.get(v.config.name, 0)
            if desired != 0 and desired != v.current:
                reasons.append(f"{v.config.name}: desired {desired} != current {v.current}")
            if len(v.pods) != v.current:
                reasons.append(f"{v.config.name}: metrics {len(v.pods)} != current {v.current}")
        targets: dict[str, int] = {}
        for v in analysed:
            desired = self.desired.get(v.config.name, 0)
            if not reasons:
                targets[v.config.name] = len(v.pods)
            else:
                targets[v.config.name] = desired if desired != 0 and desired != v.current else v.current
        if not reasons and up:
            candidates = [v for v in analysed if pending(v) == 0]
            if candidates:
                pick = min(candidates, key=lambda v: (v.config.cost, v.config.name))
                targets[pick.config.name] += 1
                self.last_note = (f"+1 {pick.config.name}: spare KV {spare_kv:.3f} (trigger {cfg.kv_spare_trigger}), "
                                  f"spare queue {spare_q:.1f} (trigger {cfg.queue_spare_trigger})")
        elif not reasons and safe:
            candidates = [v for v in analysed if targets[v.config.name] > 1]
            if candidates:
                pick = max(candidates, key=lambda v: (v.config.cost, v.config.name))
                targets[pick.config.name] -= 1
                self.last_note = f"-1 {pick.config.name}: N-1 safe (spare KV {spare_kv:.3f}, queue {spare_q:.1f})"
        costs = {v.config.name: v.config.cost for v in analysed}
        enforced = self.enforce(obs, targets, costs)
        if enforced != targets:
            self.last_note = f"enforcer: {enforced}"
        return enforced

    def policy_settings(self) -> dict:
        cfg = self.config
        return {**super().policy_settings(), "analyzer": "saturation V1 (percentage-based)",
                "kvCacheThreshold": cfg.kv_cache_threshold, "queueLengthThreshold": cfg.queue_length_threshold,
                "kvSpareTrigger": cfg.kv_spare_trigger, "queueSpareTrigger": cfg.queue_spare_trigger,
                "metrics_window": "max_over_time[1m] per pod", "step": "±1 replica per model per cycle"}
