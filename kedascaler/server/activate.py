"""The push endpoint for cold models: `POST /v1/activate/{namespace}/{model}`, for a gateway or a router.

A gateway that gets a request for a model with no ready replica calls this endpoint; the scaler records the
request in its `ActivationInbox` and wakes the reconcile loop, which decides for that model at once (not at
the next tick) and pushes `true` on every StreamIsActive stream of the variant it wakes.

The model is the rest of the path after the namespace, percent-decoded, so both
`/v1/activate/llm/meta/llama-3.1-8b` and `/v1/activate/llm/meta%2Fllama-3.1-8b` name `meta/llama-3.1-8b`.
Answers (JSON): 202 recorded (with the model's variants), 400 bad path or body framing, 401 no or wrong
bearer token, 404 unknown model, 405 wrong method, 413 body too large, 503 before the first reconcile cycle
(or every connection slot taken). A body of up to MAX_BODY_BYTES is read and ignored.

Pushing changes state, so the endpoint is safe by construction:

- With a token (`serve --activation-token-file`) every request needs `Authorization: Bearer <token>`; the
  file is re-read when it changes. Without one it binds loopback only, unless explicitly made `insecure`.
- Only an authenticated caller is told which models exist (the 404's list).
- A push for a model already active only records the request time (its idle timer); a push for a cold
  model asks for a wake-up cycle, and the inbox coalesces those to one per model per second.
- Connections are capped (one thread each), a body is bounded, and an idle keep-alive connection is closed.

Served by `kedascaler.kits.httpserver` in its own thread: it never touches the asyncio loop except through the inbox.
"""

from __future__ import annotations

import hmac
import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from kedascaler.kits.httpserver import HttpServerThread, OwnedServer, is_loopback
from kedascaler.kits.watchedfile import TokenFile
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.spec.config import is_dns1123_label

log = logging.getLogger("kedascaler.server.activate")

PREFIX = "/v1/activate/"
MAX_BODY_BYTES = 4096  # the body is ignored: a gateway sends none, or a few bytes of JSON
MAX_CONNECTIONS = 16  # one thread each; few, so a flood cannot crowd the gRPC loop out of the GIL
MAX_LISTED = 20
TOKEN_FLAG = "--activation-token-file"
_UNAUTHORIZED = (f"missing or wrong bearer token: send the header 'Authorization: Bearer <token>' with the token "
                 f"of kedascaler serve {TOKEN_FLAG}")


