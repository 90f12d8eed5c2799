"""The VariantAutoscaling status writer and the Events it records (run by the leader only).

`StatusWriter.write` writes kedascaler's part of each VA's `/status` by server-side apply (field manager
`kedascaler`, forced): only its own keys and conditions are sent, another controller's conditions and keys stay,
and a key or condition it stops sending is removed by the API server. It writes nothing when its part, as the
cluster holds it, is what it would send (times aside). It records an Event when a variant's desired replicas
change and when a configuration problem first appears. Every call has a timeout (`timeout_s`).

`StatusWriter.submit` is what `serve` calls after each cycle, on its event loop: it hands the cycle over to the
writer's own thread and returns at once (`kedascaler.kits.latest.LatestOnly`: one cycle waiting at most,
decisions merged by VA, so a slow or black-holed API server holds neither the loop nor memory).
The body itself is rendered by `kedascaler.actuate.status_body` (pure).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from kedascaler.actuate.status_body import (
    OWN_CONDITIONS,
    OWN_KEYS,
    comparable,
    condition,
    decision_conditions,
    invalid_status,
    last_decision,
    metrics_condition,
    needs_write,
    own_parts,
    performance_estimate,
    problem_subject,
    rfc3339,
    sizing_condition,
    status_for,
)
from kedascaler.engine.types import Decision, VariantKey
from kedascaler.kits.latest import LatestOnly
from kedascaler.loop.planner import SloPlan, VariantParameters
from kedascaler.spec.config import API_GROUP, API_VERSION, VA_KIND
from kedascaler.spec.inventory import InventoryState
from kedascaler.spec.problems import Problem

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger("kedascaler.actuate.status")

__all__ = ["OWN_CONDITIONS", "OWN_KEYS", "EventRecorder", "StatusWriter", "comparable", "condition",
           "decision_conditions", "invalid_status", "last_decision", "metrics_condition", "needs_write",
           "own_parts", "performance_estimate", "problem_subject", "rfc3339", "sizing_condition", "status_for"]

VA_PLURAL = "variantautoscalings"
VA_VERSION = API_VERSION.split("/", 1)[1]
COMPONENT = "kedascaler"
FIELD_MANAGER = "kedascaler"  # the server-side apply field manager of everything kedascaler writes in status
APPLY = "application/apply-patch+yaml"  # JSON is YAML: the client sends the dict as JSON
TIMEOUT_S = 5.0  # every call to the API server: connect and read


# The client's signatures name models, but its @validate_call builds the CoreV1Event from a dict body, and with
# `_preload_content=False` it returns the urllib3 response rather than the model (as in actuate/leader.py).
def _as_event(body: dict[str, Any]) -> kubernetes.client.CoreV1Event:
    return cast(kubernetes.client.CoreV1Event, body)


def _raw(response: object) -> urllib3.BaseHTTPResponse:
    return cast("urllib3.BaseHTTPResponse", response)


@dataclass(frozen=True)
class _Cycle:
    """One cycle handed to the writer's thread (merged with a cycle still waiting: the newer wins per VA)."""

    decisions: Mapping[VariantKey, Decision]
    state: InventoryState
    missing_targets: Collection[VariantKey] = ()
    plans: Mapping[tuple[str, str], SloPlan] = field(default_factory=dict)
    parameters: Mapping[VariantKey, VariantParameters] = field(default_factory=dict)


def _merge(waiting: _Cycle, new: _Cycle) -> _Cycle:
    """A wake-up cycle's few decisions must not drop the full cycle still waiting: decisions merge by VA."""
    return _Cycle({**waiting.decisions, **new.decisions}, new.state, new.missing_targets, new.plans,
                  {**waiting.parameters, **new.parameters})


