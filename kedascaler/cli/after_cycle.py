"""What `serve` does after each cycle, in the cycle's worker thread: /metrics, the metrics-health log, and (the
leader, in a cluster) the VA statuses, Events and pod-deletion-costs, handed to their writers' threads."""

from __future__ import annotations

import logging
import re
from typing import Any

from kedascaler.kits.heap import HeapPolicy
from kedascaler.loop.capacity import KEEP_HISTORY
from kedascaler.loop.cycle import CycleReport
from kedascaler.observe.wiring import Observability

log = logging.getLogger("kedascaler")


class MetricsHealthLog:
    """The metrics source's errors at WARNING, with their cause, when they change; the recovery at INFO.

    Compared by their shape (numbers masked), on full cycles only, so the same failure every cycle is said
    once and a wake-up cycle (which reads no metrics) says nothing."""

    SHOWN = 3

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self._shape: frozenset[str] = frozenset()

    def note(self, report: CycleReport) -> None:
        if report.models is not None:
            return
        errors = report.collect.errors
        shape = frozenset(re.sub(r"\d+(\.\d+)?", "#", e) for e in errors)
        if shape == self._shape:
            return
        self._shape = shape
        if errors:
            more = f"; and {len(errors) - self.SHOWN} more" if len(errors) > self.SHOWN else ""
            log.warning("metrics source failing (%d errors): %s%s; the last good decisions are held and answer "
                        "UNAVAILABLE once their metrics are older than --stale-after %gs",
                        len(errors), "; ".join(errors[:self.SHOWN]), more, self.stale_after)
        else:
            log.info("metrics source recovered: every query or pod answered")


def heap_policy(switch_interval: float | None = None) -> HeapPolicy:
    """serve's garbage-collector policy: the leak guard's base taken once the capacity history is full (the live
    set grows until then, and a full collection set off by that growth alone finds nothing)."""
    if switch_interval is None:
        return HeapPolicy(settle=KEEP_HISTORY)
    return HeapPolicy(settle=KEEP_HISTORY, switch_interval=switch_interval)


class CycleSink:
    """What serve does after each cycle: /metrics, the metrics-health log, and (the leader, in a cluster) the
    VA statuses, Events and pod-deletion-costs. `Reconciler.run_forever` calls it in the cycle's worker thread,
    never on the event loop, so none of it delays an RPC."""

    def __init__(self, obs: Observability, health: MetricsHealthLog, reconciler: Any, kube: Any = None,
                 status: tuple[Any, Any] | None = None, deletion: Any = None, heap: HeapPolicy | None = None
                 ) -> None:
        """`status`: (StatusWriter, LeaderElector) in a cluster; `deletion`: a DeletionCostWriter; `heap`: the
        garbage-collector policy (`kedascaler.kits.heap`), told after each cycle that its survivors may freeze."""
        self.obs, self.health, self.reconciler = obs, health, reconciler
        self.kube, self.status, self.deletion, self.heap = kube, status, deletion, heap

    def __call__(self, report: CycleReport) -> None:
        self.obs.on_cycle(report)
        self.health.note(report)
        if self.status is not None and self.kube is not None:
            writer, elector = self.status
            if elector.is_leader:  # every replica answers KEDA; only the leader writes status and events
                # in the writers' own threads, never waiting on the API server here; on wake-up cycles, plans
                # and parameters are the last full cycle's
                writer.submit(report.decisions, self.kube.current(), self.kube.missing_targets(),
                              plans=self.reconciler.plans, parameters=self.reconciler.parameters)
                if self.deletion is not None:  # before the target drops: the emptiest pods are deleted first
                    self.deletion.submit(report.decisions, report.snapshots)
        if self.heap is not None:
            self.heap.after_cycle()


__all__ = ["CycleSink", "MetricsHealthLog", "heap_policy"]
