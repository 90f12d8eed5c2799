"""What a user sees in `kubectl describe scaledobject` when something is wrong: a status and a fixable message."""

from __future__ import annotations

import logging

import grpc
import pytest

from kedascaler.engine.types import VariantKey
from kedascaler.loop.board import DecisionBoard
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer
from kedascaler.server.naming import metric_name

from .conftest import H100, NO_DECISION, NS, decision, ref, rpc_error, spec

BAD_REFS = [
    # (ScaledObjectRef, key the message must name, value it must quote)
    (ref("llama", variantAutoscaling=""), "variantAutoscaling", "''"),
    (ref("llama", variantAutoscaling="Llama_8B"), "variantAutoscaling", "'Llama_8B'"),
    (ref("llama", variantAutoscaling="-llama"), "variantAutoscaling", "'-llama'"),
    (ref("llama", variantAutoscaling="llama 8b"), "variantAutoscaling", "'llama 8b'"),
    (ref("llama", variantAutoscaling="a" * 254), "variantAutoscaling", "'" + "a" * 254 + "'"),
    (ref("llama", namespace=""), "namespace", "''"),
    (ref("llama", namespace="LLM"), "namespace", "'LLM'"),
    (ref("llama", namespace="llm.prod"), "namespace", "'llm.prod'"),
    (ref("llama", namespace="n" * 64), "namespace", "'" + "n" * 64 + "'"),
    (ref("", NS), "variantAutoscaling", "''"),  # no name and no metadata to fall back on
    (ref("Llama", NS), "variantAutoscaling", "'Llama'"),  # the ScaledObject's name is used: not a VA name
    (ref("llama", ""), "namespace", "''"),
]


def all_calls(stub: pb_grpc.ExternalScalerStub, so: pb.ScaledObjectRef, name: str = "vllm-desired-replicas-llama"):
    """Every RPC KEDA makes for one ScaledObject; streams fail on their first read."""
    return {
        "GetMetricSpec": stub.GetMetricSpec(so),
        "GetMetrics": stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=name)),
        "IsActive": stub.IsActive(so),
        "StreamIsActive": stub.StreamIsActive(so).read(),
        "StreamMetricSpec": stub.StreamMetricSpec(so).read(),
    }


@pytest.mark.parametrize(("so", "key", "value"), BAD_REFS, ids=[f"{k}={v[:20]}" for _, k, v in BAD_REFS])
async def test_bad_metadata_is_invalid_argument_naming_key_value_and_rule(stub, so, key, value):
    for method, call in all_calls(stub, so).items():
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        details = error.details()
        assert repr(key) in details and value in details, details
        assert "expected" in details and "DNS-1123" in details, details


async def test_unknown_keys_are_ignored(stub):
    so = ref("llama-8b-h100", scalerAddress="x:1", enableTLS="false", unsafeSsl="true", somethingElse="?")
    assert (await stub.IsActive(so)).result is True


async def test_unknown_variant_is_not_found_listing_the_known_ones(stub):
    for method, call in all_calls(stub, ref("llama-8b-h200")).items():
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND, method
        details = error.details()
        assert "'llama-8b-h200'" in details and f"'{NS}'" in details
        assert "llama-8b-a100, llama-8b-h100, mistral-l40s" in details
        assert "variantAutoscaling" in details  # how to fix it


async def test_unknown_namespace_says_none_are_known_there(stub):
    error = await rpc_error(stub.IsActive(ref("llama-8b-h100", "other")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no VariantAutoscalings are known in namespace 'other'" in error.details()


async def test_wrong_metric_name_is_invalid_argument_naming_the_expected_one(stub):
    so = ref("llama-8b-h100")
    for wrong in ("", "vllm-desired-replicas-llama-8b-a100", "s0-something", "s0-s1-" + metric_name(H100)):
        error = await rpc_error(stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=wrong)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert repr(metric_name(H100)) in error.details() and repr(wrong) in error.details()


async def test_known_variant_without_decision_is_unavailable(stub):
    so = ref(NO_DECISION.name)
    assert (await stub.GetMetricSpec(so)).metricSpecs[0].metricName == metric_name(NO_DECISION)  # spec is known
    for call in (stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=metric_name(NO_DECISION))),
                 stub.IsActive(so)):
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "no decision yet" in error.details()


async def test_before_the_first_cycle_everything_is_unavailable_not_not_found():
    server = ScalerServer(DecisionBoard(), port=0, host="127.0.0.1")
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for method, call in all_calls(stub, ref("llama-8b-h100"), metric_name(H100)).items():
                error = await rpc_error(call)
                assert error.code() == grpc.StatusCode.UNAVAILABLE, method
                assert "starting" in error.details()
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def stale_stub():
    """A server that refuses decisions whose metrics are older than 60 s, on a clock the test sets."""
    now = 1_000_000.0
    board = DecisionBoard()
    board.publish([decision(H100, 4, data_at=now - 61)], [spec(H100), spec(NO_DECISION)])
    server = ScalerServer(board, port=0, host="127.0.0.1", stale_after=60, clock=lambda: now)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield board, pb_grpc.ExternalScalerStub(channel), now
    await server.stop(grace=0)


async def test_stale_decision_is_unavailable_saying_how_old(stale_stub):
    board, stub, now = stale_stub
    so = ref(H100.name)
    request = pb.GetMetricsRequest(scaledObjectRef=so, metricName=metric_name(H100))
    for call in (stub.GetMetrics(request), stub.IsActive(so)):
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "61s old" in error.details() and "60s" in error.details()

    board.publish([decision(H100, 4, data_at=now - 59)])  # fresh again: served again
    assert (await stub.GetMetrics(request)).metricValues[0].metricValue == 4
    assert (await stub.IsActive(so)).result is True


class BrokenBoard(DecisionBoard):
    """A board with a bug: reading a decision raises."""

    def get(self, key: VariantKey):
        raise RuntimeError("secret internals of a bug")


async def test_a_bug_is_internal_with_a_short_message_and_the_trace_in_the_log(caplog):
    board = BrokenBoard()
    board.publish([], [spec(H100)])
    server = ScalerServer(board, port=0, host="127.0.0.1")
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            with caplog.at_level(logging.ERROR, logger="kedascaler.server"):
                error = await rpc_error(stub.IsActive(ref(H100.name)))
    finally:
        await server.stop(grace=0)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in error.details() and "Traceback" not in error.details()
    assert "log" in error.details()
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
