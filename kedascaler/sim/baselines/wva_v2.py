"""`wva-v2`: WVA v0.9's default — the token-based saturation analyzer with the CostAwareOptimizer.

Follows llm-d/llm-d-workload-variant-autoscaler v0.9.0 (d5d586408420fbe0545f827a6ff5dc2f818b16de, "Prepare
for release v0.9.0", 2026-08-07, in the deanlorenz/llm-d-workload-variant-autoscaler mirror):
* `config/base/manager/manager-configmap.yaml`: the loop every 15 s (`GLOBAL_OPT_INTERVAL`);
  `config/base/manager/saturation-scaling-configmap.yaml`, `internal/config/saturation_scaling.go`:
  analyzer `saturation` (V2), scaleUpThreshold 0.85, scaleDownBoundary 0.70, kvCacheThreshold 0.80,
  queueLengthThreshold 5;
* `internal/engines/saturation/engine.go` (`optimizeV2`, `prepareModelData`, `BuildVariantStates`): a
  model without replica metrics is skipped; targets start at the Deployments' current replicas; no
  whole-model hold (pending pods are anticipated instead);
* `internal/engines/analyzers/saturation_v2/`: capacity and demand (`kedascaler.sim.baselines.wva_v2_capacity`);
  `internal/engines/aggregation/aggregation.go`: supply = Σ replicas with metrics × capacity, anticipated
  supply = Σ (those + pending) × capacity, demand = Σ replica demand + the EPP queue's (its requests ×
  (avg input + avg output), here the simulator's gateway queue);
* `internal/engines/saturation/engine_v2.go` (`applyUniversalThreshold`): required = max(0, demand ÷ 0.85 −
  anticipated supply), spare = max(0, supply − demand ÷ 0.70);
* `internal/engines/pipeline/cost_aware_optimizer.go`, `analyzer_helpers.go`: with required > 0, the variant
  with the lowest cost ÷ capacity (capacity > 0, below its max replicas) gets ⌈remaining ÷ capacity⌉, the next
  one what is left; else with spare > 0, variants by cost descending (then capacity ascending, name) each lose
  min(⌊spare ÷ capacity⌋, replicas above minReplicas), spare shrinking by what was removed; the cheapest
  (last) keeps 1 only when no more expensive variant still has replicas;
* enforcer, scale from zero, KEDA actuation (v0.9.0's annotated ScaledObject sample): `wva_common`.

Deliberate deviations: a variant's cost is its configured cost (upstream takes it from its live replicas'
metrics, so a variant at zero replicas enters the cost ÷ capacity ranking at cost 0); the throughput and
queueing-model analyzers, the GPU limiter and P/D roles are not modelled (all off or absent by default);
see also `wva_v2_capacity` and `wva_common`.
"""

from __future__ import annotations

import math

from kedascaler.sim.baselines.wva_common import WVA_DEVIATIONS, WVABaseline, pending
from kedascaler.sim.baselines.wva_v2_capacity import CapacityModel, median
from kedascaler.sim.policy_api import Observation

SOURCE = ("llm-d/llm-d-workload-variant-autoscaler v0.9.0 @d5d586408420fbe0545f827a6ff5dc2f818b16de "
          "(deanlorenz mirror): internal/engines/analyzers/saturation_v2/analyzer.go, "
          "internal/engines/saturation/engine_v2.go, internal/engines/pipeline/cost_aware_optimizer.go, "
          "internal/engines/pipeline/analyzer_helpers.go, internal/engines/pipeline/enforcer.go, "
          "config/samples/keda/annotations/scaledobject.yaml")


