"""The per-variant families yielded at scrape (`VariantGauges`): what a wake-up cycle keeps, what a scrape costs."""

from __future__ import annotations

from dataclasses import replace

from kedascaler.engine.types import VariantKey
from kedascaler.observe import Observer
from tests.observe.test_records import fake_report


def desired(observer: Observer, name: str) -> float | None:
    return observer.registry.get_sample_value(
        "wva_desired_replicas", {"variant": name, "namespace": "ns", "model": "m", "accelerator": "A100"})


def other_model(report, name: str, model: str):
    """The report's one decision, as a variant of another model."""
    d = report.decisions[0]
    return replace(d, key=VariantKey("ns", name), model_id=model)


def test_a_wake_up_cycle_keeps_the_gauges_of_every_model_it_did_not_decide():
    observer = Observer(log_decisions=False)
    full = fake_report(desired=2)
    b = other_model(full, "w-a100", "other")
    observer.on_cycle(replace(full, decisions=(*full.decisions, b)))
    woken = fake_report(desired=3, at=1010.0)
    observer.on_cycle(replace(woken, models=(("ns", "m"),)))  # a pushed request woke model m alone
    assert desired(observer, "v-a100") == 3
    assert observer.registry.get_sample_value(
        "wva_desired_replicas", {"variant": "w-a100", "namespace": "ns", "model": "other", "accelerator": "A100"}) == 2
    assert observer.registry.get_sample_value("kedascaler_metrics_staleness_seconds",
                                              {"namespace": "ns", "model": "other"}) is not None
    observer.on_cycle(full)  # the next full cycle: w-a100 left the inventory
    gone = {"variant": "w-a100", "namespace": "ns", "model": "other", "accelerator": "A100"}
    assert observer.registry.get_sample_value("wva_desired_replicas", gone) is None


def test_an_unchanged_decision_keeps_its_last_scaling_time_and_counts_once_more():
    observer = Observer(log_decisions=False)
    observer.on_cycle(fake_report(desired=2, at=1000.0))
    observer.on_cycle(fake_report(desired=2, at=1010.0))
    labels = {"variant": "v-a100", "namespace": "ns", "model": "m", "accelerator": "A100"}
    assert observer.registry.get_sample_value("wva_last_scaling_decision_timestamp", labels) == 1000.0
    assert observer.registry.get_sample_value(
        "wva_scaling_decisions_total", {**labels, "action": "scale-up", "signal": "kv_cache_usage"}) == 2.0
