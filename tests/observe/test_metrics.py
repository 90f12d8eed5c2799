"""/metrics from real reconcile cycles: every wva_* gauge per variant, the scaler's health, scraped by the real
Prometheus, valid for promtool, and bounded: a variant that leaves the inventory leaves the gauges."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import replace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kedascaler.observe import MetricsServer, Observer
from kedascaler.observe.metrics import VARIANT_LABELS, variant_label_sets
from tests.observe.conftest import MODEL, NS, documents, make_reconciler
from tests.support.prometheus import run_prometheus, wait_until

WVA_METRICS = ("wva_desired_replicas", "wva_current_replicas", "wva_saturation_level", "wva_spare_kv",
               "wva_spare_queue", "wva_active", "wva_last_scaling_decision_timestamp")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return found[0]


def test_observer_exports_the_decisions_of_a_real_cycle(fleet, scraper):
    observer = Observer(log_decisions=False)
    reconciler = make_reconciler(fleet, observer.instrument(scraper))
    report = reconciler.run_once()
    observer.on_cycle(report)
    text = observer.exposition().decode()
    by_key = {d.key.name: d for d in report.decisions}
    states = {v.spec.key.name: v for s in report.snapshots for v in s.variants}
    for name, acc in (("llama-h100", "H100"), ("llama-a100", "A100")):
        labels = dict(variant=name, namespace=NS, model=MODEL, accelerator=acc)
        d, v = by_key[name], states[name]
        assert value(text, "wva_desired_replicas", **labels) == d.desired_replicas
        assert value(text, "wva_current_replicas", **labels) == v.current_replicas
        assert value(text, "wva_active", **labels) == 1.0
        assert value(text, "wva_saturation_level", **labels) == pytest.approx(max(p.kv_cache_usage for p in v.pods))
        assert value(text, "wva_last_scaling_decision_timestamp", **labels) == pytest.approx(d.decided_at)
        assert value(text, "wva_scaling_decisions_total", **labels, action=d.reason.action) == 1.0
        cfg = report.snapshots[0].config
        free = [p for p in v.pods if p.kv_cache_usage < cfg.kv_cache_threshold
                and p.queue_length < cfg.queue_length_threshold]
        expect_kv = sum(cfg.kv_cache_threshold - p.kv_cache_usage for p in free) / len(free) if free else 0.0
        assert value(text, "wva_spare_kv", **labels) == pytest.approx(expect_kv)
    assert value(text, "kedascaler_reconcile_cycles_total") == 1.0
    assert value(text, "kedascaler_reconcile_duration_seconds_count") == 1.0
    assert value(text, "kedascaler_metrics_source_duration_seconds_count", source="DirectScrapeSource") == 1.0
    assert value(text, "kedascaler_metrics_source_samples") == 2.0
    assert 0 <= value(text, "kedascaler_metrics_staleness_seconds", namespace=NS, model=MODEL) < 60
    assert value(text, "kedascaler_reconcile_errors_total", stage="collect") == 0.0


def test_a_variant_that_leaves_the_inventory_leaves_the_gauges(fleet, scraper):
    observer = Observer(log_decisions=False)
    both = make_reconciler(fleet, scraper)
    observer.on_cycle(both.run_once())
    assert {s[0] for s in variant_label_sets(observer.registry)} == {"llama-h100", "llama-a100"}
    only_a100 = make_reconciler(fleet, scraper, [d for d in documents() if d[1]["metadata"]["name"] == "llama-a100"])
    observer.on_cycle(only_a100.run_once())
    text = observer.exposition().decode()
    for name in ("wva_desired_replicas", "wva_spare_kv", "wva_last_scaling_decision_timestamp",
                 "wva_scaling_decisions_total"):
        variants = {dict(ls)["variant"] for (n, ls) in samples(text) if n == name}
        assert variants == {"llama-a100"}, name
    assert value(text, "kedascaler_variants") == 1.0
    # The model is gone entirely: its staleness series goes too.
    empty = make_reconciler(fleet, scraper, [])
    observer.on_cycle(empty.run_once())
    text = observer.exposition().decode()
    assert not [n for (n, _ls) in samples(text) if n.startswith("wva_")]
    assert not [n for (n, _ls) in samples(text) if n == "kedascaler_metrics_staleness_seconds"]


def test_desired_change_moves_the_last_scaling_timestamp_only_then():
    from tests.observe.test_records import fake_report

    clock = [1000.0]
    observer = Observer(log_decisions=False, clock=lambda: clock[0])
    labels = dict(variant="v-a100", namespace="ns", model="m", accelerator="A100")
    observer.on_cycle(fake_report(desired=2, at=1000.0))
    assert value(observer.exposition().decode(), "wva_last_scaling_decision_timestamp", **labels) == 1000.0
    observer.on_cycle(fake_report(desired=2, at=1010.0))
    assert value(observer.exposition().decode(), "wva_last_scaling_decision_timestamp", **labels) == 1000.0
    observer.on_cycle(fake_report(desired=3, at=1020.0))
    assert value(observer.exposition().decode(), "wva_last_scaling_decision_timestamp", **labels) == 1020.0


class DownSource:
    """Prometheus down: the whole collection fails."""

    def collect(self, targets):
        from kedascaler.sources.base import CollectResult

        return CollectResult(errors=("prometheus http://prom:9090: connection refused",), queries=3)

    def close(self):
        pass


def test_errors_are_counted_by_stage(fleet, scraper):
    observer = Observer(log_decisions=False)
    observer.on_cycle(make_reconciler(fleet, scraper).run_once())
    down = make_reconciler(fleet, observer.instrument(DownSource()))
    observer.on_cycle(down.run_once())
    text = observer.exposition().decode()
    assert value(text, "kedascaler_reconcile_errors_total", stage="collect") == 1.0
    assert value(text, "kedascaler_metrics_source_failures_total", kind="collection") == 1.0
    assert value(text, "kedascaler_metrics_source_duration_seconds_count", source="DownSource") == 1.0
    assert value(text, "wva_decision_stale", variant="llama-a100") == 1.0
    assert value(text, "wva_scaling_decisions_total", variant="llama-a100", action="stale") == 1.0


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is not installed")
    pytest.skip("promtool is not installed")


def test_exposition_passes_promtool_check_metrics(fleet, scraper):
    binary = promtool()
    observer = Observer(log_decisions=False)
    reconciler = make_reconciler(fleet, observer.instrument(scraper))
    for _ in range(2):
        observer.on_cycle(reconciler.run_once())
    text = observer.exposition()
    result = subprocess.run([binary, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_the_real_prometheus_scrapes_every_wva_metric(fleet, scraper, tmp_path):
    observer = Observer(log_decisions=False)
    reconciler = make_reconciler(fleet, observer.instrument(scraper))
    report = reconciler.run_once()
    observer.on_cycle(report)
    desired = {d.key.name: d.desired_replicas for d in report.decisions}
    with MetricsServer(observer.registry, port=0, host="127.0.0.1") as server:
        assert requests.get(server.url, timeout=5).status_code == 200
        with run_prometheus([(server.url, {"job_label": "kedascaler"})], tmp_path) as prom:
            def got(q):
                return prom.query(q) or None
            for name in WVA_METRICS:
                result = wait_until(lambda name=name: got(name), 30, what=name)
                assert {r["metric"]["variant"] for r in result} == {"llama-h100", "llama-a100"}, name
                assert all(set(VARIANT_LABELS) <= set(r["metric"]) for r in result)
            for r in prom.query("wva_desired_replicas"):
                assert float(r["value"][1]) == desired[r["metric"]["variant"]]
            # what Prometheus Adapter would serve HPA for one variant
            one = prom.query(f'sum(wva_desired_replicas{{variant="llama-a100",namespace="{NS}"}})')
            assert float(one[0]["value"][1]) == desired["llama-a100"]
            for health in ("kedascaler_reconcile_duration_seconds_count", "kedascaler_reconcile_cycles_total",
                           "kedascaler_metrics_source_duration_seconds_bucket", "kedascaler_metrics_staleness_seconds",
                           "kedascaler_reconcile_errors_total"):
                assert wait_until(lambda health=health: got(health), 30, what=health)
    assert server.port is None  # stopped


def test_metrics_server_reports_a_taken_port():
    observer = Observer(log_decisions=False)
    with MetricsServer(observer.registry, port=0, host="127.0.0.1") as first:
        with pytest.raises(OSError, match="is the port in use"):
            MetricsServer(observer.registry, port=first.port, host="127.0.0.1").start()


def test_staleness_is_infinite_without_any_data():
    from tests.observe.test_records import fake_report

    observer = Observer(log_decisions=False, clock=lambda: 100.0)
    observer.on_cycle(fake_report(desired=1, at=100.0, data_at=0.0))
    assert math.isinf(value(observer.exposition().decode(), "kedascaler_metrics_staleness_seconds"))


class NoUsageSource:
    """The saturation signals answer, the usage query does not: a warning, never a stale decision."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def collect(self, targets):
        from dataclasses import replace

        result = self.inner.collect(targets)
        samples = tuple(replace(s, usage=None) for s in result.samples)
        return replace(result, samples=samples, warnings=("prometheus usage query failed (usage for SLO sizing "
                                                          "only; saturation decisions unaffected): timeout",))

    def close(self):
        pass


