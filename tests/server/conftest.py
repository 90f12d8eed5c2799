"""A real ScalerServer on a loopback ephemeral port over a hand-filled DecisionBoard, and a client for it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest

from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer

NS = "llm"
H100 = VariantKey(NS, "llama-8b-h100")
A100 = VariantKey(NS, "llama-8b-a100")
NO_DECISION = VariantKey(NS, "mistral-l40s")  # known VariantAutoscaling, never decided


def spec(key: VariantKey, model: str = "meta/llama-8b") -> VariantSpec:
    return VariantSpec(key=key, model_id=model, target_name=f"{key.name}-deploy")


def decision(key: VariantKey, desired: int, *, active: bool = True, data_at: float | None = None) -> Decision:
    now = time.time() if data_at is None else data_at
    return Decision(
        key=key,
        model_id="meta/llama-8b",
        desired_replicas=desired,
        active=active,
        reason=Reason("hold", "test"),
        decided_at=now,
        data_at=now,
    )


def ref(name: str, namespace: str = NS, /, **metadata: str) -> pb.ScaledObjectRef:
    """A ScaledObjectRef as KEDA sends it: the trigger's metadata plus KEDA's own scalerAddress."""
    return pb.ScaledObjectRef(
        name=name,
        namespace=namespace,
        scalerMetadata={"scalerAddress": "kedascaler.kedascaler-system:9090", **metadata},
    )


@pytest.fixture
def board() -> DecisionBoard:
    board = DecisionBoard()
    board.publish(
        [decision(H100, 3, active=True), decision(A100, 0, active=False)],
        [spec(H100), spec(A100), spec(NO_DECISION)],
    )
    return board


@pytest.fixture
async def server(board: DecisionBoard) -> AsyncIterator[ScalerServer]:
    server = ScalerServer(board, port=0, host="127.0.0.1", grace=2.0)
    await server.start()
    yield server
    await server.stop(grace=0)


@pytest.fixture
async def channel(server: ScalerServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.ExternalScalerStub:
    return pb_grpc.ExternalScalerStub(channel)


async def rpc_error(call) -> grpc.aio.AioRpcError:
    """Await a call that must fail and return its error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value
