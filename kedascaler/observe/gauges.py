"""The per-variant /metrics families as one prometheus_client collector: built from the latest decisions at scrape.

A cycle hands its report to `VariantGauges.update`, which keeps references (the decisions, the plans, the learned
parameters) and the little that is history — when each variant's desired replicas last changed, how many
decisions each (variant, action, signal) counted, each model's staleness at the cycle — and sets no gauge. A
scrape (`collect`) turns what is kept into the families, so a cycle at 10,000 variants costs no more than a dict
of them, and a variant whose decision did not change costs nothing at all until someone reads /metrics.

The families, their names, help texts and labels are those of `kedascaler.observe.families` (the contract: the
Grafana dashboard, the Prometheus Adapter rules, docs/observability.md). A full cycle replaces the set of
variants (one that left the inventory, or changed model or accelerator, has its old series gone); a wake-up
cycle (`report.models`) updates its models' variants and keeps every other's.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kedascaler.engine.types import Decision, DecisionSteps, VariantKey
from kedascaler.kits.heap import release
from kedascaler.loop.cycle import CycleReport
from kedascaler.loop.planner import SloPlan, VariantParameters
from kedascaler.observe.exposition import LabelCache, TextFamily
from kedascaler.observe.families import ACTIONS, VARIANT_LABELS

Labels = tuple[str, str, str, str]  # variant, namespace, model, accelerator
CHUNK_LINES = 2_048  # lines of /metrics text joined and encoded at once (≈ 250 KB: well under a millisecond)
_SIGNAL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# (attribute, name, help): the gauges of every variant, with exactly VARIANT_LABELS
GAUGES = (
    ("desired", "wva_desired_replicas", "Replicas kedascaler wants for the variant (what KEDA is told)."),
    ("current", "wva_current_replicas", "Replicas the variant's Deployment runs now (spec.replicas)."),
    ("ready", "wva_ready_replicas", "Ready replicas of the variant's Deployment."),
    ("saturation", "wva_saturation_level",
     "Max KV-cache usage (0-1) over the variant's pods with fresh metrics; 0 with none."),
    ("spare_kv", "wva_spare_kv", "Mean spare KV-cache fraction (kvCacheThreshold - usage) over the variant's "
     "non-saturated pods; 0 when none."),
    ("spare_queue", "wva_spare_queue", "Mean spare queue (queueLengthThreshold - waiting) over the variant's "
     "non-saturated pods; 0 when none."),
    ("active", "wva_active", "1 when the variant's model is active (requests arriving or queued), else 0."),
    ("last_scaling", "wva_last_scaling_decision_timestamp",
     "Unix time of the last decision that changed the variant's desired replicas."),
    ("decision_stale", "wva_decision_stale", "1 when the variant's decision is held on stale metrics."),
)
DECISIONS = ("wva_scaling_decisions", "Decisions per variant by action and binding signal.")
# (attribute, name, help, extra label or None): SLO sizing and capacity mode, rebuilt from each full cycle
SIZING = (
    ("perf_estimate", "kedascaler_perf_estimate_ms",
     "Performance parameter fitted online (ms): alpha, beta (decode), gamma, delta (prefill).", "parameter"),
    ("perf_fit_r2", "kedascaler_perf_estimate_r2", "R² of the online fit, by line (decode, prefill).", "line"),
    ("perf_fit_samples", "kedascaler_perf_estimate_samples", "Observations in the fit's sliding window, by line.",
     "line"),
    ("perf_fit_usable", "kedascaler_perf_estimate_usable", "1 when both fitted lines pass the quality checks, "
     "else 0.", None),
    ("model_based", "kedascaler_model_based_sizing",
     "1 when the variant's model is sized by the queueing model this cycle (model or hybrid mode with usable "
     "inputs), 0 when it falls back to saturation.", "source"),
    ("predicted_itl", "kedascaler_predicted_itl_ms",
     "ITL the queueing model predicts for the variant under the plan taken (ms).", None),
    ("predicted_ttft", "kedascaler_predicted_ttft_ms",
     "TTFT the queueing model predicts for the variant under the plan taken (ms).", None),
    ("capacity_demand", "kedascaler_capacity_demand_rps",
     "Capacity mode: the variant's model's demand in req/s, by kind (latest, short, long, forecast, need, held, "
     "target; handed_back: growth not counted, requests routed again from pods gone).", "kind"),
    ("capacity_per_replica", "kedascaler_capacity_per_replica_rps",
     "Capacity mode: req/s one replica of the variant carries at the SLO, by source (model, measured, prior, "
     "none).", "source"),
    ("capacity_mix", "kedascaler_capacity_mix_replicas", "Capacity mode: the variant's replicas in the mix.", None),
    ("capacity_hold", "kedascaler_capacity_hold",
     "Capacity mode: 1 when the hold keeps capacity this cycle's demand alone does not need.", None),
)
STALENESS = ("kedascaler_metrics_staleness_seconds",
             "Seconds since the newest metrics behind the model's decisions were taken.")


def signal_label(signal: str) -> str:
    """The reason's signal as a label value: a short identifier, else "other" (keeps the label set bounded)."""
    return signal if _SIGNAL.match(signal or "") else "other"


def finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def saturation_gauges(steps: DecisionSteps) -> tuple[float, float, float]:
    """(saturation level, spare KV, spare queue) of a variant as its decision's steps say; 0 where there is none."""
    return (finite(steps.saturation_level), finite(steps.spare_kv or 0.0), finite(steps.spare_queue or 0.0))


def labels_of(d: Decision) -> Labels:
    own = d.steps.own
    return (d.key.name, d.key.namespace, d.model_id, own.accelerator if own is not None else "")


@dataclass
class _Sizing:
    """The last cycle that sized (plans or parameters): its decisions, plans and parameters, read at scrape."""

    decisions: tuple[Decision, ...] = ()
    labels: Mapping[VariantKey, Labels] = field(default_factory=dict)
    plans: Mapping[tuple[str, str], SloPlan] = field(default_factory=dict)
    params: Mapping[VariantKey, VariantParameters] = field(default_factory=dict)


class VariantGauges(Collector):
    """The per-variant and per-model families, yielded at scrape from what the last cycles kept."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()  # update (the cycle's thread) against collect (the /metrics thread)
        self._decisions: dict[VariantKey, tuple[Labels, Decision]] = {}
        self._last_scaling: dict[VariantKey, float] = {}
        self._counts: dict[tuple[str, ...], list[float]] = {}  # labels + (action, signal) -> [count, created]
        self._staleness: dict[tuple[str, str], float] = {}
        self._sizing = _Sizing()
        self._labels = LabelCache()  # the text scrape's escaped label strings, per variant
        self._text_lock = threading.Lock()

    def update(self, report: CycleReport, now: float) -> int:
        """Keep one cycle's decisions; returns how many variants it decided."""
        dropped: list[object] = []  # what the last cycle kept, freed in small pieces after (kits/heap.py)
        try:
            return self._update(report, now, dropped)
        finally:
            release(dropped)

    def _update(self, report: CycleReport, now: float, dropped: list[object]) -> int:
        with self._lock:
            full = report.models is None
            decided: dict[VariantKey, tuple[Labels, Decision]] = {}
            for d in report.decisions:
                labels = labels_of(d)
                old = self._decisions.get(d.key)
                if old is None or old[0] != labels or old[1].desired_replicas != d.desired_replicas:
                    self._last_scaling[d.key] = d.decided_at or self.clock()
                decided[d.key] = (labels, d)
                series = (*labels, d.reason.action if d.reason.action in ACTIONS else "other",
                          signal_label(d.reason.signal))
                count = self._counts.get(series)
                if count is None:
                    self._counts[series] = [1.0, time.time()]
                else:
                    count[0] += 1.0
            kept = decided if full else {**self._decisions, **decided}
            gone = {labels for key, (labels, _) in self._decisions.items()
                    if key not in kept or kept[key][0] != labels}
            if gone:  # a variant that left, or changed model or accelerator: its old series go
                self._counts = {s: c for s, c in self._counts.items() if s[:4] not in gone}
                for key in [k for k in self._last_scaling if k not in kept]:
                    del self._last_scaling[key]
            dropped.append(self._decisions)
            self._decisions = kept
            if report.plans or report.parameters:
                dropped.append(self._sizing)
                self._sizing = _Sizing(report.decisions, {k: v[0] for k, v in decided.items()}, report.plans,
                                       report.parameters)
            self._update_staleness(report, now, full)
            return len(decided)

    def _update_staleness(self, report: CycleReport, now: float, full: bool) -> None:
        newest: dict[tuple[str, str], float] = {}
        for d in report.decisions:
            model = (d.key.namespace, d.model_id)
            newest[model] = max(newest.get(model, d.data_at), d.data_at)
        values = {m: max(0.0, now - t) if t > 0 else math.inf for m, t in newest.items()}
        self._staleness = values if full else {**self._staleness, **values}

    def describe(self) -> Iterator[Metric]:
        yield from _Families(GaugeMetricFamily, CounterMetricFamily).all()

    def collect(self) -> Iterator[Metric]:
        f = _Families(GaugeMetricFamily, CounterMetricFamily)
        self._fill(f)
        yield from f.all()

    def text(self) -> str:
        """These families' /metrics text: `generate_latest` over `collect()`, byte for byte, written directly
        (`kedascaler.observe.exposition`), each variant's labels escaped once while it stays."""
        return b"".join(self.chunks()).decode()

    def chunks(self, lines: int = CHUNK_LINES) -> list[bytes]:
        """`text()` encoded, in pieces of at most `lines` lines. A scrape at 10,000 variants is 250,000 lines,
        32 MB: one join, one encode and one concatenation of it held the GIL 30, 30 and 16 ms (every RPC waiting);
        pieces of 2,048 lines take a fraction of a millisecond each, and the server writes them as they are."""
        with self._text_lock:  # two scrapes at once: one after the other (they share the label cache)
            cache = self._labels

            def gauge(name: str, doc: str, labels: Sequence[str]) -> TextFamily:
                return TextFamily(name, doc, labels, cache)

            def counter(name: str, doc: str, labels: Sequence[str]) -> TextFamily:
                return TextFamily(name, doc, labels, cache, kind="counter")

            f = _Families(gauge, counter)
            self._fill(f)
            cache.rotate()
            out: list[str] = []
            families = list(f.all())
            for family in families:
                family.write(out)
            chunks = ["".join(out[i:i + lines]).encode() for i in range(0, len(out), lines)]
            out.clear()  # the lines are freed family by family (≤ 10,000 each), not 250,000 in one go
            for family in families:
                family.lines.clear()
                family.created.clear()
            return chunks

    def _fill(self, f: _Families) -> None:
        """The families' samples from what the last cycles kept."""
        with self._lock:
            rows = list(self._decisions.values())
            last = dict(self._last_scaling)
            counts = [(s, c[0], c[1]) for s, c in self._counts.items()]
            staleness = dict(self._staleness)
            sizing = self._sizing
        g = f.gauges
        for labels, d in rows:
            g["desired"].add_metric(labels, d.desired_replicas)
            g["current"].add_metric(labels, d.current_replicas)
            g["ready"].add_metric(labels, d.ready_replicas)
            g["active"].add_metric(labels, 1 if d.active else 0)
            g["decision_stale"].add_metric(labels, 1 if d.stale else 0)
            for attr, number in zip(("saturation", "spare_kv", "spare_queue"), saturation_gauges(d.steps),
                                    strict=True):
                g[attr].add_metric(labels, number)
            g["last_scaling"].add_metric(labels, last.get(d.key, 0.0))
        for series, value, created in counts:
            f.decisions.add_metric(list(series), value, created=created)
        _sizing_samples(sizing, f.sizing)
        for (ns, model), value in staleness.items():
            f.staleness.add_metric([ns, model], value)