def test_a_failed_usage_query_is_counted_apart_and_holds_nothing(fleet, scraper):
    observer = Observer(log_decisions=False)
    report = make_reconciler(fleet, NoUsageSource(scraper)).run_once()
    observer.on_cycle(report)
    text = observer.exposition().decode()
    assert value(text, "kedascaler_reconcile_errors_total", stage="usage") == 1.0
    assert value(text, "kedascaler_reconcile_errors_total", stage="collect") == 0.0
    assert all(not d.stale for d in report.decisions)
    assert value(text, "wva_decision_stale", variant="llama-a100") == 0.0


def test_error_stages_and_signal_labels_are_bounded():
    from kedascaler.loop.cycle import CycleError, Stage
    from kedascaler.observe.metrics import signal_label, stage_of

    assert stage_of(CycleError(Stage.WORKLOAD, "workload llm/llama-a100: deployment not found")) == "workload"
    assert stage_of(CycleError(Stage.ENGINE, "engine llm/meta/llama: ValueError: ...")) == "engine"
    assert stage_of(CycleError(Stage.ACTIVATION, "activation source failed: timeout")) == "activation"
    assert stage_of("engine-looking text without a stage") == "other"  # the stage is carried, never parsed
    assert signal_label("kv_cache_usage") == "kv_cache_usage"
    assert signal_label("a signal with spaces {and} braces") == "other"
    assert signal_label("") == "other"


