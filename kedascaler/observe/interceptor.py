"""A grpc.aio server interceptor: requests and latency by method and status code, and open streams.

It wraps every handler kind (unary and streaming, coroutine or async-generator style), so the ExternalScaler
RPCs, grpc.health.v1 and reflection are all counted. The status code is the one the call ended with: OK, the
code given to `context.abort`/`set_code`, CANCELLED when the client went away, UNKNOWN for an escaped exception.
Method labels are the full gRPC method path (`/externalscaler.ExternalScaler/GetMetrics`); a path the server
does not implement is counted as `unknown`, so a scanner cannot grow the label set.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

UNKNOWN_METHOD = "unknown"


def _code_name(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> str:
    """The status the call has been given on its context, else `default`."""
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older grpc versions have no code() on aio contexts
        code = None
    if code is None:
        return default.name
    if isinstance(code, grpc.StatusCode):
        return code.name
    for status in grpc.StatusCode:  # an integer code from the cython layer
        if status.value[0] == code:
            return status.name
    return default.name


def _failure_code(exc: BaseException, context: grpc.aio.ServicerContext) -> str:
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):  # the client went away mid-call
        return grpc.StatusCode.CANCELLED.name
    if isinstance(exc, grpc.aio.AbortError):
        return _code_name(context, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN.name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC into `metrics` (a `kedascaler.observe.metrics.ScalerMetrics`)."""

    def __init__(self, metrics, clock: Callable[[], float] = time.perf_counter) -> None:
        self.metrics = metrics
        self.clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # UNIMPLEMENTED, answered by grpc itself
            self._done(UNKNOWN_METHOD, grpc.StatusCode.UNIMPLEMENTED.name, 0.0)
            return handler
        method = handler_call_details.method or UNKNOWN_METHOD
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(method, handler.unary_unary),
                                                       handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._unary(method, handler.stream_unary),
                                                        handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._stream(method, handler.unary_stream),
                                                        handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(self._stream(method, handler.stream_stream),
                                                         handler.request_deserializer, handler.response_serializer)
        return handler

    def _done(self, method: str, code: str, elapsed: float) -> None:
        self.metrics.grpc_requests.labels(method, code).inc()
        self.metrics.grpc_duration.labels(method, code).observe(elapsed)

    def _unary(self, method: str, behaviour):
        async def wrapped(request_or_iterator, context):
            started = self.clock()
            try:
                response = await behaviour(request_or_iterator, context)
            except BaseException as exc:
                self._done(method, _failure_code(exc, context), self.clock() - started)
                raise
            self._done(method, _code_name(context, grpc.StatusCode.OK), self.clock() - started)
            return response

        return wrapped

    def _stream(self, method: str, behaviour):
        streams = self.metrics.grpc_open_streams.labels(method)
        if inspect.isasyncgenfunction(behaviour):
            async def wrapped_gen(request_or_iterator, context):
                started = self.clock()
                streams.inc()
                code = grpc.StatusCode.OK.name
                try:
                    async for response in behaviour(request_or_iterator, context):
                        yield response
                    code = _code_name(context, grpc.StatusCode.OK)
                except BaseException as exc:
                    code = _failure_code(exc, context)
                    raise
                finally:
                    streams.dec()
                    self._done(method, code, self.clock() - started)

            return wrapped_gen

        async def wrapped_coro(request_or_iterator, context):  # writes with context.write(), returns None
            started = self.clock()
            streams.inc()
            code = grpc.StatusCode.OK.name
            try:
                result = await behaviour(request_or_iterator, context)
                code = _code_name(context, grpc.StatusCode.OK)
                return result
            except BaseException as exc:
                code = _failure_code(exc, context)
                raise
            finally:
                streams.dec()
                self._done(method, code, self.clock() - started)

        return wrapped_coro
