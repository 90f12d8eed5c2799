"""KEDA's ExternalScaler service, answered from a `Board` (the DecisionBoard, or its mirror in serve's answering
process): every unary call is a few dict lookups.

Nothing here waits on Prometheus or the reconcile loop. A call either gets the board's latest decision or
a status KEDA knows how to act on: INVALID_ARGUMENT / NOT_FOUND (the ScaledObject is wrong, fix it),
UNAVAILABLE (no decision or a stale one: KEDA's `fallback` takes over), INTERNAL (a bug, logged here).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import NoReturn

import grpc

from kedascaler.engine.types import VariantKey
from kedascaler.loop.board import Board, Served, Subscription
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.errors import (
    INTERNAL_MESSAGE,
    RpcFailure,
    ThrottledLog,
    invalid_argument,
    not_found,
    resource_exhausted,
    shown,
    unavailable,
)
from kedascaler.server.metadata import VARIANT_KEY, InvalidMetadata, variant_key
from kedascaler.server.naming import matches, metric_name

log = logging.getLogger("kedascaler.server")

TARGET = 1  # HPA AverageValue: desired = ceil(value / target), so value = desired replicas
MAX_NAMES_LISTED = 20


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    """The five ExternalScaler RPCs over one DecisionBoard; `close_streams()` ends open streams cleanly."""

    def __init__(
        self,
        board: Board,
        *,
        stale_after: float | None = None,
        clock: Callable[[], float] = time.time,
        max_streams: int | None = None,
    ) -> None:
        """`max_streams`: open StreamIsActive + StreamMetricSpec streams at most (None: no limit); one more
        gets RESOURCE_EXHAUSTED, so streams can never take every slot that unary calls need."""
        self._board = board
        self._stale_after = stale_after
        self._clock = clock
        self._max_streams = max_streams
        self._streams = 0
        self._closing = asyncio.Event()
        self._failures = ThrottledLog()

    @property
    def open_streams(self) -> int:
        return self._streams

    def close_streams(self) -> None:
        """End every open (and every new) stream with status OK: the server is shutting down."""
        self._closing.set()

    # -- lookups shared by all RPCs (pure, raise RpcFailure) --
    def _key(self, ref: pb.ScaledObjectRef) -> VariantKey:
        try:
            return variant_key(ref.name, ref.namespace, ref.scalerMetadata)
        except InvalidMetadata as exc:
            raise invalid_argument(f"ScaledObject {_ref_name(ref)}: {exc}") from None

    def _require_known(self, key: VariantKey) -> None:
        """NOT_FOUND for a VariantAutoscaling the board does not know, listing the ones it does."""
        board = self._board
        if board.knows(key):
            return
        if board.version == 0:
            raise unavailable("kedascaler is starting: no reconcile cycle has completed yet")
        names = board.names_in(key.namespace)
        if names:
            shown = ", ".join(names[:MAX_NAMES_LISTED])
            more = f" and {len(names) - MAX_NAMES_LISTED} more" if len(names) > MAX_NAMES_LISTED else ""
            known = f"VariantAutoscalings in namespace {key.namespace!r}: {shown}{more}"
        else:
            known = f"no VariantAutoscalings are known in namespace {key.namespace!r}"
        raise not_found(
            f"VariantAutoscaling {key.name!r} not found in namespace {key.namespace!r} ({known}); "
            f"set trigger metadata {VARIANT_KEY!r} to the VariantAutoscaling's name"
        )

    def _decision(self, key: VariantKey) -> Served:
        """The variant's latest decision, or UNAVAILABLE when there is none or it is too old to act on."""
        self._require_known(key)
        decision = self._board.get(key)
        if decision is None:
            raise unavailable(f"no decision yet for VariantAutoscaling {key}: its metrics have not been collected yet")
        if self._stale_after is not None:
            age = self._clock() - decision.data_at
            if age > self._stale_after:
                raise unavailable(
                    f"decision for VariantAutoscaling {key} is stale: its metrics are {age:.0f}s old "
                    f"(limit {self._stale_after:g}s); KEDA's fallback applies until fresh metrics arrive"
                )
        return decision

    def _spec_response(self, ref: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse:
        key = self._key(ref)
        self._require_known(key)
        spec = pb.MetricSpec(metricName=metric_name(key), targetSize=TARGET, targetSizeFloat=float(TARGET))
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    def _metrics_response(self, request: pb.GetMetricsRequest) -> pb.GetMetricsResponse:
        key = self._key(request.scaledObjectRef)
        self._require_known(key)
        if not matches(request.metricName, key):
            raise invalid_argument(
                f"metricName {shown(request.metricName)} is not served for VariantAutoscaling {key}: "
                f"expected {metric_name(key)!r} (as returned by GetMetricSpec)"
            )
        desired = self._decision(key).desired_replicas
        value = pb.MetricValue(metricName=metric_name(key), metricValue=desired, metricValueFloat=float(desired))
        return pb.GetMetricsResponse(metricValues=[value])

    # -- error mapping --
    async def _fail(self, context: grpc.aio.ServicerContext, method: str, exc: Exception) -> NoReturn:
        """End the call with the failure's status; unexpected exceptions become INTERNAL, trace in the log only."""
        if isinstance(exc, RpcFailure):
            failure = exc
            self._failures.warning(method, failure)
        else:
            log.error("%s failed unexpectedly", method, exc_info=exc)
            failure = RpcFailure(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        await context.abort(failure.code, failure.details)

    # -- unary RPCs --
    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context) -> pb.GetMetricSpecResponse:
        try:
            return self._spec_response(request)
        except Exception as exc:  # noqa: BLE001 - mapped to a status, never sent as a trace
            error = exc
        await self._fail(context, "GetMetricSpec", error)

    async def GetMetrics(self, request: pb.GetMetricsRequest, context) -> pb.GetMetricsResponse:
        try:
            return self._metrics_response(request)
        except Exception as exc:  # noqa: BLE001
            error = exc
        await self._fail(context, "GetMetrics", error)

    async def IsActive(self, request: pb.ScaledObjectRef, context) -> pb.IsActiveResponse:
        try:
            return pb.IsActiveResponse(result=self._decision(self._key(request)).active)
        except Exception as exc:  # noqa: BLE001
            error = exc
        await self._fail(context, "IsActive", error)

    # -- streams --
    async def StreamIsActive(self, request: pb.ScaledObjectRef, context) -> AsyncIterator[pb.IsActiveResponse]:
        """The current flag at once (after the first decision if there is none yet), then every change."""
        error: Exception | None
        try:
            key = self._key(request)
            self._require_known(key)
            self._open_stream()
        except Exception as exc:  # noqa: BLE001
            error = exc
        else:
            error = None
        if error is not None:
            await self._fail(context, "StreamIsActive", error)
            return
        try:
            sub = self._board.subscribe(key)  # before reading the board, so no flip slips between the two
        except BaseException:
            self._streams -= 1
            raise
        try:
            decision = self._board.get(key)
            last = None if decision is None else decision.active
            if last is not None:
                yield pb.IsActiveResponse(result=last)
            while True:
                active = await self._next_or_closing(sub)
                if active is None:
                    return  # shutdown: end with OK so KEDA reconnects at once (to another replica)
                if active != last:
                    last = active
                    yield pb.IsActiveResponse(result=active)
        finally:
            sub.close()
            self._streams -= 1

    def _open_stream(self) -> None:
        """Count one more open stream, or RESOURCE_EXHAUSTED at the limit (all on the event loop: no lock)."""
        if self._max_streams is not None and self._streams >= self._max_streams:
            raise resource_exhausted(
                f"too many open streams: {self._streams} of at most {self._max_streams}; each ScaledObject with "
                "an external-push trigger holds one. Raise kedascaler serve --max-streams, or use the "
                "external trigger (polling) for some ScaledObjects")
        self._streams += 1

    async def _next_or_closing(self, sub: Subscription) -> bool | None:
        """The next active flag, or None once the server is closing."""
        if self._closing.is_set():
            return None
        nxt = asyncio.ensure_future(sub.next())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((nxt, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (nxt, closing):
                task.cancel()
        if closing.done() and not closing.cancelled():
            return None
        return nxt.result()

    async def StreamMetricSpec(self, request: pb.ScaledObjectRef, context) -> AsyncIterator[pb.GetMetricSpecResponse]:
        """The same specs as GetMetricSpec at once; they never change for a VA, so then hold until shutdown."""
        error: Exception | None
        try:
            response = self._spec_response(request)
            self._open_stream()
        except Exception as exc:  # noqa: BLE001
            error = exc
        else:
            error = None
        if error is not None:
            await self._fail(context, "StreamMetricSpec", error)
            return
        try:
            yield response
            await self._closing.wait()
        finally:
            self._streams -= 1


def _ref_name(ref: pb.ScaledObjectRef) -> str:
    """`namespace/name` of a ScaledObjectRef as sent, each cut short: what an error may echo."""
    namespace = ref.namespace if len(ref.namespace) <= 80 else shown(ref.namespace, 80)
    name = ref.name if len(ref.name) <= 260 else shown(ref.name, 80)
    return f"{namespace}/{name}"
