"""Graceful stop as KEDA sees it during a rollout: calls in flight finish, streams end cleanly, then nothing."""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer, run_until_signal
from kedascaler.server.naming import metric_name

from .conftest import H100, ref, rpc_error

WAIT = 10.0  # generous: only there so a broken server fails the test instead of hanging it


async def started(board, **kwargs) -> ScalerServer:
    server = ScalerServer(board, port=0, host="127.0.0.1", **kwargs)
    await server.start()
    return server


async def test_in_flight_call_completes_during_stop(board):
    server = ScalerServer(board, port=0, host="127.0.0.1", grace=WAIT)
    entered, release = asyncio.Event(), asyncio.Event()
    real = server._servicer.GetMetrics  # stand-in for a call that is mid-way when the stop begins

    async def held(request, context):
        entered.set()
        await release.wait()
        return await real(request, context)

    server._servicer.GetMetrics = held
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        request = pb.GetMetricsRequest(scaledObjectRef=ref(H100.name), metricName=metric_name(H100))
        call = stub.GetMetrics(request, timeout=WAIT)
        await asyncio.wait_for(entered.wait(), WAIT)
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waits for the call in flight
        release.set()
        response = await call
        assert response.metricValues[0].metricValue == 3
        await asyncio.wait_for(stopping, WAIT)


async def test_open_streams_end_with_ok_and_unsubscribe(board):
    server = await started(board, grace=WAIT)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        active = stub.StreamIsActive(ref(H100.name))
        specs = stub.StreamMetricSpec(ref(H100.name))
        assert (await asyncio.wait_for(active.read(), WAIT)).result is True
        assert len((await asyncio.wait_for(specs.read(), WAIT)).metricSpecs) == 1
        assert board.subscriber_count == 1

        await asyncio.wait_for(server.stop(), WAIT)

        assert await asyncio.wait_for(active.read(), WAIT) is grpc.aio.EOF
        assert await active.code() == grpc.StatusCode.OK  # KEDA reconnects at once after a clean end
        assert await asyncio.wait_for(specs.read(), WAIT) is grpc.aio.EOF
        assert await specs.code() == grpc.StatusCode.OK
        assert board.subscriber_count == 0


async def test_after_stop_new_calls_fail(board):
    server = await started(board)
    port = server.port
    await server.stop()
    await server.stop()  # idempotent
    await asyncio.wait_for(server.wait_for_termination(), WAIT)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        error = await rpc_error(pb_grpc.ExternalScalerStub(channel).IsActive(ref(H100.name), timeout=WAIT))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_turns_not_serving_when_stop_begins(board):
    server = await started(board, grace=WAIT)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        serving = health_pb2.HealthCheckResponse.SERVING
        assert (await asyncio.wait_for(watch.read(), WAIT)).status == serving
        stopping = asyncio.ensure_future(server.stop())
        assert (await asyncio.wait_for(watch.read(), WAIT)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # a load balancer's health watch leaves once it has seen the news
        await asyncio.wait_for(stopping, WAIT)


async def test_run_until_signal_stops_gracefully_on_sigterm(board):
    server = await started(board)
    stopped: list[str] = []

    async def on_stop() -> None:
        stopped.append("on_stop")

    before = signal.getsignal(signal.SIGTERM)
    runner = asyncio.ensure_future(run_until_signal(server, on_stop=on_stop))
    async with asyncio.timeout(WAIT):
        while signal.getsignal(signal.SIGTERM) is before:  # the loop's handler is in place
            await asyncio.sleep(0.01)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        stream = stub.StreamIsActive(ref(H100.name))
        assert (await asyncio.wait_for(stream.read(), WAIT)).result is True
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(runner, WAIT)
        assert await stream.code() == grpc.StatusCode.OK
    assert stopped == ["on_stop"]
    assert signal.getsignal(signal.SIGTERM) is before  # handlers removed again


async def test_sigterm_lets_a_call_in_flight_finish_and_refuses_new_ones(board):
    """A rollout's SIGTERM mid-call: health NOT_SERVING at once (read on the health port, which answers until the
    drain is over), the call in flight completes OK within the grace period, then the server is gone."""
    server = ScalerServer(board, port=0, host="127.0.0.1", grace=WAIT, health_port=0)
    entered, release = asyncio.Event(), asyncio.Event()
    real = server._servicer.GetMetrics

    async def held(request, context):
        entered.set()
        await release.wait()
        return await real(request, context)

    server._servicer.GetMetrics = held
    await server.start()
    before = signal.getsignal(signal.SIGTERM)
    runner = asyncio.ensure_future(run_until_signal(server))
    async with asyncio.timeout(WAIT):
        while signal.getsignal(signal.SIGTERM) is before:
            await asyncio.sleep(0.01)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        call = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(H100.name), metricName=metric_name(H100)),
                               timeout=WAIT)
        await asyncio.wait_for(entered.wait(), WAIT)
        os.kill(os.getpid(), signal.SIGTERM)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as probes:
            health_stub = health_pb2_grpc.HealthStub(probes)
            async with asyncio.timeout(WAIT):
                while (await health_stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)).status \
                        != health_pb2.HealthCheckResponse.NOT_SERVING:
                    await asyncio.sleep(0.01)
        assert not runner.done()  # still draining: the call is in flight
        release.set()
        assert (await call).metricValues[0].metricValue == 3  # completed, not CANCELLED
        await asyncio.wait_for(runner, WAIT)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        error = await rpc_error(pb_grpc.ExternalScalerStub(channel).IsActive(ref(H100.name), timeout=WAIT))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
