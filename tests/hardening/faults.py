"""Fault injectors for the hardening tests: a scriptable Prometheus + vLLM pod endpoint, and a black hole.

`FakeMetrics` answers Prometheus' `/api/v1/query` for the cycle's four queries (the three saturation ones
and the usage one, from an optional `usage` table: pod -> {signal: value}, empty by default) and each pod's
`/pods/<name>/metrics` exposition from one table of per-pod values, and can be told to misbehave
(`mode`: "hang" accepts and never answers), to leave pods out, or be stopped and started again on the same
port. `BlackHole` accepts TCP connections and never answers: a server hanging longer than any timeout.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    owner: FakeMetrics

    def do_GET(self) -> None:  # noqa: N802
        owner = self.owner
        owner.requests += 1
        owner.authorization.append(self.headers.get("Authorization", ""))
        path = urlsplit(self.path)
        mode = owner.mode
        if mode == "hang":  # accept, read the request, never answer (until told to stop hanging)
            owner.unhung.wait(timeout=30)
            return
        if mode == "500":
            return self._send(503 if path.path.startswith("/pods/") else 500, b'{"status":"error","error":"boom"}')
        if path.path.startswith("/pods/"):
            pod = path.path.split("/")[2]
            values = owner.values_for(pod)
            if values is None or mode == "missing-pods" and pod in owner.missing:
                return self._send(404, b"no such pod")
            kv, queue, running = values
            text = (f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv}\n'
                    f'vllm:num_requests_waiting{{model_name="m"}} {queue}\n'
                    f'vllm:num_requests_running{{model_name="m"}} {running}\n')
            return self._send(200, text.encode(), "text/plain")
        query = parse_qs(path.query).get("query", [""])[0]
        if mode == "garbage-json":
            return self._send(200, owner.garbage_body(query))
        if "label_replace" in query:  # the usage query: one row per (pod, signal), labelled `signal`
            usage = []
            for pod, signals in sorted(owner.usage.items()):
                if mode == "missing-pods" and pod in owner.missing:
                    continue
                usage += [{"metric": {"namespace": owner.namespace, "pod": pod, "model_name": "m", "signal": name},
                           "value": [owner.clock(), str(value)]} for name, value in signals.items()]
            body = {"status": "success", "data": {"resultType": "vector", "result": usage}}
            return self._send(200, json.dumps(body).encode())
        index = 0 if "kv_cache" in query else 1 if "waiting" in query else 2
        result = []
        for pod, vals in sorted(owner.pods.items()):
            if mode == "missing-pods" and pod in owner.missing:
                continue
            value = vals[index]
            if mode == "garbage-values" and pod in owner.garbage:
                value = owner.garbage[pod][index]
            result.append({"metric": {"namespace": owner.namespace, "pod": pod, "model_name": "m"},
                           "value": [owner.clock(), str(value)]})
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        self._send(200, json.dumps(body).encode())

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class FakeMetrics:
    """Prometheus' query API and the pods' /metrics from one table: pod -> (kv, queue, running)."""

    def __init__(self, pods: dict[str, tuple[float, float, float]], clock, namespace: str = "llm") -> None:
        self.pods = dict(pods)
        self.clock = clock
        self.namespace = namespace
        self.mode = "ok"
        self.missing: set[str] = set()
        self.garbage: dict[str, tuple[Any, Any, Any]] = {}
        self.garbage_json: Any = None
        self.usage: dict[str, dict[str, float]] = {}  # pod -> usage signal -> value (the usage query's answer)
        self.requests = 0
        self.authorization: list[str] = []
        self.unhung = threading.Event()  # releases the requests held by mode "hang"
        self._port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def values_for(self, pod: str) -> tuple[Any, Any, Any] | None:
        if self.mode == "garbage-values" and pod in self.garbage:
            return self.garbage[pod]
        return self.pods.get(pod)

    def garbage_body(self, query: str) -> bytes:
        return json.dumps(self.garbage_json).encode()

    def start(self) -> FakeMetrics:
        handler = type("Handler", (_Handler,), {"owner": self})
        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port refuses connections until `start()` binds it again)."""
        self.unhung.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def pod_url(self, pod: str) -> str:
        return f"{self.url}/pods/{pod}/metrics"


class BlackHole:
    """Accepts connections and never answers, until closed."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        self.accepted = 0

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            self._held.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()
