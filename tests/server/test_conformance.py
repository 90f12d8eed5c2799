"""The calls exactly as KEDA makes them, and what KEDA and the HPA get back."""

from __future__ import annotations

import asyncio

import grpc

from kedascaler.engine.types import VariantKey
from kedascaler.loop.board import DecisionBoard
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.server.naming import metric_name

from .conftest import A100, H100, NO_DECISION, decision, ref

WAIT = 10.0  # generous: only there so a broken server fails the test instead of hanging it


async def test_keda_sequence_spec_then_metrics_then_is_active(stub):
    so = ref("llama-8b-h100")
    specs = (await stub.GetMetricSpec(so)).metricSpecs
    assert len(specs) == 1
    spec = specs[0]
    assert spec.metricName == "vllm-desired-replicas-llama-8b-h100"
    assert spec.targetSize == 1 and spec.targetSizeFloat == 1.0  # old and new KEDA read one each

    for name in (spec.metricName, f"s0-{spec.metricName}"):  # KEDA strips sN-; accept it anyway
        values = (await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=name))).metricValues
        assert [(v.metricValue, v.metricValueFloat) for v in values] == [(3, 3.0)]
        assert values[0].metricName == spec.metricName

    assert (await stub.IsActive(so)).result is True


async def test_metadata_names_the_variant_instead_of_the_scaledobject(stub):
    so = ref("some-scaledobject", "apps", variantAutoscaling=A100.name, namespace=A100.namespace)
    name = (await stub.GetMetricSpec(so)).metricSpecs[0].metricName
    assert name == metric_name(A100)
    values = (await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=name))).metricValues
    assert values[0].metricValue == 0 and values[0].metricValueFloat == 0.0
    assert (await stub.IsActive(so)).result is False


async def test_get_metrics_follows_the_board(stub, board: DecisionBoard):
    so = ref("llama-8b-h100")
    request = pb.GetMetricsRequest(scaledObjectRef=so, metricName=metric_name(H100))
    board.publish([decision(H100, 7)])
    assert (await stub.GetMetrics(request)).metricValues[0].metricValue == 7
    board.publish([decision(H100, 0, active=False)])
    assert (await stub.GetMetrics(request)).metricValues[0].metricValue == 0
    assert (await stub.IsActive(so)).result is False


async def test_stream_is_active_sends_current_value_then_each_flip(stub, board: DecisionBoard):
    call = stub.StreamIsActive(ref("llama-8b-a100"))
    first = await asyncio.wait_for(call.read(), WAIT)
    assert first.result is False

    board.publish([decision(A100, 2, active=True)])
    assert (await asyncio.wait_for(call.read(), WAIT)).result is True
    board.publish([decision(A100, 3, active=True)])  # same flag: nothing to push
    board.publish([decision(A100, 0, active=False)])
    assert (await asyncio.wait_for(call.read(), WAIT)).result is False
    call.cancel()


async def test_stream_is_active_waits_for_the_first_decision(stub, board: DecisionBoard):
    call = stub.StreamIsActive(ref("mistral-l40s"))
    first = asyncio.ensure_future(call.read())
    await asyncio.sleep(0.05)
    assert not first.done()  # nothing to say yet
    board.publish([decision(NO_DECISION, 1, active=True)])
    assert (await asyncio.wait_for(first, WAIT)).result is True
    call.cancel()


async def test_stream_cancelled_by_client_unsubscribes(stub, board: DecisionBoard):
    calls = [stub.StreamIsActive(ref("llama-8b-h100")) for _ in range(5)]
    for call in calls:
        assert (await asyncio.wait_for(call.read(), WAIT)).result is True
    assert board.subscriber_count == 5
    for call in calls:
        call.cancel()
    for call in calls:
        assert await call.code() == grpc.StatusCode.CANCELLED
    async with asyncio.timeout(WAIT):
        while board.subscriber_count:
            await asyncio.sleep(0.01)
    assert board.subscriber_count == 0


async def test_stream_metric_spec_sends_specs_at_once_and_holds(stub):
    call = stub.StreamMetricSpec(ref("llama-8b-h100"))
    response = await asyncio.wait_for(call.read(), WAIT)
    assert [(s.metricName, s.targetSize, s.targetSizeFloat) for s in response.metricSpecs] == [
        (metric_name(H100), 1, 1.0)
    ]
    assert call.done() is False  # held open: KEDA would otherwise reconnect in a loop
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_64_concurrent_get_metrics_all_succeed(stub):
    so = ref("llama-8b-h100")
    request = pb.GetMetricsRequest(scaledObjectRef=so, metricName=metric_name(H100))
    responses = await asyncio.wait_for(asyncio.gather(*(stub.GetMetrics(request) for _ in range(64))), WAIT)
    assert {r.metricValues[0].metricValue for r in responses} == {3}


async def test_one_connection_serves_many_scaledobjects(stub):
    """KEDA shares one connection across ScaledObjects: answers must not leak between them."""
    pairs = [(ref("llama-8b-h100"), 3), (ref("llama-8b-a100"), 0)] * 16
    requests = [pb.GetMetricsRequest(scaledObjectRef=so, metricName=f"s1-{metric_name_for(so)}") for so, _ in pairs]
    responses = await asyncio.gather(*(stub.GetMetrics(r) for r in requests))
    assert [r.metricValues[0].metricValue for r in responses] == [want for _, want in pairs]


def metric_name_for(so: pb.ScaledObjectRef) -> str:
    return metric_name(VariantKey(so.namespace, so.name))
