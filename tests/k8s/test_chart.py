"""The Helm chart: renders with defaults, every object valid for Kubernetes 1.30, least-privilege RBAC, lint."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kedascaler.config import parse_cost_configmap, parse_saturation_configmap
from tests.support.chart_render import Renderer, TemplateError, leaf_keys, render_chart

CHART = Path(__file__).resolve().parents[2] / "charts" / "kedascaler"
K8S_VERSION = "1.30.0"
NOT_IN_CORE_SCHEMAS = {"ServiceMonitor"}  # prometheus-operator's CRD kind
VARIANTS = {
    "defaults": {},
    "everything-on": {"tls.enabled": True, "metrics.serviceMonitor.enabled": True, "watch.namespace": "llm",
                      "watch.labelSelector": "team=a", "grafanaDashboard.enabled": True},
}


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid_kubernetes(variant):
    objects, _ = render_chart(CHART, VARIANTS[variant])
    kinds = sorted(o["kind"] for _, o in objects)
    assert {"CustomResourceDefinition", "Deployment", "Service", "ServiceAccount", "ClusterRole", "Role",
            "ConfigMap"} <= set(kinds)
    for source, obj in objects:
        if obj["kind"] in NOT_IN_CORE_SCHEMAS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        try:
            validate(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{source}: {obj['kind']} {obj['metadata']['name']}: {exc}")


def test_crd_is_apiextensions_v1_with_status_and_printer_columns():
    objects, _ = render_chart(CHART)
    (crd,) = [o for _, o in objects if o["kind"] == "CustomResourceDefinition"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Model", "Accelerator", "Current", "Desired", "Active", "Metrics Ready", "Age"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["scaleTargetRef", "modelID"]
    assert spec["properties"]["minReplicas"]["default"] == 0
    assert spec["properties"]["acceleratorCount"]["default"] == 1
    assert spec["properties"]["variantCost"]["default"] == "10"


def test_rbac_has_no_wildcards_and_only_the_needed_writes():
    objects, _ = render_chart(CHART)
    rules = [r for _, o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"
        assert "resourceNames" not in rule or "*" not in rule["resourceNames"]
    writes = {(res, verb) for r in rules for res in r["resources"] for verb in r["verbs"]
              if verb not in ("get", "list", "watch")}
    assert writes == {("variantautoscalings/status", "patch"), ("variantautoscalings/status", "update"),
                      ("events", "create"), ("events", "patch"), ("leases", "create"), ("leases", "update")}


def test_deployment_is_hardened_and_probes_grpc_health():
    objects, _ = render_chart(CHART)
    (deploy,) = [o for _, o in objects if o["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["grpc"] == {"port": 9090}
    assert container["readinessProbe"]["grpc"] == {"port": 9090}
    assert {"requests", "limits"} <= set(container["resources"])
    assert "--kubernetes" in container["args"] and "--port=9090" in container["args"]
    assert not any(a.startswith("--tls") for a in container["args"])


def test_rendered_configmaps_parse_without_problems():
    objects, _ = render_chart(CHART)
    cms = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "ConfigMap"}
    settings, problems = parse_saturation_configmap(cms["saturation-scaling-config"], "chart")
    assert not problems and settings.default.kv_cache_threshold == 0.8
    costs, problems = parse_cost_configmap(cms["accelerator-unitcost"], "chart")
    assert not problems and costs["H100"] == 40.0
    assert isinstance(yaml.safe_load(cms["serviceclass"]["data"]["classes"]), list)


def test_chart_yaml_fields():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kedascaler" == CHART.name
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", chart["version"])
    assert chart.get("appVersion") and chart.get("description")


def test_every_values_key_is_used_and_every_used_key_exists():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    used: set[str] = set()
    for overrides in VARIANTS.values():
        _, renderer = render_chart(CHART, overrides)  # raises on a reference to a missing key
        used |= renderer.used
    unused = {k for k in leaf_keys(values) if k not in used and not any(u.startswith(k + ".") for u in used)}
    assert not unused, f"values.yaml keys no template uses: {sorted(unused)}"


def test_renderer_refuses_what_it_does_not_know():
    r = Renderer({"a": {"b": 1}})
    assert r.render("x: {{ .Values.a.b }}") == "x: 1"
    assert r.render("a\n{{- if .Values.a.b }}\nyes\n{{- end }}\n") == "a\nyes\n"
    with pytest.raises(TemplateError):
        r.render("{{ .Values.a.c }}")
    with pytest.raises(TemplateError):
        r.render("{{ toYaml .Values.a }}")
    with pytest.raises(TemplateError):
        r.render("{{- if .Values.a.b }}")
