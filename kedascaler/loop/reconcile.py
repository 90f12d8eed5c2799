"""The reconcile loop's shell: gather the inputs, run the pure cycle step, publish the decisions.

One `run_once` is one cycle; the caller decides when (every interval, or at once on a wake-up signal).
Everything decided is decided by `kedascaler.loop.cycle.step`; this class does only the I/O around it —
read the inventory, the workloads, the metrics, the gateway queue and the pushed wake-ups; then put the
decisions on the board — and keeps the cycle's state value between calls. `run_forever` is the timer.

Scale to zero: with an `idle_window` (or a VA's `spec.scaleToZero.idleWindowSeconds`) and something that can
wake a model at zero — an `ActivationSource` (the gateway queue) and/or an `ActivationInbox` (pushed requests)
— the engine decides activation. A pushed request wakes `run_forever` at once for a cycle of just that model
(`run_once(models=...)`): no pods to scrape at zero, so the push reaches the board in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

from kedascaler.engine.types import Decision, VariantKey
from kedascaler.kits.heap import release
from kedascaler.kits.priority import lower_this_thread
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.cycle import (
    CycleConfig,
    CycleError,
    CycleInputs,
    CycleReport,
    CycleState,
    Stage,
    scale_to_zero_models,
    step,
)
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.loop.planner import PlannerSettings, SloPlan, VariantParameters
from kedascaler.loop.snapshots import static_status
from kedascaler.sources.base import CollectResult, Inventory, MetricsSource, Workloads, WorkloadStatus
from kedascaler.sources.gateway import ActivationReading, ActivationSource, ModelRef
from kedascaler.spec.inventory import InventoryState

log = logging.getLogger("kedascaler.reconcile")

__all__ = ["CycleReport", "Reconciler"]


class Reconciler:
    """Runs cycles: the I/O around `step`, and the cycle state between them."""

    def __init__(self, inventory: Inventory, metrics: MetricsSource, board: DecisionBoard,
                 workloads: Workloads | None = None, clock: Callable[[], float] = time.time, *,
                 idle_window: float | None = None, activation: ActivationSource | None = None,
                 inbox: ActivationInbox | None = None, planner: PlannerSettings | None = None,
                 activation_queries: bool = False,
                 follow: Callable[[Sequence[Decision], float], Sequence[Decision]] | None = None) -> None:
        """`idle_window` (s): scale idle models to zero (None: only VAs with scaleToZero.idleWindowSeconds);
        `activation`: reads gateway queues; `inbox`: pushed requests; `planner`: SLO sizing (modes, learned
        parameters), once per full cycle — None: saturation only; `activation_queries`: run the VAs' own
        `spec.scaleToZero.activationQuery` (arbitrary PromQL, run with the scaler's token: off unless the
        operator allows it), else the default gateway query for every model. `follow(decisions, now)`: what
        this replica serves of its decisions (`kedascaler.loop.follow.Follower`: the leader's numbers on a
        follower); the state keeps its own."""
        self.inventory = inventory
        self.metrics = metrics
        self.workloads = workloads
        self.board = board
        self.clock = clock
        self.activation = activation
        self.inbox = inbox
        self.activation_queries = activation_queries
        self.follow = follow
        self._ignored_queries: frozenset[ModelRef] = frozenset()  # said once per change
        self.state = CycleState(CycleConfig(idle_window, activation is not None, inbox is not None, planner))

    @property
    def previous(self) -> Mapping[VariantKey, Decision]:
        return self.state.previous

    @property
    def plans(self) -> Mapping[ModelRef, SloPlan]:
        """The last full cycle's SLO plans (wake-up cycles reuse them for status)."""
        return self.state.plans

    @property
    def parameters(self) -> Mapping[VariantKey, VariantParameters]:
        return self.state.planner.parameters

    @property
    def cycles(self) -> int:
        return self.state.cycles

    def run_once(self, models: Collection[ModelRef] | None = None) -> CycleReport:
        """One cycle for every model, or (a wake-up cycle) for `models` only: (namespace, modelID) pairs."""
        started = time.perf_counter()
        inventory = self.inventory.current()
        wanted = None if models is None else frozenset(models)
        specs = tuple(s for s in inventory.specs if wanted is None or (s.key.namespace, s.model_id) in wanted)
        errors: list[CycleError] = []
        static = inventory.static_targets
        statuses: dict[VariantKey, WorkloadStatus | None] = {}
        for spec in specs:
            try:
                if spec.key in static:
                    statuses[spec.key] = static_status(spec, static[spec.key])
                elif self.workloads is not None:
                    statuses[spec.key] = self.workloads.status(spec)
                else:
                    statuses[spec.key] = None
            except Exception as exc:  # noqa: BLE001 - one variant's lookup must not stop the cycle
                errors.append(CycleError(Stage.WORKLOAD, f"workload {spec.key}: {exc}"))
                statuses[spec.key] = None
        targets = [t for s in statuses.values() if s is not None for t in s.pods]
        at_zero = all(s is not None and s.current_replicas == 0 for s in statuses.values())
        if wanted is not None and at_zero:
            collect = CollectResult()  # waking models at zero: no pod to read, answer at once
        else:
            collect = self.metrics.collect(targets)
        now = self.clock()
        gateway = self._read_gateway(inventory, wanted)
        pushed = self.inbox.latest() if self.inbox is not None else None
        inputs = CycleInputs(inventory, statuses, collect, now, gateway, pushed, wanted, tuple(errors))
        last = [self.state]
        report, self.state = step(last[0], inputs)
        release(last)  # last cycle's state, freed in small pieces (kits/heap.py): no long GIL-held free
        if report.warnings_changed:  # logged when they change, not every cycle
            log.warning("metrics source: %s", "; ".join(collect.warnings))
        if self.follow is not None:
            report = replace(report, decisions=tuple(self.follow(report.decisions, now)))
        if wanted is None:
            self.board.publish(report.decisions, inventory.specs)
        else:
            self.board.publish(report.decisions)  # merge: the other models' decisions stay
        for d in report.decisions:
            log.debug("decision %s model=%s desired=%d active=%s reason=%s", d.key, d.model_id,
                      d.desired_replicas, d.active, d.reason)
        return replace(report, duration_s=time.perf_counter() - started)

    def _read_gateway(self, inventory: InventoryState, wanted: frozenset[ModelRef] | None) -> ActivationReading | None:
        """The gateway queues of the scale-to-zero models, on a full cycle (a wake-up cycle's signal is the push)."""
        if self.activation is None or wanted is not None:
            return None
        enabled, overrides = scale_to_zero_models(inventory, self.state.config)
        if not enabled:
            return None
        if overrides and not self.activation_queries:
            ignored = frozenset(overrides)
            if ignored != self._ignored_queries:
                log.warning("spec.scaleToZero.activationQuery ignored for %s: the VAs' own PromQL runs only when "
                            "the operator starts kedascaler serve with --allow-activation-queries; the default "
                            "gateway query is used", ", ".join(f"{ns}/{m}" for ns, m in sorted(ignored)))
            self._ignored_queries = ignored
            overrides = {}
        try:
            return self.activation.read(enabled, overrides)
        except Exception as exc:  # noqa: BLE001 - "not known" for every model, never "idle"
            return ActivationReading({}, (f"activation source failed: {exc}",), 0)

    async def run_forever(self, interval: float, wake: asyncio.Event | None = None,
                          on_cycle: Callable[[CycleReport], None] | None = None, *, nice: int = 0) -> None:
        """Cycle every `interval` seconds; the cycle and `on_cycle(report)` run in a worker thread, niced by `nice`
        (`kedascaler.kits.priority`: serve's process answering KEDA wins the CPU when both want it).

        With an inbox, pushed requests wake it for a cycle of just those models, coalesced by the inbox (at
        most one per model per `inbox.min_gap`), and never move the next full cycle: a stream of pushes
        neither starves the full cycles nor adds any. Without an inbox, setting `wake` runs a full cycle now.
        """
        loop = asyncio.get_running_loop()
        if wake is None and self.inbox is not None:
            wake = asyncio.Event()
        if wake is not None and self.inbox is not None:
            self.inbox.attach(wake, loop)
        next_full = loop.time()
        while True:
            if wake is not None:
                wake.clear()  # before taking the pending models: a push after this sets it again
            models: frozenset[ModelRef] | None = frozenset()
            if loop.time() >= next_full:
                models = None
                if self.inbox is not None:
                    self.inbox.take_pending()  # a full cycle reads every pushed time anyway
            elif self.inbox is not None:
                models = frozenset(self.inbox.take_due())
            if models is None or models:
                await self._cycle(models, on_cycle, nice)
                if models is None:
                    next_full = loop.time() + interval
            timeout = max(0.0, next_full - loop.time())
            due = self.inbox.next_due() if self.inbox is not None else None
            if due is not None:
                timeout = min(timeout, due)
            if wake is None:
                await asyncio.sleep(timeout)
                continue
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when the task is
                # cancelled as the event is set (a push at the moment serve stops), so the cancel was lost and
                # shutdown waited out the interval
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                continue
            if self.inbox is None:
                next_full = loop.time()  # a bare wake: a full cycle now

    async def _cycle(self, models: frozenset[ModelRef] | None, on_cycle: Callable[[CycleReport], None] | None,
                     nice: int = 0) -> None:
        try:
            await asyncio.to_thread(self._cycle_then, models, on_cycle, nice)
        except Exception:  # noqa: BLE001 - the loop must outlive any one cycle
            log.exception("reconcile cycle failed; decisions on the board are kept")

    def _cycle_then(self, models: frozenset[ModelRef] | None, on_cycle: Callable[[CycleReport], None] | None,
                    nice: int = 0) -> None:
        """One cycle and its `on_cycle` (/metrics, status writes), together in the worker thread: the event loop
        only answers RPCs, so nothing a cycle does, nor anything done with its report, ever delays one."""
        if nice:
            lower_this_thread(nice)
        box = [self.run_once(models)]
        if on_cycle is not None:
            on_cycle(box[0])
        release(box)  # the report (every pod sample, snapshot and decision) freed in small pieces
