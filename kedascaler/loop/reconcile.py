"""The reconcile loop: inventory + workloads + metrics → snapshots → engine → board.

The imperative shell around the pure engine. One `run_once` is one cycle; the caller decides when
(every interval, or at once on a wake-up signal). One model's failure never loses another model's decision.

Scale to zero: with an `idle_window` (or a VA's `spec.scaleToZero.idleWindowSeconds`) and something that can
wake a model at zero — an `ActivationSource` (the gateway queue) and/or an `ActivationInbox` (pushed requests)
— each snapshot carries the model's idle window, gateway queue and last pushed request, and the engine
decides activation. A pushed request wakes `run_forever` at once for a cycle of just that model
(`run_once(models=...)`): no pods to scrape at zero, so the push reaches the board in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kedascaler.loop.board import DecisionBoard
from kedascaler.sources.base import (
    CollectResult,
    PodUsage,
    Inventory,
    MetricsSource,
    PodSample,
    ScrapeTarget,
    WorkloadStatus,
    Workloads,
)
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.sources.gateway import ActivationReading, ActivationSource, ModelRef
from kedascaler.engine import decide
from kedascaler.engine.types import Decision, ModelSnapshot, PodMetrics, VariantKey, VariantSpec, VariantState
from kedascaler.loop.planner import SloPlan, SloPlanner, VariantParameters

log = logging.getLogger("kedascaler.loop.reconcile")


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did: for logs, the demo's printout and tests."""

    decisions: tuple[Decision, ...]
    snapshots: tuple[ModelSnapshot, ...]
    collect: CollectResult
    errors: tuple[str, ...]
    duration_s: float
    models: tuple[ModelRef, ...] | None = None  # a wake-up cycle's models; None: a full cycle
    usage: Mapping[VariantKey, tuple[PodUsage, ...]] = field(default_factory=dict)  # per-pod window usage
    plans: Mapping[ModelRef, SloPlan] = field(default_factory=dict)  # SLO sizing per model (with a planner)
    parameters: Mapping[VariantKey, VariantParameters] = field(default_factory=dict)  # per variant (with a planner)


