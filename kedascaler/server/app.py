"""Wiring of the gRPC server: ExternalScaler + grpc.health.v1 + reflection, plaintext/TLS/mTLS, graceful stop;
optionally a plaintext health port for the kubelet's probes (`kedascaler.server.health`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kedascaler.kits.watchedfile import WatchedFile
from kedascaler.loop.board import Board
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.health import HealthPort, HealthState, ready_when
from kedascaler.server.malformed import GuardedRegistrar
from kedascaler.server.servicer import ExternalScalerServicer

log = logging.getLogger("kedascaler.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name  # "externalscaler.ExternalScaler"

# A ScaledObjectRef is a few hundred bytes (names, the trigger's metadata): anything larger is refused by grpc
# on arrival with RESOURCE_EXHAUSTED, before it is parsed, validated, logged or echoed (grpc's default: 4 MiB).
MAX_REQUEST_BYTES = 64 * 1024
# An open stream costs about 30 KB; a unary call is short. The default leaves 2,048 slots for unary calls.
DEFAULT_MAX_STREAMS = 2_048
DEFAULT_MAX_CONCURRENT_RPCS = 4_096

# KEDA dials without keepalive; server pings find dead peers so their streams (and subscriptions) end.
_SERVER_OPTIONS = (
    ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not silently share it
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
)


@dataclass(frozen=True)
class TLSConfig:
    """PEM files for TLS; with client_ca_file, clients must present a certificate signed by it (mTLS).

    The files are watched: a renewed certificate (cert-manager, a mounted Secret's atomic update) is used for
    every new connection from then on, without a restart. A renewal that is not PEM keeps the last good files
    in use (logged once)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Read the files now, so a missing or unreadable one fails at start with its path in the message."""
        files = [WatchedFile(self.cert_file, what="TLS certificate file"),
                 WatchedFile(self.key_file, what="TLS private key file")]
        if self.client_ca_file:
            files.append(WatchedFile(self.client_ca_file, what="TLS client CA file"))
        current = _certificate_config(files)
        seen = [f.reloads for f in files]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            """Called by grpc before each handshake: a new configuration when a file changed, else None."""
            try:
                contents = [f.read() for f in files]
            except ValueError:  # never readable: cannot happen after the first read succeeded
                return None
            reloads = [f.reloads for f in files]
            if reloads == seen:
                return None
            seen[:] = reloads
            problem = _not_pem(files, contents)
            if problem:
                log.warning("TLS: %s; new connections keep the certificate read before", problem)
                return None
            log.info("TLS: certificate files changed; new connections use them")
            return _configuration(contents)

        # grpc's fetcher may return None ("unchanged"); the stub's annotation does not say so
        return grpc.dynamic_ssl_server_credentials(current, fetch,  # type: ignore[arg-type]
                                                   require_client_authentication=self.client_ca_file is not None)


_PEM_MARKS = ((b"-----BEGIN CERTIFICATE-----",), (b"PRIVATE KEY-----",), (b"-----BEGIN CERTIFICATE-----",))


def _not_pem(files: Sequence[WatchedFile], contents: Sequence[bytes]) -> str | None:
    for f, data, marks in zip(files, contents, _PEM_MARKS, strict=False):
        if not all(m in data for m in marks):
            return f"{f.what} {f.path} is not PEM ({marks[0].decode()} missing)"
    return None


def _configuration(contents: Sequence[bytes]) -> grpc.ServerCertificateConfiguration:
    cert, key = contents[0], contents[1]
    ca = contents[2] if len(contents) > 2 else None
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def _certificate_config(files: Sequence[WatchedFile]) -> grpc.ServerCertificateConfiguration:
    contents = [f.read() for f in files]  # ValueError naming the file
    problem = _not_pem(files, contents)
    if problem:
        raise ValueError(problem)
    return _configuration(contents)


class ScalerServer:
    """One grpc.aio server answering KEDA from a DecisionBoard; start() binds, stop() drains gracefully."""

    def __init__(
        self,
        board: Board,
        *,
        port: int = 9090,
        host: str = "[::]",
        tls: TLSConfig | None = None,
        stale_after: float | None = None,
        clock: Callable[[], float] = time.time,
        grace: float = 5.0,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
        health_port: int | None = None,
        ready: bool = True,
    ) -> None:
        """`max_streams`: open streams at most (each ScaledObject with an external-push trigger holds one);
        `max_concurrent_rpcs`: calls in progress at most, streams included (grpc answers RESOURCE_EXHAUSTED
        beyond it); it must exceed max_streams, so unary calls always have room. `health_port`: also serve
        grpc.health.v1 Check, plaintext, on this port (0: any free one). `ready`: readiness (health service ""
        and the ExternalScaler's) SERVING from the start; False: NOT_SERVING until `ready_when` or
        `set_ready`, while `liveness` is SERVING as soon as the port is bound."""
        if stale_after is not None and stale_after <= 0:
            raise ValueError(f"stale_after must be a positive number of seconds or None, got {stale_after!r}")
        if max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, got {max_streams!r}")
        if max_concurrent_rpcs <= max_streams:
            raise ValueError(f"max_concurrent_rpcs ({max_concurrent_rpcs}) must be larger than max_streams "
                             f"({max_streams}): unary calls need room beside the open streams")
        self.max_streams = max_streams
        self.max_concurrent_rpcs = max_concurrent_rpcs
        self.board = board
        self.host = host
        self.tls = tls
        self.grace = grace
        self.interceptors = tuple(interceptors)  # e.g. request metrics; they see every RPC
        self._requested_port = port
        self._servicer = ExternalScalerServicer(board, stale_after=stale_after, clock=clock, max_streams=max_streams)
        self.health = HealthState(("", SERVICE_NAME), ready=ready)
        self._health_port = HealthPort(self.health, host=host, port=health_port) if health_port is not None else None
        self._readiness: asyncio.Task | None = None
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def port(self) -> int | None:
        """The bound port once started (useful with port 0), else None."""
        return self._port

    @property
    def health_port(self) -> int | None:
        """The bound plaintext health port once started, else None."""
        return self._health_port.port if self._health_port is not None else None

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("ScalerServer already started")
        server = grpc.aio.server(options=_SERVER_OPTIONS, interceptors=self.interceptors,
                                 maximum_concurrent_rpcs=self.max_concurrent_rpcs)
        # GuardedRegistrar: a request that is not a valid message gets INVALID_ARGUMENT
        pb_grpc.add_ExternalScalerServicer_to_server(self._servicer, GuardedRegistrar(server))
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{self.host}:{self._requested_port}"
        try:
            if self.tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.tls.credentials())
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address}: {exc} (is the port in use?)") from None
        if port == 0:
            raise OSError(f"cannot listen on {address} (is the port in use?)")
        await self.health.bound()  # before the first call: grpc's own default for "" is SERVING
        await server.start()
        if self._health_port is not None:
            try:
                await self._health_port.start()
            except OSError:
                await server.stop(0)
                raise
        self._server, self._port = server, port
        mode = "plaintext" if self.tls is None else ("mTLS" if self.tls.client_ca_file else "TLS")
        log.info("ExternalScaler listening on %s:%d (%s)", self.host, port, mode)
        return port

    async def set_ready(self, ready: bool) -> None:
        await self.health.set_ready(ready)

    async def ready_when(self, synced: Callable[[], bool], *, wait: float) -> bool:
        """Readiness SERVING once `synced()` (non-blocking) is true; True if that happened within `wait` s.
        Otherwise readiness stays NOT_SERVING and a task goes on looking (stopped with the server)."""
        ok, self._readiness = await ready_when(self.health, synced, wait=wait)
        return ok

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, end open streams with OK, let unary calls finish (up to grace s), then stop."""
        if self._server is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(self.grace if grace is None else grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        assert self._server is not None
        log.info("ExternalScaler stopping (grace %gs)", grace)
        if self._readiness is not None:
            self._readiness.cancel()
        await self.health.stopping()  # NOT_SERVING everywhere, the health port included
        self._servicer.close_streams()
        await self._server.stop(grace)  # no new calls; those in flight finish, up to grace s
        if self._health_port is not None:
            await self._health_port.stop()
        log.info("ExternalScaler stopped")

    async def wait_for_termination(self) -> None:
        """Return once the server has stopped (at once if it never started); safe to cancel."""
        if self._server is not None:
            # shielded: cancelling grpc's own wait cancels the future that stop() itself waits on
            await asyncio.shield(self._server.wait_for_termination())


class Serving(Protocol):
    """What `run_until_signal` runs: a ScalerServer, or serve's handle on its answering process."""

    @property
    def port(self) -> int | None: ...
    async def start(self) -> int: ...
    async def stop(self, grace: float | None = None) -> None: ...
    async def wait_for_termination(self) -> None: ...


async def run_until_signal(
    server: Serving,
    *,
    on_stop: Callable[[], Awaitable[None] | None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until the server stops otherwise), stop gracefully, then call on_stop."""
    loop = asyncio.get_running_loop()
    if server.port is None:
        await server.start()
    received = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, _note_signal, sig, received)
    waiter = asyncio.ensure_future(received.wait())
    ended = asyncio.ensure_future(server.wait_for_termination())
    try:
        await asyncio.wait((waiter, ended), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        waiter.cancel()
        ended.cancel()
        await server.stop()
    if on_stop is not None:
        result = on_stop()
        if inspect.isawaitable(result):
            await result


def _note_signal(sig: signal.Signals, received: asyncio.Event) -> None:
    log.info("received %s: shutting down gracefully", sig.name)
    received.set()
