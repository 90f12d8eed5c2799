"""The VariantAutoscaling status kedascaler writes, rendered from a decision: pure, no I/O.

`status_for` turns a decision (with SLO sizing's plan and the variant's parameters) into kedascaler's part
of the status; `invalid_status` is that part for a VA that cannot be used. `OWN_KEYS` and `OWN_CONDITIONS`
are every key and condition type kedascaler ever writes: the status writer compares only those with what the
cluster holds (another controller's keys and conditions are none of its business), and server-side apply
removes the ones it stops sending.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kedascaler.engine.types import Decision
from kedascaler.loop.planner import SloPlan, VariantParameters
from kedascaler.spec.config import API_VERSION, VA_KIND
from kedascaler.spec.problems import Problem

_TIME_KEYS = ("lastTransitionTime", "lastRunTime", "time")
OWN_KEYS = frozenset({"currentReplicas", "desiredReplicas", "active", "lastDecision", "desiredOptimizedAlloc",
                      "currentAlloc", "conditions", "scalingMode", "predicted", "performanceEstimate"})
OWN_CONDITIONS = frozenset({"MetricsAvailable", "OptimizationReady", "Ready", "ModelBasedSizing"})


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def condition(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message[:1024]}


def metrics_condition(d: Decision) -> dict[str, Any]:
    """MetricsAvailable: whether the variant's decision stands on fresh metrics, from what its steps say."""
    if d.stale:
        return condition("MetricsAvailable", False, "MetricsMissing",
                         "no fresh vLLM metrics for this variant's pods (vllm:kv_cache_usage_perc, "
                         "vllm:num_requests_waiting): check that Prometheus scrapes them and that the pods are "
                         "ready; the last good decision is held and no scale-down happens on missing data")
    if d.ready_replicas == 0 and d.current_replicas == 0:
        return condition("MetricsAvailable", True, "NoReplicas",
                         "the variant runs no replicas: activation decides from request signals")
    reported = len(d.steps.pods)
    if d.steps.route is not None and reported < d.ready_replicas:
        return condition("MetricsAvailable", True, "MetricsFresh",
                         f"metrics from {reported} of the variant's {d.ready_replicas} ready replica(s); the others "
                         "are counted at the average and no scale-down happens until they report")
    return condition("MetricsAvailable", True, "MetricsFresh",
                     f"metrics from the variant's {d.ready_replicas} ready replica(s)")


def last_decision(d: Decision, when: str) -> dict[str, Any]:
    """`status.lastDecision`: the reason the engine rendered from the decision's steps, when, and in brief (the
    reason's numbers without its message: the `Reason` column of `kubectl get va`)."""
    return {"reason": str(d.reason)[:1024], "brief": str(dataclasses.replace(d.reason, message=""))[:128],
            "time": when}


def decision_conditions(d: Decision, target_missing: bool) -> list[dict[str, Any]]:
    """MetricsAvailable, OptimizationReady and Ready for one decision, with reasons a user can act on."""
    optimization = condition("OptimizationReady", True, "Decided", f"desired {d.desired_replicas}: {d.reason}")
    if target_missing:
        ready = condition("Ready", False, "TargetNotFound",
                          "the Deployment named by spec.scaleTargetRef does not exist in this namespace: "
                          "create it or fix spec.scaleTargetRef.name")
    elif d.stale:
        ready = condition("Ready", False, "MetricsMissing", "decisions are held until metrics return")
    else:
        ready = condition("Ready", True, "Ready", "KEDA is served the desired replicas of this variant")
    return [metrics_condition(d), optimization, ready]


def scale_to_zero_condition(d: Decision, min_replicas: int, wake_up: bool) -> dict[str, Any] | None:
    """`ScaleToZero`, from the decision's activation: on (and its window), held warm because the data that could
    wake the model is missing, or wanted (`minReplicas: 0`) while nothing can wake a model at zero (`wake_up`
    False: serve has neither a gateway reader nor a push endpoint). None where it does not apply. The messages
    carry no timer, so the condition changes only when the situation does."""
    act = d.steps.activation
    if act is not None and act.signal == "missing_data":
        return condition("ScaleToZero", False, "WakeUpSignalUnknown",
                         f"idle past its {act.window:g} s window, but the data that would wake it is missing (the "
                         "gateway's metrics do not mention the model, a query failed, or ready pods report no "
                         "metrics): kept warm until it is back, never put where nothing could wake it")
    if act is not None:
        return condition("ScaleToZero", True, "Enabled",
                         f"the model goes to zero after {act.window:g} s without requests, and wakes on a request")
    if min_replicas <= 0 and not wake_up:
        return condition("ScaleToZero", False, "NoWakeUpSignal",
                         "minReplicas is 0, but nothing could wake this model at zero: kedascaler serve reads no "
                         "gateway queue (--gateway-queue; chart scaleToZero.gatewayQueue) and has no push endpoint "
                         "(--activation-port; chart scaleToZero.activationPort), so the model is kept warm")
    return None


def _round(value: float | None, digits: int = 4) -> float | None:
    """A number for the status (stable across cycles when the fit does not change; None when not finite)."""
    return float(f"{value:.{digits}g}") if value is not None and math.isfinite(value) else None


def performance_estimate(params: VariantParameters | None) -> dict[str, Any] | None:
    """`status.performanceEstimate`: the parameters learned online and their quality (a VariantParameters)."""
    if params is None or params.estimate is None:
        return None
    est = params.estimate
    line = lambda fit: {k: v for k, v in (("r2", _round(fit.r2, 3)), ("samples", fit.n),  # noqa: E731
                                          ("usable", fit.usable), ("reason", fit.reason[:256] or None))
                        if v is not None}
    values = {"alpha": _round(est.decode.intercept), "beta": _round(est.decode.slope),
              "gamma": _round(est.prefill.intercept), "delta": _round(est.prefill.slope)}
    out: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    out.update({"usable": est.usable, "decode": line(est.decode), "prefill": line(est.prefill),
                "source": params.source or "none"})
    return out


