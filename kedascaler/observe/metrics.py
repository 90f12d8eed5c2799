"""The scaler's /metrics: per-variant `wva_*` gauges (what HPA + Prometheus Adapter read) and its own health.

Everything lives in one `CollectorRegistry` owned by the `Observer` (never prometheus_client's global one), and
is served on its own port by `MetricsServer`. The Observer is fed one `CycleReport` per reconcile cycle; the
gRPC interceptor (`kedascaler.observe.interceptor`) and `InstrumentedSource` feed the same registry. The
families themselves are in `kedascaler.observe.families`.

A variant's gauges show what its decision says: its replicas, and the saturation numbers the engine computed
for it (`Decision.steps`: its pods' KV-cache usage and spare capacity against its own thresholds); nothing here
analyses pods again.

Cardinality is bounded by the inventory: every per-variant series carries exactly
`variant, namespace, model, accelerator`, and a variant that leaves the inventory (or changes model or
accelerator) has its old series removed on the next cycle. See docs/observability.md for the full list.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, MetricsHandler, generate_latest

from kedascaler.engine.types import Decision, DecisionSteps, VariantKey
from kedascaler.kits.httpserver import HttpServerThread
from kedascaler.loop.cycle import CycleReport
from kedascaler.observe.families import (
    ACTIONS,
    CYCLE_BUCKETS,
    GRPC_BUCKETS,
    STAGES,
    VARIANT_LABELS,
    ScalerMetrics,
    variant_label_sets,
)
from kedascaler.observe.records import DecisionRecorder, RecordWriter
from kedascaler.sources.base import CollectResult, MetricsSource, ScrapeTarget

if TYPE_CHECKING:
    from kedascaler.observe.interceptor import MetricsInterceptor

log = logging.getLogger("kedascaler.observe")

_SIGNAL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def stage_of(error: str) -> str:
    """The `stage` label of a cycle's error: the stage it carries (`CycleError.stage`, typed by the cycle),
    "other" for an error that carries none or one outside the bounded label set."""
    stage = getattr(error, "stage", None)
    return str(stage) if stage is not None and str(stage) in STAGES else "other"


def signal_label(signal: str) -> str:
    """The reason's signal as a label value: a short identifier, else "other" (keeps the label set bounded)."""
    return signal if _SIGNAL.match(signal or "") else "other"


def saturation_gauges(steps: DecisionSteps) -> tuple[float, float, float]:
    """(saturation level, spare KV, spare queue) of a variant as its decision's steps say; 0 where there is none."""
    return (_finite(steps.saturation_level), _finite(steps.spare_kv or 0.0), _finite(steps.spare_queue or 0.0))


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


