"""The Helm chart as real Helm renders it (Helm v4's engine, `tests/support/helm.py`): lint clean over a matrix of
values, every object valid for Kubernetes 1.30, least-privilege RBAC, every values key used and every reference
to one defined."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kedascaler.spec.config import parse_cost_configmap, parse_saturation_configmap
from kedascaler.spec.serviceclass import parse_serviceclass_configmap
from tests.support.helm import leaf_keys, lint_chart, render_chart
from tests.support.kube import pruning

CHART = Path(__file__).resolve().parents[2] / "charts" / "kedascaler"
K8S_VERSION = "1.30.0"
NOT_IN_CORE_SCHEMAS = {"ServiceMonitor"}  # prometheus-operator's CRD kind
# The values matrix: each entry is `helm install --set` of its keys.
VARIANTS = {
    "defaults": {},
    "tls": {"tls.enabled": True, "tls.secretName": "my-tls"},
    "one-namespace": {"watch.namespace": "llm", "watch.labelSelector": "team=a"},
    "scale-to-zero": {"scaleToZero.activationPort": 8081, "scaleToZero.idleWindowSeconds": 120},
    "push-only": {"scaleToZero.activationPort": 8081, "scaleToZero.gatewayQueue": False},
    "always-warm": {"scaleToZero.enabled": False},
    "dashboard": {"grafanaDashboard.enabled": True, "metrics.serviceMonitor.enabled": True},
    "replicas": {"replicaCount": 3},
    "crd-free": {"scaledObjects.enabled": True},
    "one-replica": {"replicaCount": 1},
    "network-policy": {"networkPolicy.enabled": True},
    "spread-required": {"podAntiAffinity": "required"},
    "bare": {"podAntiAffinity": "none", "podDisruptionBudget.enabled": False, "shutdown.preStopSleepSeconds": 0},
    "everything-on": {"tls.enabled": True, "metrics.serviceMonitor.enabled": True, "watch.namespace": "llm",
                      "watch.labelSelector": "team=a", "grafanaDashboard.enabled": True,
                      "scaleToZero.activationPort": 8081, "scaledObjects.enabled": True, "replicaCount": 3,
                      "networkPolicy.enabled": True,
                      "networkPolicy.extraIngress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                                                      "ports": [{"port": 9091}]}],
                      "networkPolicy.extraEgress": [{"to": [{"ipBlock": {"cidr": "203.0.113.7/32"}}],
                                                     "ports": [{"port": 443}]}]},
}
# Keys whose values are a choice or a list: the value the "every key changes the chart" test sets instead.
ALTERNATIVES = {"podAntiAffinity": "required", "networkPolicy.apiServerCIDRs": ["10.96.0.1/32"],
                "networkPolicy.apiServerPorts": [8443], "networkPolicy.extraIngress": [],
                "networkPolicy.extraEgress": []}


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def rendered(variant: str = "defaults") -> list[dict]:
    objects, _ = render_chart(CHART, VARIANTS[variant])
    return [o for _, o in objects]


def container_of(objects: list[dict]) -> dict:
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_reports_nothing_but_the_icon(variant):
    report = lint_chart(CHART, VARIANTS[variant])
    assert report["errors"] == [], report
    assert [m["error"] for m in report["messages"]] == ["icon is recommended"], report


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid_kubernetes(variant):
    objects, _ = render_chart(CHART, VARIANTS[variant])
    kinds = sorted(o["kind"] for _, o in objects)
    assert {"CustomResourceDefinition", "Deployment", "Service", "ServiceAccount", "Role", "ConfigMap"} <= set(kinds)
    assert ("ClusterRole" in kinds) is not bool(VARIANTS[variant].get("watch.namespace"))
    for source, obj in objects:
        if obj["kind"] in NOT_IN_CORE_SCHEMAS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        try:
            validate(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{source}: {obj['kind']} {obj['metadata']['name']}: {exc}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_rendered_args_start_the_scaler(variant):
    """The container's args parse as `kedascaler serve` flags: the pod would start with these values."""
    from kedascaler.cli.main import build_parser

    container = container_of(rendered(variant))
    args = build_parser().parse_args(["serve", *container["args"]])
    overrides = VARIANTS[variant]
    assert args.kubernetes and args.port == 9090
    assert args.health_port == 9091 and args.shutdown_grace == 10
    assert args.namespace == (overrides.get("watch.namespace") or None)
    assert args.no_scale_to_zero is (overrides.get("scaleToZero.enabled") is False)
    if not args.no_scale_to_zero:
        assert args.idle_window == overrides.get("scaleToZero.idleWindowSeconds", 300)
    assert args.activation_port == overrides.get("scaleToZero.activationPort")
    assert args.gateway_queue is (not args.no_scale_to_zero and overrides.get("scaleToZero.gatewayQueue", True))
    assert bool(args.tls_cert) is bool(overrides.get("tls.enabled"))
    assert args.scaledobjects is bool(overrides.get("scaledObjects.enabled"))