def sizing_condition(plan: SloPlan, params: VariantParameters | None) -> dict[str, Any]:
    """`ModelBasedSizing`: True when the queueing model sizes the variant's model, else False and why."""
    if plan.model_based and params is not None and params.coefficients is None:
        return condition("ModelBasedSizing", False, "FallbackToSaturation",
                         f"this variant has no usable parameters ({params.reason}): it keeps its replicas, "
                         f"saturation may still add to them; {plan.note}")
    if plan.model_based:
        source = params.source if params is not None and params.source else "parameters"
        return condition("ModelBasedSizing", True, "ModelBased",
                         f"{plan.mode} mode, {source} parameters: {plan.sizing.reason if plan.sizing else ''}")
    if plan.mode == "saturation":
        return condition("ModelBasedSizing", False, "SaturationMode", plan.why_not)
    return condition("ModelBasedSizing", False, "FallbackToSaturation", plan.why_not)


def status_for(d: Decision, target_missing: bool = False, *, plan: SloPlan | None = None,
               params: VariantParameters | None = None, min_replicas: int = 1, wake_up: bool = True
               ) -> dict[str, Any]:
    """The VA status for a decision: kedascaler's fields plus the WVA-compatible desiredOptimizedAlloc.

    With SLO sizing (`plan`: the model's SloPlan, `params`: the variant's VariantParameters) also the
    `ModelBasedSizing` condition, `performanceEstimate` and the predicted latencies of the plan taken.
    `min_replicas` (the VA's) and `wake_up` (serve can wake a model at zero) give `ScaleToZero`."""
    when = rfc3339(d.decided_at or time.time())
    status: dict[str, Any] = {
        "currentReplicas": d.current_replicas,
        "desiredReplicas": d.desired_replicas,
        "active": d.active,
        "lastDecision": last_decision(d, when),
        "desiredOptimizedAlloc": {"numReplicas": d.desired_replicas, "lastRunTime": when},
        "currentAlloc": {"numReplicas": d.current_replicas},
        "conditions": decision_conditions(d, target_missing),
    }
    if plan is not None:
        status["scalingMode"] = plan.mode
        status["conditions"].append(sizing_condition(plan, params))
        if d.predicted_itl_ms is not None or d.predicted_ttft_ms is not None:
            status["predicted"] = {k: v for k, v in (("itlMs", _round(d.predicted_itl_ms, 3)),
                                                     ("ttftMs", _round(d.predicted_ttft_ms, 3)))
                                   if v is not None}
    to_zero = scale_to_zero_condition(d, min_replicas, wake_up)
    if to_zero is not None:
        status["conditions"].append(to_zero)
    estimate = performance_estimate(params)
    if estimate is not None:
        status["performanceEstimate"] = estimate
    return status


def invalid_status(problems: Sequence[Problem]) -> dict[str, Any]:
    """The status of a VA that cannot be used: what is wrong, per field."""
    message = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return {"conditions": [condition("OptimizationReady", False, "InvalidSpec", message),
                           condition("Ready", False, "InvalidSpec", message)]}


def comparable(status: Any) -> Any:
    """The status without its timestamps: what decides whether a patch is needed."""
    if isinstance(status, Mapping):
        return {k: comparable(v) for k, v in status.items() if k not in _TIME_KEYS}
    if isinstance(status, list):
        return [comparable(v) for v in status]
    return status


_VA_OBJ = re.compile(r"^VariantAutoscaling ([^/\s]+)/(\S+)$")
_CM_OBJ = re.compile(r"^ConfigMap (\S+)$")


def problem_subject(problem: Problem) -> tuple[str, str, str, str] | None:
    """(apiVersion, kind, namespace, name) of the object a problem is about, when it names one."""
    m = _VA_OBJ.match(problem.obj)
    if m:
        return API_VERSION, VA_KIND, m.group(1), m.group(2)
    m = _CM_OBJ.match(problem.obj)
    if m:
        namespace = problem.source.split("/", 1)[0] if problem.source.count("/") >= 2 else ""
        return "v1", "ConfigMap", namespace or "default", m.group(1)
    return None


def own_parts(status: Mapping[str, Any]) -> frozenset[Any]:
    """kedascaler's keys of a status, and its conditions as ("conditions", type): what it may remove."""
    keys = {k for k in status if k in OWN_KEYS and k != "conditions"}
    conditions = status.get("conditions")
    types = {("conditions", c.get("type")) for c in conditions if isinstance(c, Mapping)
             and c.get("type") in OWN_CONDITIONS} if isinstance(conditions, list) else set()
    return frozenset(keys | types)


def needs_write(held: Mapping[str, Any] | None, sent_before: Mapping[str, Any] | None,
                status: Mapping[str, Any]) -> bool:
    """Whether applying `status` would change what the cluster holds (`held`), times aside: a key or condition
    sent that is held otherwise, or one kedascaler sent before (`sent_before`) and no longer sends that is
    still held. Other controllers' keys and conditions never count."""
    if not isinstance(held, Mapping):
        return True
    for key, value in status.items():
        if key != "conditions" and comparable(held.get(key)) != comparable(value):
            return True
    conditions = held.get("conditions")
    by_type = {c.get("type"): c for c in conditions if isinstance(c, Mapping)} if isinstance(conditions, list) else {}
    if any(comparable(by_type.get(c["type"])) != comparable(c) for c in status.get("conditions", [])):
        return True
    dropped = own_parts(sent_before or {}) - own_parts(status)
    return bool(dropped & own_parts(held))
