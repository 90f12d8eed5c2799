"""`kedascaler serve` in a half-configured cluster, probed as the kubelet probes it.

The ServiceAccount may not list VariantAutoscalings (the RBAC rule or the CRD is missing): the inventory never
syncs. `serve` used to wait 30 s for the sync before binding gRPC, while the chart's liveness probe killed the
pod at about 25 s: a restart loop. Now it binds at once; liveness answers SERVING, readiness NOT_SERVING until
the inventory syncs, on the gRPC port and on the plaintext `--health-port`. SIGTERM then stops it in its
`--shutdown-grace`.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from tests.support.kube_apiserver import FakeApiServer

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # generous (the shared box, the informer's back-off): only there so a broken serve fails, not hangs
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def apiserver():
    server = FakeApiServer().start()
    yield server
    server.stop()


class Serve:
    """`kedascaler serve` as a child process; its output lines are read in a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kedascaler.cli.main", "serve", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={"PATH": "/usr/bin:/bin", "POD_NAME": "kedascaler-test-0"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            found = re.search(pattern, line)
            if found:
                return found
        pytest.fail(f"serve never logged {pattern!r}; its output:\n{''.join(self.output)[-3000:]}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=WAIT)
        time.sleep(0.1)  # the reader thread drains the last lines
        return "".join(self.output)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def check(port: int, service: str) -> int:
    """The kubelet's grpc probe: a plaintext Check, no client certificate."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=10).status


def kubeconfig_for(apiserver: FakeApiServer, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
        "clusters": [{"name": "fixture", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "fixture", "user": {}}],
        "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture"}}]}))
    return path


def test_serve_binds_before_the_inventory_syncs_and_is_live_but_not_ready(apiserver, tmp_path):
    apiserver.forbidden.add("variantautoscalings")  # no RBAC rule for them: the inventory cannot sync
    serve = Serve("--kubeconfig", str(kubeconfig_for(apiserver, tmp_path / "kubeconfig")), "--port", "0",
                  "--health-port", "0", "--metrics-port", "0", "--interval", "0.5", "--shutdown-grace", "2")
    try:
        grpc_port = int(serve.wait_for_line(r"serving ExternalScaler on port (\d+)").group(1))
        health_port = int(serve.wait_for_line(r"health on port (\d+)").group(1))
        assert apiserver.count("GET", "variantautoscalings") >= 1
        assert "not synced" not in "".join(serve.output)  # bound before any wait for the sync
        for port in (grpc_port, health_port):
            assert check(port, "liveness") == SERVING  # the kubelet does not restart it
            assert check(port, "") == NOT_SERVING  # nor sends it traffic: it knows no VariantAutoscaling yet
            assert check(port, "externalscaler.ExternalScaler") == NOT_SERVING
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:  # and gRPC answers meanwhile
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.ExternalScalerStub(channel).IsActive(pb.ScaledObjectRef(name="llama", namespace="demo"),
                                                             timeout=10)
            # no cycle yet: UNAVAILABLE, so KEDA applies the ScaledObject's fallback instead of a guess
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "starting" in info.value.details()

        apiserver.forbidden.clear()  # the operator fixes the RBAC: the next relist syncs, readiness follows
        deadline = time.monotonic() + WAIT
        while check(health_port, "") != SERVING:
            assert time.monotonic() < deadline, "readiness never turned SERVING after the inventory could sync"
            time.sleep(0.2)
        assert check(health_port, "liveness") == SERVING

        output = serve.stop()
        assert serve.proc.returncode == 0, output[-3000:]
        assert "ExternalScaler stopping (grace 2s)" in output
        assert "Traceback" not in output
    finally:
        serve.kill()
