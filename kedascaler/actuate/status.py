"""The VariantAutoscaling status writer and the Events it records (run by the leader only).

`status_for` is pure: a decision (or a VA's problems) in, the status body out. `StatusWriter.write` merge-
patches `/status` only when that body changed since it was last written (times excluded), and records an
Event when a variant's desired replicas change and when a configuration problem first appears.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from kedascaler.engine.types import Decision, VariantKey
from kedascaler.loop.planner import SloPlan, VariantParameters
from kedascaler.spec.config import API_GROUP, API_VERSION, VA_KIND
from kedascaler.spec.inventory import InventoryState
from kedascaler.spec.problems import Problem

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger("kedascaler.actuate.status")

VA_PLURAL = "variantautoscalings"
VA_VERSION = API_VERSION.split("/", 1)[1]
COMPONENT = "kedascaler"
_TIME_KEYS = ("lastTransitionTime", "lastRunTime", "time")


# The client's signatures name models, but its @validate_call builds the CoreV1Event from a dict body, and with
# `_preload_content=False` it returns the urllib3 response rather than the model (as in actuate/leader.py).
def _as_event(body: dict[str, Any]) -> kubernetes.client.CoreV1Event:
    return cast(kubernetes.client.CoreV1Event, body)


def _raw(response: object) -> urllib3.BaseHTTPResponse:
    return cast("urllib3.BaseHTTPResponse", response)


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
               params: VariantParameters | None = None) -> dict[str, Any]:
    """The VA status for a decision: kedascaler's fields plus the WVA-compatible desiredOptimizedAlloc.

    With SLO sizing (`plan`: the model's SloPlan, `params`: the variant's VariantParameters) also the
    `ModelBasedSizing` condition, `performanceEstimate` and the predicted latencies of the plan taken."""
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
    estimate = performance_estimate(params)
    if estimate is not None:
        status["performanceEstimate"] = estimate
    return status


def invalid_status(problems: Sequence[Problem]) -> dict[str, Any]:
    """The status of a VA that cannot be used: what is wrong, per field."""
    message = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return {"conditions": [condition("OptimizationReady", False, "InvalidSpec", message),
                           condition("Ready", False, "InvalidSpec", message)]}


def comparable(status: Mapping[str, Any]) -> Any:
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


class EventRecorder:
    """core/v1 Events about our objects; errors are logged, never raised (an Event is a courtesy)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, component: str = COMPONENT,
                 clock: Any = time.time) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.component = component
        self.clock = clock
        self.recorded = 0

    def record(self, api_version: str, kind: str, namespace: str, name: str, event_type: str, reason: str,
               message: str, uid: str | None = None) -> None:
        now = rfc3339(self.clock())
        involved = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
        if uid:
            involved["uid"] = uid
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message[:1024], "type": event_type,
            "source": {"component": self.component}, "reportingComponent": self.component,
            "reportingInstance": self.component, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            _raw(self.core.create_namespaced_event(namespace, _as_event(body), _preload_content=False)).read()
            self.recorded += 1
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record Event %s on %s %s/%s: %s", reason, kind, namespace, name, exc)


