"""StreamIsActive wake-up latency: a flip published on the board → the KEDA-side stream receives it.

A real ScalerServer runs in this process on its own event loop; a separate client process (its own GIL)
holds N open StreamIsActive streams (default 1,000) over a few channels, as KEDA's operator would. The board
is published from the main thread, as the reconcile loop does. Two cases:

- one flip: a single variant's active flag flips while all N streams are open (repeated, spaced);
- fan-out: every variant flips in one publish (all N streams woken at once), repeated.

Latency is publish start → message received, on the shared CLOCK_MONOTONIC. Prints a table; exits 0.

    uv run python benchmarks/bench_streams.py [--streams 1000] [--single 200] [--fanout 5] [--channels 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import grpc  # noqa: E402

from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec  # noqa: E402
from kedascaler.loop.board import DecisionBoard  # noqa: E402
from kedascaler.proto import externalscaler_pb2 as pb  # noqa: E402
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc  # noqa: E402
from kedascaler.server.app import ScalerServer  # noqa: E402


def keys_for(n: int) -> list[VariantKey]:
    return [VariantKey(f"team-{i % 10}", f"model-{i:04d}-h100") for i in range(n)]


def decision(key: VariantKey, active: bool) -> Decision:
    now = time.time()
    return Decision(key=key, model_id=key.name, desired_replicas=1 if active else 0, active=active,
                    reason=Reason("hold", "bench"), decided_at=now, data_at=now)


# -- the client process: N streams, a receive time per message --
def client_main(port: int, n: int, channels: int, conn) -> None:
    asyncio.run(_client(port, n, channels, conn))


async def _client(port: int, n: int, n_channels: int, conn) -> None:
    keys = keys_for(n)
    chans = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(n_channels)]
    stubs = [pb_grpc.ExternalScalerStub(c) for c in chans]
    received: list[list[tuple[float, bool]]] = [[] for _ in keys]
    first = [asyncio.get_running_loop().create_future() for _ in keys]

    async def follow(i: int, key: VariantKey) -> None:
        call = stubs[i % n_channels].StreamIsActive(pb.ScaledObjectRef(name=key.name, namespace=key.namespace))
        async for msg in call:
            if not first[i].done():
                first[i].set_result(msg.result)
                continue
            received[i].append((time.monotonic(), msg.result))

    tasks = [asyncio.ensure_future(follow(i, k)) for i, k in enumerate(keys)]
    await asyncio.wait_for(asyncio.gather(*first), 60)
    conn.send("ready")
    expected = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    deadline = time.monotonic() + 30
    while sum(len(r) for r in received) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    conn.send(received)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in chans:
        await c.close()


# -- the server side --
class ServerThread:
    def __init__(self, board: DecisionBoard) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._run(self._make(board))
        self.port = self._run(self.server.start())

    @staticmethod
    async def _make(board: DecisionBoard) -> ScalerServer:
        return ScalerServer(board, port=0, host="127.0.0.1", grace=1.0)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self._run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200, help="single-variant flips")
    parser.add_argument("--fanout", type=int, default=5, help="all-variant flips")
    parser.add_argument("--channels", type=int, default=10)
    args = parser.parse_args()

    keys = keys_for(args.streams)
    board = DecisionBoard()
    board.publish([decision(k, True) for k in keys],
                  [VariantSpec(key=k, model_id=k.name, target_name=k.name) for k in keys])
    server = ServerThread(board)
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=client_main,
                                                        args=(server.port, args.streams, args.channels, child))
    proc.start()
    try:
        if not parent.poll(120) or parent.recv() != "ready":
            print("client did not open its streams", file=sys.stderr)
            return 1
        while board.subscriber_count < args.streams:
            time.sleep(0.01)
        state = {k: True for k in keys}
        published: dict[VariantKey, list[float]] = {k: [] for k in keys}
        kinds: dict[tuple[VariantKey, int], str] = {}

        def flip(which: list[VariantKey], kind: str) -> None:
            t0 = time.monotonic()
            board.publish([decision(k, not state[k]) for k in which])
            for k in which:
                state[k] = not state[k]
                kinds[(k, len(published[k]))] = kind
                published[k].append(t0)

        for r in range(args.single):
            flip([keys[(r * 37) % len(keys)]], "single")
            time.sleep(0.01)
        time.sleep(0.3)
        for _ in range(args.fanout):
            flip(keys, "fanout")
            time.sleep(0.5)
        expected = sum(len(v) for v in published.values())
        parent.send(expected)
        if not parent.poll(60):
            print("client did not report", file=sys.stderr)
            return 1
        received = parent.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
        server.close()

    latencies: dict[str, list[float]] = {"single": [], "fanout": []}
    lost = 0
    for i, k in enumerate(keys):
        got = received[i]
        lost += max(0, len(published[k]) - len(got))
        for n, (t_recv, _) in enumerate(got[:len(published[k])]):
            latencies[kinds[(k, n)]].append((t_recv - published[k][n]) * 1000)
    print(f"StreamIsActive wake-up latency, {args.streams} open streams over {args.channels} channels "
          f"(server in-process, client in its own process)")
    print(f"{'case':<34}{'flips':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'mean ms':>10}")
    for kind, label in (("single", "one variant flips"), ("fanout", f"all {args.streams} flip in one publish")):
        values = latencies[kind]
        if values:
            print(f"{label:<34}{len(values):>8}{percentile(values, 0.5):>10.2f}{percentile(values, 0.99):>10.2f}"
                  f"{max(values):>10.2f}{statistics.fmean(values):>10.2f}")
    print(f"messages expected {expected}, received {sum(len(r) for r in received)}, missing {lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