class Observer:
    """Turns each CycleReport into metrics, one decision log line per decision, and optional JSONL records.

    Call `on_cycle(report)` from `Reconciler.run_forever(..., on_cycle=...)`; use `interceptor()` for the gRPC
    server and `instrument(source)` around the metrics source so collection time is measured too.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, records: RecordWriter | None = None,
                 log_decisions: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ScalerMetrics(self.registry)
        self.recorder = DecisionRecorder(clock=clock)
        self.records = records
        self.log_decisions = log_decisions
        self.clock = clock
        self._lock = threading.Lock()
        self._variant_series: dict[VariantKey, tuple[str, str, str, str]] = {}
        self._model_series: set[tuple[str, str]] = set()
        self._last_desired: dict[VariantKey, int] = {}
        self._decision_series: set[tuple[str, ...]] = set()
        for stage in STAGES:  # zero-valued series exist from the start, so rate() and alerts work at once
            self.metrics.cycle_errors.labels(stage)
        for kind in ("collection", "pod"):
            self.metrics.source_failures.labels(kind)

    # -- wiring helpers --
    def interceptor(self) -> MetricsInterceptor:
        """A grpc.aio server interceptor counting requests into this Observer's registry."""
        from kedascaler.observe.interceptor import MetricsInterceptor

        return MetricsInterceptor(self.metrics)

    def instrument(self, source: MetricsSource, name: str | None = None) -> InstrumentedSource:
        """Wrap a metrics source so that each collect() is timed (label `source`: its class name by default)."""
        return InstrumentedSource(source, self.metrics, name or type(source).__name__)

    def exposition(self) -> bytes:
        """The current /metrics text (for tests and promtool)."""
        return generate_latest(self.registry)

    # -- the per-cycle update --
    def on_cycle(self, report: CycleReport) -> None:
        """Update every gauge and counter from one cycle, then log and record its decisions."""
        with self._lock:
            now = self.clock()
            self._update_health(report, now)
            self._update_variants(report)
            self._update_staleness(report, now)
            records = self.recorder.records(report)
        for record in records:
            if self.log_decisions:
                log_decision(record)
            if self.records is not None:
                try:
                    self.records.write(record)
                except OSError as exc:  # a full disk must not stop the scaler
                    log.warning("cannot write decision record to %s: %s", self.records.path, exc)
            self.metrics.records.inc()

    def _update_health(self, report: CycleReport, now: float) -> None:
        m = self.metrics
        m.cycles.inc()
        m.cycle_duration.observe(max(0.0, report.duration_s))
        m.last_cycle.set(now)
        for error in report.errors:
            m.cycle_errors.labels(stage_of(error)).inc()
        collect: CollectResult = report.collect
        for _ in collect.warnings:  # usage unknown this cycle: SLO sizing falls back, nothing held
            m.cycle_errors.labels("usage").inc()
        m.source_queries.inc(max(0, collect.queries))
        m.source_samples.set(len(collect.samples))
        if collect.failed_pods:
            m.source_failures.labels("pod").inc(len(collect.failed_pods))
        elif collect.errors:
            m.source_failures.labels("collection").inc()

    def _update_variants(self, report: CycleReport) -> None:
        m = self.metrics
        seen: dict[VariantKey, tuple[str, str, str, str]] = {}
        for d in report.decisions:
            own = d.steps.own
            labels = (d.key.name, d.key.namespace, d.model_id, own.accelerator if own is not None else "")
            seen[d.key] = labels
            m.desired.labels(*labels).set(d.desired_replicas)
            m.current.labels(*labels).set(d.current_replicas)
            m.ready.labels(*labels).set(d.ready_replicas)
            m.active.labels(*labels).set(1 if d.active else 0)
            m.decision_stale.labels(*labels).set(1 if d.stale else 0)
            gauges = (m.saturation, m.spare_kv, m.spare_queue)
            for gauge, number in zip(gauges, saturation_gauges(d.steps), strict=True):
                gauge.labels(*labels).set(number)
            previous = self._last_desired.get(d.key)
            if previous is None or previous != d.desired_replicas or self._variant_series.get(d.key) != labels:
                m.last_scaling.labels(*labels).set(d.decided_at or self.clock())
            self._last_desired[d.key] = d.desired_replicas
            counter_labels = (*labels, d.reason.action if d.reason.action in ACTIONS else "other",
                              signal_label(d.reason.signal))
            m.decisions.labels(*counter_labels).inc()
            self._decision_series.add(counter_labels)
        for key, labels in self._variant_series.items():
            if seen.get(key) != labels:
                self._remove_variant(labels)
                if key not in seen:
                    self._last_desired.pop(key, None)
        self._variant_series = seen
        m.variants.set(len(seen))
        self._update_sizing(report, seen)

    def _update_sizing(self, report: CycleReport, labels_of: dict[VariantKey, tuple[str, str, str, str]]) -> None:
        """The SLO-sizing families, rebuilt each full cycle (a wake-up cycle carries no plans: keep them)."""
        plans = report.plans
        params = report.parameters
        if not plans and not params:
            return
        m = self.metrics
        for family in (m.perf_estimate, m.perf_fit_r2, m.perf_fit_samples, m.perf_fit_usable, m.model_based,
                       m.predicted_itl, m.predicted_ttft, m.capacity_demand, m.capacity_per_replica, m.capacity_mix,
                       m.capacity_hold):
            family.clear()
        for d in report.decisions:
            labels = labels_of.get(d.key)
            if labels is None:
                continue
            cap = d.steps.capacity_plan
            if cap is not None:
                dm = cap.demand
                for kind, value in (("latest", dm.latest), ("short", dm.short), ("long", dm.long),
                                    ("forecast", dm.forecast), ("need", dm.need), ("held", dm.held),
                                    ("target", dm.target)):
                    m.capacity_demand.labels(*labels, kind).set(_finite(value))
                own = next((c for c in cap.variants if c.key == d.key), None)
                if own is not None:
                    m.capacity_per_replica.labels(*labels, str(own.source)).set(_finite(own.per_replica))
                m.capacity_mix.labels(*labels).set(cap.replicas(d.key))
                m.capacity_hold.labels(*labels).set(1 if cap.held else 0)
            plan = plans.get((d.key.namespace, d.model_id))
            p = params.get(d.key)
            if plan is not None:
                m.model_based.labels(*labels, p.source if p is not None and p.source else "none").set(
                    1 if plan.sizes(d.key) else 0)
            if d.predicted_itl_ms is not None:
                m.predicted_itl.labels(*labels).set(_finite(d.predicted_itl_ms))
            if d.predicted_ttft_ms is not None:
                m.predicted_ttft.labels(*labels).set(_finite(d.predicted_ttft_ms))
            if p is None:
                continue
            m.perf_fit_samples.labels(*labels, "decode").set(p.decode_samples)
            m.perf_fit_samples.labels(*labels, "prefill").set(p.prefill_samples)
            if p.estimate is None:
                continue
            m.perf_fit_usable.labels(*labels).set(1 if p.estimate.usable else 0)
            fits = {"decode": p.estimate.decode, "prefill": p.estimate.prefill}
            for line, fit in fits.items():
                m.perf_fit_r2.labels(*labels, line).set(_finite(fit.r2))
            for name, value in (("alpha", fits["decode"].intercept), ("beta", fits["decode"].slope),
                                ("gamma", fits["prefill"].intercept), ("delta", fits["prefill"].slope)):
                if value == value:  # not NaN: a fit with too few points has no line
                    m.perf_estimate.labels(*labels, name).set(_finite(value))

    def _remove_variant(self, labels: tuple[str, str, str, str]) -> None:
        m = self.metrics
        for gauge in (m.desired, m.current, m.ready, m.saturation, m.spare_kv, m.spare_queue, m.active,
                      m.last_scaling, m.decision_stale):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass
        for series in [s for s in self._decision_series if s[:4] == labels]:
            m.decisions.remove(*series)
            self._decision_series.discard(series)

    def _update_staleness(self, report: CycleReport, now: float) -> None:
        by_model: dict[tuple[str, str], list[Decision]] = {}
        for d in report.decisions:
            by_model.setdefault((d.key.namespace, d.model_id), []).append(d)
        for model, decisions in by_model.items():
            newest = max(d.data_at for d in decisions)
            self.metrics.staleness.labels(*model).set(max(0.0, now - newest) if newest > 0 else math.inf)
        for gone in self._model_series - set(by_model):
            self.metrics.staleness.remove(*gone)
        self._model_series = set(by_model)


