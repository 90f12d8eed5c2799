"""The scaler's /metrics: per-variant `wva_*` gauges (what HPA + Prometheus Adapter read) and its own health.

Everything lives in one `CollectorRegistry` owned by the `Observer` (never prometheus_client's global one), and
is served on its own port by `MetricsServer`. The Observer is fed one `CycleReport` per reconcile cycle; the
gRPC interceptor (`kedascaler.observe.interceptor`) and `InstrumentedSource` feed the same registry.

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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from kedascaler.engine.saturation import analysed_pods, replica_saturation
from kedascaler.engine.types import Decision, ModelSnapshot, VariantKey, VariantState
from kedascaler.loop.cycle import CycleReport
from kedascaler.observe.records import DecisionRecorder, RecordWriter
from kedascaler.sources.base import CollectResult, MetricsSource, ScrapeTarget

log = logging.getLogger("kedascaler.observe")

VARIANT_LABELS = ("variant", "namespace", "model", "accelerator")
ACTIONS = ("scale-up", "scale-down", "hold", "stale", "bounds", "inactive")
_SIGNAL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
STAGES = ("workload", "collect", "usage", "engine", "slo", "other")  # usage: the optional usage query (a warning)

# Reconcile cycles take milliseconds (emulated) to seconds (a big fleet behind a slow Prometheus).
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# gRPC answers come from the board: sub-millisecond normally; streams last minutes to hours.
GRPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0, 600.0, 3600.0)


class ScalerMetrics:
    """The metric families, created once in one registry. Names and label sets are the public contract."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        g = lambda name, doc, labels=VARIANT_LABELS: Gauge(name, doc, labels, registry=registry)  # noqa: E731
        # -- per variant: the WVA-compatible decision surface (HPA via Prometheus Adapter, target value 1) --
        self.desired = g("wva_desired_replicas", "Replicas kedascaler wants for the variant (what KEDA is told).")
        self.current = g("wva_current_replicas", "Replicas the variant's Deployment runs now (spec.replicas).")
        self.ready = g("wva_ready_replicas", "Ready replicas of the variant's Deployment.")
        self.saturation = g("wva_saturation_level",
                            "Max KV-cache usage (0-1) over the variant's pods with fresh metrics; 0 with none.")
        self.spare_kv = g("wva_spare_kv", "Mean spare KV-cache fraction (kvCacheThreshold - usage) over the "
                          "variant's non-saturated pods; 0 when none.")
        self.spare_queue = g("wva_spare_queue", "Mean spare queue (queueLengthThreshold - waiting) over the "
                             "variant's non-saturated pods; 0 when none.")
        self.active = g("wva_active", "1 when the variant's model is active (requests arriving or queued), else 0.")
        self.last_scaling = g("wva_last_scaling_decision_timestamp",
                              "Unix time of the last decision that changed the variant's desired replicas.")
        self.decision_stale = g("wva_decision_stale", "1 when the variant's decision is held on stale metrics.")
        self.decisions = Counter("wva_scaling_decisions", "Decisions per variant by action and binding signal.",
                                 (*VARIANT_LABELS, "action", "signal"), registry=registry)
        # -- SLO sizing: the performance parameters learned online, and what the model plan predicts --
        self.perf_estimate = Gauge("kedascaler_perf_estimate_ms",
                                   "Performance parameter fitted online (ms): alpha, beta (decode), gamma, delta "
                                   "(prefill).", (*VARIANT_LABELS, "parameter"), registry=registry)
        self.perf_fit_r2 = Gauge("kedascaler_perf_estimate_r2", "R² of the online fit, by line (decode, prefill).",
                                 (*VARIANT_LABELS, "line"), registry=registry)
        self.perf_fit_samples = Gauge("kedascaler_perf_estimate_samples",
                                      "Observations in the fit's sliding window, by line.", (*VARIANT_LABELS, "line"),
                                      registry=registry)
        self.perf_fit_usable = Gauge("kedascaler_perf_estimate_usable",
                                     "1 when both fitted lines pass the quality checks, else 0.", VARIANT_LABELS,
                                     registry=registry)
        self.model_based = Gauge("kedascaler_model_based_sizing",
                                 "1 when the variant's model is sized by the queueing model this cycle (model or "
                                 "hybrid mode with usable inputs), 0 when it falls back to saturation.",
                                 (*VARIANT_LABELS, "source"), registry=registry)
        self.predicted_itl = Gauge("kedascaler_predicted_itl_ms",
                                   "ITL the queueing model predicts for the variant under the plan taken (ms).",
                                   VARIANT_LABELS, registry=registry)
        self.predicted_ttft = Gauge("kedascaler_predicted_ttft_ms",
                                    "TTFT the queueing model predicts for the variant under the plan taken (ms).",
                                    VARIANT_LABELS, registry=registry)
        # -- the scaler's own health --
        self.cycle_duration = Histogram("kedascaler_reconcile_duration_seconds", "Duration of one reconcile cycle.",
                                        buckets=CYCLE_BUCKETS, registry=registry)
        self.cycles = Counter("kedascaler_reconcile_cycles", "Reconcile cycles completed.", registry=registry)
        self.cycle_errors = Counter("kedascaler_reconcile_errors", "Errors met by reconcile cycles, by stage.",
                                    ("stage",), registry=registry)
        self.last_cycle = Gauge("kedascaler_last_reconcile_timestamp_seconds", "Unix time the last cycle ended.",
                                registry=registry)
        self.variants = Gauge("kedascaler_variants", "VariantAutoscalings decided in the last cycle.",
                              registry=registry)
        self.source_duration = Histogram("kedascaler_metrics_source_duration_seconds",
                                         "Time to collect the vLLM metrics of one cycle (all queries or scrapes).",
                                         ("source",), buckets=CYCLE_BUCKETS, registry=registry)
        self.source_queries = Counter("kedascaler_metrics_source_queries",
                                      "PromQL queries (or pod scrapes) made by the metrics source.", registry=registry)
        self.source_failures = Counter("kedascaler_metrics_source_failures",
                                       "Metrics-source failures: whole collections, or single pods.", ("kind",),
                                       registry=registry)
        self.source_samples = Gauge("kedascaler_metrics_source_samples", "Pod samples read in the last cycle.",
                                    registry=registry)
        self.staleness = Gauge("kedascaler_metrics_staleness_seconds",
                               "Seconds since the newest metrics behind the model's decisions were taken.",
                               ("namespace", "model"), registry=registry)
        self.grpc_requests = Counter("kedascaler_grpc_requests", "gRPC requests handled, by method and status code.",
                                     ("method", "code"), registry=registry)
        self.grpc_duration = Histogram("kedascaler_grpc_request_duration_seconds",
                                       "gRPC handling time (streams: their whole life), by method and code.",
                                       ("method", "code"), buckets=GRPC_BUCKETS, registry=registry)
        self.grpc_open_streams = Gauge("kedascaler_grpc_open_streams", "Server-streaming calls open now, by method.",
                                       ("method",), registry=registry)
        self.records = Counter("kedascaler_decision_records", "Decision records emitted (log and file).",
                               registry=registry)


