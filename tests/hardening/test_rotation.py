"""Credentials that rotate while the scaler runs: a projected ServiceAccount token for Prometheus is replaced
by the kubelet (and the old one expires: 401), so the scaler must read the file again when it changes.

(TLS certificates renewed on disk: tests/server/test_tls_reload.py.)
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler

from kedascaler.kits.httpserver import HttpServerThread, OwnedServer
from kedascaler.kits.watchedfile import TokenFile
from kedascaler.sources.gateway import PrometheusActivationSource
from kedascaler.sources.prometheus import PrometheusSource
from kedascaler.sources.promql import PromQLClient, PromQLError


class _Valid:
    def __init__(self) -> None:
        self.token = "token-one"
        self.seen: list[str] = []


class _Prometheus(BaseHTTPRequestHandler):
    """Accepts only the current token; echoes the one it got in its 401 (a careless proxy would)."""

    server: OwnedServer[_Valid]

    def do_GET(self) -> None:  # noqa: N802
        valid = self.server.owner
        got = self.headers.get("Authorization", "")
        valid.seen.append(got)
        if got != f"Bearer {valid.token}":
            status, body = 401, {"status": "error", "error": f"token expired: {got}"}
        else:
            status, body = 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _rotate(path, token: str, valid: _Valid) -> None:
    path.write_text(token + "\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    valid.token = token


def test_a_rotated_token_file_is_read_again_and_neither_token_is_ever_shown(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("token-one\n")
    valid = _Valid()
    with HttpServerThread(_Prometheus, host="127.0.0.1", owner=valid) as server:
        client = PromQLClient(str(server.url), bearer_token=TokenFile(token_file))
        assert client.query("up") == []
        _rotate(token_file, "token-two", valid)
        assert client.query("up") == []  # the new token, read from the file, not a 401
        assert valid.seen[-1] == "Bearer token-two"
        valid.token = "token-three"  # expired server-side before the file changes: a 401, scrubbed
        try:
            client.query("up")
        except PromQLError as exc:
            assert "401" in str(exc) and "token-two" not in str(exc) and "***" in str(exc)
        else:
            raise AssertionError("a wrong token was accepted")
        assert "token" not in repr(client).replace("token=", "")
        client.close()


def test_both_prometheus_sources_follow_the_token_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("token-one")
    valid = _Valid()
    with HttpServerThread(_Prometheus, host="127.0.0.1", owner=valid) as server:
        source = PrometheusSource(str(server.url), bearer_token=TokenFile(token_file))
        gateway = PrometheusActivationSource(str(server.url), bearer_token=TokenFile(token_file))
        try:
            assert source.collect().ok
            _rotate(token_file, "token-two", valid)
            assert source.collect().ok, source.collect().errors
            reading = gateway.read([("llm", "m")])
            assert not reading.errors, reading.errors  # answered with the new token (a 401 is an error)
        finally:
            source.close()
            gateway.close()
