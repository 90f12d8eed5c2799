"""serve answers KEDA from a process of its own: calls are answered while the deciding process is frozen, the
answering process never outlives serve, and /metrics counts the calls it answered."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.sim.emulator import EmulatedPod
from kedascaler.sim.perf import perf_params_for
from tests.support.serving import KEDASCALER, ROOT, free_port, one_va_inventory

REF = pb.ScaledObjectRef(name="llama-a100", namespace="llm")
REQUEST = pb.GetMetricsRequest(scaledObjectRef=REF, metricName="vllm-desired-replicas-llama-a100")


@pytest.fixture
def pod() -> Iterator[EmulatedPod]:
    pod = EmulatedPod("llama-a100-0", "meta/llama-3.1-8b", perf_params_for("A100"))
    pod.start()
    yield pod
    pod.close()


def start_serve(folder: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*KEDASCALER, "serve", "--inventory", str(folder), "--port", str(port),
                             "--interval", "0.5", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def desired(stub: pb_grpc.ExternalScalerStub) -> int:
    return int(stub.GetMetrics(REQUEST, timeout=2).metricValues[0].metricValue)


def first_answer(stub: pb_grpc.ExternalScalerStub, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        try:
            return desired(stub)
        except grpc.RpcError:
            time.sleep(0.2)
    pytest.fail("serve never answered GetMetrics")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("::", port))
        except OSError:
            return False
        return True


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=20)[0]


def test_calls_are_answered_while_the_deciding_process_is_frozen(tmp_path, pod):
    """The reconcile cycle (frozen here with SIGSTOP, as a long cycle at 10,000 models would hold it) and the
    answers are in different processes: KEDA still gets the last decision, at once."""
    port = free_port()
    proc = start_serve(one_va_inventory(tmp_path / "inventory", pod), port, "--metrics-port", "0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            assert first_answer(stub, proc) == 2
            proc.send_signal(signal.SIGSTOP)
            try:
                answers = [desired(stub) for _ in range(20)]  # each within its 2 s deadline
                active = stub.IsActive(REF, timeout=2).result
            finally:
                proc.send_signal(signal.SIGCONT)
        assert answers == [2] * 20 and active
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, output[-3000:]
        assert "Traceback" not in output
        assert port_is_free(port)  # the answering process stopped with it
    finally:
        stop(proc)


def test_the_answering_process_never_outlives_serve(tmp_path, pod):
    """serve killed outright (SIGKILL: no cleanup runs) leaves no process holding the gRPC port."""
    port = free_port()
    proc = start_serve(one_va_inventory(tmp_path / "inventory", pod), port, "--metrics-port", "0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert first_answer(pb_grpc.ExternalScalerStub(channel), proc) == 2
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert port_is_free(port), "the answering process still holds the port after serve was killed"
    finally:
        stop(proc)


def test_metrics_count_the_calls_the_answering_process_answered(tmp_path, pod):
    port, metrics_port = free_port(), free_port()
    proc = start_serve(one_va_inventory(tmp_path / "inventory", pod), port, "--metrics-port", str(metrics_port))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            first_answer(stub, proc)
            for _ in range(3):
                assert stub.IsActive(REF, timeout=2).result
            with pytest.raises(grpc.RpcError) as missing:
                stub.IsActive(pb.ScaledObjectRef(name="nope", namespace="llm"), timeout=2)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        time.sleep(0.3)  # a few ticks of the loop-lag timer
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        stop(proc)
    families = {f.name: f for f in text_string_to_metric_families(text)}  # one family per name, or it raises
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    method = "/externalscaler.ExternalScaler/IsActive"
    assert values[("kedascaler_grpc_requests_total", (("code", "OK"), ("method", method)))] == 3
    assert values[("kedascaler_grpc_requests_total", (("code", "NOT_FOUND"), ("method", method)))] == 1
    assert values[("kedascaler_grpc_loop_lag_seconds_count", ())] >= 1
    assert "kedascaler_reconcile_cycles" in families  # the deciding process's families beside them
    assert text.count("# TYPE kedascaler_grpc_requests_total ") == 1  # served once, by the answering process


def test_serve_exits_1_when_its_answering_process_dies(tmp_path, pod):
    """An answering process killed (say, out of memory) leaves nothing answering KEDA: serve says so and exits
    1, so the kubelet restarts the container, instead of deciding on for nobody."""
    port = free_port()
    proc = start_serve(one_va_inventory(tmp_path / "inventory", pod), port, "--metrics-port", "0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert first_answer(pb_grpc.ExternalScalerStub(channel), proc) == 2
        assert proc.stdout is not None
        for line in proc.stdout:  # serve says which process answers
            if found := re.search(r"serving ExternalScaler on port \d+ \(plaintext; answered by process (\d+)\)",
                                  line):
                break
        else:
            pytest.fail("serve never said which process answers KEDA")
        answering = int(found.group(1))
        assert str(answering) in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(answering, signal.SIGKILL)
        output = proc.communicate(timeout=30)[0]
        assert proc.returncode == 1, output[-3000:]
        assert "the gRPC server's process ended on its own (exit code -9)" in output
        assert "Traceback" not in output
    finally:
        stop(proc)
