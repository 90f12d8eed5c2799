"""The file-backed inventory: a folder of kubectl-style YAML, invalid documents reported, hot reload."""

from __future__ import annotations

import os
import time

from kedascaler.engine.types import VariantKey
from kedascaler.sources.files import FileInventory

GOOD = """
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata: {name: llama-h100, namespace: llm}
spec:
  scaleTargetRef: {kind: Deployment, name: llama-h100}
  modelID: meta/llama-3.1-8b
  accelerator: H100
---
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata: {name: llama-a100, namespace: llm}
spec:
  scaleTargetRef: {kind: Deployment, name: llama-a100}
  modelID: meta/llama-3.1-8b
  accelerator: A100
"""

BAD = """
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata: {name: broken, namespace: llm}
spec:
  scaleTargetRef: {kind: Deployment, name: broken}
  modelID: meta/llama-3.1-8b
  maxReplicas: -2
"""

COSTS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: accelerator-unitcost}
data:
  costs: |
    H100: 40
    A100: 20
"""


def test_valid_documents_load_and_invalid_ones_are_reported_without_stopping_them(tmp_path):
    (tmp_path / "variants.yaml").write_text(GOOD)
    (tmp_path / "broken.yaml").write_text(BAD)
    (tmp_path / "costs.yml").write_text(COSTS)
    (tmp_path / "junk.yaml").write_text("key: [unclosed\n")
    state = FileInventory(tmp_path).current()
    assert {v.key for v in state.variants} == {VariantKey("llm", "llama-h100"), VariantKey("llm", "llama-a100")}
    assert {v.key.name: v.cost for v in state.specs} == {"llama-h100": 40.0, "llama-a100": 20.0}
    reported = {(os.path.basename(p.source), p.field) for p in state.problems}
    assert ("broken.yaml", "spec.maxReplicas") in reported
    assert ("junk.yaml", "-") in reported


def test_editing_a_file_reloads_it(tmp_path):
    (tmp_path / "variants.yaml").write_text(GOOD)
    inventory = FileInventory(tmp_path)
    assert len(inventory.current().variants) == 2
    (tmp_path / "variants.yaml").write_text(GOOD.split("---")[0])
    later = time.time() + 5
    os.utime(tmp_path / "variants.yaml", (later, later))
    assert [v.key.name for v in inventory.current().variants] == ["llama-h100"]


def test_duplicate_names_keep_the_first(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    state = FileInventory(tmp_path).current()
    assert len(state.variants) == 2
    assert sum("defined twice" in p.message for p in state.problems) == 2


SATURATION = """
apiVersion: v1
kind: ConfigMap
metadata: {name: saturation-scaling-config}
data:
  default: |
    kvCacheThreshold: 0.65
    queueLengthThreshold: 7
"""


def _touch_later(path, seconds: float = 5) -> None:
    later = time.time() + seconds
    os.utime(path, (later, later))


def test_a_file_that_stops_parsing_keeps_its_last_good_documents_and_says_where(tmp_path):
    (tmp_path / "variants.yaml").write_text(GOOD)
    (tmp_path / "other.yaml").write_text(BAD.replace("broken", "other").replace("maxReplicas: -2", "maxReplicas: 2"))
    inventory = FileInventory(tmp_path)
    assert len(inventory.current().variants) == 3
    (tmp_path / "variants.yaml").write_text(GOOD.replace("modelID: meta/llama-3.1-8b\n  accelerator: A100",
                                                         "modelID: [unclosed\n  accelerator: A100"))
    _touch_later(tmp_path / "variants.yaml")
    state = inventory.current()
    assert {v.key.name for v in state.variants} == {"llama-h100", "llama-a100", "other"}  # nothing dropped
    (problem,) = [p for p in state.problems if p.source.endswith("variants.yaml")]
    assert "line 16, column" in problem.message, problem.message
    assert "keeping the last good version" in problem.message
    # fixed: the new contents are used, the problem goes away
    (tmp_path / "variants.yaml").write_text(GOOD.split("---")[0])
    _touch_later(tmp_path / "variants.yaml", 10)
    state = inventory.current()
    assert {v.key.name for v in state.variants} == {"llama-h100", "other"} and not state.problems


def test_a_broken_file_on_first_read_says_nothing_from_it_is_used(tmp_path):
    (tmp_path / "variants.yaml").write_text("a: [unclosed\n")
    state = FileInventory(tmp_path).current()
    (problem,) = state.problems
    assert "line 2, column 1" in problem.message and "nothing from this file is used" in problem.message


def test_a_configmap_that_becomes_invalid_keeps_its_last_good_version(tmp_path):
    (tmp_path / "variants.yaml").write_text(GOOD)
    (tmp_path / "costs.yaml").write_text(COSTS)
    (tmp_path / "saturation.yaml").write_text(SATURATION)
    inventory = FileInventory(tmp_path)
    state = inventory.current()
    assert state.saturation.default.kv_cache_threshold == 0.65 and {s.cost for s in state.specs} == {40.0, 20.0}
    (tmp_path / "saturation.yaml").write_text(SATURATION.replace("0.65", "lots"))
    (tmp_path / "costs.yaml").write_text(COSTS.replace("H100: 40", "H100: forty"))
    _touch_later(tmp_path / "saturation.yaml")
    _touch_later(tmp_path / "costs.yaml")
    state = inventory.current()
    assert state.saturation.default.kv_cache_threshold == 0.65  # not the built-in default
    assert state.saturation.default.queue_length_threshold == 7
    assert {v.key.name: v.cost for v in state.specs} == {"llama-h100": 40.0, "llama-a100": 20.0}
    sources = {os.path.basename(p.source) for p in state.problems}
    assert sources == {"saturation.yaml", "costs.yaml"}
    assert all("keeping the last good version" in p.message for p in state.problems)


def test_a_file_that_makes_the_parser_raise_anything_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "variants.yaml").write_text(GOOD)
    (tmp_path / "deep.yaml").write_text("[" * 100_000)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    state = FileInventory(tmp_path).current()
    assert len(state.variants) == 2
    assert {os.path.basename(p.source) for p in state.problems} == {"deep.yaml", "binary.yaml"}