class StatusWriter:
    """Patches VariantAutoscaling status when it changed, and records Events; keeps what it last wrote."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, events: EventRecorder | None = None,
                 existing: Callable[[VariantKey], Mapping[str, Any] | None] | None = None,
                 uid_of: Callable[[VariantKey], str | None] | None = None) -> None:
        """`existing(key)` gives a VA's status as the cluster holds it (from the watch), so that a new leader
        neither re-patches unchanged statuses nor resets condition transition times. `uid_of(key)` gives its
        metadata.uid, which an Event's involvedObject needs for `kubectl describe va` to list it."""
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.events = events or EventRecorder(api_client)
        self.existing = existing
        self.uid_of = uid_of
        self.written: dict[VariantKey, dict[str, Any]] = {}  # the full status last written per VA
        self._transitions: dict[tuple[VariantKey, str], tuple[str, str]] = {}  # (va, type) -> (status, time)
        self._problems_seen: set[str] = set()
        self.patches = 0

    def write(self, decisions: Iterable[Decision], state: InventoryState,
              missing_targets: Collection[VariantKey] = (), *, plans: Mapping[tuple[str, str], SloPlan] | None = None,
              parameters: Mapping[VariantKey, VariantParameters] | None = None) -> int:
        """Write every decision's status that changed; Events for desired changes and new problems.

        Returns the number of patches made.

        `plans` (per (namespace, model)) and `parameters` (per VA): SLO sizing's outcome (CycleReport.plans and
        .parameters), written as the ModelBasedSizing condition and status.performanceEstimate."""
        known = {s.key for s in state.variants} - state.from_scaled_objects  # CRD-free: no VA to write to
        patches = 0
        for d in decisions:
            if d.key not in known:
                continue
            previous = self.written.get(d.key)
            body = status_for(d, d.key in missing_targets, plan=(plans or {}).get((d.key.namespace, d.model_id)),
                              params=(parameters or {}).get(d.key))
            if self._patch(d.key, body, d.decided_at or time.time()):
                patches += 1
                old = previous.get("desiredReplicas") if previous else None
                changed = old is not None and old != d.desired_replicas
                first_and_differs = old is None and d.desired_replicas != d.current_replicas
                if changed or first_and_differs:
                    was = old if old is not None else d.current_replicas
                    self.events.record(API_VERSION, VA_KIND, d.key.namespace, d.key.name, "Normal",
                                       "ScaleUp" if d.desired_replicas > was else "ScaleDown",
                                       f"desired replicas {was} → {d.desired_replicas}: {d.reason}",
                                       uid=self.uid_of(d.key) if self.uid_of else None)
        patches += self._write_problems(state.problems)
        for key in list(self.written):
            if key not in known and not any(p.obj == f"{VA_KIND} {key}" for p in state.problems):
                del self.written[key]  # deleted VA: forget it
        self.patches += patches
        return patches

    def _write_problems(self, problems: Sequence[Problem]) -> int:
        patches = 0
        current = {str(p) for p in problems}
        by_va: dict[VariantKey, list[Problem]] = {}
        for problem in problems:
            subject = problem_subject(problem)
            if subject is None:
                continue
            api_version, kind, namespace, name = subject
            uid = None
            if kind == VA_KIND:
                by_va.setdefault(VariantKey(namespace, name), []).append(problem)
                uid = self.uid_of(VariantKey(namespace, name)) if self.uid_of else None
            if str(problem) not in self._problems_seen:
                self.events.record(api_version, kind, namespace, name, "Warning",
                                   "InvalidSpec" if kind == VA_KIND else "InvalidConfiguration",
                                   f"{problem.field}: {problem.message}", uid=uid)
        self._problems_seen = current  # a problem that goes away and comes back is recorded again
        for key, found in by_va.items():
            if self._patch(key, invalid_status(found), time.time()):
                patches += 1
        return patches

    def _adopt(self, key: VariantKey) -> None:
        """First sight of a VA: take what the cluster holds as what was last written."""
        if key in self.written or self.existing is None:
            return
        held = self.existing(key)
        if not held:
            return
        self.written[key] = dict(held)
        for cond in held.get("conditions") or []:
            if cond.get("type") and cond.get("lastTransitionTime"):
                self._transitions[(key, cond["type"])] = (cond.get("status"), cond["lastTransitionTime"])

    def _patch(self, key: VariantKey, status: dict[str, Any], now: float) -> bool:
        self._adopt(key)
        # Compare with what the cluster holds (the watch's copy) when known, so that a status overwritten by
        # someone else, or by another leader while this one was not leading, is repaired; else with our cache.
        held = self.existing(key) if self.existing is not None else None
        previous = held if held else self.written.get(key)
        if previous is not None and comparable(previous) == comparable(status):
            return False
        for cond in status.get("conditions", []):
            seen = self._transitions.get((key, cond["type"]))
            if seen is not None and seen[0] == cond["status"]:
                cond["lastTransitionTime"] = seen[1]
            else:
                cond["lastTransitionTime"] = rfc3339(now)
                self._transitions[(key, cond["type"])] = (cond["status"], cond["lastTransitionTime"])
        try:
            _raw(self.custom.patch_namespaced_custom_object_status(
                API_GROUP, VA_VERSION, key.namespace, VA_PLURAL, key.name, {"status": status},
                _preload_content=False)).read()
        except ApiException as exc:
            if exc.status == 404:
                log.info("VariantAutoscaling %s is gone; not writing its status", key)
                self.written.pop(key, None)
            else:
                log.warning("could not patch status of VariantAutoscaling %s: HTTP %s %s", key, exc.status, exc.reason)
            return False
        except Exception as exc:  # noqa: BLE001 - a status write failure must not stop the cycle
            log.warning("could not patch status of VariantAutoscaling %s: %s", key, exc)
            return False
        self.written[key] = status
        log.debug("status of %s written: desired=%s", key, status.get("desiredReplicas"))
        return True
