"""The scaler's /metrics: per-variant `wva_*` gauges (what HPA + Prometheus Adapter read) and its own health.

Everything lives in one `CollectorRegistry` owned by the `Observer` (never prometheus_client's global one), and
is served on its own port by `MetricsServer`. The Observer is fed one `CycleReport` per reconcile cycle; the
gRPC interceptor (`kedascaler.observe.interceptor`) and `InstrumentedSource` feed the same registry. The
health families are in `kedascaler.observe.families`; the per-variant ones are yielded at scrape time by
`kedascaler.observe.gauges.VariantGauges` from the last cycles' decisions, so a cycle sets no per-variant gauge
(at 10,000 variants that was seconds of CPU per cycle). A decision record is built only when something reads it
(`--records`, or decision logs at INFO).

A variant's gauges show what its decision says: its replicas, and the saturation numbers the engine computed
for it (`Decision.steps`: its pods' KV-cache usage and spare capacity against its own thresholds); nothing here
analyses pods again.

Cardinality is bounded by the inventory: every per-variant series carries exactly
`variant, namespace, model, accelerator`, and a variant that leaves the inventory (or changes model or
accelerator) has its old series removed on the next cycle. See docs/observability.md for the full list.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, MetricsHandler, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from kedascaler.engine.types import VariantKey
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
from kedascaler.observe.gauges import VariantGauges, saturation_gauges, signal_label
from kedascaler.observe.records import DecisionRecorder, RecordWriter
from kedascaler.sources.base import CollectResult, MetricsSource, ScrapeTarget

if TYPE_CHECKING:
    from kedascaler.observe.interceptor import MetricsInterceptor

log = logging.getLogger("kedascaler.observe")

_DECISIONS_LOG = logging.getLogger("kedascaler.decisions")


def stage_of(error: str) -> str:
    """The `stage` label of a cycle's error: the stage it carries (`CycleError.stage`, typed by the cycle),
    "other" for an error that carries none or one outside the bounded label set."""
    stage = getattr(error, "stage", None)
    return str(stage) if stage is not None and str(stage) in STAGES else "other"


class Observer:
    """Turns each CycleReport into metrics, one decision log line per decision, and optional JSONL records.

    Call `on_cycle(report)` from `Reconciler.run_forever(..., on_cycle=...)`; use `interceptor()` for the gRPC
    server and `instrument(source)` around the metrics source so collection time is measured too.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, records: RecordWriter | None = None,
                 log_decisions: bool = True, clock: Callable[[], float] = time.time, summary_every: float = 300.0
                 ) -> None:
        """`summary_every` (s): how often the decision log's summary line comes at INFO."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self._health = CollectorRegistry()  # the scaler's own families; /metrics writes the variants' itself
        self.metrics = ScalerMetrics(self._health)
        self.registry.register(_Registry(self._health))
        self.recorder = DecisionRecorder(clock=clock)
        self.records = records
        self.log_decisions = log_decisions
        self.summary_every = summary_every
        self._last_logged: dict[VariantKey, tuple[int, bool]] = {}  # what the decision log said last, per variant
        self._changes = 0  # since the last summary
        self._summary_at: float | None = None
        self.clock = clock
        self._lock = threading.Lock()
        self.gauges = VariantGauges(clock)  # the per-variant families, yielded from the last cycles at scrape
        self.registry.register(self.gauges)
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

    def register(self, collector: Collector) -> None:
        """Serve another component's families on /metrics beside the scaler's own (e.g. the pod-deletion-cost
        writer's counters)."""
        self._health.register(collector)

    def serve_rpc_metrics(self, collector: Collector) -> None:
        """The gRPC families come from `collector` (serve's answering process counts the calls) instead of this
        Observer's own, which no call reaches there."""
        for family in (self.metrics.grpc_requests, self.metrics.grpc_duration, self.metrics.grpc_open_streams,
                       self.metrics.grpc_loop_lag):
            self._health.unregister(family)
        self._health.register(collector)

    def exposition(self) -> bytes:
        """The current /metrics text (what `MetricsServer` serves): the scaler's own families by prometheus_client,
        then the per-variant ones written directly (`VariantGauges.text`: the same bytes, a tenth of the cost)."""
        return b"".join(self.exposition_chunks())

    def exposition_chunks(self) -> list[bytes]:
        """`exposition()` in pieces (`VariantGauges.chunks`), as `MetricsServer` serves it: no single join, encode
        or copy of the whole text holding the GIL for tens of milliseconds at 10,000 variants."""
        return [generate_latest(self._health), *self.gauges.chunks()]

    # -- the per-cycle update --
    def on_cycle(self, report: CycleReport) -> None:
        """Update every gauge and counter from one cycle, then log and record its decisions.

        The decision log (logger `kedascaler.decisions`): at INFO a variant's decision when its desired replicas or
        its active flag changed (and its first), and every `summary_every` seconds one summary line; at DEBUG
        every decision of every cycle. The records file (`--records`) gets every decision."""
        with self._lock:
            now = self.clock()
            self._update_health(report, now)
            self.metrics.variants.set(self.gauges.update(report, now))
            changed = self._changed(report)
            every = self.log_decisions and _DECISIONS_LOG.isEnabledFor(logging.DEBUG)
            logged = self.log_decisions and _DECISIONS_LOG.isEnabledFor(logging.INFO)
            # a record is built only for someone to read it: the records file, or the decision log
            if self.records is not None or every:
                records = self.recorder.records(report)
            elif logged:
                records = self.recorder.records(report, only=lambda d: d.key in changed)
                self.metrics.records.inc(len(report.decisions) - len(records))  # counted as before: every decision
            else:
                records = []
                self.recorder.cycle += 1  # the cycle is numbered all the same
                self.metrics.records.inc(len(report.decisions))
            summary = self._summary(report, changed, now) if logged else None
        for record in records:
            if logged:
                key = VariantKey(record["namespace"], record["variant"])
                log_decision(record, logging.INFO if key in changed else logging.DEBUG)
            if self.records is not None:
                try:
                    self.records.write(record)
                except OSError as exc:  # a full disk must not stop the scaler
                    log.warning("cannot write decision record to %s: %s", self.records.path, exc)
            self.metrics.records.inc()
        if summary is not None:
            _DECISIONS_LOG.info("%s", summary)

    def _changed(self, report: CycleReport) -> set[VariantKey]:
        """The variants whose desired replicas or active flag differ from their last decision (or that are new)."""
        changed = set()
        last = self._last_logged
        for d in report.decisions:
            now = (d.desired_replicas, d.active)
            if last.get(d.key) != now:
                changed.add(d.key)
                last[d.key] = now
        if report.models is None and len(last) > len(report.decisions):  # a full cycle: forget variants that left
            kept = {d.key for d in report.decisions}
            self._last_logged = {k: v for k, v in last.items() if k in kept}
        self._changes += len(changed)
        return changed

    def _summary(self, report: CycleReport, changed: set[VariantKey], now: float) -> str | None:
        """Every `summary_every` s: the last cycle's decisions by action, and how many changed since the last one."""
        if self._summary_at is None:
            self._summary_at = now
        if now - self._summary_at < self.summary_every:
            return None
        actions: dict[str, int] = {}
        for d in report.decisions:
            actions[d.reason.action] = actions.get(d.reason.action, 0) + 1
        line = (f"decisions: {len(self._last_logged)} variants, {self._changes} changes of desired replicas or "
                f"active in the last {now - self._summary_at:.0f}s; this cycle "
                + ", ".join(f"{a} {n}" for a, n in sorted(actions.items())))
        self._summary_at, self._changes = now, 0
        return line

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

def log_decision(record: dict[str, Any], level: int = logging.INFO) -> None:
    """One log line per decision: readable text, and the whole record as `decision` for the JSON formatter."""
    reason = record["reason"]
    _DECISIONS_LOG.log(
        level, "decision %s/%s model=%s desired=%d current=%d active=%s %s %s%s",
        record["namespace"], record["variant"], record["model"], record["result"]["desired_replicas"],
        record["inputs"]["replicas"]["current"], record["result"]["active"], reason["action"], reason["signal"],
        " (stale)" if record["stale"] else "", extra={"decision": record})


class _Registry(Collector):
    """Another registry's families, as one collector of `Observer.registry` (which holds everything)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.inner = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.inner.collect()


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

    def __init__(self, registry: CollectorRegistry, port: int = 8080, host: str = "0.0.0.0",
                 render: Callable[[], bytes | Sequence[bytes]] | None = None) -> None:
        """`render`: the text to serve, whole or in pieces (`Observer.exposition_chunks`), else prometheus_client's
        handler of `registry`."""
        self.registry = registry
        self.host = host
        handler = MetricsHandler.factory(registry) if render is None else _text_handler(render)
        self._http = HttpServerThread(handler, host=host, port=port, name="metrics", what="/metrics")

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


def _text_handler(render: Callable[[], bytes | Sequence[bytes]]) -> type[BaseHTTPRequestHandler]:
    """GET /metrics (or /): `render()` as Prometheus text 0.0.4, gzipped when the scraper accepts it; a body in
    pieces is compressed and written piece by piece, never joined into one (a long GIL-held copy at scale)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if urlparse(self.path).path not in ("/", "/metrics"):
                self.send_error(404)
                return
            rendered = render()
            body = [rendered] if isinstance(rendered, bytes) else list(rendered)
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            if gzipped:
                packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # the gzip format; zlib releases the GIL meanwhile
                body = [*(packer.compress(piece) for piece in body), packer.flush()]
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(sum(len(piece) for piece in body)))
            self.end_headers()
            for piece in body:
                self.wfile.write(piece)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

    return Handler


__all__ = ("ACTIONS", "CYCLE_BUCKETS", "GRPC_BUCKETS", "STAGES", "VARIANT_LABELS", "InstrumentedSource",
           "MetricsServer", "Observer", "ScalerMetrics", "log_decision", "saturation_gauges", "signal_label",
           "stage_of", "variant_label_sets")
