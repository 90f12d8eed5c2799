"""Health as the kubelet probes it: a plaintext port beside an mTLS one, liveness apart from readiness.

The kubelet's grpc probe dials plaintext and presents no client certificate; against the mTLS port every probe
fails and the pod restarts for ever. `--health-port` answers it; readiness waits for the inventory, liveness
does not (a missing CRD must not restart the pod), and both turn NOT_SERVING when the stop begins.
"""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import SERVICE_NAME, ScalerServer, TLSConfig
from kedascaler.server.health import LIVENESS

from .conftest import H100, ref, rpc_error

WAIT = 10.0  # only there so that a broken server fails the test instead of hanging it
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def probe(port: int, service: str = "") -> int:
    """What the kubelet's `grpc: {port, service}` probe does: a plaintext Check, no client certificate."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                   timeout=WAIT)
    return response.status


async def probe_error(port: int, service: str = "") -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await rpc_error(health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=WAIT))


async def test_with_mtls_the_kubelet_probes_the_plaintext_health_port(board, certs):
    tls = TLSConfig(str(certs.server_cert), str(certs.server_key), client_ca_file=str(certs.ca))
    server = ScalerServer(board, port=0, host="127.0.0.1", tls=tls, health_port=0)
    await server.start()
    try:
        assert (await probe_error(server.port)).code() == grpc.StatusCode.UNAVAILABLE  # the probe without a port
        assert server.health_port not in (None, server.port)
        for service in ("", SERVICE_NAME, LIVENESS):
            assert await probe(server.health_port, service) == SERVING, service
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
            # health alone there: no ExternalScaler without the client certificate, no Watch streams
            error = await rpc_error(pb_grpc.ExternalScalerStub(channel).IsActive(ref(H100.name), timeout=WAIT))
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(watch.read(), WAIT)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(grace=0)


async def test_readiness_waits_for_the_inventory_and_liveness_does_not(board):
    server = ScalerServer(board, port=0, host="127.0.0.1", health_port=0, ready=False)
    await server.start()
    try:
        for port in (server.port, server.health_port):
            assert await probe(port, LIVENESS) == SERVING
            assert await probe(port, "") == NOT_SERVING
            assert await probe(port, SERVICE_NAME) == NOT_SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:  # KEDA is answered meanwhile
            assert (await pb_grpc.ExternalScalerStub(channel).IsActive(ref(H100.name), timeout=WAIT)).result is True

        synced = asyncio.Event()
        assert await server.ready_when(synced.is_set, wait=0.3) is False  # not synced yet: still not ready
        assert await probe(server.health_port, "") == NOT_SERVING
        synced.set()  # the inventory syncs later (the CRD is installed, the RBAC fixed)
        async with asyncio.timeout(WAIT):
            while await probe(server.health_port, "") != SERVING:
                await asyncio.sleep(0.05)
        assert await probe(server.port, SERVICE_NAME) == SERVING
    finally:
        await server.stop(grace=0)


async def test_the_stop_turns_every_service_not_serving_while_a_call_drains(board):
    server = ScalerServer(board, port=0, host="127.0.0.1", health_port=0, grace=WAIT)
    entered, release = asyncio.Event(), asyncio.Event()
    real = server._servicer.IsActive

    async def held(request, context):  # a call in flight keeps the stop in its grace period
        entered.set()
        await release.wait()
        return await real(request, context)

    server._servicer.IsActive = held
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = pb_grpc.ExternalScalerStub(channel).IsActive(ref(H100.name), timeout=WAIT)
        await asyncio.wait_for(entered.wait(), WAIT)
        stopping = asyncio.ensure_future(server.stop())
        async with asyncio.timeout(WAIT):
            while await probe(server.health_port, "") != NOT_SERVING:
                await asyncio.sleep(0.01)
        assert await probe(server.health_port, LIVENESS) == NOT_SERVING
        await server.set_ready(True)  # a late sync does not bring a stopping replica back
        assert await probe(server.health_port, "") == NOT_SERVING
        release.set()
        assert (await call).result is True
        await asyncio.wait_for(stopping, WAIT)


async def test_a_health_port_in_use_fails_the_start_and_frees_the_grpc_port(board):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        grpc_port = free.getsockname()[1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ScalerServer(board, port=grpc_port, host="127.0.0.1", health_port=taken.getsockname()[1])
        with pytest.raises(OSError, match="health port"):
            await server.start()
        assert server.port is None
        await server.stop()  # nothing to stop
    with socket.socket() as again:
        again.bind(("127.0.0.1", grpc_port))  # the gRPC port was released
