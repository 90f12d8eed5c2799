"""The chart's install-and-operate parts, as real Helm renders them: RBAC scoped to the watched namespace, probes
that work with mTLS and with a cluster that is not ready yet, a drain that lets calls in flight finish, and the
availability objects (PodDisruptionBudget, anti-affinity, an opt-in NetworkPolicy)."""

from __future__ import annotations

import pytest

from tests.deploy.test_chart import CHART, VARIANTS, container_of, rendered
from tests.support.helm import NAMESPACE, render_chart

POD_LABELS = {"app.kubernetes.io/name": "kedascaler", "app.kubernetes.io/instance": "kedascaler"}


def pod_spec(objects: list[dict]) -> dict:
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deploy["spec"]["template"]["metadata"]["labels"] == POD_LABELS
    return deploy["spec"]["template"]["spec"]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


# --- RBAC --------------------------------------------------------------------------------------------------------

def test_watching_one_namespace_grants_a_role_there_and_nothing_cluster_wide():
    objects = rendered("one-namespace")
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in of_kind(objects, "Role")}
    assert set(roles) == {("llm", "kedascaler-watch"), (NAMESPACE, "kedascaler")}
    watch = {(g, r): set(rule["verbs"]) for rule in roles[("llm", "kedascaler-watch")]["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}
    assert watch == {("llmd.ai", "variantautoscalings"): {"get", "list", "watch"},
                     ("llmd.ai", "variantautoscalings/status"): {"get", "patch", "update"},
                     ("apps", "deployments"): {"get", "list", "watch"},
                     ("", "pods"): {"get", "list", "watch", "patch"},
                     ("", "events"): {"create", "patch"}}
    bindings = {(o["metadata"]["namespace"], o["roleRef"]["name"]) for o in of_kind(objects, "RoleBinding")}
    assert bindings == set(roles)


def test_all_namespaces_keep_the_cluster_role_with_the_same_rules():
    (cluster_role,) = of_kind(rendered("defaults"), "ClusterRole")
    (watch_role,) = [o for o in of_kind(rendered("one-namespace"), "Role") if o["metadata"]["namespace"] == "llm"]
    assert cluster_role["rules"] == watch_role["rules"]
    assert [o["metadata"]["namespace"] for o in of_kind(rendered("defaults"), "Role")] == [NAMESPACE]


def test_scaledobjects_are_read_in_the_watched_namespace_only():
    (watch_role,) = [o for o in of_kind(rendered("everything-on"), "Role") if o["metadata"]["namespace"] == "llm"]
    assert {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": ["get", "list", "watch"]} \
        in watch_role["rules"]


# --- probes and the drain ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["defaults", "tls", "everything-on"])
def test_every_probe_asks_the_plaintext_health_port(variant):
    container = container_of(rendered(variant))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] != ports["grpc"]
    assert f"--health-port={ports['health']}" in container["args"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == ports["health"], probe  # never the (m)TLS gRPC port
    if variant != "defaults":
        assert "--tls-client-ca=/etc/kedascaler/tls/ca.crt" in container["args"]


def test_liveness_passes_while_the_inventory_syncs_and_the_startup_probe_covers_the_start():
    container = container_of(rendered())
    assert container["startupProbe"]["grpc"]["service"] == "liveness"
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    assert "service" not in container["readinessProbe"]["grpc"]  # "": NOT_SERVING until the inventory synced
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # a slow node's import and bind
    assert "initialDelaySeconds" not in container["livenessProbe"]  # the startup probe holds it back instead


def test_a_rollout_drains_the_pod_before_it_stops():
    objects = rendered()
    spec = pod_spec(objects)
    container = container_of(objects)
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert "--shutdown-grace=10" in container["args"]
    assert spec["terminationGracePeriodSeconds"] == 5 + 10 + 5  # the sleep, the grace, a margin

    bare = rendered("bare")
    assert "lifecycle" not in container_of(bare)
    assert pod_spec(bare)["terminationGracePeriodSeconds"] == 0 + 10 + 5


# --- availability ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, budget", [("defaults", True), ("replicas", True), ("one-replica", False),
                                             ("bare", False)])
def test_a_disruption_budget_with_more_than_one_replica(variant, budget):
    pdbs = of_kind(rendered(variant), "PodDisruptionBudget")
    if not budget:
        assert pdbs == []
        return
    (pdb,) = pdbs
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": POD_LABELS}}
    assert pdb["metadata"]["namespace"] == NAMESPACE


def test_replicas_spread_over_nodes_by_default():
    anti = pod_spec(rendered())["affinity"]["podAntiAffinity"]
    (preferred,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"] == {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": POD_LABELS}}
    (required,) = pod_spec(rendered("spread-required"))["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["topologyKey"] == "kubernetes.io/hostname"
    assert "affinity" not in pod_spec(rendered("bare"))


def test_an_unknown_anti_affinity_value_is_refused_by_name():
    with pytest.raises(Exception, match="podAntiAffinity"):  # noqa: B017 - helm's error type is the SDK's own
        render_chart(CHART, {"podAntiAffinity": "soft"})


def test_the_network_policy_is_opt_in():
    assert of_kind(rendered(), "NetworkPolicy") == []


def ingress_by_port(policy: dict) -> dict[int, list[dict]]:
    return {port["port"]: rule["from"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}


def test_the_network_policy_lets_in_keda_and_prometheus_only():
    (policy,) = of_kind(rendered("network-policy"), "NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": POD_LABELS}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]

    def from_namespace(name: str) -> list[dict]:
        return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}, "podSelector": {}}]

    assert ingress_by_port(policy) == {9090: from_namespace("keda"), 8080: from_namespace("monitoring")}
    egress = {(port["port"], port["protocol"]): rule.get("to") for rule in policy["spec"]["egress"]
              for port in rule["ports"]}
    assert egress[(53, "UDP")] is None and egress[(53, "TCP")] is None  # DNS
    assert egress[(443, "TCP")] == egress[(6443, "TCP")] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]  # the API server
    assert egress[(9090, "TCP")] == from_namespace("monitoring")  # Prometheus
    assert len(egress) == 5


def test_the_network_policy_opens_the_activation_port_and_takes_extra_rules():
    (policy,) = of_kind(rendered("everything-on"), "NetworkPolicy")
    ingress = ingress_by_port(policy)
    assert ingress[8081] == [{"namespaceSelector": {}, "podSelector": {}}]  # the gateway, from any namespace
    assert ingress[9091] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]  # networkPolicy.extraIngress
    assert policy["spec"]["egress"][-1] == VARIANTS["everything-on"]["networkPolicy.extraEgress"][0]
    objects, _ = render_chart(CHART, {"networkPolicy.enabled": True, "scaleToZero.activationPort": 8081,
                                      "networkPolicy.activationNamespace": "gateway",
                                      "networkPolicy.kedaPodSelector": {"matchLabels": {"app": "keda-operator"}}})
    (policy,) = [o for _, o in objects if o["kind"] == "NetworkPolicy"]
    ingress = ingress_by_port(policy)
    assert ingress[8081][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}
    assert ingress[9090][0]["podSelector"] == {"matchLabels": {"app": "keda-operator"}}
