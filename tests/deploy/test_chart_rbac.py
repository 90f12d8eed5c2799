"""The chart's RBAC against what `kedascaler serve` really asks the API server for.

`serve` runs with the args the chart renders (pointed at the Kubernetes API fixture, scraping an emulated vLLM
pod instead of Prometheus) until the leader has written a VA's status, recorded an Event for a broken
ConfigMap and taken the Lease; then every request it made is checked against the rendered Roles and
ClusterRoles, as the API server's RBAC authorizer would: with `watch.namespace` set, a Role in that namespace
(and the controller's own Role) must allow each one, and no ClusterRole is rendered at all.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import perf_params_for
from tests.support.helm import NAMESPACE, render_chart
from tests.support.kube_apiserver import FakeApiServer, configmap, deployment, pod, va

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kedascaler"
WATCHED = "demo"
_PATH = re.compile(r"^(?:/api/v1|/apis/([^/]+)/[^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?(?:/(status))?$")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def attributes(method: str, url: str) -> tuple[str | None, str, str, str]:
    """(namespace, apiGroup, resource, verb) of a request, as the RBAC authorizer sees it."""
    parts = urlsplit(url)
    found = _PATH.match(parts.path)
    assert found, f"a request the authorizer would not know: {method} {url}"
    group, namespace, plural, name, status = found.groups()
    query = parse_qs(parts.query)
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch", [""])[-1] in ("1", "true", "True") else "list")
    else:
        verb = _VERBS[method]
    return namespace, group or "", plural + ("/status" if status else ""), verb


def allowed(objects: list[dict], namespace: str | None, group: str, resource: str, verb: str) -> bool:
    for obj in objects:
        if obj["kind"] == "ClusterRole" or (obj["kind"] == "Role" and obj["metadata"]["namespace"] == namespace):
            for rule in obj["rules"]:
                if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                    return True
    return False


def bound_to_the_service_account(objects: list[dict]) -> None:
    """Every Role and ClusterRole has a binding to the chart's ServiceAccount in its namespace."""
    bindings = {(o["kind"], o["metadata"].get("namespace"), o["roleRef"]["name"]): o for o in objects
                if o["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    for role in (o for o in objects if o["kind"] in ("Role", "ClusterRole")):
        kind = "RoleBinding" if role["kind"] == "Role" else "ClusterRoleBinding"
        binding = bindings[(kind, role["metadata"].get("namespace"), role["metadata"]["name"])]
        assert binding["roleRef"]["kind"] == role["kind"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kedascaler", "namespace": NAMESPACE}]


def wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    proc.kill()
    output, _ = proc.communicate()
    pytest.fail(f"timed out waiting for {what}; serve said:\n{output[-3000:]}")


def serve_args(container: dict, kubeconfig: Path) -> list[str]:
    """The chart's args, pointed at the fixture: --kubeconfig, free ports, fast cycles, direct scraping (so no
    Prometheus, and no gateway queue read from it)."""
    dropped = ("--kubernetes", "--port", "--health-port", "--metrics-port", "--prometheus-url", "--interval",
               "--gateway-queue")
    keep = [a for a in container["args"] if not a.startswith(dropped)]
    return [*keep, "--kubeconfig", str(kubeconfig), "--port", "0", "--health-port", "0", "--metrics-port", "0",
            "--interval", "0.5"]


@pytest.mark.parametrize("watch_namespace", [WATCHED, ""], ids=["one-namespace", "all-namespaces"])
def test_the_rendered_rbac_allows_every_request_serve_makes(watch_namespace, tmp_path):
    objects = [o for _, o in render_chart(CHART, {"watch.namespace": watch_namespace})[0]]
    kinds = {o["kind"] for o in objects}
    if watch_namespace:
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}  # nothing cluster-wide
    else:
        assert {"ClusterRole", "ClusterRoleBinding"} <= kinds
    bound_to_the_service_account(objects)
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]

    apiserver = FakeApiServer().start()
    fleet = EmulatedFleet(seed=3)
    proc = None
    try:
        dep = fleet.add_deployment("llama-h100", "meta/llama", "H100", startup_delay=0.0, replicas=1,
                                   namespace=WATCHED, params=perf_params_for("H100", max_num_seqs=16,
                                                                             num_gpu_blocks=600))
        fleet.advance(0.1)
        fleet.set_load("meta/llama", OfferedLoad(rate=30.0))
        fleet.advance(20.0)
        fleet.set_load("meta/llama", None)
        fleet.start()
        (emulated,) = dep.ready_pods
        apiserver.put(va("llama-h100", "meta/llama", namespace=WATCHED, maxReplicas=8))
        apiserver.put(deployment("llama-h100", namespace=WATCHED, replicas=1, ready=1))
        apiserver.put(pod(emulated.name, app="llama-h100", namespace=WATCHED, ip="127.0.0.1",
                          port_annotation=str(emulated.port)))
        # a ConfigMap that does not parse: an InvalidConfiguration Event in the controller's namespace
        apiserver.put(configmap("saturation-scaling-config", {"default": "kvCacheThreshold: lots\n"},
                                namespace=NAMESPACE))
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
            "clusters": [{"name": "fixture", "cluster": {"server": apiserver.url}}],
            "users": [{"name": "fixture", "user": {}}],
            "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture"}}]}))
        proc = subprocess.Popen([sys.executable, "-m", "kedascaler.cli.main", "serve", *serve_args(container,
                                                                                                   kubeconfig)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={"PATH": "/usr/bin:/bin", "POD_NAME": "kedascaler-0"})
        wait_for(lambda: ((apiserver.get("VariantAutoscaling", WATCHED, "llama-h100") or {}).get("status") or {})
                 .get("desiredReplicas"), "the leader's status write", proc)
        wait_for(lambda: apiserver.list("Event", NAMESPACE), "the InvalidConfiguration Event", proc)
        wait_for(lambda: apiserver.list("Event", WATCHED), "the ScaleUp Event", proc)
        proc.send_signal(signal.SIGTERM)  # the leader releases the Lease: an update
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output[-3000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        fleet.close()
        apiserver.stop()

    requests = {attributes(method, url) for method, url in apiserver.requests}
    refused = sorted(r for r in requests if not allowed(objects, *r))
    assert not refused, f"requests the rendered RBAC would refuse (namespace, group, resource, verb): {refused}"
    made = {(group, resource, verb) for _, group, resource, verb in requests}
    assert {("llmd.ai", "variantautoscalings", "watch"), ("llmd.ai", "variantautoscalings/status", "patch"),
            ("", "pods", "list"), ("apps", "deployments", "watch"), ("", "events", "create"),
            ("coordination.k8s.io", "leases", "update")} <= made  # the test saw each kind of request
    if watch_namespace:
        assert {namespace for namespace, *_ in requests} == {WATCHED, NAMESPACE}  # never cluster-wide
