"""The scaling policies the simulator compares, all fed the same arrivals and the same cluster model.

kedascaler's (`kedascaler.sim.scaler_policies`: the shared cycle step `serve` runs), the baselines it is judged
against (`kedascaler.sim.baselines`, one module each: WVA's V1 and v0.9 loops, KEDA's Prometheus scaler on the
queue, HPA on KV-cache usage, a static fleet) and the oracle (`kedascaler.sim.oracle`: the cost floor). This
module names them and builds fresh ones for a run.
"""

from __future__ import annotations

from kedascaler.engine.sizing import HYBRID, MODEL
from kedascaler.sim.baselines import (
    HPAKVPolicy,
    KedaQueuePolicy,
    StaticPolicy,
    WVAPolicy,
    WVAV2Policy,
    cheapest,
)
from kedascaler.sim.config import SimConfig
from kedascaler.sim.oracle import (
    OraclePolicy,
    OracleStartupPolicy,
    calibrated_capacity,
    cheapest_mix,
    future_rates,
    replica_capacity,
    slo_attainment_at,
    workload_capacity,
)
from kedascaler.sim.policy_api import Policy
from kedascaler.sim.scaler_policies import NAMESPACE, KedascalerPolicy, KedascalerSloPolicy
from kedascaler.sim.workloads import Workload

__all__ = ["EXTRA_POLICY_NAMES", "NAMESPACE", "POLICY_NAMES", "HPAKVPolicy", "KedaQueuePolicy", "KedascalerPolicy",
           "KedascalerSloPolicy", "OraclePolicy", "StaticPolicy", "WVAPolicy", "WVAV2Policy", "calibrated_capacity",
           "cheapest", "cheapest_mix", "future_rates", "make_policies", "policy_settings", "replica_capacity",
           "slo_attainment_at", "workload_capacity"]


POLICY_NAMES = ("kedascaler", "kedascaler-warm", "wva", "wva-v2", "keda-queue", "hpa-kv", "static-peak",
                "oracle-startup", "oracle")
# run on request (--policy), not by default: SLO sizing with learned parameters (hybrid, model) and with the
# true ones as a user-given profile; kedascaler-warm at WVA's configuration (minReplicas 1 on every variant)
EXTRA_POLICY_NAMES: tuple[str, ...] = ("kedascaler-hybrid", "kedascaler-model", "kedascaler-hybrid-profile",
                                       "kedascaler-min1")


def make_policies(names: list[str] | tuple[str, ...], workload: Workload, config: SimConfig,
                  model_id: str = "meta/llama-3.1-8b") -> list[Policy]:
    """Fresh policy objects (they hold per-run state) for the given names, in order."""
    out: list[Policy] = []
    oracle = OraclePolicy(workload, config)
    for name in names:
        if name == "kedascaler":
            out.append(KedascalerPolicy(model_id, slo=config.slo))
        elif name == "kedascaler-hybrid":
            out.append(KedascalerSloPolicy(config.slo, model_id, mode=HYBRID))
        elif name == "kedascaler-model":
            out.append(KedascalerSloPolicy(config.slo, model_id, mode=MODEL))
        elif name == "kedascaler-hybrid-profile":
            out.append(KedascalerSloPolicy(config.slo, model_id, mode=HYBRID, profile=True))
        elif name == "kedascaler-warm":
            out.append(KedascalerPolicy(model_id, scale_to_zero=False, slo=config.slo))
        elif name == "kedascaler-min1":
            out.append(KedascalerPolicy(model_id, scale_to_zero=False, slo=config.slo, min_replicas=1))
        elif name == "wva":
            out.append(WVAPolicy())
        elif name == "wva-v2":
            out.append(WVAV2Policy())
        elif name == "keda-queue":
            out.append(KedaQueuePolicy())
        elif name == "hpa-kv":
            out.append(HPAKVPolicy())
        elif name == "static-peak":
            out.append(StaticPolicy(oracle.peak(config)))
        elif name == "oracle":
            out.append(OraclePolicy(workload, config))
        elif name == "oracle-startup":
            out.append(OracleStartupPolicy(workload, config))
        else:
            raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES + EXTRA_POLICY_NAMES)}")
    return out


def policy_settings(policies: list[Policy]) -> dict[str, dict]:
    """Each policy's configuration as data (the baselines' `settings()`: upstream source, commit, clocks,
    ScaledObject, deviations), for the report; policies without one are left out."""
    out: dict[str, dict] = {}
    for policy in policies:
        settings = getattr(policy, "settings", None)
        if callable(settings):
            out[policy.name] = settings()
    return out
