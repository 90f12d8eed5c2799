"""CRD-free variants: a KEDA ScaledObject alone describes the variant (WVA v0.9's annotations or kedascaler's trigger
metadata keys), typed into the same VariantAutoscaling as its CRD twin."""

from __future__ import annotations

from pathlib import Path

import yaml

from kedascaler.spec.inventory import build_inventory
from kedascaler.spec.variant import ParsedVariant, parse_scaled_object, parse_variant_autoscaling

ROOT = Path(__file__).resolve().parents[2]
CRD_FREE = ROOT / "examples" / "crd-free" / "scaledobjects.yaml"
NOT_OURS = ParsedVariant(None, ())


def scaled_object(name="llama-a100", *, annotations=None, metadata=None, trigger="external", **spec):
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": "llm", "annotations": annotations or {}},
            "spec": {"scaleTargetRef": {"name": name}, **spec,
                     "triggers": [{"type": "cpu", "metadata": {"value": "50"}},
                                  {"type": trigger, "metadata": {"scalerAddress": "kedascaler:9090",
                                                                 **(metadata or {})}}]}}


def twin(name="llama-a100", **spec):
    return {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": "llm"},
            "spec": {"scaleTargetRef": {"name": name}, **spec}}


def test_trigger_metadata_gives_the_same_variant_as_the_crd_twin():
    so = scaled_object(metadata={"modelID": "meta/llama", "accelerator": "A100", "acceleratorCount": "2",
                                 "variantCost": "35", "scalingMode": "hybrid", "sloClass": "premium",
                                 "idleWindowSeconds": "600"},
                       minReplicaCount=1, maxReplicaCount=6, trigger="external-push")
    parsed = parse_scaled_object(so, "test")
    assert parsed.problems == ()
    expected = parse_variant_autoscaling(twin(modelID="meta/llama", accelerator="A100", acceleratorCount=2,
                                              variantCost="35", minReplicas=1, maxReplicas=6,
                                              scalingMode="hybrid", sloClassRef={"name": "serviceclass",
                                                                                 "key": "premium"},
                                              scaleToZero={"idleWindowSeconds": 600}), "test")
    assert parsed.variant == expected.variant


def test_wva_v09_annotations_describe_the_variant_and_keda_defaults_bound_it():
    so = scaled_object(annotations={"llm-d.ai/managed": "true", "llm-d.ai/model-id": "meta/llama",
                                    "llm-d.ai/variant-cost": "40", "llm-d.ai/accelerator": "H100"})
    variant = parse_scaled_object(so, "test").variant
    assert variant is not None
    assert (variant.model_id, variant.spec.accelerator, variant.spec.cost) == ("meta/llama", "H100", 40.0)
    assert (variant.spec.min_replicas, variant.spec.max_replicas) == (0, 100)  # KEDA's minReplicaCount/maxReplicaCount
    assert variant.key.name == "llama-a100" and variant.spec.target_name == "llama-a100"


def test_the_trigger_wins_over_the_annotation_and_the_cost_map_fills_a_missing_cost():
    so = scaled_object(annotations={"llm-d.ai/managed": "true", "llm-d.ai/model-id": "old/name"},
                       metadata={"modelID": "meta/llama", "accelerator": "L40S", "acceleratorCount": "2"})
    variant = parse_scaled_object(so, "test", {"L40S": 12.0}).variant
    assert variant is not None and variant.model_id == "meta/llama" and variant.spec.cost == 24.0


def test_scaled_objects_that_are_not_crd_free_variants_are_left_alone():
    assert parse_scaled_object(scaled_object(), "test") == NOT_OURS  # no modelID, not managed
    named = scaled_object(metadata={"modelID": "m", "variantAutoscaling": "llama-a100"})  # the CRD way
    assert parse_scaled_object(named, "test") == NOT_OURS
    cpu_only = scaled_object(annotations={"llm-d.ai/managed": "false"}, trigger="cpu")
    assert parse_scaled_object(cpu_only, "test") == NOT_OURS


def test_problems_name_the_scaledobject_field_to_fix():
    so = scaled_object(annotations={"llm-d.ai/managed": "true"}, metadata={"acceleratorCount": "two"},
                       minReplicaCount=5, maxReplicaCount=2)
    parsed = parse_scaled_object(so, "test")
    assert parsed.variant is None
    fields = {p.field for p in parsed.problems}
    assert "spec.triggers[1].metadata.modelID (or annotation llm-d.ai/model-id)" in fields
    assert "spec.triggers[1].metadata.acceleratorCount" in fields and "spec.maxReplicaCount" in fields
    assert all(p.obj == "ScaledObject llm/llama-a100" for p in parsed.problems)


def test_inventory_joins_crd_free_variants_and_a_variantautoscaling_of_the_same_name_wins():
    crd_free = scaled_object("free", metadata={"modelID": "meta/llama", "accelerator": "A100"})
    shadowed = scaled_object("llama-a100", metadata={"modelID": "other"})
    va = twin(modelID="meta/llama", accelerator="H100")
    state = build_inventory([("a", va), ("b", crd_free), ("c", shadowed)])
    assert state.problems == ()
    assert sorted(v.key.name for v in state.variants) == ["free", "llama-a100"]
    assert {k.name for k in state.from_scaled_objects} == {"free"}
    assert {v.key.name: v.model_id for v in state.variants}["llama-a100"] == "meta/llama"


def test_the_crd_free_example_loads_as_the_two_variants_of_one_model():
    docs = [("example", d) for d in yaml.safe_load_all(CRD_FREE.read_text()) if d]
    state = build_inventory(docs)
    assert state.problems == ()
    assert {v.key.name: (v.spec.accelerator, v.spec.cost, v.scaling_mode, v.slo_class_ref)
            for v in state.variants} == {
        "llama-8b-h100": ("H100", 40.0, "hybrid", ("serviceclass", "premium")),
        "llama-8b-a100": ("A100", 20.0, "hybrid", ("serviceclass", "premium"))}
    assert {v.model_id for v in state.variants} == {"meta/llama-3.1-8b"}
    assert len(state.from_scaled_objects) == 2
