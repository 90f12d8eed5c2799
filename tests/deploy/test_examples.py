"""examples/kubernetes and examples/local: valid Kubernetes objects, VAs valid against the CRD's own schema (and
nothing in them that the API server would prune), ScaledObjects wired right, service classes that the project's
own loaders read without problems and that every VA's sloClassRef resolves to targets."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kedascaler.engine.sizing import model_mode
from kedascaler.sources.files import FileInventory, read_documents
from kedascaler.spec.inventory import build_inventory
from kedascaler.spec.serviceclass import model_targets, parse_serviceclass_configmap
from kedascaler.spec.variant import parse_variant_autoscaling
from tests.support.kube import pruning

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "kubernetes"
LOCAL = ROOT / "examples" / "local"
CRD = ROOT / "charts" / "kedascaler" / "crds" / "variantautoscalings.yaml"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
SCALER_ADDRESS = "kedascaler.kedascaler-system.svc.cluster.local:9090"


def documents(folder: Path = EXAMPLES) -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str, folder: Path = EXAMPLES) -> list[dict]:
    return [d for _, d in documents(folder) if d["kind"] == kind]


def va_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def test_examples_cover_the_two_variant_model():
    kinds = sorted(d["kind"] for _, d in documents())
    assert kinds.count("Deployment") == 2 and kinds.count("VariantAutoscaling") == 2
    assert kinds.count("ScaledObject") == 2 and "TriggerAuthentication" in kinds
    assert [d["metadata"]["name"] for d in of_kind("ConfigMap")] == ["serviceclass"]


@pytest.mark.parametrize("source,doc", [(s, d) for s, d in documents() if d["kind"] not in KEDA_KINDS
                                        and d["kind"] != "VariantAutoscaling"],
                         ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_kubernetes_objects_are_valid(source, doc):
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.parametrize("doc", of_kind("VariantAutoscaling"), ids=lambda d: d["metadata"]["name"])
def test_variantautoscalings_match_the_crd_schema_and_parse(doc):
    jsonschema.Draft4Validator(pruning(va_schema())).validate(doc)
    parsed = parse_variant_autoscaling(doc, "example")
    assert parsed.problems == () and parsed.variant is not None
    targets = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind("Deployment")}
    assert (doc["metadata"]["namespace"], doc["spec"]["scaleTargetRef"]["name"]) in targets


def test_crd_schema_rejects_bad_variantautoscalings():
    validator = jsonschema.Draft4Validator(va_schema())
    good = of_kind("VariantAutoscaling")[0]
    no_model = {**good, "spec": {k: v for k, v in good["spec"].items() if k != "modelID"}}
    negative = {**good, "spec": {**good["spec"], "minReplicas": -1}}
    bad_cost = {**good, "spec": {**good["spec"], "variantCost": "ten"}}
    bad_mode = {**good, "spec": {**good["spec"], "scalingMode": "Hybrid"}}
    no_key = {**good, "spec": {**good["spec"], "sloClassRef": {"name": "serviceclass"}}}
    profile = good["spec"]["variantProfile"]
    not_bool = {**good, "spec": {**good["spec"], "variantProfile": {**profile, "preferEstimated": "yes"}}}
    no_beta = {**good, "spec": {**good["spec"], "variantProfile": {**profile, "perfParms": {
        **profile["perfParms"], "decodeParms": {"alpha": 7.0}}}}}
    text_alpha = {**good, "spec": {**good["spec"], "variantProfile": {**profile, "perfParms": {
        **profile["perfParms"], "decodeParms": {"alpha": "7 ms", "beta": 0.03}}}}}
    for bad in (no_model, negative, bad_cost, bad_mode, no_key, not_bool, no_beta, text_alpha):
        assert list(validator.iter_errors(bad)), bad["spec"]


@pytest.mark.parametrize("doc", of_kind("ScaledObject"), ids=lambda d: d["metadata"]["name"])
def test_scaledobjects_name_existing_variantautoscalings(doc):
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    vas = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in of_kind("VariantAutoscaling")}
    (trigger,) = doc["spec"]["triggers"]
    assert trigger["type"] in ("external", "external-push")
    meta = trigger["metadata"]
    assert meta["scalerAddress"] == SCALER_ADDRESS
    va = vas[(doc["metadata"]["namespace"], meta["variantAutoscaling"])]
    assert doc["spec"]["scaleTargetRef"]["name"] == va["spec"]["scaleTargetRef"]["name"]
    assert doc["spec"]["maxReplicaCount"] == va["spec"]["maxReplicas"]


def test_both_trigger_types_are_shown():
    types = sorted(so["spec"]["triggers"][0]["type"] for so in of_kind("ScaledObject"))
    assert types == ["external", "external-push"]


def test_trigger_authentication_provides_the_mtls_parameters():
    (auth,) = of_kind("TriggerAuthentication")
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert params == {"caCert", "tlsClientCert", "tlsClientKey"}


# --- SLO-driven sizing: scalingMode, sloClassRef and the serviceclass ConfigMap ---------------------------------

@pytest.mark.parametrize("folder", [EXAMPLES, LOCAL], ids=["kubernetes", "local"])
def test_examples_use_hybrid_sizing_with_a_service_class_that_resolves(folder):
    docs = documents(folder)
    state = build_inventory(docs)  # the project's own loader (file and Kubernetes inventories share it)
    assert not state.problems, state.problems
    assert len(state.variants) == 2 and state.service_classes is not None
    (model,) = {v.model_id for v in state.variants}
    modes = [v.scaling_mode for v in state.variants]
    assert model_mode(modes, "saturation")[0] == "hybrid"  # the variants agree, whatever the global mode
    refs = [v.slo_class_ref for v in state.variants]
    assert set(refs) == {("serviceclass", "premium")}
    targets, priority, why = model_targets(state.service_classes, refs, model)
    assert targets is not None, why
    assert (targets.itl_ms, targets.ttft_ms, priority) == (24.0, 500.0, 1)
    for v in state.variants:
        assert v.profile.perf is not None and v.profile.max_batch_size


@pytest.mark.parametrize("folder", [EXAMPLES, LOCAL], ids=["kubernetes", "local"])
def test_serviceclass_configmap_is_valid_and_parses_without_problems(folder):
    (cm,) = [d for d in of_kind("ConfigMap", folder) if d["metadata"]["name"] == "serviceclass"]
    kubernetes_validate.validate(cm, "1.30.0", strict=True)
    assert cm["metadata"]["namespace"] == "kedascaler-system"  # where the scaler reads its ConfigMaps
    classes, problems = parse_serviceclass_configmap(cm, "example")
    assert problems == ()
    assert [c.priority for c in classes.classes] == sorted(c.priority for c in classes.classes)
    for cls in classes.classes:
        assert cls.models and all(m.itl_ms and m.ttft_ms for m in cls.models), cls


@pytest.mark.parametrize("doc", of_kind("VariantAutoscaling", LOCAL), ids=lambda d: d["metadata"]["name"])
def test_local_variantautoscalings_match_the_crd_schema(doc):
    jsonschema.Draft4Validator(pruning(va_schema())).validate(doc)


def test_local_folder_loads_without_problems():
    docs, problems = read_documents(LOCAL)
    assert problems == []
    state = FileInventory(LOCAL).current()  # what `kedascaler serve --inventory examples/local` reads
    assert state.problems == () and len(state.variants) == 2
    assert len(state.static_targets) == 2 and all(state.static_targets.values())


def test_local_folder_keeps_its_service_classes():
    from kedascaler.spec.serviceclass import model_targets

    inventory = FileInventory(LOCAL)  # `serve --inventory examples/local` sizes models by these
    state = inventory.current()
    refs = [v.slo_class_ref for v in state.variants]
    slo, priority, _ = model_targets(state.service_classes, refs, state.variants[0].model_id)
    assert slo is not None and (slo.itl_ms, slo.ttft_ms, priority) == (24.0, 500.0, 1)


# --- CRD-free: examples/crd-free ---------------------------------------------------------------------------------

def test_crd_free_scaledobjects_scale_the_example_deployments_through_kedascaler():
    docs = documents(ROOT / "examples" / "crd-free")
    assert [d["kind"] for _, d in docs] == ["ScaledObject", "ScaledObject"]
    deployments = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind("Deployment")}
    state = build_inventory(docs)
    assert state.problems == () and state.from_scaled_objects == {v.key for v in state.variants}
    for _, so in docs:
        assert (so["metadata"]["namespace"], so["spec"]["scaleTargetRef"]["name"]) in deployments
        (trigger,) = so["spec"]["triggers"]
        assert trigger["metadata"]["scalerAddress"] == SCALER_ADDRESS
        assert "variantAutoscaling" not in trigger["metadata"]
    twins = {v.key: v for v in build_inventory(documents()).variants}  # the CRD examples of the same variants
    for variant in state.variants:
        twin = twins[variant.key]
        assert (variant.model_id, variant.spec.accelerator, variant.spec.min_replicas, variant.spec.max_replicas,
                variant.scaling_mode, variant.slo_class_ref) == (
            twin.model_id, twin.spec.accelerator, twin.spec.min_replicas, twin.spec.max_replicas,
            twin.scaling_mode, twin.slo_class_ref)