class ActivationServer(HttpServerThread):
    """HTTP server for `POST /v1/activate/{namespace}/{model}`; start() binds (port 0: any), close() stops.

    `token`: requests must carry it as a bearer token. Without one, `host` must be loopback, unless
    `insecure` (anyone who reaches the port can then wake models)."""

    def __init__(self, board: DecisionBoard, inbox: ActivationInbox, *, host: str = "127.0.0.1",
                 port: int = 9091, token: TokenFile | None = None, insecure: bool = False,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        if token is None and not insecure and not is_loopback(host):
            raise ValueError(f"the activation endpoint would listen on {host} with no authentication: give "
                             f"{TOKEN_FLAG} FILE (callers send 'Authorization: Bearer <token>'), bind it to "
                             "loopback (--activation-host 127.0.0.1), or accept the risk with --activation-insecure")
        if token is not None:
            token.token()  # read it now: a wrong path or an empty file stops the start, naming the file
        super().__init__(_Handler, host=host, port=port, name="activation-http", what="activation", owner=self,
                         max_connections=max_connections)
        self.board = board
        self.inbox = inbox
        self.token = token

    def start(self) -> int:
        port = super().start()
        auth = "bearer token" if self.token is not None else "no authentication"
        log.info("activation endpoint listening on %s:%d (POST %s{namespace}/{model}, %s)", self.host, port,
                 PREFIX, auth)
        return port

    def authorized(self, header: str | None) -> bool:
        """Whether an `Authorization` header carries the current token (always, when there is no token)."""
        if self.token is None:
            return True
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        try:
            expected = self.token.token()
        except ValueError:  # never readable: nobody is let in
            return False
        return hmac.compare_digest(presented.strip().encode(), expected.encode())

    # -- the behaviour, independent of HTTP (status, body) --
    def activate(self, method: str, raw_path: str, *, authenticated: bool = False) -> tuple[int, dict[str, Any]]:
        """Answer one request that has passed authentication; `authenticated`: it carried the token."""
        path = urlsplit(raw_path).path
        if not path.startswith(PREFIX):
            return 404, {"error": f"no such endpoint {path[:100]!r}: use POST {PREFIX}{{namespace}}/{{model}}"}
        if method != "POST":
            return 405, {"error": f"use POST {PREFIX}{{namespace}}/{{model}}, not {method}"}
        rest = path[len(PREFIX):]
        namespace, _, model = rest.partition("/")
        namespace, model = unquote(namespace), unquote(model).strip("/")
        if not is_dns1123_label(namespace) or not model:
            return 400, {"error": f"bad path {path[:200]!r}: expected {PREFIX}{{namespace}}/{{model}}, the model ID "
                                  "as the rest of the path (e.g. /v1/activate/llm/meta/llama-3.1-8b) or URL-encoded"}
        view = self.board.view
        if view.version == 0:
            return 503, {"error": "kedascaler is starting: no reconcile cycle has completed yet; retry"}
        variants = sorted((k for k, s in view.specs.items() if k.namespace == namespace and s.model_id == model),
                          key=lambda k: k.name)
        if not variants:
            return 404, self._not_found(namespace, model, authenticated)
        cold = not any((d := view.decisions.get(k)) is not None and d.active for k in variants)
        at = self.inbox.record(namespace, model, wake=cold)
        return 202, {"namespace": namespace, "model": model, "variants": [k.name for k in variants],
                     "recorded_at": at, "woke": cold}

    def _not_found(self, namespace: str, model: str, authenticated: bool) -> dict[str, Any]:
        """The 404 body; the models of the namespace are listed only to a caller that sent the token."""
        error = f"model {model[:200]!r} not found in namespace {namespace!r}"
        if not authenticated:
            return {"error": error}
        view = self.board.view
        known = sorted({s.model_id for k, s in view.specs.items() if k.namespace == namespace})
        more = f" and {len(known) - MAX_LISTED} more" if len(known) > MAX_LISTED else ""
        listed = ", ".join(known[:MAX_LISTED]) + more
        where = f"models in namespace {namespace!r}: {listed}" if known else \
            f"no models are known in namespace {namespace!r}"
        return {"error": f"{error} ({where})", "known_models": known}


class _Handler(BaseHTTPRequestHandler):
    server: OwnedServer[ActivationServer]
    protocol_version = "HTTP/1.1"  # keep-alive: a gateway posting often reuses its connection
    timeout = 15  # an idle keep-alive connection (or a body that trickles) is closed after 15 s
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (Nagle + delayed ACK)

    def _answer(self) -> None:
        owner = self.server.owner
        refused = self._read_body()
        if refused is not None:
            status, body = refused
            self.close_connection = True  # the rest of what was sent is not read: the connection ends here
        elif not owner.authorized(self.headers.get("Authorization")):
            status, body = 401, {"error": _UNAUTHORIZED}
        else:
            try:
                status, body = owner.activate(self.command, self.path, authenticated=owner.token is not None)
            except Exception:  # noqa: BLE001 - a bug here must not kill the server thread
                log.exception("activation endpoint failed")
                status, body = 500, {"error": "internal error, see the scaler's log"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="kedascaler activation"')
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> tuple[int, dict[str, Any]] | None:
        """Read (and drop) a body of at most MAX_BODY_BYTES; (400 or 413, why) for anything else, unread."""
        if self.headers.get("Transfer-Encoding"):
            return 400, {"error": "Transfer-Encoding is not accepted: send no body, or one of at most "
                                  f"{MAX_BODY_BYTES} bytes with a Content-Length header (the body is ignored)"}
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return None
        raw = lengths[0].strip()
        if len(set(lengths)) > 1 or not raw.isdigit():
            return 400, {"error": f"bad Content-Length header {raw[:40]!r}: expected one non-negative integer"}
        length = int(raw)
        if length > MAX_BODY_BYTES:
            return 413, {"error": f"body of {length} bytes (Content-Length) is too large: at most "
                                  f"{MAX_BODY_BYTES} bytes, and it is ignored; send none"}
        if length:
            self.rfile.read(length)
        return None

    do_POST = do_GET = do_PUT = do_DELETE = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("activation %s", format % args)


__all__ = ["MAX_BODY_BYTES", "PREFIX", "ActivationServer"]