class WVAV2Policy(WVABaseline):
    """WVA v0.9: token capacity per replica, the cost-aware optimizer sizing the model in one cycle."""

    name = "wva-v2"
    follows = SOURCE
    deviations = (*WVA_DEVIATIONS,
                  "a variant's cost is its configured cost (upstream: 0 for a variant without live replicas)",
                  "avg output tokens = Δ generation tokens ÷ Δ successes over 5 m (no per-request histogram)",
                  "the Deployment's vLLM args state the profile's max-num-seqs, max-num-batched-tokens and "
                  "num-gpu-blocks-override",
                  "ties in cost ÷ capacity broken by name; throughput/queueing-model analyzers, P/D roles not modelled")
    cycle = 15.0
    reads_counters: bool = True  # avg input/output tokens per pod

    def __init__(self, scale_up_threshold: float = 0.85, scale_down_boundary: float = 0.70,
                 kv_cache_threshold: float = 0.80, queue_length_threshold: float = 5.0,
                 scale_to_zero: bool = False, retention: float = 600.0, min_replicas: int | None = None) -> None:
        super().__init__(SOURCE, scale_to_zero, retention, min_replicas)
        self.scale_up_threshold = scale_up_threshold
        self.scale_down_boundary = scale_down_boundary
        self.model = CapacityModel(kv_cache_threshold, queue_length_threshold)

    def analyse(self, obs: Observation) -> dict[str, int] | None:
        if not any(v.pods for v in obs.variants):
            return None
        for v in obs.variants:
            self.model.load_from_deployment(v.config)
        lengths: dict[str, tuple[float, float]] = {}
        for v in obs.variants:
            for c in v.counters:
                lengths[c.name] = self.model.tokens.observe(c)
        seen = [lengths[p.pod] for v in obs.variants for p in v.pods if lengths.get(p.pod, (0, 0)) != (0, 0)]
        avg_in = sum(i for i, _ in seen) / len(seen) if seen else 0.0
        avg_out = sum(o for _, o in seen) / len(seen) if seen else 0.0
        prc: dict[str, float] = {}
        supply = anticipated = demand = 0.0
        for v in obs.variants:
            reps = [self.model.replica(v.config, p.kv_cache_usage, int(p.queue_length), *lengths.get(p.pod, (0, 0)))
                    for p in v.pods]
            if reps:
                prc[v.config.name], count = float(median([r.capacity for r in reps])), len(reps)
            else:
                prc[v.config.name], count = self.model.stored(v.config, avg_in, avg_out), v.ready
            supply += count * prc[v.config.name]
            anticipated += (count + pending(v)) * prc[v.config.name]
            demand += sum(r.demand for r in reps)
        demand += obs.gateway_queue * (avg_in + avg_out)
        required = max(0.0, demand / self.scale_up_threshold - anticipated)
        spare = max(0.0, supply - demand / self.scale_down_boundary)
        targets = {v.config.name: v.current for v in obs.variants}
        if required > 0:
            self._scale_up(obs, targets, prc, required)
        elif spare > 0:
            self._scale_down(obs, targets, prc, spare)
        enforced = self.enforce(obs, targets, {v.config.name: v.config.cost for v in obs.variants})
        if enforced != {v.config.name: v.current for v in obs.variants}:
            self.last_note = (f"targets {enforced}: demand {demand:.0f}, supply {supply:.0f}, anticipated "
                              f"{anticipated:.0f} tokens; required {required:.0f}, spare {spare:.0f}")
        return enforced

    def _scale_up(self, obs: Observation, targets: dict[str, int], prc: dict[str, float], remaining: float) -> None:
        """costGreedyRolePick + allocateForModelPaired, one role: ⌈remaining ÷ capacity⌉ on the best cost ÷ capacity."""
        order = sorted((v for v in obs.variants if prc[v.config.name] > 0),
                       key=lambda v: (v.config.cost / prc[v.config.name], v.config.name))
        for v in order:
            if remaining <= 0:
                break
            name, cap = v.config.name, prc[v.config.name]
            headroom = v.config.max_replicas - targets[name]
            if headroom <= 0:
                continue
            n = min(math.ceil(remaining / cap), headroom)
            targets[name] += n
            remaining = max(0.0, remaining - n * cap)

    def _scale_down(self, obs: Observation, targets: dict[str, int], prc: dict[str, float], spare: float) -> None:
        """scaleDownVariantSet: cost descending, ⌊spare ÷ capacity⌋ each, the cheapest kept at 1 if alone."""
        order = sorted(obs.variants, key=lambda v: (-v.config.cost, prc[v.config.name], v.config.name))
        for i, v in enumerate(order):
            name, cap = v.config.name, prc[v.config.name]
            if cap <= 0:
                continue
            # the VA's minReplicas: the ScaledObject's minReplicaCount (internal/annotations)
            removable = targets[name] - max(self.scaled_object.min_replicas, v.config.min_replicas)
            if removable <= 0:
                continue
            n = min(math.floor(spare / cap), removable)
            if (i == len(order) - 1 and targets[name] - n < 1
                    and not any(targets[u.config.name] > 0 for u in order[:i])):
                n = targets[name] - 1
            if n <= 0:
                continue
            targets[name] -= n
            spare = max(0.0, spare - n * cap)

    def policy_settings(self) -> dict:
        m = self.model
        return {**super().policy_settings(), "analyzer": "saturation V2 (token-based)",
                "optimizer": "CostAwareOptimizer", "scaleUpThreshold": self.scale_up_threshold,
                "scaleDownBoundary": self.scale_down_boundary, "kvCacheThreshold": m.kv_threshold,
                "queueLengthThreshold": m.queue_threshold, "k2_rolling_window": 10,
                "avg_tokens_window_s": 300}
