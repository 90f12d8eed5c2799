"""One small HTTP server lifecycle for every endpoint the scaler and its emulator serve.

A stdlib `ThreadingHTTPServer` in a daemon thread: `start()` binds (port 0: any free one) and returns the
port, `close()` stops serving and joins the thread, and the server never touches an asyncio loop. The
activation endpoint, `/metrics`, the emulated vLLM pods and the emulated gateway all use it, so binding errors,
shutdown and quiet client disconnects behave the same everywhere.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

log = logging.getLogger("kedascaler.kits.httpserver")

WILDCARD_HOSTS = ("0.0.0.0", "", "::")  # every interface: reached on loopback by a local client
_BUSY_BODY = b'{"error": "too many connections open: retry later"}\n'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def is_loopback(host: str) -> bool:
    """Whether binding `host` listens on loopback only ("localhost", 127.0.0.0/8, ::1); a name is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

OwnerT = TypeVar("OwnerT")


class OwnedServer(ThreadingHTTPServer, Generic[OwnerT]):
    """The server a handler sees as `self.server`: declare `server: OwnedServer[MyOwner]` for a typed `owner`."""

    daemon_threads = True
    block_on_close = False  # close() must not wait for a client's idle keep-alive connection
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: OwnerT,
                 max_connections: int | None = None) -> None:
        self.owner = owner
        # One thread per open connection: capped, so a flood of connections cannot grow threads and memory.
        self._slots = threading.BoundedSemaphore(max_connections) if max_connections else None
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("http: client %s went away", client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, or (every slot taken) 503 at once and close: the caller retries."""
        if self._slots is not None and not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            if self._slots is not None:
                self._slots.release()


class HttpServerThread:
    """Serves `handler` on (host, port) in its own thread; `owner` is reachable as `self.server.owner`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, host: str = "0.0.0.0", port: int = 0,
                 name: str = "http", what: str = "HTTP", owner: Any = None,
                 max_connections: int | None = None) -> None:
        """`max_connections`: open connections at most (one thread each); one more gets 503. None: no cap."""
        self.handler = handler
        self.max_connections = max_connections
        self.host = host
        self.name = name
        self.what = what  # for the error when the port cannot be bound: "cannot listen on ... for <what>"
        self.owner = owner
        self._requested_port = port
        self._server: OwnedServer[Any] | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        """The bound port while serving (useful with port 0), else None."""
        server = self._server
        return server.server_address[1] if server is not None else None

    @property
    def url(self) -> str | None:
        """Base URL while serving, e.g. `http://127.0.0.1:9091` (a wildcard bind is reached on loopback)."""
        server = self._server  # read once: close() may run in another thread
        if server is None:
            return None
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{server.server_address[1]}"

    @property
    def started(self) -> bool:
        """True between start() and close()."""
        return self._server is not None

    def start(self) -> int:
        """Bind and serve; returns the port. An OSError names the address and what it was for."""
        if self._server is not None:
            raise RuntimeError(f"{self.what} server already started")
        try:
            self._server = OwnedServer((self.host, self._requested_port), self.handler, self.owner,
                                       self.max_connections)
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self._requested_port} for {self.what}: "
                          f"{exc.strerror or exc} (is the port in use?)") from None
        # A short poll interval keeps close() quick: shutdown() waits for the serving loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name=self.name, daemon=True)
        self._thread.start()
        return self._server.server_address[1]

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice or before start()."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
