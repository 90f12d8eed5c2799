"""Security, what tests/server/test_tls.py, tests/sources/test_prometheus.py and tests/deploy/test_chart.py do not
already prove: the Prometheus client over HTTPS (CA option honoured, unknown CA refused, bearer token sent and
never in logs, even when the server echoes it back, through a whole reconcile cycle), and the chart and image
running as the same non-root user with nothing that would give root back.

Already covered elsewhere, not repeated: TLS and mTLS to the gRPC server, including a client cert from another
CA refused (tests/server/test_tls.py); RBAC without wildcards, readOnlyRootFilesystem, no privilege
escalation, capabilities dropped (tests/deploy/test_chart.py); Dockerfile `USER 10001`
(tests/deploy/test_dockerfile.py).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.gateway import PrometheusActivationSource
from kedascaler.sources.prometheus import PrometheusSource
from tests.support.helm import render_chart

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hardening-s3cr3t-bearer-9f8e7d"


class _Prom(BaseHTTPRequestHandler):
    seen: list[str] = []
    echo = False

    def do_GET(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization", "")
        type(self).seen.append(auth)
        if type(self).echo:  # a proxy that helpfully repeats the request in its error
            body = f"bad request, you sent Authorization: {auth}".encode()
            self.send_response(400)
        else:
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"namespace": "llm", "pod": "llama-a100-x-0", "model_name": "m"},
                 "value": [1700000000, "0.5"]}]}}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_prometheus(certs) -> Iterator[tuple[str, type[_Prom]]]:
    handler = type("Prom", (_Prom,), {"seen": [], "echo": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_prometheus_over_https_with_the_ca_option_sends_the_token(https_prometheus, certs):
    url, handler = https_prometheus
    source = PrometheusSource(url, bearer_token=TOKEN, ca_file=str(certs.ca), timeout=5)
    try:
        result = source.collect([])
    finally:
        source.close()
    assert result.ok, result.errors
    assert [s.pod for s in result.samples] == ["llama-a100-x-0"]
    assert handler.seen and all(a == f"Bearer {TOKEN}" for a in handler.seen)


def test_prometheus_with_an_unknown_ca_is_refused_and_the_token_never_sent(https_prometheus):
    url, handler = https_prometheus
    source = PrometheusSource(url, bearer_token=TOKEN, timeout=5)  # system CAs only: ours is not among them
    try:
        result = source.collect([])
    finally:
        source.close()
    assert result.samples == () and len(result.errors) == 3
    assert all("CERTIFICATE_VERIFY_FAILED" in e for e in result.errors), result.errors
    assert handler.seen == []  # the TLS handshake failed before any request, so the token never left


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_prometheus_insecure_skip_verify_warns(https_prometheus, caplog):
    url, _ = https_prometheus
    caplog.set_level(logging.WARNING, logger="kedascaler.sources.promql")
    source = PrometheusSource(url, insecure_skip_verify=True, timeout=5)
    try:
        assert source.collect([]).samples
    finally:
        source.close()
    assert "verification is off" in caplog.text


def test_an_echoed_token_is_not_in_errors_logs_or_reports_through_a_reconcile_cycle(https_prometheus, certs, caplog):
    url, handler = https_prometheus
    handler.echo = True
    caplog.set_level(logging.DEBUG)
    docs = [("t", {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
                   "metadata": {"name": "llama-a100", "namespace": "llm"},
                   "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llama-a100"}, "modelID": "m",
                            "minReplicas": 1, "maxReplicas": 4}})]
    source = PrometheusSource(url, bearer_token=TOKEN, ca_file=str(certs.ca), timeout=5)
    try:
        report = Reconciler(StaticInventory.from_documents(docs), source, DecisionBoard()).run_once()
    finally:
        source.close()
    assert handler.seen and report.errors
    shown = caplog.text + " ".join(report.errors) + repr(report) + repr(source)
    assert TOKEN not in shown
    assert "***" in " ".join(report.errors)  # it was there, and scrubbed


def test_the_activation_source_has_the_same_tls_token_and_scrubbing(https_prometheus, certs):
    """The gateway-queue reader goes through the same Prometheus client: CA option, token sent, echo scrubbed."""
    url, handler = https_prometheus
    source = PrometheusActivationSource(url, bearer_token=TOKEN, ca_file=str(certs.ca), timeout=5)
    try:
        answered = source.read([("llm", "m")])
        assert not answered.errors and answered.queries == 1, answered.errors  # over TLS, with the token
        assert handler.seen and all(a == f"Bearer {TOKEN}" for a in handler.seen)
        handler.echo = True
        reading = source.read([("llm", "m")])
    finally:
        source.close()
    assert reading.queues == {("llm", "m"): None} and reading.errors
    shown = " ".join(reading.errors) + repr(source)
    assert TOKEN not in shown and "***" in shown and "HTTP Status Code 400" in shown


def test_chart_and_image_run_as_the_same_non_root_user_with_nothing_giving_root_back():
    user = re.search(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user and int(user.group(1)) != 0
    objects, _ = render_chart(ROOT / "charts" / "kedascaler")
    (deploy,) = [o for _, o in objects if o["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"].get("runAsUser") == int(user.group(1))
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert not any("hostPath" in v for v in pod.get("volumes", []))
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container.get("securityContext", {})
        assert sc.get("readOnlyRootFilesystem") is True and sc.get("privileged") is not True
        assert sc.get("runAsUser", 1) != 0 and sc.get("allowPrivilegeEscalation") is False
    # no Secret is readable cluster-wide: the scaler reads its token from a mounted file, not the API
    rules = [(o["kind"], r) for _, o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]
    assert not any("secrets" in r.get("resources", []) for kind, r in rules if kind == "ClusterRole")
