"""`kedascaler explain NAMESPACE/NAME --records FILE`: the latest decision of a variant in words, rendered from the
decision records a real cycle wrote (the engine's steps), never recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kedascaler.cli.main import build_parser, main
from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.reconcile import Reconciler
from kedascaler.observe.records import DecisionRecorder, RecordWriter
from kedascaler.sources.base import CollectResult, PodSample, ScrapeTarget, WorkloadStatus
from kedascaler.sources.files import StaticInventory
from kedascaler.spec.inventory import InventoryState

A100, H100 = VariantKey("llm", "llama-a100"), VariantKey("llm", "llama-h100")


class Cluster:
    """Two variants of one model, two pods each, every pod at the load the test sets (Workloads and metrics)."""

    def __init__(self) -> None:
        self.kv, self.queue, self.now = 0.9, 7.0, 1000.0

    def status(self, spec: VariantSpec) -> WorkloadStatus:
        return WorkloadStatus(2, 2, tuple(ScrapeTarget(spec.key, f"{spec.key.name}-{i}", f"http://x/{i}")
                                          for i in (1, 2)))

    def collect(self, targets) -> CollectResult:
        return CollectResult(tuple(PodSample(t.variant.namespace, t.pod, "meta/llama", self.kv, self.queue, 8.0,
                                             self.now, variant=t.variant) for t in targets), queries=1)

    def close(self) -> None:
        pass


@pytest.fixture
def records(tmp_path) -> Path:
    """Two cycles' decision records, as `serve --records` writes them: overloaded, then quiet."""
    specs = (VariantSpec(A100, "meta/llama", "llama-a100", "A100", cost=20.0, min_replicas=1, max_replicas=6),
             VariantSpec(H100, "meta/llama", "llama-h100", "H100", cost=40.0, max_replicas=6))
    cluster = Cluster()
    reconciler = Reconciler(StaticInventory(InventoryState(specs)), cluster, DecisionBoard(), workloads=cluster,
                            clock=lambda: cluster.now)
    path = tmp_path / "decisions.jsonl"
    recorder = DecisionRecorder(clock=lambda: cluster.now)
    with RecordWriter(path) as writer:
        writer.write_all(recorder.records(reconciler.run_once()))
        cluster.kv, cluster.queue, cluster.now = 0.95, 12.0, 1015.0
        writer.write_all(recorder.records(reconciler.run_once()))
    return path


def test_explain_renders_the_latest_decision_from_its_steps(records, capsys):
    assert main(["explain", "llm/llama-a100", "--records", str(records)]) == 0
    text = capsys.readouterr().out
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    record = [r for r in lines if r["variant"] == "llama-a100"][-1]  # the second cycle's
    steps = record["steps"]
    assert record["ts"] == 1015.0 and text.startswith("llm/llama-a100: model meta/llama, accelerator A100, cost 20")
    assert f"{record['result']['desired_replicas']} replicas wanted, 2 asked now (2 ready)" in text
    reason = record["reason"]
    assert f"reason: {reason['action']} {reason['signal']}" in text
    for heading in ("signals:", "thresholds:", "capacity:", "the mix:", "holds:", "in the engine's words:"):
        assert f"\n{heading}\n" in text, heading
    assert "llama-a100-1: kv cache 0.95, queue 12" in text  # the pods' signals
    assert "saturated at kv cache 0.8 or queue 5" in text  # the thresholds the engine used
    assert f"the model needs {steps['needed_replicas']} replicas" in text and f"goal {steps['goal']}" in text
    plan = {v["variant"]: v for v in steps["plan"]}
    mix = text.split("the mix:\n", 1)[1].split("\n\n", 1)[0]
    assert "* llama-a100" in mix and "  llama-h100" in mix
    row = next(line for line in mix.splitlines() if "* llama-a100" in line).split()
    assert row[2:4] == ["2", str(plan["llama-a100"]["target"])]  # current, target: the engine's plan
    assert reason["message"] in text  # the engine's own words, unchanged
    assert "capped at 12 by the variants' maxReplicas (the model's goal is 14)" in text  # both variants at max 6


def test_explain_json_prints_the_record_itself(records, capsys):
    assert main(["explain", "llm/llama-h100", "--records", str(records), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["variant"], record["ts"]) == ("llama-h100", 1015.0)


@pytest.mark.parametrize("variant,expected", [("llm/nope", "variants there: llm/llama-a100, llm/llama-h100"),
                                              ("llama-a100", "expected NAMESPACE/NAME")])
def test_explain_says_what_is_missing(records, capsys, variant, expected):
    assert main(["explain", variant, "--records", str(records)]) == 2
    assert expected in capsys.readouterr().err


def test_explain_without_a_readable_file_exits_2(tmp_path, capsys):
    assert main(["explain", "llm/x", "--records", str(tmp_path / "none.jsonl")]) == 2
    assert "cannot read --records" in capsys.readouterr().err


def test_help_shows_an_example_and_the_defaults():
    text = build_parser()._subparsers._group_actions[0].choices["explain"].format_help()  # type: ignore[union-attr]
    assert "kedascaler explain llm/llama-8b-a100 --records" in text and "(default: False)" in text