def stage_of(error: str) -> str:
    """The stage an error string of a CycleReport comes from, by the prefix the reconciler gives it."""
    head = error.split(" ", 1)[0].rstrip(":").lower()
    return head if head in ("workload", "engine", "slo") else "other"


def signal_label(signal: str) -> str:
    """The reason's signal as a label value: a short identifier, else "other" (keeps the label set bounded)."""
    return signal if _SIGNAL.match(signal or "") else "other"


def saturation_level(variant: VariantState) -> float:
    """Max KV-cache usage over the variant's analysed pods (fresh, finite); 0 when none reported."""
    pods = analysed_pods(variant)
    return max((max(0.0, p.kv_cache_usage) for p in pods), default=0.0)


def spare_capacity(variant: VariantState, snapshot: ModelSnapshot) -> tuple[float, float]:
    """Mean spare KV and queue over the variant's non-saturated pods (the engine's per-replica view); 0, 0 with none."""
    config = variant.spec.saturation or snapshot.config
    free = [r for r in (replica_saturation(variant.spec.key, p, config) for p in analysed_pods(variant))
            if not r.saturated]
    if not free:
        return 0.0, 0.0
    return sum(r.spare_kv for r in free) / len(free), sum(r.spare_queue for r in free) / len(free)


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
    def interceptor(self):
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
        collect_errors = set(report.collect.errors)
        for error in report.errors:
            m.cycle_errors.labels("collect" if error in collect_errors else stage_of(error)).inc()
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
        states = {v.spec.key: (v, snap) for snap in report.snapshots for v in snap.variants}
        seen: dict[VariantKey, tuple[str, str, str, str]] = {}
        for d in report.decisions:
            state = states.get(d.key)
            accelerator = state[0].spec.accelerator if state else ""
            labels = (d.key.name, d.key.namespace, d.model_id, accelerator)
            seen[d.key] = labels
            m.desired.labels(*labels).set(d.desired_replicas)
            m.current.labels(*labels).set(d.current_replicas)
            m.ready.labels(*labels).set(d.ready_replicas)
            m.active.labels(*labels).set(1 if d.active else 0)
            m.decision_stale.labels(*labels).set(1 if d.stale else 0)
            if state is not None:
                variant, snap = state
                kv, queue = spare_capacity(variant, snap)
                m.saturation.labels(*labels).set(_finite(saturation_level(variant)))
                m.spare_kv.labels(*labels).set(_finite(kv))
                m.spare_queue.labels(*labels).set(_finite(queue))
            else:
                for gauge in (m.saturation, m.spare_kv, m.spare_queue):
                    gauge.labels(*labels).set(0)
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
                       m.predicted_itl, m.predicted_ttft):
            family.clear()
        for d in report.decisions:
            labels = labels_of.get(d.key)
            if labels is None:
                continue
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


def log_decision(record: dict) -> None:
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

    def __getattr__(self, name: str):  # anything else (e.g. a source's own settings) passes through
        return getattr(self.source, name)


class MetricsServer:
    """Serves one registry's /metrics over HTTP on its own port, in a daemon thread; start() and stop()."""

    def __init__(self, registry: CollectorRegistry, port: int = 8080, host: str = "0.0.0.0") -> None:
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        """The bound port once started (useful with port 0)."""
        return None if self._server is None else self._server.server_port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("MetricsServer already started")
        try:
            self._server, self._thread = start_http_server(self._requested_port, addr=self.host,
                                                           registry=self.registry)
        except OSError as exc:
            raise OSError(f"cannot serve /metrics on {self.host}:{self._requested_port}: {exc.strerror or exc}"
                          " (is the port in use?)") from None
        log.info("/metrics listening on %s:%d", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def variant_label_sets(registry: CollectorRegistry, name: str = "wva_desired_replicas") -> set[tuple[str, ...]]:
    """The (variant, namespace, model, accelerator) label sets a metric has now (for tests and debugging)."""
    out = set()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out.add(tuple(sample.labels[k] for k in VARIANT_LABELS))
    return out


__all__ = ("Observer", "MetricsServer", "InstrumentedSource", "ScalerMetrics", "VARIANT_LABELS",
                          "log_decision", "variant_label_sets")
