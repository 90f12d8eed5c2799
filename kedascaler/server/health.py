"""grpc.health.v1 as the kubelet reads it: liveness apart from readiness, and a plaintext port for the probes.

Services (the `service` of a `HealthCheckRequest`, the `grpc.service` of a Kubernetes grpc probe):

- `liveness`: SERVING from the moment the port is bound until the stop begins. The process is up and its
  event loop answers; nothing the scaler waits for (the inventory, Prometheus, the API server) turns it off,
  so a missing CRD or RBAC rule never makes the kubelet restart the pod.
- `""` (the whole server) and `externalscaler.ExternalScaler`: readiness. NOT_SERVING until the inventory
  has synced (`HealthState(ready=False)`, then `set_ready()`), SERVING after, NOT_SERVING again once the
  stop begins (so endpoints and load balancers drop the replica before it stops accepting calls).

`HealthPort` serves these on a port of its own, plaintext, whatever the main port does: with mTLS on the
main port the kubelet cannot present a client certificate, so its probes need a port without TLS. It serves
`Check` alone (no ExternalScaler, no reflection, no `Watch` streams to hold its few slots): what it tells
anyone is whether this replica is up and ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger("kedascaler.server")

LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
POLL_S = 0.2  # how often readiness looks at an inventory that has not synced yet (a non-blocking check)


class HealthState:
    """One HealthServicer, registered on the main port and on the health port alike."""

    def __init__(self, readiness_services: tuple[str, ...], *, ready: bool = True) -> None:
        self.servicer = health.aio.HealthServicer()
        self.readiness_services = readiness_services
        self._ready = ready
        self._stopping = False

    @property
    def ready(self) -> bool:
        return self._ready and not self._stopping

    async def bound(self) -> None:
        """Before the first call can arrive: liveness SERVING, readiness as given (grpc's own default is SERVING)."""
        await self.servicer.set(LIVENESS, SERVING)
        await self._publish()

    async def set_ready(self, ready: bool) -> None:
        """Readiness SERVING or NOT_SERVING; ignored once the stop began."""
        if ready != self._ready:
            log.info("readiness: %s", "SERVING" if ready else "NOT_SERVING")
        self._ready = ready
        await self._publish()

    async def _publish(self) -> None:
        if self._stopping:
            return
        for service in self.readiness_services:
            await self.servicer.set(service, SERVING if self._ready else NOT_SERVING)

    async def stopping(self) -> None:
        """Every service NOT_SERVING, for good: the stop began."""
        self._stopping = True
        await self.servicer.enter_graceful_shutdown()


class Readiness(Protocol):
    """What readiness is set on: a HealthState, or serve's handle on its answering process."""

    async def set_ready(self, ready: bool) -> None: ...


async def ready_when(state: Readiness, synced: Callable[[], bool], *, wait: float) -> tuple[bool, asyncio.Task]:
    """Readiness turns SERVING once `synced()` (a non-blocking check) is true. Returns (synced within `wait` s,
    the task that goes on looking and turns readiness on later; cancel it on stop)."""

    async def watch() -> None:
        while not synced():
            await asyncio.sleep(POLL_S)
        await state.set_ready(True)

    task = asyncio.ensure_future(watch())
    done, _ = await asyncio.wait((task,), timeout=wait)
    return bool(done), task


class _CheckOnly(health_pb2_grpc.HealthServicer):
    """The shared servicer's Check; Watch is the base class's UNIMPLEMENTED (the kubelet only calls Check)."""

    def __init__(self, servicer: health.aio.HealthServicer) -> None:
        self._servicer = servicer

    async def Check(self, request: health_pb2.HealthCheckRequest,  # noqa: N802 - the gRPC method's name
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        return await self._servicer.Check(request, context)


class HealthPort:
    """grpc.health.v1 alone, plaintext, on (host, port): for the kubelet's probes when the main port has mTLS."""

    def __init__(self, state: HealthState, *, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self._requested_port = port
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> int:
        server = grpc.aio.server(options=(("grpc.so_reuseport", 0),), maximum_concurrent_rpcs=64)
        health_pb2_grpc.add_HealthServicer_to_server(_CheckOnly(self.state.servicer), server)
        address = f"{self.host}:{self._requested_port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address} for the health port: {exc} (is the port in use?)") from None
        if port == 0:
            raise OSError(f"cannot listen on {address} for the health port (is the port in use?)")
        await server.start()
        self._server, self.port = server, port
        log.debug("health (grpc.health.v1 Check, plaintext) listening on %s:%d", self.host, port)
        return port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
