"""serve's answering process: the gRPC server (ExternalScaler, health, reflection) on a board mirrored to it.

A cycle at 10,000 models is seconds of Python; in the process that answers KEDA it shares the GIL with every
RPC, which then waits behind it (a GetMetrics p99 three times its idle value, the loop held tens of ms). So
`serve` runs the gRPC server in a process of its own, spawned at start, that does nothing else:

- the board comes over a pipe as compact messages (`kedascaler.loop.mirror`: the three numbers of each variant
  per publish, the names only when they change) and is read there in O(1);
- control over a second pipe: started (the bound ports) or failed (why: `serve` exits 1 with it), readiness,
  stop (with serve's grace: health NOT_SERVING, streams ended, calls in flight finished);
- its gRPC families (requests, latency, open streams, and how late its loop wakes,
  `kedascaler_grpc_loop_lag_seconds`) are asked for over a third pipe at each scrape of serve's /metrics.

It ignores SIGINT (serve relays the stop) and stops on SIGTERM or when serve's end of the pipes closes: it
never outlives serve. Everything else — sources, cycles, Kubernetes writes, /metrics, the activation
endpoint — stays in serve's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kedascaler.kits.clock import SteadyClock
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.mirror import Message, MirrorBoard, MirrorFeed
from kedascaler.observe.families import ScalerMetrics
from kedascaler.observe.interceptor import MetricsInterceptor
from kedascaler.observe.records import configure_logging
from kedascaler.server.app import ScalerServer, TLSConfig
from kedascaler.server.health import ready_when

log = logging.getLogger("kedascaler.server")

START_TIMEOUT_S = 60.0  # a fresh interpreter, grpc imported, the ports bound
ASK_TIMEOUT_S = 2.0  # a scrape's wait for the answering process's families
LAG_PROBE_S = 0.1  # the loop-lag timer's period
LAG_KEPT = 200_000  # (due, late) samples kept for `Answerer.ask("lags")` (benchmarks), when asked for


@dataclass(frozen=True)
class AnswerConfig:
    """What the answering process needs: ScalerServer's settings, serve's clock and its logging."""

    port: int
    host: str = "[::]"
    tls: TLSConfig | None = None
    stale_after: float | None = None
    grace: float = 5.0
    max_streams: int = 2_048
    max_concurrent_rpcs: int = 4_096
    health_port: int | None = None
    ready: bool = True
    clock_offset: float | None = None  # SteadyClock.offset of serve's clock (None: a clock of its own)
    log_level: str = "INFO"
    log_format: str = "plain"
    lag_probe_s: float = LAG_PROBE_S
    keep_lags: bool = False


class Answerer:
    """serve's handle on the answering process; start(), ready_when(), stop() and wait_for_termination() as
    ScalerServer's, so `run_until_signal` runs either."""

    def __init__(self, board: DecisionBoard, config: AnswerConfig) -> None:
        self.board = board
        self.config = config
        self.port: int | None = None
        self.health_port: int | None = None
        self._process: Any = None
        self._board_out: Connection | None = None
        self._control: Connection | None = None
        self._asks: Connection | None = None
        self._ask_lock = threading.Lock()
        self._asked = 0
        self._broken = False
        self._lost = False
        self._readiness: asyncio.Task | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def ended_on_its_own(self) -> bool:
        """The process had failed before it was asked to stop (killed, out of memory): KEDA was not answered."""
        return self._lost

    @property
    def exitcode(self) -> int | None:
        return None if self._process is None else self._process.exitcode

    async def start(self) -> int:
        """Spawn the process and wait until it has bound its ports; OSError with its reason if it could not."""
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of serve's threads or heap
        board_in, self._board_out = context.Pipe(duplex=False)
        self._control, control = context.Pipe()
        self._asks, asks = context.Pipe()
        self._process = context.Process(target=answer, args=(self.config, board_in, control, asks),
                                        name="kedascaler-answer", daemon=True)
        self._process.start()
        for end in (board_in, control, asks):
            end.close()
        reply = await asyncio.to_thread(self._first_reply)
        if reply[0] != "started":
            await asyncio.to_thread(self._process.join, 5.0)
            raise OSError(reply[1])
        self.port, self.health_port = reply[1], reply[2]
        self.board.listen(MirrorFeed(self._send), replay=True)
        return self.port

    def _first_reply(self) -> tuple[Any, ...]:
        assert self._control is not None
        if not self._control.poll(START_TIMEOUT_S):
            return ("failed", f"the gRPC server did not start within {START_TIMEOUT_S:g} s")
        try:
            return tuple(self._control.recv())
        except EOFError:
            return ("failed", f"the gRPC server's process ended at start (exit code {self._process.exitcode})")

    def _send(self, message: Message) -> None:
        """Called in the publishing (cycle) thread; a process that is gone is said once, not every cycle."""
        assert self._board_out is not None
        try:
            self._board_out.send(message)
        except (OSError, ValueError) as exc:
            if not self._broken:
                log.error("the gRPC server's process is gone (%s): its decisions are no longer updated", exc)
            self._broken = True

    def _command(self, *command: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self._control is not None
            self._control.send(command)

    async def set_ready(self, ready: bool) -> None:
        self._command("ready", ready)

    async def ready_when(self, synced: Callable[[], bool], *, wait: float) -> bool:
        """Readiness SERVING once `synced()` (non-blocking) is true; True if that happened within `wait` s."""
        ok, self._readiness = await ready_when(self, synced, wait=wait)
        return ok

    async def stop(self, grace: float | None = None) -> None:
        """Stop the process gracefully (serve's grace), killed if it has not ended a few seconds after."""
        if self._process is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(self.config.grace if grace is None else grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        if wait([self._process.sentinel], timeout=0):  # it had ended: reap it (its pipe closes before it is a zombie)
            await asyncio.to_thread(self._process.join, 5.0)
            self._lost = self._process.exitcode not in (0, None)
        if self._readiness is not None:
            self._readiness.cancel()
        self._command("stop", grace)
        await asyncio.to_thread(self._process.join, grace + 5.0)
        if self._process.is_alive():
            log.warning("the gRPC server's process did not stop within %g s: killed", grace + 5.0)
            self._process.kill()
            await asyncio.to_thread(self._process.join, 5.0)
        for end in (self._board_out, self._control, self._asks):
            if end is not None:
                end.close()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def kill(self) -> None:
        """At once, if it still runs (serve's last cleanup: whatever happened, the process does not outlive it)."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(5.0)

    async def wait_for_termination(self) -> None:
        """Return once the process has ended (at once if it never started); safe to cancel."""
        if self._process is None:
            return
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        sentinel = self._process.sentinel

        def on_end() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(sentinel, on_end)
        try:
            await ended
        finally:
            loop.remove_reader(sentinel)

    def ask(self, what: str) -> Any:
        """`families` (its gRPC metric families) or `lags` (loop-lag samples since last asked); None on timeout."""
        with self._ask_lock:
            if self._asks is None or self._asks.closed:
                return None
            self._asked += 1
            try:
                self._asks.send((self._asked, what))
                while self._asks.poll(ASK_TIMEOUT_S):
                    number, answer_ = self._asks.recv()
                    if number == self._asked:
                        return answer_
            except (OSError, EOFError, ValueError):
                return None
            return None

    def collector(self) -> Collector:
        """Its gRPC families, for serve's /metrics (`Observer.serve_rpc_metrics`)."""
        return _Families(self)


class _Families(Collector):
    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer

    def collect(self) -> Iterator[Metric]:
        families = self.answerer.ask("families")
        if families is None:
            log.warning("the gRPC server's process did not send its metrics within %g s", ASK_TIMEOUT_S)
            return
        yield from families


# -- the answering process --

def answer(config: AnswerConfig, board_in: Connection, control: Connection, asks: Connection) -> None:
    """The process's entry point (spawned by `Answerer.start`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: serve relays the stop
    configure_logging(config.log_level, config.log_format)
    asyncio.run(_answer(config, board_in, control, asks))


async def _answer(config: AnswerConfig, board_in: Connection, control: Connection, asks: Connection) -> None:
    loop = asyncio.get_running_loop()
    board = MirrorBoard()
    registry = CollectorRegistry()
    metrics = ScalerMetrics(registry)
    clock = SteadyClock() if config.clock_offset is None else SteadyClock.sharing(config.clock_offset)
    server = ScalerServer(board, port=config.port, host=config.host, tls=config.tls, stale_after=config.stale_after,
                          clock=clock, grace=config.grace, interceptors=[MetricsInterceptor(metrics)],
                          max_streams=config.max_streams, max_concurrent_rpcs=config.max_concurrent_rpcs,
                          health_port=config.health_port, ready=config.ready)
    try:
        port = await server.start()
    except (OSError, ValueError) as exc:
        control.send(("failed", str(exc)))
        return
    control.send(("started", port, server.health_port))
    gc.collect()
    gc.freeze()  # what start-up built (modules, grpc, the server) is never walked again by a collection
    stop: asyncio.Future[float] = loop.create_future()

    def stop_with(grace: float) -> None:
        if not stop.done():
            stop.set_result(grace)

    loop.add_signal_handler(signal.SIGTERM, stop_with, config.grace)
    lags: deque[tuple[float, float]] | None = deque(maxlen=LAG_KEPT) if config.keep_lags else None
    threading.Thread(target=_receive, args=(board_in, board), name="board-in", daemon=True).start()
    threading.Thread(target=_commands, args=(control, loop, server, stop_with), name="control",
                     daemon=True).start()
    threading.Thread(target=_answers, args=(asks, registry, lags), name="asks", daemon=True).start()
    probe = asyncio.ensure_future(_probe_lag(config.lag_probe_s, metrics, lags))
    ended = asyncio.ensure_future(server.wait_for_termination())
    await asyncio.wait((stop, ended), return_when=asyncio.FIRST_COMPLETED)
    probe.cancel()
    await server.stop(stop.result() if stop.done() else 0.0)


def _receive(board_in: Connection, board: MirrorBoard) -> None:
    with contextlib.suppress(EOFError, OSError):
        while True:
            board.apply(board_in.recv())


def _commands(control: Connection, loop: asyncio.AbstractEventLoop, server: ScalerServer,
              stop_with: Callable[[float], None]) -> None:
    """serve's commands; when serve's end closes (serve is gone), stop at once."""
    try:
        while True:
            command = control.recv()
            if command[0] == "ready":
                asyncio.run_coroutine_threadsafe(server.set_ready(bool(command[1])), loop)
            elif command[0] == "stop":
                loop.call_soon_threadsafe(stop_with, float(command[1]))
    except (EOFError, OSError):
        loop.call_soon_threadsafe(stop_with, 0.0)


def _answers(asks: Connection, registry: CollectorRegistry, lags: deque[tuple[float, float]] | None) -> None:
    with contextlib.suppress(EOFError, OSError):
        while True:
            number, what = asks.recv()
            if what == "families":
                asks.send((number, list(registry.collect())))
            elif what == "lags":
                taken = list(lags) if lags is not None else []
                if lags is not None:
                    lags.clear()
                asks.send((number, taken))


async def _probe_lag(period: float, metrics: ScalerMetrics, lags: deque[tuple[float, float]] | None) -> None:
    """How late the loop wakes from a timer: the time any call would have waited behind other work."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(period)
        late = max(0.0, loop.time() - asked - period)
        metrics.grpc_loop_lag.observe(late)
        if lags is not None:
            lags.append((asked + period, late))  # loop.time() is time.monotonic(): the same clock in every process
