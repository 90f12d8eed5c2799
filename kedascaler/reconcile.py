"""The reconcile loop: inventory + workloads + metrics → snapshots → engine → board.

The imperative shell around the pure engine. One `run_once` is one cycle; the caller decides when
(every interval, or at once on a wake-up signal). One model's failure never loses another model's decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kedascaler.board import DecisionBoard
from kedascaler.collect.base import (
    CollectResult,
    Inventory,
    MetricsSource,
    PodSample,
    ScrapeTarget,
    WorkloadStatus,
    Workloads,
)
from kedascaler.engine import decide
from kedascaler.engine.types import Decision, ModelSnapshot, PodMetrics, VariantKey, VariantSpec, VariantState

log = logging.getLogger("kedascaler.reconcile")


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did: for logs, the demo's printout and tests."""

    decisions: tuple[Decision, ...]
    snapshots: tuple[ModelSnapshot, ...]
    collect: CollectResult
    errors: tuple[str, ...]
    duration_s: float


def static_status(spec: VariantSpec, urls: Sequence[str]) -> WorkloadStatus:
    """Local mode: the pods are the URLs listed on the VA; each counts as a ready replica."""
    pods = tuple(ScrapeTarget(spec.key, f"{spec.target_name}-{i}", url) for i, url in enumerate(urls))
    return WorkloadStatus(len(pods), len(pods), pods)


def owner_of(pod: str, namespace: str, by_target: Mapping[tuple[str, str], VariantSpec]) -> VariantSpec | None:
    """The variant whose Deployment owns a pod, by Kubernetes' naming (`<deployment>-<hash>-<id>`): longest prefix wins."""
    parts = pod.split("-")
    for cut in range(len(parts) - 1, 0, -1):
        spec = by_target.get((namespace, "-".join(parts[:cut])))
        if spec is not None:
            return spec
    return None


def assign_samples(samples: Sequence[PodSample], specs: Sequence[VariantSpec]) -> dict[VariantKey, list[PodSample]]:
    """Give each pod sample to its variant: by the scrape target when known, else by pod name."""
    by_target = {(s.key.namespace, s.target_name): s for s in specs}
    known = {s.key for s in specs}
    out: dict[VariantKey, list[PodSample]] = defaultdict(list)
    for sample in samples:
        if sample.variant is not None:
            if sample.variant in known:
                out[sample.variant].append(sample)
            continue
        spec = owner_of(sample.pod, sample.namespace, by_target)
        if spec is not None:
            out[spec.key].append(sample)
    return out


def build_snapshots(state_variants: Sequence[VariantSpec], statuses: Mapping[VariantKey, WorkloadStatus | None],
                    samples: Mapping[VariantKey, list[PodSample]], collect: CollectResult,
                    saturation_for: Callable[[str, str], object], now: float) -> list[ModelSnapshot]:
    """Join specs, replica counts and pod metrics into one immutable snapshot per (namespace, model)."""
    failed = set(collect.failed_pods)
    global_failure = bool(collect.errors) and not collect.failed_pods
    groups: dict[tuple[str, str], list[VariantState]] = defaultdict(list)
    for spec in state_variants:
        pods = tuple(
            PodMetrics(s.pod, s.kv_cache_usage, s.queue_length, s.running, s.timestamp)
            for s in sorted(samples.get(spec.key, ()), key=lambda s: s.pod)
        )
        status = statuses.get(spec.key)
        if status is None:  # no workload source (Prometheus-only local mode): the pods reporting are the replicas
            current = ready = len(pods)
        else:
            current, ready = status.current_replicas, status.ready_replicas
        # Not fresh when the source failed as a whole (Prometheus down), or every pod of this variant failed.
        variant_failed = status is not None and any(f"{spec.key.namespace}/{p.pod}" in failed for p in status.pods)
        fresh = not global_failure and (bool(pods) or not variant_failed)
        groups[(spec.key.namespace, spec.model_id)].append(VariantState(spec, current, ready, pods, fresh))
    return [
        ModelSnapshot(ns, model, tuple(sorted(vs, key=lambda v: v.spec.key.name)), saturation_for(ns, model), now)
        for (ns, model), vs in sorted(groups.items())
    ]


class Reconciler:
    """Runs cycles and keeps the only state between them: the previous decision per variant."""

    def __init__(self, inventory: Inventory, metrics: MetricsSource, board: DecisionBoard,
                 workloads: Workloads | None = None, clock: Callable[[], float] = time.time) -> None:
        self.inventory = inventory
        self.metrics = metrics
        self.workloads = workloads
        self.board = board
        self.clock = clock
        self.previous: dict[VariantKey, Decision] = {}
        self.cycles = 0

    def run_once(self) -> CycleReport:
        started = time.perf_counter()
        state = self.inventory.current()
        errors: list[str] = []
        static = dict(state.static_targets)
        statuses: dict[VariantKey, WorkloadStatus | None] = {}
        for spec in state.variants:
            try:
                if spec.key in static:
                    statuses[spec.key] = static_status(spec, static[spec.key])
                elif self.workloads is not None:
                    statuses[spec.key] = self.workloads.status(spec)
                else:
                    statuses[spec.key] = None
            except Exception as exc:  # noqa: BLE001 - one variant's lookup must not stop the cycle
                errors.append(f"workload {spec.key}: {exc}")
                statuses[spec.key] = None
        targets = [t for s in statuses.values() if s is not None for t in s.pods]
        collect = self.metrics.collect(targets)
        now = self.clock()
        samples = assign_samples(collect.samples, state.variants)
        snapshots = build_snapshots(state.variants, statuses, samples, collect, state.saturation.for_model, now)
        decisions: list[Decision] = []
        for snap in snapshots:
            try:
                decisions += decide(snap, self.previous)
            except Exception as exc:  # noqa: BLE001 - keep the other models' decisions
                log.exception("engine failed for model %s/%s; holding its last decisions", snap.namespace, snap.model_id)
                errors.append(f"engine {snap.namespace}/{snap.model_id}: {exc}")
                decisions += [self.previous[v.spec.key] for v in snap.variants if v.spec.key in self.previous]
        self.previous = {d.key: d for d in decisions}
        self.board.publish(decisions, state.variants)
        self.cycles += 1
        for d in decisions:
            log.debug("decision %s model=%s desired=%d active=%s reason=%s", d.key, d.model_id,
                      d.desired_replicas, d.active, d.reason)
        return CycleReport(tuple(decisions), tuple(snapshots), collect, tuple(errors) + collect.errors,
                           time.perf_counter() - started)

    async def run_forever(self, interval: float, wake: asyncio.Event | None = None,
                          on_cycle: Callable[[CycleReport], None] | None = None) -> None:
        """Cycle every `interval` seconds, or at once when `wake` is set; I/O runs in a worker thread."""
        while True:
            try:
                report = await asyncio.to_thread(self.run_once)
                if on_cycle is not None:
                    on_cycle(report)
            except Exception:  # noqa: BLE001 - the loop must outlive any one cycle
                log.exception("reconcile cycle failed; decisions on the board are kept")
            if wake is None:
                await asyncio.sleep(interval)
            else:
                try:
                    await asyncio.wait_for(wake.wait(), timeout=interval)
                except asyncio.TimeoutError:
                    pass
                wake.clear()
