"""What a user sees when a `kedascaler` command cannot do what was asked: one line, a non-zero exit, no traceback.

Each case runs the real command in a subprocess, as a user would.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kedascaler.cli.main import build_parser

from .test_main import KEDASCALER, ROOT, free_port, run

VA = """
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata:
  name: llama-b200
  namespace: llm
{annotations}spec:
  scaleTargetRef: {{kind: Deployment, name: llama-b200}}
  modelID: meta/llama-3.1-8b
  accelerator: B200
{cost}"""
COSTS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: accelerator-unitcost}
data:
  costs: |
    H100: 40
    A100: 20
"""


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors, result.stderr[-2000:]
    assert all(n in errors[-1] for n in needles), errors[-1]


def taken_port() -> socket.socket:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    return s


def folder_with_va(tmp_path: Path, *, annotations: str = "", cost: str = "", costs: bool = False) -> Path:
    folder = tmp_path / "inventory"
    folder.mkdir()
    (folder / "va.yaml").write_text(VA.format(annotations=annotations, cost=cost))
    if costs:
        (folder / "costs.yaml").write_text(COSTS)
    return folder


@pytest.mark.parametrize("flag", ["--port", "--metrics-port", "--activation-port"])
def test_a_port_in_use_is_a_one_line_error_and_exit_1(flag):
    with taken_port() as s:
        port = s.getsockname()[1]
        ports = {"--port": str(free_port()), "--metrics-port": "0", "--activation-port": str(free_port())}
        ports[flag] = str(port)
        args = [a for f, p in ports.items() for a in (f, p)]
        result = run("serve", "--inventory", "examples/local", *args, timeout=60)
    assert_one_line_error(result, 1, str(port), "in use")


@pytest.mark.parametrize("url", ["prometheus:9090", "http://", "ftp://prometheus:9090", "http://prom etheus:9090",
                                 "http://prometheus:99999"])
def test_a_malformed_prometheus_url_is_refused_at_parse_time(url):
    result = run("serve", "--inventory", "examples/local", "--prometheus-url", url)
    assert_one_line_error(result, 2, "--prometheus-url")


def test_log_level_is_accepted_after_the_subcommand_too():
    parser = build_parser()
    assert parser.parse_args(["validate", "x", "--log-level", "DEBUG"]).log_level == "DEBUG"
    assert parser.parse_args(["--log-level", "ERROR", "validate", "x"]).log_level == "ERROR"
    assert parser.parse_args(["serve", "--inventory", "x", "--log-level", "WARNING"]).log_level == "WARNING"
    assert parser.parse_args(["validate", "x"]).log_level == "INFO"


def test_kubeconfig_with_inventory_is_an_error_not_ignored(tmp_path):
    result = run("serve", "--inventory", "examples/local", "--kubeconfig", str(tmp_path / "kubeconfig"))
    assert_one_line_error(result, 2, "--kubeconfig", "--inventory")


@pytest.mark.parametrize("args, needles", [
    (["--activation-port", "0", "--activation-host", "0.0.0.0"], ("--activation-token-file",)),
    (["--activation-port", "0", "--activation-token-file", "/no/such/token"], ("--activation-token-file",
                                                                                "/no/such/token")),
    (["--activation-host", "127.0.0.1"], ("--activation-port",)),
    (["--max-streams", "0"], ("--max-streams",)),
    (["--max-streams", "500", "--max-concurrent-rpcs", "400"], ("--max-concurrent-rpcs",)),
    (["--prometheus-token-file", "/no/such/token", "--prometheus-url", "http://p:9090"],
     ("--prometheus-token-file",)),
    (["--gateway-queue"], ("--gateway-queue", "--prometheus-url")),
    (["--activation-query", "sum(q)", "--prometheus-url", "http://p:9090"], ("--activation-query", "--gateway-queue")),
])
def test_unsafe_or_inconsistent_serve_flags_exit_2_naming_the_flag(args, needles):
    assert_one_line_error(run("serve", "--inventory", "examples/local", *args), 2, *needles)


def test_validate_on_an_empty_folder_says_so(tmp_path):
    assert_one_line_error(run("validate", str(tmp_path)), 2, "no YAML files")


def test_validate_keeps_the_line_and_column_of_a_yaml_error(tmp_path):
    (tmp_path / "va.yaml").write_text("apiVersion: v1\nkind: [ConfigMap\nmetadata: {}\n")
    result = run("validate", str(tmp_path))
    assert result.returncode == 2 and "va.yaml" in result.stderr
    assert "line 3, column" in result.stderr, result.stderr


def test_an_unknown_accelerator_is_a_reported_problem_when_the_cost_configmap_lacks_it(tmp_path):
    result = run("validate", str(folder_with_va(tmp_path, costs=True)))
    assert result.returncode == 2
    assert "spec.accelerator" in result.stderr and "'B200'" in result.stderr and "variantCost" in result.stderr
    # the VA is still served, and never priced below the accelerators that are listed
    assert "ok: VariantAutoscaling llm/llama-b200" in result.stdout and "cost=40" in result.stdout


@pytest.mark.parametrize("cost, costs", [("  variantCost: 55\n", True), ("", False)],
                         ids=["variantCost-set", "no-cost-configmap"])
def test_an_unlisted_accelerator_is_fine_with_a_variant_cost_or_without_a_cost_configmap(tmp_path, cost, costs):
    result = run("validate", str(folder_with_va(tmp_path, cost=cost, costs=costs)))
    assert result.returncode == 0, result.stderr


def test_a_failing_metrics_source_is_logged_at_warning_with_its_cause_once(tmp_path):
    dead = free_port()  # nothing listens there: connection refused on every cycle
    annotations = f'  annotations: {{kedascaler.llmd.ai/metrics-endpoints: "http://127.0.0.1:{dead}/metrics"}}\n'
    folder = folder_with_va(tmp_path, annotations=annotations, cost="  minReplicas: 1\n")
    proc = subprocess.Popen([*KEDASCALER, "serve", "--inventory", str(folder), "--port", str(free_port()),
                             "--interval", "0.2", "--metrics-port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4)  # about 20 cycles, all failing the same way
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    failing = [line for line in output.splitlines() if "metrics source failing" in line]
    assert len(failing) == 1, output[-3000:]
    assert "WARNING" in failing[0] and "llm/llama-b200-0" in failing[0], failing[0]
    assert "refused" in failing[0].lower() or "ConnectionError" in failing[0], failing[0]