def test_the_variant_gauges_show_what_the_decisions_steps_say():
    # No snapshot in the report at all: saturation and spare come from the decision's steps, the engine's numbers.
    from kedascaler.engine.types import Decision, DecisionSteps, Reason, Route, VariantKey, VariantTarget
    from kedascaler.loop.reconcile import CycleReport
    from kedascaler.sources.base import CollectResult

    key = VariantKey("ns", "v-l40s")
    steps = DecisionSteps(route=Route.SATURATION, variant=key, saturation_level=0.42, spare_kv=0.3, spare_queue=1.5,
                          plan=(VariantTarget(key, "L40S", 12.0, 1, 2),))
    d = Decision(key, "m", 2, True, Reason("scale-up", "kv_cache_usage", 0.42, 0.7, "x"), current_replicas=1,
                 ready_replicas=1, decided_at=100.0, data_at=99.0, steps=steps)
    observer = Observer(log_decisions=False, clock=lambda: 100.0)
    observer.on_cycle(CycleReport((d,), (), CollectResult(), (), 0.01))
    text = observer.exposition().decode()
    labels = dict(variant="v-l40s", namespace="ns", model="m", accelerator="L40S")
    assert value(text, "wva_saturation_level", **labels) == pytest.approx(0.42)
    assert value(text, "wva_spare_kv", **labels) == pytest.approx(0.3)
    assert value(text, "wva_spare_queue", **labels) == pytest.approx(1.5)
    assert value(text, "wva_desired_replicas", **labels) == 2.0
    # Steps that found no spare (every pod saturated) show 0, as the gauges always did.
    observer.on_cycle(CycleReport((replace(d, steps=replace(steps, spare_kv=None, spare_queue=None)),), (),
                                  CollectResult(), (), 0.01))
    text = observer.exposition().decode()
    assert value(text, "wva_spare_kv", **labels) == 0.0 and value(text, "wva_spare_queue", **labels) == 0.0


def test_a_real_cycle_shows_the_engines_numbers(fleet, scraper):
    observer = Observer(log_decisions=False)
    report = make_reconciler(fleet, scraper).run_once()
    observer.on_cycle(report)
    text = observer.exposition().decode()
    for d in report.decisions:
        labels = dict(variant=d.key.name, namespace=NS, model=MODEL)
        assert value(text, "wva_saturation_level", **labels) == pytest.approx(d.steps.saturation_level)
        assert value(text, "wva_spare_kv", **labels) == pytest.approx(d.steps.spare_kv or 0.0)
        assert value(text, "wva_spare_queue", **labels) == pytest.approx(d.steps.spare_queue or 0.0)