class _Families:
    """One scrape's families, empty: filled by `_fill`, yielded in a fixed order; prometheus_client's families
    (`collect`) or text lines (`text`), made by `gauge(name, doc, labels)` and `counter(...)`."""

    def __init__(self, gauge: Callable[..., Any], counter: Callable[..., Any]) -> None:
        self.gauges = {attr: gauge(name, doc, labels=VARIANT_LABELS) for attr, name, doc in GAUGES}
        self.decisions = counter(DECISIONS[0], DECISIONS[1], labels=(*VARIANT_LABELS, "action", "signal"))
        self.sizing = {attr: gauge(name, doc, labels=VARIANT_LABELS if extra is None else (*VARIANT_LABELS, extra))
                       for attr, name, doc, extra in SIZING}
        self.staleness = gauge(STALENESS[0], STALENESS[1], labels=("namespace", "model"))

    def all(self) -> list[Any]:
        return [*self.gauges.values(), self.decisions, *self.sizing.values(), self.staleness]


def _sizing_samples(sizing: _Sizing, m: Mapping[str, Any]) -> None:
    """The SLO-sizing and capacity families of the last cycle that sized."""
    for d in sizing.decisions:
        labels = sizing.labels.get(d.key)
        if labels is None:
            continue
        cap = d.steps.capacity_plan
        if cap is not None:
            dm = cap.demand
            for kind, value in (("latest", dm.latest), ("short", dm.short), ("long", dm.long),
                                ("forecast", dm.forecast), ("need", dm.need), ("held", dm.held),
                                ("target", dm.target), ("handed_back", dm.handed_back)):
                m["capacity_demand"].add_metric([*labels, kind], finite(value))
            own = next((c for c in cap.variants if c.key is d.key or c.key == d.key), None)
            if own is not None:
                m["capacity_per_replica"].add_metric([*labels, str(own.source)], finite(own.per_replica))
            m["capacity_mix"].add_metric(labels, cap.replicas(d.key))
            m["capacity_hold"].add_metric(labels, 1 if cap.held else 0)
        plan = sizing.plans.get((d.key.namespace, d.model_id))
        p = sizing.params.get(d.key)
        if plan is not None:
            m["model_based"].add_metric([*labels, p.source if p is not None and p.source else "none"],
                                        1 if plan.sizes(d.key) else 0)
        if d.predicted_itl_ms is not None:
            m["predicted_itl"].add_metric(labels, finite(d.predicted_itl_ms))
        if d.predicted_ttft_ms is not None:
            m["predicted_ttft"].add_metric(labels, finite(d.predicted_ttft_ms))
        if p is None:
            continue
        m["perf_fit_samples"].add_metric([*labels, "decode"], p.decode_samples)
        m["perf_fit_samples"].add_metric([*labels, "prefill"], p.prefill_samples)
        if p.estimate is None:
            continue
        m["perf_fit_usable"].add_metric(labels, 1 if p.estimate.usable else 0)
        fits = {"decode": p.estimate.decode, "prefill": p.estimate.prefill}
        for line, fit in fits.items():
            m["perf_fit_r2"].add_metric([*labels, line], finite(fit.r2))
        for name, value in (("alpha", fits["decode"].intercept), ("beta", fits["decode"].slope),
                            ("gamma", fits["prefill"].intercept), ("delta", fits["prefill"].slope)):
            if value == value:  # not NaN: a fit with too few points has no line
                m["perf_estimate"].add_metric([*labels, name], finite(value))


__all__ = ["DECISIONS", "GAUGES", "SIZING", "STALENESS", "VariantGauges", "finite", "labels_of",
           "saturation_gauges", "signal_label"]
