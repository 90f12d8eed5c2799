"""VariantAutoscaling and ConfigMap parsing: what a user writes, and the errors a user can act on."""

from __future__ import annotations

import yaml

from kedascaler.engine.types import SaturationConfig, VariantKey
from kedascaler.spec.config import parse_cost_configmap, parse_saturation_configmap
from kedascaler.spec.variant import parse_variant_autoscaling

VA = """
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata: {name: llama-8b-h100, namespace: llm}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llama-8b-h100}
  modelID: meta/llama-3.1-8b
  accelerator: H100
  acceleratorCount: 1
  variantCost: "40.5"
  minReplicas: 1
  maxReplicas: 8
  variantProfile:
    maxBatchSize: 256
    perfParms:
      decodeParms: {alpha: 7.0, beta: 0.035}
      prefillParms: {gamma: 15.4, delta: 0.00034}
"""


def va(**spec_changes):
    doc = yaml.safe_load(VA)
    for key, value in spec_changes.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


def test_a_full_variant_autoscaling_becomes_a_spec():
    parsed = parse_variant_autoscaling(va(), "va.yaml")
    assert parsed.problems == ()
    spec = parsed.variant.spec
    assert spec.key == VariantKey("llm", "llama-8b-h100")
    assert (spec.model_id, spec.accelerator, spec.cost) == ("meta/llama-3.1-8b", "H100", 40.5)
    assert (spec.min_replicas, spec.max_replicas, spec.target_name) == (1, 8, "llama-8b-h100")
    assert parsed.variant.profile.max_batch_size == 256
    assert parsed.variant.profile.perf.alpha == 7.0 and parsed.variant.profile.perf.delta == 0.00034


def test_missing_model_id_names_the_field():
    parsed = parse_variant_autoscaling(va(modelID=None), "va.yaml")
    assert parsed.variant is None
    assert [p.field for p in parsed.problems] == ["spec.modelID"]
    assert "required" in parsed.problems[0].message
    assert "va.yaml" in str(parsed.problems[0]) and "llm/llama-8b-h100" in str(parsed.problems[0])


def test_bad_numbers_are_reported_with_the_expected_form():
    parsed = parse_variant_autoscaling(va(minReplicas=-1, maxReplicas="many", variantCost="cheap"), "va.yaml")
    fields = {p.field: p.message for p in parsed.problems}
    assert "must be ≥ 0" in fields["spec.minReplicas"]
    assert "integer" in fields["spec.maxReplicas"]
    assert "number" in fields["spec.variantCost"]
    assert parsed.variant is None


def test_max_below_min_is_refused():
    parsed = parse_variant_autoscaling(va(minReplicas=3, maxReplicas=2), "va.yaml")
    assert [p.field for p in parsed.problems] == ["spec.maxReplicas"]


def test_seed_field_names_are_accepted_or_refused_with_the_new_name():
    doc = va(modelID=None, accelerator=None)
    doc["spec"]["modelName"] = "meta/llama-3.1-8b"
    doc["spec"]["acceleratorType"] = "A100"
    parsed = parse_variant_autoscaling(doc, "va.yaml")
    assert parsed.variant.spec.model_id == "meta/llama-3.1-8b" and parsed.variant.spec.accelerator == "A100"
    refused = parse_variant_autoscaling(va(serviceClass="Premium"), "va.yaml")
    assert refused.problems[0].field == "spec.serviceClass"
    assert "sloClassRef" in refused.problems[0].message


def test_cost_comes_from_the_unit_cost_configmap_when_the_va_has_none():
    parsed = parse_variant_autoscaling(va(variantCost=None, acceleratorCount=2), "va.yaml", {"H100": 30.0})
    assert parsed.variant.spec.cost == 60.0
    default = parse_variant_autoscaling(va(variantCost=None), "va.yaml", {})
    assert default.variant.spec.cost == 10.0


def test_saturation_configmap_default_and_per_model_override():
    doc = {
        "kind": "ConfigMap",
        "metadata": {"name": "saturation-scaling-config"},
        "data": {
            "default": "kvCacheThreshold: 0.75\nqueueLengthThreshold: 10\nkvSpareTrigger: 0.15\nqueueSpareTrigger: 4\n",
            "llama": "model_id: meta/llama-3.1-8b\nnamespace: llm\nqueueLengthThreshold: 20\n",
        },
    }
    settings, problems = parse_saturation_configmap(doc, "cm.yaml")
    assert problems == ()
    assert settings.default == SaturationConfig(0.75, 10, 0.15, 4)
    assert settings.for_model("llm", "meta/llama-3.1-8b") == SaturationConfig(0.75, 20, 0.15, 4)
    assert settings.for_model("other", "meta/llama-3.1-8b") == settings.default


def test_saturation_configmap_trigger_above_threshold_is_refused():
    doc = {"kind": "ConfigMap", "metadata": {"name": "saturation-scaling-config"},
           "data": {"default": "kvCacheThreshold: 0.5\nkvSpareTrigger: 0.6\n"}}
    settings, problems = parse_saturation_configmap(doc, "cm.yaml")
    assert settings.default == SaturationConfig()
    assert problems[0].field == "data.default.kvSpareTrigger"
    assert "below kvCacheThreshold" in problems[0].message


def test_cost_configmap_accepts_every_seed_form():
    forms = [
        {"costs": "H100: 40\nA100: 20\n"},
        {"accelerators": "- {name: H100, type: NVIDIA-H100, cost: 40}\n- {name: A100, cost: 20}\n"},
        {"H100": '{"device": "NVIDIA-H100-80GB-HBM3", "cost": "40.00"}', "A100": "20"},
    ]
    for data in forms:
        costs, problems = parse_cost_configmap({"metadata": {"name": "accelerator-unitcost"}, "data": data}, "cm")
        assert problems == ()
        assert costs == {"H100": 40.0, "A100": 20.0}
