"""The real kubectl against the Kubernetes API fixture, as a user drives it: `kubectl apply -f` the CRD and the
examples, `kedascaler serve --kubeconfig` deciding, and the decisions read with `kubectl get va` (the CRD's
printer columns) and `kubectl describe va` (status, conditions, Events).

kubectl is Debian's `kubernetes-client` (scripts/test.sh installs it). Without it these tests are skipped,
except under `CI=true`, where a missing kubectl fails them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.kube_apiserver import FakeApiServer, pod

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "charts" / "kedascaler" / "crds"
EXAMPLES = ROOT / "examples" / "kubernetes"
MODEL = "meta/llama-3.1-8b"
COLUMNS = ["NAME", "MODEL", "ACCELERATOR", "CURRENT", "DESIRED", "MODE", "REASON", "AGE"]


MIN_MINOR = 26  # server-side field validation (fieldValidation=Strict, read from /openapi/v3) is kubectl's default


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        _missing("kubectl is not installed (Debian: apt-get install kubernetes-client; scripts/test.sh does it)")
    version = subprocess.run([found, "version", "--client", "-o", "json"], capture_output=True, text=True,
                             timeout=30)
    minor = re.match(r"\d+", json.loads(version.stdout or "{}").get("clientVersion", {}).get("minor", "0"))
    if minor is None or int(minor.group()) < MIN_MINOR:
        _missing(f"{found} is older than kubectl 1.{MIN_MINOR}, which these tests need: {version.stdout.strip()}")
    return str(found)


class Kubectl:
    """kubectl with a kubeconfig for the fixture and a HOME of its own (its discovery cache goes there)."""

    def __init__(self, server: FakeApiServer, home: Path) -> None:
        self.binary = kubectl_binary()
        self.home = home
        self.kubeconfig = home / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
            "clusters": [{"name": "fixture", "cluster": {"server": server.url}}],
            "users": [{"name": "fixture", "user": {}}],
            "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture"}}]}))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                                text=True, timeout=60, env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"})
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}{result.stdout}"
        return result

    def __call__(self, *args: str) -> str:
        return self.run(*args).stdout


def table(output: str) -> list[dict[str, str]]:
    """`kubectl get` output as rows keyed by column header (cells cut at the header's positions)."""
    header, *lines = [line for line in output.splitlines() if line.strip()]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    return [{name: line[s:e].strip() for name, s, e in zip(names, starts, [*starts[1:], None], strict=True)}
            for line in lines]


@pytest.fixture
def kubectl(apiserver, tmp_path) -> Kubectl:
    return Kubectl(apiserver, tmp_path)


def test_kubectl_applies_the_crd_and_the_examples_and_lists_them_with_the_printer_columns(apiserver, kubectl):
    assert "customresourcedefinition.apiextensions.k8s.io/variantautoscalings.llmd.ai created" in kubectl(
        "apply", "-f", str(CRDS))
    applied = kubectl("apply", "-f", str(EXAMPLES))
    for line in ("namespace/llm created", "deployment.apps/llama-8b-h100 created",
                 "variantautoscaling.llmd.ai/llama-8b-a100 created", "scaledobject.keda.sh/llama-8b-h100 created",
                 "triggerauthentication.keda.sh/kedascaler-mtls created", "configmap/serviceclass created"):
        assert line in applied, applied
    again = kubectl("apply", "-f", str(EXAMPLES))
    assert "created" not in again and again.count("unchanged") == len(again.strip().splitlines())

    resources = kubectl("api-resources")
    assert re.search(r"^variantautoscalings\s+va\s+llmd.ai/v1alpha1\s+true\s+VariantAutoscaling", resources, re.M)
    output = kubectl("get", "va", "-n", "llm")
    assert output.split("\n", 1)[0].split() == COLUMNS, output
    rows = {r["NAME"]: r for r in table(output)}
    assert set(rows) == {"llama-8b-h100", "llama-8b-a100"}
    assert (rows["llama-8b-h100"]["MODEL"], rows["llama-8b-h100"]["ACCELERATOR"]) == (MODEL, "H100")
    assert rows["llama-8b-a100"]["DESIRED"] == ""  # no decision yet: an empty cell, as the API server prints it
    wide = kubectl("get", "va", "-n", "llm", "-o", "wide").split("\n", 1)[0].split()
    assert wide == [*COLUMNS, "ACTIVE", "METRICS", "READY"]


def test_kubectl_apply_is_refused_what_the_crd_does_not_declare(apiserver, kubectl, tmp_path):
    kubectl("apply", "-f", str(CRDS))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
                                   "metadata": {"name": "typo", "namespace": "llm"},
                                   "spec": {"scaleTargetRef": {"name": "x"}, "modelID": "m", "minReplica": 1}}))
    result = kubectl.run("apply", "-f", str(bad), check=False)
    assert result.returncode != 0 and 'unknown field "spec.minReplica"' in result.stderr, result.stderr


