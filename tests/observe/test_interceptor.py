"""The gRPC interceptor against a real ScalerServer: requests by method and code, latency, open streams."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kedascaler.loop.board import DecisionBoard
from kedascaler.observe import Observer
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer
from tests.server.conftest import A100, H100, NO_DECISION, decision, spec

ES = "/externalscaler.ExternalScaler/"


def count(observer: Observer, name: str, **labels: str) -> float:
    return observer.registry.get_sample_value(name, labels) or 0.0


def ref(name: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace="llm")


@pytest.fixture
async def served():
    board = DecisionBoard()
    board.publish([decision(H100, 3), decision(A100, 0, active=False)], [spec(H100), spec(A100), spec(NO_DECISION)])
    observer = Observer(log_decisions=False)
    server = ScalerServer(board, port=0, host="127.0.0.1", grace=1.0, interceptors=[observer.interceptor()])
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield observer, channel, board
    await server.stop(0)


async def test_unary_calls_are_counted_by_method_and_code(served):
    observer, channel, _ = served
    stub = pb_grpc.ExternalScalerStub(channel)
    for _ in range(3):
        assert (await stub.IsActive(ref(H100.name))).result is True
    spec_response = await stub.GetMetricSpec(ref(H100.name))
    name = spec_response.metricSpecs[0].metricName
    await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(H100.name), metricName=name))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.IsActive(ref("no-such-variant"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(NO_DECISION.name), metricName="x"))
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))

    assert count(observer, "kedascaler_grpc_requests_total", method=ES + "IsActive", code="OK") == 3
    assert count(observer, "kedascaler_grpc_requests_total", method=ES + "IsActive", code="NOT_FOUND") == 1
    assert count(observer, "kedascaler_grpc_requests_total", method=ES + "GetMetricSpec", code="OK") == 1
    assert count(observer, "kedascaler_grpc_requests_total", method=ES + "GetMetrics", code="OK") == 1
    failed = sum(count(observer, "kedascaler_grpc_requests_total", method=ES + "GetMetrics", code=c.name)
                 for c in grpc.StatusCode if c != grpc.StatusCode.OK)
    assert failed == 1
    assert count(observer, "kedascaler_grpc_requests_total", method="/grpc.health.v1.Health/Check", code="OK") == 1
    assert count(observer, "kedascaler_grpc_request_duration_seconds_count", method=ES + "IsActive", code="OK") == 3
    assert count(observer, "kedascaler_grpc_request_duration_seconds_sum", method=ES + "IsActive", code="OK") > 0


async def test_open_streams_go_up_and_down(served):
    observer, channel, board = served
    stub = pb_grpc.ExternalScalerStub(channel)
    method = ES + "StreamIsActive"
    call = stub.StreamIsActive(ref(A100.name))
    first = await call.read()
    assert first.result is False
    assert count(observer, "kedascaler_grpc_open_streams", method=method) == 1
    board.publish([decision(A100, 1, active=True)])
    assert (await call.read()).result is True
    call.cancel()
    for _ in range(100):
        if count(observer, "kedascaler_grpc_open_streams", method=method) == 0:
            break
        await asyncio.sleep(0.02)
    assert count(observer, "kedascaler_grpc_open_streams", method=method) == 0
    assert count(observer, "kedascaler_grpc_requests_total", method=method, code="CANCELLED") == 1


async def test_bidirectional_reflection_and_unknown_methods_are_counted(served):
    observer, channel, _ = served
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in reflect.ServerReflectionInfo(iter([request]))]
    assert responses and responses[0].list_services_response.service
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert count(observer, "kedascaler_grpc_requests_total", method=method, code="OK") == 1
    assert count(observer, "kedascaler_grpc_open_streams", method=method) == 0
    bogus = channel.unary_unary("/no.Such/Method", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await bogus(b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert count(observer, "kedascaler_grpc_requests_total", method="unknown", code="UNIMPLEMENTED") == 1


async def test_health_watch_is_a_stream_too(served):
    observer, channel, _ = served
    method = "/grpc.health.v1.Health/Watch"
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await call.read()).status == health_pb2.HealthCheckResponse.SERVING
    assert count(observer, "kedascaler_grpc_open_streams", method=method) == 1
    call.cancel()
    for _ in range(100):
        if count(observer, "kedascaler_grpc_open_streams", method=method) == 0:
            break
        await asyncio.sleep(0.02)
    assert count(observer, "kedascaler_grpc_open_streams", method=method) == 0
    assert count(observer, "kedascaler_grpc_requests_total", method=method, code="CANCELLED") == 1


async def test_a_stream_ended_by_graceful_stop_counts_ok():
    board = DecisionBoard()
    board.publish([decision(A100, 0, active=False)], [spec(A100)])
    observer = Observer(log_decisions=False)
    server = ScalerServer(board, port=0, host="127.0.0.1", grace=1.0, interceptors=[observer.interceptor()])
    await server.start()
    method = ES + "StreamIsActive"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = pb_grpc.ExternalScalerStub(channel).StreamIsActive(ref(A100.name))
        await call.read()
        assert count(observer, "kedascaler_grpc_open_streams", method=method) == 1
        await server.stop(1.0)
        assert await call.code() == grpc.StatusCode.OK
    assert count(observer, "kedascaler_grpc_open_streams", method=method) == 0
    assert count(observer, "kedascaler_grpc_requests_total", method=method, code="OK") == 1
