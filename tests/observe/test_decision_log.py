"""The decision log at INFO says what changed — a variant's desired replicas or its active flag — and a summary
now and then; DEBUG keeps every decision of every cycle; the records file keeps every decision at any level."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kedascaler.observe import Observer, RecordWriter, configure_logging
from tests.observe.test_records import fake_report


@pytest.fixture
def log_at():
    handlers = []
    stream = io.StringIO()

    def configure(level):
        handlers.append(configure_logging(level, "json", stream=stream))
        return stream

    yield configure
    for handler in handlers:
        logging.getLogger().removeHandler(handler)


def decision_lines(stream, level=None):
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [e for e in lines if e["logger"] == "kedascaler.decisions" and "decision" in e
            and (level is None or e["level"] == level)]


def test_info_logs_a_decision_when_its_target_changes_and_not_every_cycle(log_at):
    stream = log_at("INFO")
    observer = Observer(summary_every=1e9)
    for desired in (2, 2, 2, 3, 3):
        observer.on_cycle(fake_report(desired))
    logged = decision_lines(stream)
    assert [e["decision"]["result"]["desired_replicas"] for e in logged] == [2, 3]
    assert all(e["level"] == "INFO" for e in logged)


def test_debug_logs_every_decision(log_at):
    stream = log_at("DEBUG")
    observer = Observer(summary_every=1e9)
    for desired in (2, 2, 2):
        observer.on_cycle(fake_report(desired))
    assert [e["level"] for e in decision_lines(stream)] == ["INFO", "DEBUG", "DEBUG"]


def test_a_summary_comes_every_summary_every_seconds(log_at):
    stream = log_at("INFO")
    now = [0.0]
    observer = Observer(clock=lambda: now[0], summary_every=60.0)
    for at, desired in ((0.0, 2), (30.0, 3), (61.0, 3), (90.0, 3)):
        now[0] = at
        observer.on_cycle(fake_report(desired))
    summaries = [json.loads(line)["message"] for line in stream.getvalue().splitlines()
                 if "decisions: " in line]
    assert summaries == ["decisions: 1 variants, 2 changes of desired replicas or active in the last 61s; this "
                         "cycle scale-up 1"]


def test_the_records_file_keeps_every_decision_at_info(log_at, tmp_path):
    log_at("INFO")
    path = tmp_path / "decisions.jsonl"
    with RecordWriter(path) as writer:
        observer = Observer(records=writer, summary_every=1e9)
        for _ in range(3):
            observer.on_cycle(fake_report(2))
    assert len(path.read_text().splitlines()) == 3


def test_every_decision_still_counts_as_a_record_at_info(log_at):
    log_at("INFO")
    observer = Observer(summary_every=1e9)
    for _ in range(3):
        observer.on_cycle(fake_report(2))
    assert observer.registry.get_sample_value("kedascaler_decision_records_total") == 3.0
