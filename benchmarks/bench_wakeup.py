"""Wake-up latency: from `POST /v1/activate/{ns}/{model}` to `true` pushed on the model's StreamIsActive stream.

Real servers on loopback in this process: the activation HTTP endpoint, the reconcile loop (push-only, tick
one hour, so only the push can wake a model), and the gRPC ExternalScaler with one open StreamIsActive stream
per woken model, read by a grpc.aio client as KEDA's external-push trigger does. Every model starts at zero
replicas and inactive; each wake-up is a different model, one after another. The fleet size shows that a
wake-up cycle covers only the woken model.

    uv run python benchmarks/bench_wakeup.py [--models 100 1000 5000] [--wakeups 100]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import grpc  # noqa: E402

from kedascaler.engine.types import VariantKey, VariantSpec  # noqa: E402
from kedascaler.loop.board import DecisionBoard  # noqa: E402
from kedascaler.loop.inbox import ActivationInbox  # noqa: E402
from kedascaler.loop.reconcile import Reconciler  # noqa: E402
from kedascaler.proto import externalscaler_pb2 as pb  # noqa: E402
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc  # noqa: E402
from kedascaler.server.activate import ActivationServer  # noqa: E402
from kedascaler.server.app import ScalerServer  # noqa: E402
from kedascaler.sources.files import StaticInventory  # noqa: E402
from kedascaler.spec.inventory import InventoryState  # noqa: E402
from tests.support.sources import AtZero, NoMetrics  # noqa: E402

NS = "bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def step(what: str, awaitable, timeout: float = 20.0):
    """Await with a bound, so that a stuck step fails with its name instead of hanging the benchmark."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RuntimeError(f"benchmark step {what!r} did not finish within {timeout:g}s") from None


class Poster:
    """One keep-alive HTTP connection, as a gateway would hold it."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path: str) -> int:
        self.conn.request("POST", path)
        answer = self.conn.getresponse()
        answer.read()
        return answer.status


async def measure(models: int, wakeups: int) -> dict[str, list[float]]:
    specs = tuple(VariantSpec(VariantKey(NS, f"m-{i:05d}"), f"org/m-{i:05d}", f"m-{i:05d}") for i in range(models))
    board = DecisionBoard()
    inbox = ActivationInbox()
    reconciler = Reconciler(StaticInventory(InventoryState(variants=specs)), NoMetrics(), board, AtZero(),
                            idle_window=300.0, inbox=inbox)
    reconciler.run_once()
    server = ScalerServer(board, port=0, host="127.0.0.1", grace=0.5)
    await server.start()
    http_server = ActivationServer(board, inbox, host="127.0.0.1", port=0)
    http_server.start()
    loop_task = asyncio.create_task(reconciler.run_forever(3600.0))
    poster = Poster(http_server.port)
    push_ms: list[float] = []
    post_ms: list[float] = []
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            stub = pb_grpc.ExternalScalerStub(channel)
            woken = [specs[i * models // wakeups] for i in range(wakeups)]
            streams = [stub.StreamIsActive(pb.ScaledObjectRef(name=s.key.name, namespace=NS)) for s in woken]
            first = await step("open streams", asyncio.gather(*(st.read() for st in streams)))
            assert not any(m.result for m in first), "every model must start inactive"
            await asyncio.sleep(0.2)  # let the loop settle into its wait
            for spec, stream in zip(woken, streams, strict=True):
                path = f"/v1/activate/{NS}/{spec.model_id}"
                t0 = time.perf_counter()
                posted = asyncio.ensure_future(asyncio.to_thread(poster.post, path))
                message = await step("push", stream.read())
                t1 = time.perf_counter()
                status = await step("POST", posted)
                assert status == 202 and message.result is True, (status, message)
                push_ms.append((t1 - t0) * 1000)
                t2 = time.perf_counter()
                await step("repeat POST", asyncio.to_thread(poster.post, path))  # the answer alone
                post_ms.append((time.perf_counter() - t2) * 1000)
            for st in streams:
                st.cancel()
        finally:
            await step("close channel", channel.close())
    finally:
        loop_task.cancel()
        await step("stop loop", asyncio.gather(loop_task, return_exceptions=True))
        poster.conn.close()
        http_server.close()
        await step("stop gRPC", server.stop(0))
    return {"push": push_ms, "post": post_ms}


async def run_all(sizes: list[int], wakeups: int) -> list[tuple[int, dict[str, list[float]]]]:
    """Every row in one event loop: grpc.aio is bound to the first loop it runs on."""
    return [(models, await measure(models, min(wakeups, models))) for models in sizes]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--wakeups", type=int, default=100)
    args = parser.parse_args()
    rows = asyncio.run(run_all(args.models, args.wakeups))
    print(f"wake-up latency, {args.wakeups} wake-ups per row (ms; POST sent -> `true` received on the stream)")
    print(f"{'models':>7} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8} | {'POST answer p50':>15} {'p99':>8}")
    worst = 0.0
    for models, got in rows:
        push, post = got["push"], got["post"]
        worst = max(worst, percentile(push, 99))
        print(f"{models:>7} {percentile(push, 50):>8.2f} {percentile(push, 99):>8.2f} {max(push):>8.2f} "
              f"{statistics.mean(push):>8.2f} | {percentile(post, 50):>15.2f} {percentile(post, 99):>8.2f}")
    print(f"target: p99 < 1000 ms -> {'met' if worst < 1000 else 'MISSED'} (worst p99 {worst:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