def _number(value: Any) -> float | None:
    """A finite number ≥ 0 from a number or a decimal string; None otherwise (the global default applies)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def scale_to_zero_settings(specs: Sequence[VariantSpec], extras: Mapping[VariantKey, Any], default_window: float | None
                           ) -> tuple[float | None, str | None]:
    """A model's (idle window, activation query) from its VAs' `spec.scaleToZero` over the global default.

    `enabled: false` on any variant turns it off (window None); `idleWindowSeconds`: the largest of the
    variants' wins (the most careful); `activationQuery`: the first variant's (by name) that sets one.
    """
    windows: list[float] = []
    query = None
    for spec in sorted(specs, key=lambda s: s.key.name):
        s2z = getattr(extras.get(spec.key), "scale_to_zero", None) or {}
        if s2z.get("enabled") is False:
            return None, None
        window = _number(s2z.get("idleWindowSeconds"))
        if window is not None:
            windows.append(window)
        if query is None and isinstance(s2z.get("activationQuery"), str) and s2z["activationQuery"].strip():
            query = s2z["activationQuery"]
    return (max(windows) if windows else default_window), query


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
                 workloads: Workloads | None = None, clock: Callable[[], float] = time.time, *,
                 idle_window: float | None = None, activation: ActivationSource | None = None,
                 inbox: ActivationInbox | None = None,
                 extras: Mapping[VariantKey, Any] | Callable[[], Mapping[VariantKey, Any]] | None = None,
                 planner: SloPlanner | None = None) -> None:
        """`idle_window` (s): scale idle models to zero (None: only VAs with scaleToZero.idleWindowSeconds);
        `activation`: reads gateway queues; `inbox`: pushed requests; `extras`: VariantExtras per VA (default:
        the inventory's `extras` attribute, as FileInventory and the Kubernetes inventory have); `planner`: SLO
        sizing (modes, learned parameters), once per full cycle — None: saturation only."""
        self.inventory = inventory
        self.metrics = metrics
        self.workloads = workloads
        self.board = board
        self.clock = clock
        self.idle_window = idle_window
        self.activation = activation
        self.inbox = inbox
        self._extras = extras
        self.planner = planner
        self.plans: dict[ModelRef, SloPlan] = {}  # the last full cycle's, reused by wake-up cycles
        self.previous: dict[VariantKey, Decision] = {}
        self.cycles = 0
        self._warned: tuple[str, ...] = ()

    def extras(self) -> Mapping[VariantKey, Any]:
        if callable(self._extras):
            return self._extras()
        if self._extras is not None:
            return self._extras
        return getattr(self.inventory, "extras", None) or {}

    def _with_activation(self, snapshots: list[ModelSnapshot], specs: Sequence[VariantSpec], wake_cycle: bool,
                         errors: list[str]) -> tuple[list[ModelSnapshot], ActivationReading]:
        """Give each snapshot its idle window, gateway queue and last pushed request (scale to zero)."""
        if self.activation is None and self.inbox is None:
            return snapshots, ActivationReading()  # nothing could wake a model at zero: keep every model warm
        extras = self.extras()
        by_model: dict[ModelRef, list[VariantSpec]] = defaultdict(list)
        for spec in specs:
            by_model[(spec.key.namespace, spec.model_id)].append(spec)
        settings = {m: scale_to_zero_settings(vs, extras, self.idle_window) for m, vs in by_model.items()}
        enabled = [m for m, (window, _) in settings.items() if window is not None]
        reading = ActivationReading()
        if self.activation is not None and enabled and not wake_cycle:
            overrides = {m: q for m, (_, q) in settings.items() if q and m in enabled}
            try:
                reading = self.activation.read(enabled, overrides)
            except Exception as exc:  # noqa: BLE001 - "not known" for every model, never "idle"
                reading = ActivationReading({}, (f"activation source failed: {exc}",), 0)
            errors += reading.errors
        out = []
        for snap in snapshots:
            model = (snap.namespace, snap.model_id)
            window = settings.get(model, (None, None))[0]
            if window is None:
                out.append(snap)
                continue
            if self.activation is None:
                queue = 0.0  # push-only: nothing waits at a gateway we could read
            else:
                queue = reading.queue(model)  # None on a wake-up cycle: the push is the signal
            pushed = self.inbox.last_request_at(*model) if self.inbox is not None else None
            out.append(replace(snap, idle_window=window, gateway_queue=queue, last_request_at=pushed))
        return out, reading

    def run_once(self, models: Collection[ModelRef] | None = None) -> CycleReport:
        """One cycle for every model, or (a wake-up cycle) for `models` only: (namespace, modelID) pairs."""
        started = time.perf_counter()
        state = self.inventory.current()
        wanted = None if models is None else set(models)
        variants = state.variants if wanted is None else tuple(
            s for s in state.variants if (s.key.namespace, s.model_id) in wanted)
        errors: list[str] = []
        static = dict(state.static_targets)
        statuses: dict[VariantKey, WorkloadStatus | None] = {}
        for spec in variants:
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
        at_zero = all(s is not None and s.current_replicas == 0 for s in statuses.values())
        if wanted is not None and at_zero:
            collect = CollectResult()  # waking models at zero: no pod to read, answer at once
        else:
            collect = self.metrics.collect(targets)
        now = self.clock()
        warnings = collect.warnings
        if warnings and warnings != self._warned:  # logged when they change, not every cycle
            log.warning("metrics source: %s", "; ".join(warnings))
        self._warned = warnings
        samples = assign_samples(collect.samples, variants)
        snapshots = build_snapshots(variants, statuses, samples, collect, state.saturation.for_model, now)
        snapshots, _ = self._with_activation(snapshots, variants, wanted is not None, errors)
        usage = {key: tuple(s.usage for s in found if s.usage is not None) for key, found in samples.items()}
        if self.planner is not None and wanted is None:
            self.plans = self._plan(snapshots, usage, state, now, errors)
        decisions: list[Decision] = []
        for snap in snapshots:
            plan = self.plans.get((snap.namespace, snap.model_id)) if wanted is None else None
            try:
                if plan is not None:
                    decisions += decide(snap, self.previous, sizing=plan.sizing, mode=plan.mode)
                else:
                    decisions += decide(snap, self.previous)
            except Exception as exc:  # noqa: BLE001 - keep the other models' decisions
                log.exception("engine failed for model %s/%s; holding its last decisions", snap.namespace, snap.model_id)
                errors.append(f"engine {snap.namespace}/{snap.model_id}: {exc}")
                decisions += [self.previous[v.spec.key] for v in snap.variants if v.spec.key in self.previous]
        if wanted is None:
            self.previous = {d.key: d for d in decisions}
            self.board.publish(decisions, state.variants)
        else:
            self.previous.update({d.key: d for d in decisions})
            self.board.publish(decisions)  # merge: the other models' decisions stay
        self.cycles += 1
        for d in decisions:
            log.debug("decision %s model=%s desired=%d active=%s reason=%s", d.key, d.model_id,
                      d.desired_replicas, d.active, d.reason)
        return CycleReport(tuple(decisions), tuple(snapshots), collect, tuple(errors) + collect.errors,
                           time.perf_counter() - started, None if wanted is None else tuple(sorted(wanted)),
                           usage, dict(self.plans) if self.planner is not None and wanted is None else {},
                           dict(self.planner.parameters) if self.planner is not None and wanted is None else {})

    def _plan(self, snapshots: Sequence[ModelSnapshot], usage: Mapping[VariantKey, tuple[PodUsage, ...]],
              state: Any, now: float, errors: list[str]) -> dict[ModelRef, SloPlan]:
        """SLO sizing for every model at once; a failure leaves every model on saturation for this cycle."""
        assert self.planner is not None
        try:
            self.planner.forget({s.key for s in state.variants})
            return self.planner.plan(snapshots, usage, self.extras(), state.service_classes, now)
        except Exception as exc:  # noqa: BLE001 - sizing is an improvement on saturation, never a reason to stop
            log.exception("SLO sizing failed; every model is decided by saturation this cycle")
            errors.append(f"slo sizing: {exc}")
            return {}

    async def run_forever(self, interval: float, wake: asyncio.Event | None = None,
                          on_cycle: Callable[[CycleReport], None] | None = None) -> None:
        """Cycle every `interval` seconds, or at once when `wake` is set; I/O runs in a worker thread.

        With an inbox, a wake-up that brings pushed requests runs a cycle of just those models, without moving
        the next full cycle (so a stream of pushes never starves the others); a bare wake runs a full cycle.
        """
        loop = asyncio.get_running_loop()
        if wake is None and self.inbox is not None:
            wake = asyncio.Event()
        if wake is not None and self.inbox is not None:
            self.inbox.attach(wake, loop)
        full_due, next_full = True, loop.time()
        while True:
            if wake is not None:
                wake.clear()  # before taking the pending models: a push after this sets it again
            models = None
            if self.inbox is not None:
                pending = self.inbox.take_pending()  # a full cycle reads every pushed time anyway
                models = None if full_due else (pending or None)
            try:
                report = await asyncio.to_thread(self.run_once, models)
                if on_cycle is not None:
                    on_cycle(report)
            except Exception:  # noqa: BLE001 - the loop must outlive any one cycle
                log.exception("reconcile cycle failed; decisions on the board are kept")
            if models is None:
                next_full = loop.time() + interval
            timeout = max(0.0, next_full - loop.time())
            if wake is None:
                await asyncio.sleep(timeout)
                continue
            try:
                await asyncio.wait_for(wake.wait(), timeout=timeout)
                woke = True
            except asyncio.TimeoutError:
                woke = False
            pending = self.inbox is not None and self.inbox.has_pending
            full_due = not woke or not pending or loop.time() >= next_full
