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
