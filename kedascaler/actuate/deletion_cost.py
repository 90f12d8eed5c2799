"""Scale down without killing work: mark which pods a ReplicaSet should delete first.

When HPA lowers a Deployment's replicas the ReplicaSet controller picks the pods to delete by its own ranks:
not ready first, then the lowest `controller.kubernetes.io/pod-deletion-cost`, then the newest. It knows
nothing of which vLLM pod holds long generations in flight. Before a variant's target drops, the leader sets
that annotation on the variant's ready pods from what each carries — its KV cache in use (the tokens in flight),
then the running and waiting requests its last metrics showed (`kedascaler.engine.deletion.pod_cost`) — so the
emptiest pods go first and less work is aborted.

`deletion_costs` is pure (decisions and snapshots in, a cost per pod out); `DeletionCostWriter` patches only the
pods of variants that are scaling down, only when the order changed since it last wrote it, at most once per
variant per `min_interval_s`, each call with a timeout. `submit` (what `serve` calls on its event loop) hands a
cycle to the writer's own thread and returns at once: the loop never waits on the API server. RBAC: `patch`
on `pods` (the chart grants it when `podDeletionCost.enabled`). Off (`serve --no-pod-deletion-cost`): no
writer, nothing patched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import kubernetes.client
from kubernetes.client.exceptions import ApiException
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from kedascaler.engine.deletion import pod_cost, requests_in_flight
from kedascaler.engine.types import Decision, ModelSnapshot, VariantKey
from kedascaler.kits.latest import LatestOnly

log = logging.getLogger("kedascaler.actuate.deletion_cost")

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
@dataclass(frozen=True)
class PodCost:
    """One pod's deletion cost: higher is deleted later (an int, as the annotation takes)."""

    namespace: str
    pod: str
    cost: int
    requests: int = 0  # requests in flight its last metrics showed


def deletion_costs(decisions: Iterable[Decision], snapshots: Iterable[ModelSnapshot]
                   ) -> dict[VariantKey, tuple[PodCost, ...]]:
    """For each variant asked for fewer replicas than it runs, its ready pods' costs, emptiest first.
    Variants holding or growing, and decisions on stale data, get nothing: no reason to touch their pods."""
    shrinking = {d.key for d in decisions if not d.stale and d.desired_replicas < d.current_replicas}
    out: dict[VariantKey, tuple[PodCost, ...]] = {}
    for snap in snapshots:
        for v in snap.variants:
            key = v.spec.key
            if key not in shrinking or not v.pods:
                continue
            costs = [PodCost(key.namespace, p.pod, pod_cost(p.running, p.queue_length, p.kv_cache_usage),
                             requests_in_flight(p.running, p.queue_length))
                     for p in v.pods]
            out[key] = tuple(sorted(costs, key=lambda c: (c.cost, c.pod)))
    return out


def _order(costs: tuple[PodCost, ...]) -> tuple[str, ...]:
    return tuple(c.pod for c in costs)


@dataclass(frozen=True)
class _Cycle:
    """One cycle for the writer's thread: decisions by VA, snapshots by model (merged with one still waiting)."""

    decisions: Mapping[VariantKey, Decision]
    snapshots: Mapping[tuple[str, str], ModelSnapshot]


def _merge(waiting: _Cycle, new: _Cycle) -> _Cycle:
    return _Cycle({**waiting.decisions, **new.decisions}, {**waiting.snapshots, **new.snapshots})


class DeletionCostWriter:
    """Patches `controller.kubernetes.io/pod-deletion-cost` on the pods of variants that scale down."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, min_interval_s: float = 30.0,
                 timeout_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 leading: Callable[[], bool] | None = None) -> None:
        """`leading()`: whether this replica may write now (the leader elector), asked by `submit`'s thread."""
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.leading = leading
        self._worker: LatestOnly[_Cycle] = LatestOnly(self._write_cycle, name="pod-deletion-cost", merge=_merge)
        self._written: dict[VariantKey, tuple[tuple[str, ...], float]] = {}  # order last written, and when
        self.patches = 0  # pods annotated, in all
        self.protected = 0  # requests on pods ranked after the emptiest (what the order protects), in all

    def submit(self, decisions: Iterable[Decision], snapshots: Iterable[ModelSnapshot]) -> None:
        """`write` in the writer's own thread: returns at once; at most one cycle waits (merged by VA and model)."""
        self._worker.submit(_Cycle({d.key: d for d in decisions}, {(s.namespace, s.model_id): s for s in snapshots}))

    def wait_idle(self, timeout: float) -> bool:
        return self._worker.wait_idle(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._worker.close(timeout)

    def _write_cycle(self, cycle: _Cycle) -> None:
        if self.leading is None or self.leading():
            self.write(cycle.decisions.values(), cycle.snapshots.values())

    def write(self, decisions: Iterable[Decision], snapshots: Iterable[ModelSnapshot]) -> int:
        """Annotate the pods of every shrinking variant whose order changed; returns the pods patched."""
        patched = 0
        now = self.clock()
        plan = deletion_costs(decisions, snapshots)
        for key, costs in plan.items():
            order = _order(costs)
            last = self._written.get(key)
            if last is not None and (last[0] == order or now - last[1] < self.min_interval_s):
                continue  # the same order is already on the pods, or written moments ago
            done = [self._patch(c) for c in costs]  # every pod, even after one fails
            patched += sum(done)
            if all(done):
                self._written[key] = (order, now)
                protected = sum(c.requests for c in costs[1:])
                self.protected += protected
                log.info("pod-deletion-cost on %s, deleted first to last: %s; %d request(s) on the pods kept longest",
                         key, ", ".join(f"{c.pod} ({c.cost})" for c in costs), protected)
        for key in [k for k in self._written if k not in plan]:
            del self._written[key]  # no longer shrinking: the next scale-down writes afresh
        self.patches += patched
        return patched

    def collector(self) -> DeletionCostMetrics:
        """Its counters for a prometheus_client registry (`registry.register(writer.collector())`)."""
        return DeletionCostMetrics(self)

    def _patch(self, cost: PodCost) -> bool:
        body = {"metadata": {"annotations": {ANNOTATION: str(cost.cost)}}}
        try:
            self.core.patch_namespaced_pod(cost.pod, cost.namespace, body, _request_timeout=self.timeout_s)
            return True
        except ApiException as exc:
            log.warning("could not set %s on pod %s/%s: HTTP %s %s", ANNOTATION, cost.namespace, cost.pod,
                        exc.status, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a pod's patch failing never stops the cycle's other writes
            log.warning("could not set %s on pod %s/%s: %s", ANNOTATION, cost.namespace, cost.pod, exc)
        return False



class DeletionCostMetrics(Collector):
    """`/metrics`: what the writer did, read at scrape time (the writer thread only ever adds to its counts)."""

    def __init__(self, writer: DeletionCostWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("kedascaler_pod_deletion_cost_pods_annotated",
                                  f"Pods of variants scaling down annotated with {ANNOTATION} (emptiest first)",
                                  value=self.writer.patches)
        yield CounterMetricFamily("kedascaler_pod_deletion_cost_requests_protected",
                                  "Requests in flight on the pods ranked after the emptiest when the order was "
                                  "written: the work a scale-down removes last",
                                  value=self.writer.protected)
