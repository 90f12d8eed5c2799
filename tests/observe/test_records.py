"""Decision records: one per decision, valid against the shipped schema; JSON logs; secrets never logged."""

from __future__ import annotations

import io
import json
import logging

import jsonschema
import pytest

from kedascaler.engine.types import (
    Decision,
    ModelSnapshot,
    PodMetrics,
    Reason,
    SaturationConfig,
    VariantKey,
    VariantSpec,
    VariantState,
)
from kedascaler.loop.cycle import CycleReport
from kedascaler.observe import Observer, RecordWriter, configure_logging, load_schema, scrub
from kedascaler.observe.records import SCHEMA_ID, SecretFilter
from kedascaler.sources.base import CollectResult
from tests.observe.conftest import make_reconciler
from tests.observe.synthetic import steps_for


def fake_report(desired: int = 2, at: float = 1000.0, data_at: float | None = None) -> CycleReport:
    key = VariantKey("ns", "v-a100")
    spec = VariantSpec(key, "m", "v-a100", accelerator="A100", cost=20.0, min_replicas=1, max_replicas=4)
    pods = (PodMetrics("v-a100-0", 0.85, 6.0, 12.0, at - 1), PodMetrics("v-a100-1", float("nan"), 1.0, 4.0, at - 1))
    state = VariantState(spec, 2, 2, pods)
    snap = ModelSnapshot("ns", "m", (state,), SaturationConfig(), at)
    d = Decision(key, "m", desired, True, Reason("scale-up", "kv_cache_usage", 0.85, 0.7, "needs more"),
                 current_replicas=2, ready_replicas=2, decided_at=at, data_at=at - 1 if data_at is None else data_at,
                 steps=steps_for(state, snap.config, desired))
    return CycleReport((d,), (snap,), CollectResult(queries=2), (), 0.01)


@pytest.fixture
def validator():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_records_of_a_real_cycle_validate_and_carry_the_inputs(fleet, scraper, tmp_path, validator):
    path = tmp_path / "records" / "decisions.jsonl"
    with RecordWriter(path) as writer:
        observer = Observer(records=writer, log_decisions=False)
        reconciler = make_reconciler(fleet, scraper)
        reports = [reconciler.run_once() for _ in range(2)]
        for report in reports:
            observer.on_cycle(report)
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    records = [json.loads(line) for line in lines]
    for record in records:
        validator.validate(record)
        assert record["schema"] == SCHEMA_ID
    assert [r["cycle"] for r in records] == [1, 1, 2, 2]
    first = {r["variant"]: r for r in records[:2]}
    decisions = {d.key.name: d for d in reports[0].decisions}
    states = {v.spec.key.name: v for s in reports[0].snapshots for v in s.variants}
    for name, record in first.items():
        d, v = decisions[name], states[name]
        assert record["result"] == {"desired_replicas": d.desired_replicas, "active": d.active}
        assert record["reason"]["action"] == d.reason.action and record["reason"]["message"] == d.reason.message
        assert [p["kv_cache_usage"] for p in record["inputs"]["pods"]] == [p.kv_cache_usage for p in v.pods]
        assert [p["queue_length"] for p in record["inputs"]["pods"]] == [p.queue_length for p in v.pods]
        assert record["inputs"]["replicas"]["current"] == v.current_replicas
        assert record["thresholds"]["kv_cache_threshold"] == reports[0].snapshots[0].config.kv_cache_threshold
        assert record["accelerator"] == v.spec.accelerator


def test_a_nan_reading_is_written_as_null_and_still_valid(tmp_path, validator):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as writer:
        Observer(records=writer, log_decisions=False).on_cycle(fake_report())
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    validator.validate(record)
    assert record["inputs"]["pods"][1]["kv_cache_usage"] is None
    assert "predicted_itl_ms" not in record


def test_schema_rejects_a_broken_record(validator):
    from kedascaler.observe.records import DecisionRecorder

    (record,) = DecisionRecorder(clock=lambda: 1000.0).records(fake_report())
    validator.validate(record)
    broken = dict(record, result={"desired_replicas": -1, "active": True})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({k: v for k, v in record.items() if k != "reason"})


def test_json_logs_carry_the_decision_record(validator):
    stream = io.StringIO()
    handler = configure_logging("INFO", "json", stream=stream)
    try:
        Observer().on_cycle(fake_report())
        logging.getLogger("kedascaler.test").warning("plain line %d", 7)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    decision = [entry for entry in lines if entry["logger"] == "kedascaler.decisions"]
    assert len(decision) == 1
    validator.validate(decision[0]["decision"])
    assert decision[0]["level"] == "INFO" and "desired=2" in decision[0]["message"]
    assert any(entry["message"] == "plain line 7" and entry["level"] == "WARNING" for entry in lines)


