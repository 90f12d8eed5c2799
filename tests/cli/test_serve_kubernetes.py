"""`kedascaler serve --kubeconfig` as a platform team runs it, against the Kubernetes API fixture.

The scaler process watches VariantAutoscalings, Deployments and Pods through the official client, scrapes the
pod (an emulated vLLM server), and the leader writes its decision into the VA's status; a change to the VA
shows up in the status within a cycle.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import perf_params_for
from tests.support.kube_apiserver import FakeApiServer, deployment, pod, va

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout=30.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def apiserver():
    server = FakeApiServer().start()
    yield server
    server.stop()


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
        "clusters": [{"name": "fixture", "cluster": {"server": server}}],
        "users": [{"name": "fixture", "user": {}}],
        "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture"}}],
    }))
    return path


def test_serve_with_kubeconfig_writes_decisions_to_va_status(apiserver, tmp_path):
    fleet = EmulatedFleet(seed=5)
    dep = fleet.add_deployment("llama-h100", "meta/llama", "H100", startup_delay=0.0, replicas=1, namespace="demo",
                               params=perf_params_for("H100", max_num_seqs=16, num_gpu_blocks=600))
    fleet.advance(0.1)
    fleet.set_load("meta/llama", OfferedLoad(rate=30.0))
    fleet.advance(20.0)
    fleet.set_load("meta/llama", None)  # freeze: the pod keeps its queue while the scaler looks
    fleet.start()
    (emulated,) = dep.ready_pods
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    apiserver.put(va("llama-h100", "meta/llama", maxReplicas=8))
    apiserver.put(deployment("llama-h100", replicas=1, ready=1))
    apiserver.put(pod(emulated.name, app="llama-h100", ip="127.0.0.1", port_annotation=str(emulated.port)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedascaler.cli.main", "serve", "--kubeconfig", str(kubeconfig), "--port", "0",
         "--interval", "0.5", "--metrics-port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "POD_NAME": "kedascaler-test-0"})
    try:
        def status():
            obj = apiserver.get("VariantAutoscaling", "demo", "llama-h100")
            return obj.get("status") if obj else None

        first = wait_for(lambda: (status() or {}).get("desiredReplicas"), what="desiredReplicas in VA status")
        assert first > 2, "an overloaded single replica must ask for several more"
        assert status()["currentReplicas"] == 1
        conditions = {c["type"]: c["status"] for c in status()["conditions"]}
        assert conditions["MetricsAvailable"] == "True"
        lease = apiserver.get("Lease", "kedascaler-system", "kedascaler-leader")
        assert lease["spec"]["holderIdentity"] == "kedascaler-test-0"

        # The user caps the variant: the status follows within a cycle or two.
        apiserver.put(va("llama-h100", "meta/llama", maxReplicas=2))
        wait_for(lambda: (status() or {}).get("desiredReplicas") == 2, timeout=15, what="the new maxReplicas in status")

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output[-3000:]
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        fleet.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_status_write_held_by_the_api_server_never_holds_the_grpc_answers(apiserver, tmp_path):
    """The leader's status PATCH waits in the API server (a slow or black-holed one): health checks — what the
    kubelet's gRPC probes call — are still answered, because the write runs in the status writer's thread."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    apiserver.put(va("llama-h100", "meta/llama", maxReplicas=4))
    apiserver.put(deployment("llama-h100", replicas=1, ready=1))
    apiserver.put(pod("llama-h100-x-1", app="llama-h100", ip="127.0.0.1", port_annotation=str(closed_port())))
    apiserver.hold_patches()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedascaler.cli.main", "serve", "--kubeconfig", str(kubeconfig), "--port", "0",
         "--interval", "0.5", "--metrics-port", "0", "--no-pod-deletion-cost"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "POD_NAME": "kedascaler-test-0"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        def grpc_port():
            found = [re.search(r"serving ExternalScaler on port (\d+)", line) for line in list(lines)]
            return next((int(m.group(1)) for m in found if m), None)

        port = wait_for(grpc_port, what="the gRPC port in the log")
        wait_for(lambda: apiserver.count("PATCH", "/status") >= 1, what="a status write, held by the API server")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answers = []
            for _ in range(5):  # several cycles' worth: every one finishes while the write is still held
                answers.append(health.Check(health_pb2.HealthCheckRequest(), timeout=3).status)
                time.sleep(0.5)
        assert answers == [health_pb2.HealthCheckResponse.SERVING] * 5
        apiserver.release_patches()
        wait_for(lambda: ((apiserver.get("VariantAutoscaling", "demo", "llama-h100") or {}).get("status") or {})
                 .get("desiredReplicas") is not None, timeout=15, what="the status, once the API server answers")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(5)
        assert proc.returncode == 0, "".join(lines)[-3000:]
        assert "Traceback" not in "".join(lines)
    finally:
        apiserver.release_patches()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