def test_several_replicas_and_the_activation_port_reach_the_pods_and_the_service():
    objects = rendered("everything-on")
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deploy["spec"]["replicas"] == 3
    ports = {p["name"]: p["containerPort"] for p in container_of(objects)["ports"]}
    assert ports == {"grpc": 9090, "metrics": 8080, "health": 9091, "activation": 8081}
    (grpc,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "kedascaler"]
    assert grpc["spec"]["clusterIP"] == "None"  # headless: a gateway posts to every replica
    assert {p["name"]: p["port"] for p in grpc["spec"]["ports"]} == {"grpc": 9090, "activation": 8081}
    (default_grpc,) = [o for o in rendered() if o["kind"] == "Service" and o["metadata"]["name"] == "kedascaler"]
    assert [p["name"] for p in default_grpc["spec"]["ports"]] == ["grpc"]


def test_tls_mounts_the_secret_it_names():
    objects = rendered("tls")
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "my-tls"
    assert "--tls-client-ca=/etc/kedascaler/tls/ca.crt" in container_of(objects)["args"]


def test_crd_is_apiextensions_v1_with_status_and_printer_columns():
    objects, _ = render_chart(CHART)
    (crd,) = [o for _, o in objects if o["kind"] == "CustomResourceDefinition"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Model", "Accelerator", "Current", "Desired", "Mode", "Reason", "Age"]
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")]
    assert wide == ["Active", "Metrics Ready"]  # kubectl get va -o wide
    assert crd["spec"]["names"]["shortNames"] == ["va"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:  # every column reads a field the CRD declares
        path = re.sub(r"\[\?\(.*?\)\]", "", column["jsonPath"]).split(".")[1:]
        if path[0] == "status":
            node = {"properties": status}
            for part in path[1:]:
                node = node["items"] if "items" in node else node
                node = node["properties"][part]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["scaleTargetRef", "modelID"]
    assert spec["properties"]["minReplicas"]["default"] == 0
    assert spec["properties"]["acceleratorCount"]["default"] == 1
    assert spec["properties"]["variantCost"]["default"] == "10"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rbac_has_no_wildcards_and_only_the_needed_writes(variant):
    objects, _ = render_chart(CHART, VARIANTS[variant])
    rules = [r for _, o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"
        assert "resourceNames" not in rule or "*" not in rule["resourceNames"]
    writes = {(res, verb) for r in rules for res in r["resources"] for verb in r["verbs"]
              if verb not in ("get", "list", "watch")}
    assert writes == {("variantautoscalings/status", "patch"), ("variantautoscalings/status", "update"),
                      ("events", "create"), ("events", "patch"), ("leases", "create"), ("leases", "update"),
                      ("pods", "patch")}  # pod-deletion-cost on the pods of variants scaling down


def test_pods_are_read_only_and_the_flag_is_passed_when_pod_deletion_cost_is_off():
    objects, _ = render_chart(CHART, {"podDeletionCost": {"enabled": False}})
    rules = [r for _, o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]
    assert not any("pods" in r["resources"] and "patch" in r["verbs"] for r in rules)
    (deploy,) = [o for _, o in objects if o["kind"] == "Deployment"]
    assert "--no-pod-deletion-cost" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]


def test_scaledobjects_are_read_only_when_crd_free_variants_are_on():
    def keda_rules(variant):
        return [r for o in rendered(variant) if o["kind"] == "ClusterRole" for r in o["rules"]
                if "keda.sh" in r["apiGroups"]]

    assert keda_rules("defaults") == []
    assert keda_rules("crd-free") == [{"apiGroups": ["keda.sh"], "resources": ["scaledobjects"],
                                       "verbs": ["get", "list", "watch"]}]


def test_deployment_is_hardened_and_probes_grpc_health():
    objects, _ = render_chart(CHART)
    (deploy,) = [o for _, o in objects if o["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # the plaintext health port (--health-port), so the probes work with tls.enabled too
    assert container["startupProbe"]["grpc"] == {"port": 9091, "service": "liveness"}
    assert container["livenessProbe"]["grpc"] == {"port": 9091, "service": "liveness"}
    assert container["readinessProbe"]["grpc"] == {"port": 9091}  # service "": ready once the inventory synced
    assert "--health-port=9091" in container["args"]
    assert {"requests", "limits"} <= set(container["resources"])
    assert "--kubernetes" in container["args"] and "--port=9090" in container["args"]
    assert not any(a.startswith("--tls") for a in container["args"])


@pytest.mark.parametrize("mode", ["capacity", "saturation", "model", "hybrid"])
def test_scaling_mode_value_becomes_the_serve_flag(mode):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["scalingMode"] == "capacity"  # the default, as serve's
    objects, _ = render_chart(CHART, {"scalingMode": mode})
    (deploy,) = [o for _, o in objects if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert [a for a in container["args"] if a.startswith("--scaling-mode")] == [f"--scaling-mode={mode}"]
    # the flag exists and takes that value (argparse choices): the container would start
    from kedascaler.cli.main import build_parser

    args = build_parser().parse_args(["serve", *container["args"]])
    assert args.scaling_mode == mode


def test_rendered_configmaps_parse_without_problems():
    objects, _ = render_chart(CHART)
    cms = {o["metadata"]["name"]: o for _, o in objects if o["kind"] == "ConfigMap"}
    settings, problems = parse_saturation_configmap(cms["saturation-scaling-config"], "chart")
    assert not problems and settings.default.kv_cache_threshold == 0.8
    costs, problems = parse_cost_configmap(cms["accelerator-unitcost"], "chart")
    assert not problems and costs["H100"] == 40.0
    classes, problems = parse_serviceclass_configmap(cms["serviceclass"], "chart")
    assert not problems, problems
    assert [c.key for c in classes.classes] == ["premium", "standard", "freemium"]
    premium = classes.by_key("premium").slo_for("meta/llama-3.1-8b")
    assert (premium.itl_ms, premium.ttft_ms) == (24.0, 500.0)


def test_chart_yaml_fields():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kedascaler" == CHART.name
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", chart["version"])
    assert chart.get("appVersion") and chart.get("description")


_REFERENCE = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def test_every_values_reference_in_a_template_is_a_values_key():
    """Helm renders a missing key as nothing: a misspelt reference must fail here instead."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defined = leaf_keys(values) | {k for k in _prefixes(leaf_keys(values))}
    for path in sorted((CHART / "templates").glob("*")):
        for ref in _REFERENCE.findall(path.read_text()):
            assert ref[1:] in defined, f"{path.name}: .Values{ref} is not a key of values.yaml"


def _prefixes(keys: set[str]) -> set[str]:
    return {".".join(k.split(".")[:i]) for k in keys for i in range(1, k.count(".") + 1)}


def test_every_values_key_changes_what_helm_renders():
    """Each leaf of values.yaml, changed, changes the rendered chart (with every optional part switched on):
    no key is dead."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    base_overrides = {**VARIANTS["everything-on"], "scaleToZero.enabled": True}
    base, _ = render_chart(CHART, base_overrides)
    for key in sorted(leaf_keys(values)):
        node = values
        for part in key.split("."):
            node = node[part]
        if key in ALTERNATIVES:
            changed = ALTERNATIVES[key]
        elif isinstance(node, bool):
            changed = not base_overrides.get(key, node)
        elif isinstance(node, (int, float)):
            changed = base_overrides.get(key, node) + 7
        else:
            changed = "changed-value" if "\n" not in str(node) else str(node) + "x: 1\n"
        other, _ = render_chart(CHART, {**base_overrides, key: changed})
        assert other != base, f"values key {key!r} does not change what the chart renders"


# --- the status kedascaler writes, against the CRD's status schema -------------------------------------------

def crd_schema() -> dict:
    objects, _ = render_chart(CHART)
    (crd,) = [o for _, o in objects if o["kind"] == "CustomResourceDefinition"]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def status_validator():
    import jsonschema

    return jsonschema.Draft4Validator(pruning(crd_schema()["properties"]["status"]),
                                      format_checker=jsonschema.FormatChecker())


def example_inventory():
    from kedascaler.spec.inventory import build_inventory

    root = CHART.parents[1] / "examples" / "kubernetes"
    docs = [(p.name, d) for p in sorted(root.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    state = build_inventory(docs)
    assert not state.problems, state.problems
    return state


def planned_statuses(*, classes: bool = True, usage: bool = True, mode: str | None = None, cycles: int = 30):
    """Statuses for the example VAs after `cycles` cycles of SloPlanner on synthetic pod usage (a decode and a
    prefill line with noise, so the fits are real), with the decision's predicted latencies from the plan."""
    import dataclasses
    import json
    import math

    from kedascaler.actuate.status import status_for
    from kedascaler.engine.types import Decision, ModelSnapshot, PodMetrics, Reason, VariantState
    from kedascaler.loop.planner import PlannerSettings, PlannerState, plan_cycle
    from kedascaler.sources.base import PodUsage

    state = example_inventory()
    autoscalings = {v.key: v for v in state.variants}
    if mode is not None:
        autoscalings = {k: dataclasses.replace(v, scaling_mode=mode) for k, v in autoscalings.items()}
    variants = tuple(VariantState(s, 1, 1, (PodMetrics(f"{s.key.name}-0", 0.3, 0.0, 8.0),)) for s in state.specs)
    (model,) = {s.model_id for s in state.variants}
    snapshot = ModelSnapshot(variants[0].spec.key.namespace, model, variants, taken_at=0.0)
    settings, planner = PlannerSettings("saturation"), PlannerState()
    plans = {}
    for cycle in range(cycles):
        now = 15.0 * (cycle + 1)
        pods = {}
        for i, v in enumerate(variants):
            batch = 2.0 + (cycle * 7 + i * 3) % 40
            prompt = 100.0 + (cycle * 37) % 900
            noise = 1.0 + 0.01 * math.sin(cycle + i)
            pods[v.spec.key] = [PodUsage(
                15.0, completed_rate=6.0, prompt_tokens_rate=6.0 * 230, output_tokens_rate=6.0 * 200,
                backlog_growth_rate=0.0, mean_running=batch, itl_ms=(8.0 + 0.05 * batch) * noise,
                prefill_ms=(15.0 + 0.01 * prompt) * noise, prompt_tokens_mean=prompt, ttft_ms=30.0)]
        plans, planner = plan_cycle(planner, settings, [snapshot], pods if usage else {}, autoscalings,
                                    state.service_classes if classes else None, now)
    plan = plans[(snapshot.namespace, model)]
    statuses = []
    for v in variants:
        sized = {s.key: s for s in (plan.sizing.variants if plan.model_based else ())}.get(v.spec.key)
        d = Decision(v.spec.key, model, sized.replicas if sized else 1, True,
                     Reason("hold", "slo_capacity" if sized else "avg_spare_kv", 12.0, 20.0, "m"),
                     current_replicas=1, ready_replicas=1, decided_at=now,
                     predicted_itl_ms=sized.itl_ms if sized else None,
                     predicted_ttft_ms=sized.ttft_ms if sized else None)
        status = status_for(d, plan=plan, params=planner.parameters.get(v.spec.key))
        for cond in status["conditions"]:
            cond["lastTransitionTime"] = "2026-01-01T00:00:00Z"
        json.dumps(status, allow_nan=False)  # what the API server gets: plain JSON, no NaN
        statuses.append(status)
    return plan, statuses


def sizing_condition(status: dict) -> dict:
    (cond,) = [c for c in status["conditions"] if c["type"] == "ModelBasedSizing"]
    return cond


def test_a_model_based_status_matches_the_crd_status_schema():
    plan, statuses = planned_statuses()
    assert plan.model_based, plan.why_not
    validator = status_validator()
    for status in statuses:
        validator.validate(status)
        assert status["scalingMode"] == "hybrid"
        assert sizing_condition(status)["reason"] == "ModelBased" and sizing_condition(status)["status"] == "True"
        estimate = status["performanceEstimate"]
        assert {"alpha", "beta", "gamma", "delta", "usable", "source", "decode", "prefill"} <= set(estimate)
        assert estimate["decode"]["samples"] >= 20
    assert any("predicted" in s and {"itlMs", "ttftMs"} <= set(s["predicted"]) for s in statuses)
    # the A100 VA prefers learned parameters: they are used once usable
    sources = {s["performanceEstimate"]["source"] for s in statuses}
    assert sources <= {"variantProfile", "estimated"} and sources


@pytest.mark.parametrize("case", ["no-service-class", "no-workload", "first-cycle", "saturation-mode"])
def test_fallback_and_saturation_statuses_match_the_crd_status_schema(case):
    kwargs = {"no-service-class": {"classes": False}, "no-workload": {"usage": False},
              "first-cycle": {"cycles": 1}, "saturation-mode": {"mode": "saturation"}}[case]
    plan, statuses = planned_statuses(**kwargs)
    validator = status_validator()
    for status in statuses:
        validator.validate(status)
        cond = sizing_condition(status)
        if case == "first-cycle":  # a user profile sizes from the first window; the fits are still poor
            assert cond["reason"] == "ModelBased"
            assert status["performanceEstimate"]["usable"] is False
            continue
        assert cond["status"] == "False" and "predicted" not in status
        assert cond["reason"] == ("SaturationMode" if case == "saturation-mode" else "FallbackToSaturation")
        assert status["scalingMode"] == ("saturation" if case == "saturation-mode" else "hybrid")


def test_the_status_schema_refuses_what_it_does_not_declare():
    _, (status, _) = planned_statuses()
    validator = status_validator()
    for bad in ({**status, "scalingMode": "fast"}, {**status, "predicted": {"itlMs": "9 ms"}},
                {**status, "predicted": {"itl": 9.0}}, {**status, "performanceEstimate": {"alpha": 7, "gammaa": 1}}):
        assert list(validator.iter_errors(bad)), bad


def test_the_crd_spec_declares_the_slo_sizing_fields():
    spec = crd_schema()["properties"]["spec"]["properties"]
    assert spec["scalingMode"]["enum"] == ["capacity", "saturation", "model", "hybrid"]
    assert spec["startupSeconds"]["type"] == "number" and spec["startupSeconds"]["minimum"] == 0
    assert spec["sloClassRef"]["required"] == ["name", "key"]
    profile = spec["variantProfile"]["properties"]
    assert profile["preferEstimated"]["type"] == "boolean" and profile["maxBatchSize"]["type"] == "integer"
    parms = profile["perfParms"]["properties"]
    assert set(parms["decodeParms"]["properties"]) == {"alpha", "beta"}
    assert set(parms["prefillParms"]["properties"]) == {"gamma", "delta"}
    for group in ("decodeParms", "prefillParms"):
        assert "ms" in parms[group]["description"]
        for field in parms[group]["properties"].values():
            assert field["type"] == "number" and "(ms)" in field["description"]