class EventRecorder:
    """core/v1 Events about our objects; errors are logged, never raised (an Event is a courtesy)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, component: str = COMPONENT,
                 clock: Any = time.time, *, timeout_s: float = TIMEOUT_S) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.component = component
        self.clock = clock
        self.timeout_s = timeout_s
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
            _raw(self.core.create_namespaced_event(namespace, _as_event(body), _preload_content=False,
                                                   _request_timeout=self.timeout_s)).read()
            self.recorded += 1
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record Event %s on %s %s/%s: %s", reason, kind, namespace, name, exc)


class StatusWriter:
    """Applies kedascaler's part of VariantAutoscaling status when it changed, and records Events."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, events: EventRecorder | None = None,
                 existing: Callable[[VariantKey], Mapping[str, Any] | None] | None = None,
                 uid_of: Callable[[VariantKey], str | None] | None = None,
                 leading: Callable[[], bool] | None = None, timeout_s: float = TIMEOUT_S) -> None:
        """`existing(key)` gives a VA's status as the cluster holds it (from the watch), so that a new leader
        neither re-writes unchanged statuses nor resets condition transition times. `uid_of(key)` gives its
        metadata.uid, which an Event's involvedObject needs for `kubectl describe va` to list it. `leading()`:
        whether this replica may write now (the leader elector), asked by `submit`'s thread before each cycle
        it writes; `timeout_s`: every API call's timeout."""
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.events = events or EventRecorder(api_client, timeout_s=timeout_s)
        self.existing = existing
        self.uid_of = uid_of
        self.leading = leading
        self.timeout_s = timeout_s
        self.written: dict[VariantKey, dict[str, Any]] = {}  # what was last applied per VA (kedascaler's part)
        self._transitions: dict[tuple[VariantKey, str], tuple[str, str]] = {}  # (va, type) -> (status, time)
        self._problems_seen: set[str] = set()
        self._lock = threading.Lock()  # one write at a time (submit's thread, or a caller of write)
        self._worker: LatestOnly[_Cycle] = LatestOnly(self._write_cycle, name="status-writer", merge=_merge)
        self.patches = 0
        self.wake_up = True  # serve can wake a model at zero (a gateway reader or a push endpoint): ScaleToZero

    def submit(self, decisions: Iterable[Decision], state: InventoryState,
               missing_targets: Collection[VariantKey] = (), *,
               plans: Mapping[tuple[str, str], SloPlan] | None = None,
               parameters: Mapping[VariantKey, VariantParameters] | None = None) -> None:
        """`write` in the writer's own thread: returns at once, never waits on the API server. A cycle submitted
        while another still waits is merged into it (decisions by VA, the newest inventory), so at most one
        waits; the thread writes it only while `leading()`."""
        self._worker.submit(_Cycle({d.key: d for d in decisions}, state, frozenset(missing_targets),
                                   dict(plans or {}), dict(parameters or {})))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until what was submitted is written (tests, shutdown)."""
        return self._worker.wait_idle(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is waiting (while leading, within `timeout`), then stop the thread."""
        self._worker.close(timeout)

    def _write_cycle(self, cycle: _Cycle) -> None:
        if self.leading is not None and not self.leading():
            return  # every replica answers KEDA; only the leader writes status and Events
        self.write(cycle.decisions.values(), cycle.state, cycle.missing_targets, plans=cycle.plans,
                   parameters=cycle.parameters)

    def write(self, decisions: Iterable[Decision], state: InventoryState,
              missing_targets: Collection[VariantKey] = (), *, plans: Mapping[tuple[str, str], SloPlan] | None = None,
              parameters: Mapping[VariantKey, VariantParameters] | None = None) -> int:
        """Write every decision's status that changed; Events for desired changes and new problems. Blocks on
        the API server (each call within `timeout_s`): `submit` is the caller that must not wait.

        Returns the number of patches made.

        `plans` (per (namespace, model)) and `parameters` (per VA): SLO sizing's outcome (CycleReport.plans and
        .parameters), written as the ModelBasedSizing condition and status.performanceEstimate."""
        with self._lock:
            return self._write(decisions, state, missing_targets, plans or {}, parameters or {})

    def _write(self, decisions: Iterable[Decision], state: InventoryState, missing_targets: Collection[VariantKey],
               plans: Mapping[tuple[str, str], SloPlan], parameters: Mapping[VariantKey, VariantParameters]) -> int:
        known = {s.key for s in state.variants} - state.from_scaled_objects  # CRD-free: no VA to write to
        min_replicas = {s.key: s.spec.min_replicas for s in state.variants}
        patches = 0
        for d in decisions:
            if d.key not in known:
                continue
            previous = self.written.get(d.key)
            body = status_for(d, d.key in missing_targets, plan=plans.get((d.key.namespace, d.model_id)),
                              params=parameters.get(d.key), min_replicas=min_replicas.get(d.key, 1),
                              wake_up=self.wake_up)
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
            if isinstance(cond, Mapping) and cond.get("type") and cond.get("lastTransitionTime"):
                self._transitions[(key, cond["type"])] = (str(cond.get("status")), cond["lastTransitionTime"])

    def _patch(self, key: VariantKey, status: dict[str, Any], now: float) -> bool:
        self._adopt(key)
        # Compare with what the cluster holds (the watch's copy) when known, so that a status overwritten by
        # someone else, or by another leader while this one was not leading, is repaired; else with our cache.
        held = self.existing(key) if self.existing is not None else None
        if not needs_write(held if held else self.written.get(key), self.written.get(key), status):
            return False
        for cond in status.get("conditions", []):
            seen = self._transitions.get((key, cond["type"]))
            if seen is not None and seen[0] == cond["status"]:
                cond["lastTransitionTime"] = seen[1]
            else:
                cond["lastTransitionTime"] = rfc3339(now)
                self._transitions[(key, cond["type"])] = (cond["status"], cond["lastTransitionTime"])
        body = {"apiVersion": API_VERSION, "kind": VA_KIND, "metadata": {"name": key.name, "namespace": key.namespace},
                "status": status}
        try:
            _raw(self.custom.patch_namespaced_custom_object_status(
                API_GROUP, VA_VERSION, key.namespace, VA_PLURAL, key.name, body, field_manager=FIELD_MANAGER,
                force=True, _content_type=APPLY, _request_timeout=self.timeout_s, _preload_content=False)).read()
        except ApiException as exc:
            if exc.status == 404:
                log.info("VariantAutoscaling %s is gone; not writing its status", key)
                self.written.pop(key, None)
            else:
                log.warning("could not write status of VariantAutoscaling %s: HTTP %s %s", key, exc.status,
                            exc.reason)
            return False
        except Exception as exc:  # noqa: BLE001 - a status write failure must not stop the cycle
            log.warning("could not write status of VariantAutoscaling %s: %s", key, exc)
            return False
        self.written[key] = status
        log.debug("status of %s written: desired=%s", key, status.get("desiredReplicas"))
        return True
