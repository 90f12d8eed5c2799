"""The push endpoint for cold models: `POST /v1/activate/{namespace}/{model}`, for a gateway or a router.

A gateway that gets a request for a model with no ready replica calls this endpoint; the scaler records the
request in its `ActivationInbox` and wakes the reconcile loop, which decides for that model at once (not at
the next tick) and pushes `true` on every StreamIsActive stream of the variant it wakes.

The model is the rest of the path after the namespace, percent-decoded, so both
`/v1/activate/llm/meta/llama-3.1-8b` and `/v1/activate/llm/meta%2Fllama-3.1-8b` name `meta/llama-3.1-8b`.
Answers (JSON): 202 recorded (with the model's variants), 400 bad path, 404 unknown model (listing the
models known in the namespace), 405 wrong method, 503 before the first reconcile cycle. No body is read.
Served by `kedascaler.kits.httpserver` in its own thread: it never touches the asyncio loop except through the inbox.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from kedascaler.kits.httpserver import HttpServerThread, OwnedServer
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.spec.config import is_dns1123_label

log = logging.getLogger("kedascaler.server.activate")

PREFIX = "/v1/activate/"
MAX_LISTED = 20


class ActivationServer(HttpServerThread):
    """HTTP server for `POST /v1/activate/{namespace}/{model}`; start() binds (port 0: any), close() stops."""

    def __init__(self, board: DecisionBoard, inbox: ActivationInbox, *, host: str = "0.0.0.0",
                 port: int = 9091) -> None:
        super().__init__(_Handler, host=host, port=port, name="activation-http", what="activation", owner=self)
        self.board = board
        self.inbox = inbox

    def start(self) -> int:
        port = super().start()
        log.info("activation endpoint listening on %s:%d (POST %s{namespace}/{model})", self.host, port, PREFIX)
        return port

    # -- the behaviour, independent of HTTP (status, body) --
    def activate(self, method: str, raw_path: str) -> tuple[int, dict[str, Any]]:
        path = urlsplit(raw_path).path
        if not path.startswith(PREFIX):
            return 404, {"error": f"no such endpoint {path!r}: use POST {PREFIX}{{namespace}}/{{model}}"}
        if method != "POST":
            return 405, {"error": f"use POST {PREFIX}{{namespace}}/{{model}}, not {method}"}
        rest = path[len(PREFIX):]
        namespace, _, model = rest.partition("/")
        namespace, model = unquote(namespace), unquote(model).strip("/")
        if not is_dns1123_label(namespace) or not model:
            return 400, {"error": f"bad path {path!r}: expected {PREFIX}{{namespace}}/{{model}}, the model ID as "
                                  "the rest of the path (e.g. /v1/activate/llm/meta/llama-3.1-8b) or URL-encoded"}
        view = self.board.view
        if view.version == 0:
            return 503, {"error": "kedascaler is starting: no reconcile cycle has completed yet; retry"}
        variants = sorted(k.name for k, s in view.specs.items() if k.namespace == namespace and s.model_id == model)
        if not variants:
            known = sorted({s.model_id for k, s in view.specs.items() if k.namespace == namespace})
            more = f" and {len(known) - MAX_LISTED} more" if len(known) > MAX_LISTED else ""
            listed = ", ".join(known[:MAX_LISTED]) + more
            where = f"models in namespace {namespace!r}: {listed}" if known else \
                f"no models are known in namespace {namespace!r}"
            return 404, {"error": f"model {model!r} not found in namespace {namespace!r} ({where})",
                         "known_models": known}
        at = self.inbox.record(namespace, model)
        return 202, {"namespace": namespace, "model": model, "variants": variants, "recorded_at": at}


class _Handler(BaseHTTPRequestHandler):
    server: OwnedServer[ActivationServer]
    protocol_version = "HTTP/1.1"  # keep-alive: a gateway posting often reuses its connection
    timeout = 60  # an idle keep-alive connection is closed after a minute
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (Nagle + delayed ACK)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 16))  # a body is allowed and ignored
        try:
            status, body = self.server.owner.activate(self.command, self.path)
        except Exception:  # noqa: BLE001 - a bug here must not kill the server thread
            log.exception("activation endpoint failed")
            status, body = 500, {"error": "internal error, see the scaler's log"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET = do_PUT = do_DELETE = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("activation %s", format % args)


__all__ = ["PREFIX", "ActivationServer"]