def log_decision(record: dict[str, Any]) -> None:
    """One log line per decision: readable text, and the whole record as `decision` for the JSON formatter."""
    reason = record["reason"]
    logging.getLogger("kedascaler.decisions").info(
        "decision %s/%s model=%s desired=%d current=%d active=%s %s %s%s",
        record["namespace"], record["variant"], record["model"], record["result"]["desired_replicas"],
        record["inputs"]["replicas"]["current"], record["result"]["active"], reason["action"], reason["signal"],
        " (stale)" if record["stale"] else "", extra={"decision": record})


class InstrumentedSource:
    """A MetricsSource that times each collection into kedascaler_metrics_source_duration_seconds."""

    def __init__(self, source: MetricsSource, metrics: ScalerMetrics, name: str) -> None:
        self.source = source
        self._metrics = metrics
        self._name = name
        metrics.source_duration.labels(name)

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        started = time.perf_counter()
        try:
            return self.source.collect(targets)
        finally:
            self._metrics.source_duration.labels(self._name).observe(time.perf_counter() - started)

    def close(self) -> None:
        self.source.close()

    def __getattr__(self, name: str) -> Any:  # anything else (e.g. a source's own settings) passes through
        return getattr(self.source, name)


class MetricsServer:
    """Serves one registry's /metrics over HTTP on its own port, in a daemon thread; start() and stop()."""

    def __init__(self, registry: CollectorRegistry, port: int = 8080, host: str = "0.0.0.0") -> None:
        self.registry = registry
        self.host = host
        self._http = HttpServerThread(MetricsHandler.factory(registry), host=host, port=port, name="metrics",
                                      what="/metrics")

    @property
    def port(self) -> int | None:
        """The bound port once started (useful with port 0)."""
        return self._http.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> int:
        """Bind and serve; returns the port. An OSError names the address (is the port in use?)."""
        port = self._http.start()
        log.info("/metrics listening on %s:%d", self.host, port)
        return port

    def stop(self) -> None:
        self._http.close()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ("ACTIONS", "CYCLE_BUCKETS", "GRPC_BUCKETS", "STAGES", "VARIANT_LABELS", "InstrumentedSource",
           "MetricsServer", "Observer", "ScalerMetrics", "log_decision", "saturation_gauges", "signal_label",
           "stage_of", "variant_label_sets")
