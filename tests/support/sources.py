"""The least a Reconciler needs when a test is about something else: no metrics, every variant at zero."""

from __future__ import annotations

from kedascaler.sources.base import CollectResult, WorkloadStatus


class NoMetrics:
    """A metrics source that answers every collect with nothing (no pod samples, no errors)."""

    def collect(self, targets):
        return CollectResult()

    def close(self) -> None:
        pass


class AtZero:
    """Workloads with no replicas: every Deployment at 0 current, 0 ready, no pods."""

    def status(self, spec):
        return WorkloadStatus(0, 0, ())
