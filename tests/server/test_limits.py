"""Hostile trigger metadata: what a client sends is bounded before it is parsed, validated, cached or echoed.

The receive limit (tens of KiB: a ScaledObjectRef is a few hundred bytes), the length checks that run before
the cached validators, the truncated echo in the error and the log, the bounded throttled log, and the cap on
open streams. Memory and latency under the same abuse, against a `serve` process, are measured by
`benchmarks/bench_abuse.py`.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server import metadata
from kedascaler.server.app import MAX_REQUEST_BYTES, ScalerServer
from kedascaler.server.errors import RpcFailure, ThrottledLog, invalid_argument
from kedascaler.server.metadata import InvalidMetadata, variant_key

from .conftest import H100, NS, ref, rpc_error


async def test_a_request_over_the_receive_limit_is_resource_exhausted_and_others_still_answer(stub):
    assert 16 * 1024 <= MAX_REQUEST_BYTES <= 128 * 1024  # tens of KiB: a ScaledObjectRef is a few hundred bytes
    big = "a" * (MAX_REQUEST_BYTES + 1)
    for call in (stub.GetMetricSpec(ref("llama", variantAutoscaling=big)),
                 stub.IsActive(ref("llama", big))):
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()[:200]
        assert "larger than max" in error.details(), error.details()[:200]  # refused by the server on arrival
    assert (await stub.IsActive(ref(H100.name))).result is True


@pytest.mark.parametrize("key", ["variantAutoscaling", "namespace"])
async def test_a_long_value_is_invalid_argument_with_a_short_echo_naming_its_length(stub, key):
    value = "a" * 20_000  # under the receive limit, far over any Kubernetes name
    error = await rpc_error(stub.GetMetricSpec(ref("llama", **{key: value})))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details()
    assert repr(key) in details and "20000 characters" in details, details[:300]
    assert len(details) < 1_000, len(details)


async def test_long_ref_fields_are_not_echoed_in_full(stub):
    error = await rpc_error(stub.IsActive(pb.ScaledObjectRef(name="N" * 30_000, namespace="s" * 30_000)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details()) < 1_000, len(error.details())


def test_long_values_are_refused_before_the_cached_validators_see_them():
    metadata._matches_subdomain.cache_clear()
    metadata._matches_label.cache_clear()
    for i in range(50):
        with pytest.raises(InvalidMetadata) as info:
            variant_key("so", NS, {"variantAutoscaling": f"{i}" + "a" * 300})
        assert len(str(info.value)) < 1_000 and len(info.value.value) < 400
        with pytest.raises(InvalidMetadata):
            variant_key("so", NS, {"namespace": f"{i}" + "n" * 100})
    assert metadata._matches_subdomain.cache_info().currsize == 1  # only the short, valid name "so"
    assert metadata._matches_label.cache_info().currsize == 0


def test_the_throttled_log_is_bounded_when_every_failure_is_distinct(caplog):
    now = [0.0]
    throttled = ThrottledLog(interval=60.0, clock=lambda: now[0], burst=10)
    with caplog.at_level(logging.WARNING, logger="kedascaler.server"):
        for i in range(1_000):
            throttled.warning("IsActive", invalid_argument(f"bad value {i}"))
        assert len(caplog.records) == 10
        now[0] = 61.0
        throttled.warning("IsActive", invalid_argument("bad value again"))
    texts = [r.getMessage() for r in caplog.records]
    assert len(texts) == 12 and "990 more" in texts[10], texts[10:]


def test_the_throttled_log_truncates_a_long_message(caplog):
    throttled = ThrottledLog()
    with caplog.at_level(logging.WARNING, logger="kedascaler.server"):
        throttled.warning("GetMetrics", RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, "x" * 100_000))
    assert len(caplog.records[0].getMessage()) < 2_000


async def test_open_streams_are_capped_and_unary_calls_still_answer(board):
    server = ScalerServer(board, port=0, host="127.0.0.1", max_streams=2, max_concurrent_rpcs=10)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            streams = [stub.StreamIsActive(ref(H100.name)) for _ in range(2)]
            for s in streams:
                assert (await asyncio.wait_for(s.read(), 10)).result is True
            error = await rpc_error(stub.StreamIsActive(ref(H100.name)).read())
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-streams" in error.details()
            assert (await stub.IsActive(ref(H100.name))).result is True
            streams[0].cancel()
            for _ in range(100):  # the slot frees once the server sees the cancellation
                again = stub.StreamIsActive(ref(H100.name))
                try:
                    assert (await asyncio.wait_for(again.read(), 10)).result is True
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("a cancelled stream never freed its slot")
            again.cancel()
            streams[1].cancel()
    finally:
        await server.stop(grace=0)


def test_limits_are_checked(board):
    with pytest.raises(ValueError, match="max_streams"):
        ScalerServer(board, max_streams=0)
    with pytest.raises(ValueError, match="max_concurrent_rpcs"):
        ScalerServer(board, max_streams=100, max_concurrent_rpcs=100)
