"""The serviceclass ConfigMap: classes, priorities, per-model targets, and problems a user can act on."""

from __future__ import annotations

import yaml

from kedascaler.engine.sizing import SloTargets
from kedascaler.spec.serviceclass import DEFAULT_PRIORITY, model_targets, parse_serviceclass_configmap

CM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: serviceclass, namespace: kedascaler}
data:
  premium: |
    name: Premium
    priority: 1
    data:
      - model: meta/llama-3.1-8b
        slo-tpot: 24
        slo-ttft: 500
      - model: ibm/granite-13b
        slo-itl: 30
        slo-ttw: 800
  freemium: |
    name: Freemium
    priority: 10
    data:
      - model: meta/llama-3.1-8b
        slo-tpot: 100
        slo-ttft: 2000
"""


def parse(text: str):
    return parse_serviceclass_configmap(yaml.safe_load(text), "cm.yaml")


def test_classes_are_parsed_in_priority_order_with_both_key_spellings():
    classes, problems = parse(CM)
    assert problems == ()
    assert [c.name for c in classes.classes] == ["Premium", "Freemium"]
    premium = classes.by_key("premium")
    assert premium.priority == 1
    assert premium.slo_for("meta/llama-3.1-8b").itl_ms == 24 and premium.slo_for("meta/llama-3.1-8b").ttft_ms == 500
    granite = premium.slo_for("ibm/granite-13b")
    assert (granite.itl_ms, granite.ttft_ms) == (30, 800)


def test_a_variant_reference_resolves_to_its_targets_or_says_why_not():
    classes, _ = parse(CM)
    cls, slo, reason = classes.resolve(("serviceclass", "freemium"), "meta/llama-3.1-8b")
    assert cls.name == "Freemium" and slo.itl_ms == 100 and reason == ""
    assert "no such class" in classes.resolve(("serviceclass", "gold"), "meta/llama-3.1-8b")[2]
    assert "no targets for model" in classes.resolve(("serviceclass", "freemium"), "ibm/granite-13b")[2]
    assert "no spec.sloClassRef" in classes.resolve(None, "meta/llama-3.1-8b")[2]
    assert "no such service-class ConfigMap" in classes.resolve(("other", "premium"), "meta/llama-3.1-8b")[2]


def test_the_older_flat_forms_are_accepted():
    doc = {"metadata": {"name": "serviceclass"}, "data": {
        "standard": "{name: Standard, model: m, priority: 2, slo-itl: 50, slo-ttw: 1000}",
        "batch": "- {name: Batch, model: a, priority: 5, slo-itl: 200}\n- {model: b, slo-ttft: 9000}\n",
    }}
    classes, problems = parse_serviceclass_configmap(doc, "x")
    assert problems == ()
    standard = classes.by_key("standard")
    assert standard.priority == 2 and standard.slo_for("m").ttft_ms == 1000
    batch = classes.by_key("batch")
    assert batch.name == "Batch" and batch.priority == 5
    assert batch.slo_for("a").ttft_ms is None and batch.slo_for("b").itl_ms is None


def test_problems_name_the_key_and_field_and_the_rest_is_kept():
    doc = {"metadata": {"name": "serviceclass"}, "data": {
        "good": "{name: Good, priority: 1, data: [{model: m, slo-tpot: 20, slo-ttft: 300}]}",
        "bad-priority": "{name: X, priority: zero, data: [{model: m, slo-tpot: 20}]}",
        "bad-target": "{name: Y, priority: 2, data: [{model: m, slo-tpot: -5, slo-ttft: 100}, {slo-tpot: 3}]}",
        "both": "{name: Z, priority: 3, data: [{model: m, slo-tpot: 20, slo-itl: 25}]}",
        "broken": "{name: [",
        "no-data": "{name: W, priority: 4}",
    }}
    classes, problems = parse_serviceclass_configmap(doc, "x")
    text = "\n".join(str(p) for p in problems)
    assert "data.bad-priority.priority: expected an integer" in text
    assert "data.bad-target.data[0].slo-tpot: must be > 0" in text
    assert "data.bad-target.data[1].model: is required" in text
    assert "data.both.data[0].slo-itl: duplicates slo-tpot" in text
    assert "data.broken: is not valid YAML" in text
    assert "data.no-data.data: expected a list" in text
    assert classes.by_key("good").slo_for("m").itl_ms == 20
    assert classes.by_key("bad-priority").priority == DEFAULT_PRIORITY
    bad = classes.by_key("bad-target").slo_for("m")
    assert bad.itl_ms is None and bad.ttft_ms == 100  # the bad target is dropped, not the class


def test_a_models_targets_come_from_its_variants_references():
    classes, _ = parse(CM)
    model = "meta/llama-3.1-8b"
    assert model_targets(classes, [("serviceclass", "freemium")] * 2, model) == (SloTargets(100, 2000), 10, "")
    slo, priority, note = model_targets(classes, [("serviceclass", "freemium"), ("serviceclass", "premium")], model)
    assert (slo, priority) == (SloTargets(24, 500), 1) and "using 'Premium'" in note
    slo, priority, reason = model_targets(classes, [None, ("serviceclass", "gold")], model)
    assert slo is None and priority == DEFAULT_PRIORITY and "no such class" in reason
