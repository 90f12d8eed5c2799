"""examples/kubernetes: valid Kubernetes objects, VAs valid against the CRD's own schema, ScaledObjects wired right."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kedascaler.config import parse_variant_autoscaling

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "kubernetes"
CRD = ROOT / "charts" / "kedascaler" / "crds" / "variantautoscalings.yaml"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
SCALER_ADDRESS = "kedascaler.kedascaler-system.svc.cluster.local:9090"


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str) -> list[dict]:
    return [d for _, d in documents() if d["kind"] == kind]


def va_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def test_examples_cover_the_two_variant_model():
    kinds = sorted(d["kind"] for _, d in documents())
    assert kinds.count("Deployment") == 2 and kinds.count("VariantAutoscaling") == 2
    assert kinds.count("ScaledObject") == 2 and "TriggerAuthentication" in kinds


@pytest.mark.parametrize("source,doc", [(s, d) for s, d in documents() if d["kind"] not in KEDA_KINDS
                                        and d["kind"] != "VariantAutoscaling"],
                         ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_kubernetes_objects_are_valid(source, doc):
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.parametrize("doc", of_kind("VariantAutoscaling"), ids=lambda d: d["metadata"]["name"])
def test_variantautoscalings_match_the_crd_schema_and_parse(doc):
    jsonschema.Draft4Validator(va_schema()).validate(doc)
    parsed = parse_variant_autoscaling(doc, "example")
    assert parsed.problems == () and parsed.spec is not None
    targets = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind("Deployment")}
    assert (doc["metadata"]["namespace"], doc["spec"]["scaleTargetRef"]["name"]) in targets


def test_crd_schema_rejects_bad_variantautoscalings():
    validator = jsonschema.Draft4Validator(va_schema())
    good = of_kind("VariantAutoscaling")[0]
    no_model = {**good, "spec": {k: v for k, v in good["spec"].items() if k != "modelID"}}
    negative = {**good, "spec": {**good["spec"], "minReplicas": -1}}
    bad_cost = {**good, "spec": {**good["spec"], "variantCost": "ten"}}
    for bad in (no_model, negative, bad_cost):
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
