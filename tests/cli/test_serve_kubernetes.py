"""`kedascaler serve --kubeconfig` as a platform team runs it, against the Kubernetes API fixture.

The scaler process watches VariantAutoscalings, Deployments and Pods through the official client, scrapes the
pod (an emulated vLLM server), and the leader writes its decision into the VA's status; a change to the VA
shows up in the status within a cycle.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

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
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
        "clusters": [{"name": "fixture", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "fixture", "user": {}}],
        "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture"}}],
    }))
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