@pytest.fixture
def emulated_cluster(apiserver, kubectl):
    """The examples applied with kubectl, and the cluster's controllers played here: each Deployment runs one
    emulated vLLM pod under load (the scheduler and kubelet), its readyReplicas set (the Deployment controller)."""
    from kedascaler.sim.fleet import EmulatedFleet
    from kedascaler.sim.load import OfferedLoad
    from kedascaler.sim.perf import perf_params_for

    kubectl("apply", "-f", str(CRDS))
    kubectl("apply", "-f", str(EXAMPLES))
    fleet = EmulatedFleet(seed=3)
    deployments = {name: fleet.add_deployment(name, MODEL, accelerator, startup_delay=0.0, replicas=1,
                                              namespace="llm",
                                              params=perf_params_for(accelerator, max_num_seqs=16,
                                                                     num_gpu_blocks=600))
                   for name, accelerator in (("llama-8b-h100", "H100"), ("llama-8b-a100", "A100"))}
    fleet.advance(0.1)
    fleet.set_load(MODEL, OfferedLoad(rate=40.0))
    fleet.advance(20.0)
    fleet.set_load(MODEL, None)  # freeze: the pods keep their queues while the scaler looks
    fleet.start()
    for name, dep in deployments.items():
        (emulated,) = dep.ready_pods
        apiserver.put(pod(emulated.name, app=name, ip="127.0.0.1", namespace="llm",
                          port_annotation=str(emulated.port)))
        obj = apiserver.get("Deployment", "llm", name)
        obj["status"] = {"replicas": 1, "readyReplicas": 1}
        apiserver.put(obj)
    yield fleet
    fleet.close()


def test_kubectl_reads_the_decisions_of_a_running_scaler(apiserver, kubectl, emulated_cluster, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedascaler.cli.main", "serve", "--kubeconfig", str(kubectl.kubeconfig), "--port",
         "0", "--interval", "0.5", "--metrics-port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "POD_NAME": "kedascaler-0", "HOME": str(tmp_path)})
    try:
        deadline = time.monotonic() + 40
        rows: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline:
            rows = {r["NAME"]: r for r in table(kubectl("get", "va", "-n", "llm"))}
            if all(r["DESIRED"] and r["REASON"] for r in rows.values()):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no decisions in `kubectl get va` after 40 s: {rows}")
        for name, row in rows.items():
            assert row["MODEL"] == MODEL and row["CURRENT"] == "1", row
            assert row["MODE"] == "hybrid", row
            assert re.match(r"(scale-up|scale-down|hold|bounds) \S+", row["REASON"]), row
            status = apiserver.get("VariantAutoscaling", "llm", name)["status"]
            assert row["DESIRED"] == str(status["desiredReplicas"])
            assert status["lastDecision"]["reason"].startswith(row["REASON"])  # the brief is the reason's head
        assert sum(int(r["DESIRED"]) for r in rows.values()) > 2, rows  # two overloaded replicas ask for more

        described = kubectl("describe", "va", "llama-8b-a100", "-n", "llm")
        for text in ("Kind:         VariantAutoscaling", "Model ID:", "Desired Replicas:", "Last Decision:",
                     "Brief:", "Type:                  MetricsAvailable", "Scaling Mode:  hybrid"):
            assert re.search(r"\s+".join(map(re.escape, text.split())), described), (text, described)
        events = described.split("Events:", 1)[1]
        assert re.search(r"Normal\s+ScaleUp\s+\S+\s+kedascaler\s+desired replicas 1 → \d+", events), described
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