def test_configure_logging_twice_keeps_one_handler():
    root = logging.getLogger()
    before = len(root.handlers)
    first = configure_logging("DEBUG", "plain", stream=io.StringIO())
    second = configure_logging("INFO", "json", stream=io.StringIO())
    try:
        assert first not in root.handlers and second in root.handlers
        assert len(root.handlers) == before + 1
        with pytest.raises(ValueError, match="json"):
            configure_logging("INFO", "xml")
    finally:
        root.removeHandler(second)


SECRETS = ["s3cr3t-T0ken.abc", "eyJhbGciOiJIUzI1NiJ9.payload.sig", "hunter2pass"]


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_secrets_never_appear_in_logs(fmt):
    stream = io.StringIO()
    handler = configure_logging("DEBUG", fmt, stream=stream)
    log = logging.getLogger("kedascaler.sources.prometheus")
    try:
        log.info("GET http://prom:9090/api/v1/query headers={'Authorization': 'Bearer %s'}", SECRETS[0])
        log.info("Authorization: Bearer %s", SECRETS[1])
        log.warning("retrying https://prom/api?query=up&token=%s&x=1", SECRETS[0])
        log.debug("connecting to https://admin:%s@thanos:10902/", SECRETS[2])
        log.info("config loaded", extra={"fields": {"bearer_token": SECRETS[0], "api_key": SECRETS[1]}})
        log.info('{"access_token": "%s"}', SECRETS[1])
        log.info("password=%s", SECRETS[2])
        try:
            raise RuntimeError(f"401 for header Authorization=Bearer {SECRETS[0]}")
        except RuntimeError:
            log.exception("query failed")
        log.info("kept: model=meta/llama queue_length=3 max_tokens=128")
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    for secret in SECRETS:
        assert secret not in out
    assert out.count("[REDACTED]") >= 8
    assert "kept: model=meta/llama queue_length=3 max_tokens=128" in out


def test_the_filter_alone_scrubs_records_for_any_handler():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("abc123",), None)
    assert SecretFilter().filter(record)
    assert record.getMessage() == "token=[REDACTED]"
    assert scrub("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic [REDACTED]"
    assert scrub("nothing secret here: kv_cache_usage=0.8") == "nothing secret here: kv_cache_usage=0.8"


def test_a_record_carries_the_thresholds_and_steps_the_engine_used(validator):
    # The variant's own override classified its pods; the record says so, without looking the override up again.
    from dataclasses import replace

    from kedascaler.engine import decide
    from kedascaler.observe.records import DecisionRecorder

    tight = SaturationConfig(0.6, 4.0, 0.1, 1.0)
    report = fake_report()
    (snap,) = report.snapshots
    state = replace(snap.variants[0], spec=replace(snap.variants[0].spec, saturation=tight))
    snap = replace(snap, variants=(state,))
    decisions = decide(snap, {})
    (record,) = DecisionRecorder(clock=lambda: 1000.0).records(replace(report, decisions=decisions, snapshots=(snap,)))
    validator.validate(record)
    assert record["thresholds"]["kv_cache_threshold"] == 0.6 and record["thresholds"]["queue_length_threshold"] == 4.0
    steps = record["steps"]
    assert steps["route"] == "saturation" and steps["needed_replicas"] == decisions[0].steps.needed_replicas
    # The NaN pod is not analysed; the other is over both of the override's thresholds.
    assert [(p["pod"], p["over"], p["saturated"]) for p in steps["pods"]] == [("v-a100-0", "kv+queue", True)]
    assert steps["plan"] == [{"variant": "v-a100", "current": 2, "target": decisions[0].desired_replicas,
                              "saturation": decisions[0].desired_replicas, "model": None}]
    assert record["reason"]["message"] == decisions[0].reason.message


def test_a_decision_without_steps_records_none(validator):
    from dataclasses import replace

    from kedascaler.engine.types import DecisionSteps
    from kedascaler.observe.records import DecisionRecorder

    report = fake_report()
    bare = replace(report, decisions=(replace(report.decisions[0], steps=DecisionSteps()),))
    (record,) = DecisionRecorder(clock=lambda: 1000.0).records(bare)
    validator.validate(record)
    assert record["steps"] is None and record["thresholds"] is None
    assert record["inputs"]["pods"][0]["kv_cache_usage"] == 0.85  # the inputs are still the variant's
