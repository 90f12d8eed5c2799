"""Requests whose bytes are not the protobuf message they should be: INVALID_ARGUMENT, not UNKNOWN.

grpc.aio answers a request its deserializer cannot parse with UNKNOWN and an ERROR log with a traceback, per
request. Here the deserializer hands the servicer a marker instead, and the call ends with INVALID_ARGUMENT
naming the expected message (logged by the caller's throttled log, not as a traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class Malformed:
    """Stands in for a request that could not be parsed."""

    def __init__(self, expected: str, error: Exception) -> None:
        self.details = f"request is not a valid {expected} message: {type(error).__name__}"


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    expected = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = expected.full_name if expected is not None else "protobuf"

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, or anything the parser raises on garbage
            return Malformed(name, exc)
    return parse


def _guard(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, rebuilt (as the generated code builds it) around a deserializer that cannot fail."""
    if handler.request_streaming:
        return handler  # ExternalScaler has no client streaming
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request, context):
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details)
            return await inner(request, context)
        return grpc.unary_unary_rpc_method_handler(unary, _safe(handler.request_deserializer),
                                                   handler.response_serializer)
    inner_stream = handler.unary_stream

    async def stream(request, context):
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details)
        async for item in inner_stream(request, context):
            yield item
    return grpc.unary_stream_rpc_method_handler(stream, _safe(handler.request_deserializer),
                                                handler.response_serializer)


class GuardedRegistrar:
    """Passed to a generated `add_*Servicer_to_server` in place of the server: registers guarded handlers."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # the generated code registers the same handlers again just after, by name: done there

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        guarded = {name: _guard(h) for name, h in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
        self._server.add_registered_method_handlers(service, guarded)
