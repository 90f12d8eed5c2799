"""Decision records made the real way (DecisionRecorder over CycleReports) from a seeded random walk.

Two variants of one model; per cycle random KV and queue per pod, random actions; the A100 variant carries
model-based predictions and observations with an SLO, so every section of the analysis has data. Each decision
carries the steps the engine would give it (`steps_for`): its pods classified against its thresholds.
"""

from __future__ import annotations

import random

from kedascaler.engine.saturation import spare_means, variant_replicas
from kedascaler.engine.types import (
    Decision,
    DecisionSteps,
    ModelSnapshot,
    PodMetrics,
    Reason,
    Route,
    SaturationConfig,
    VariantKey,
    VariantSpec,
    VariantState,
    VariantTarget,
)
from kedascaler.loop.reconcile import CycleReport
from kedascaler.observe.records import DecisionRecorder
from kedascaler.sources.base import CollectResult

T0 = 1_700_000_000.0
SPECS = (VariantSpec(VariantKey("llm", "llama-a100"), "meta/llama", "llama-a100", accelerator="A100", cost=20.0),
         VariantSpec(VariantKey("llm", "llama-h100"), "meta/llama", "llama-h100", accelerator="H100", cost=40.0))
ACTIONS = ("scale-up", "scale-down", "hold", "hold", "stale")


def steps_for(state: VariantState, config: SaturationConfig, desired: int) -> DecisionSteps:
    """The per-variant steps the engine gives a decision: its thresholds, its analysed pods, its plan entry."""
    pods = variant_replicas(state, state.spec.saturation or config)
    spare_kv, spare_queue = spare_means(pods)
    target = VariantTarget(state.spec.key, state.spec.accelerator, state.spec.cost, state.current_replicas, desired)
    return DecisionSteps(route=Route.SATURATION, variant=state.spec.key, thresholds=state.spec.saturation or config,
                         model_thresholds=config, pods=pods, spare_kv=spare_kv, spare_queue=spare_queue,
                         saturation_level=max((p.kv_cache_usage for p in pods), default=0.0), plan=(target,))


def synthetic_records(seed: int = 42, cycles: int = 20, interval: float = 15.0) -> list[dict]:
    rng = random.Random(seed)
    recorder = DecisionRecorder(clock=lambda: T0)
    config = SaturationConfig()
    replicas = {s.key: 1 for s in SPECS}
    out: list[dict] = []
    for n in range(cycles):
        at = T0 + n * interval
        states, decisions = [], []
        for spec in SPECS:
            current = replicas[spec.key]
            pods = tuple(PodMetrics(f"{spec.target_name}-{i}", round(rng.uniform(0.2, 0.95), 3),
                                    float(rng.randint(0, 8)), float(rng.randint(0, 16)), at - 1)
                         for i in range(current))
            state = VariantState(spec, current, current, pods)
            states.append(state)
            action = rng.choice(ACTIONS)
            desired = max(1, current + {"scale-up": 1, "scale-down": -1}.get(action, 0))
            decisions.append(Decision(spec.key, spec.model_id, desired, True,
                                      Reason(action, "kv_cache_usage", 0.5, 0.7, f"cycle {n}"),
                                      current_replicas=current, ready_replicas=current, decided_at=at,
                                      data_at=at - 1, stale=action == "stale",
                                      steps=steps_for(state, config, desired)))
            replicas[spec.key] = desired
        report = CycleReport(tuple(decisions), (ModelSnapshot("llm", "meta/llama", tuple(states), config, at),),
                             CollectResult(), (), 0.01)
        for record in recorder.records(report):
            if record["variant"] == "llama-a100":
                record["predicted_itl_ms"] = round(rng.uniform(20, 40), 2)
                record["observed_itl_ms"] = round(rng.uniform(20, 60), 2)
                record["slo"] = {"class": "Standard", "itl_ms": 50.0, "ttft_ms": 1000.0}
            out.append(record)
    return out
