"""GetMetrics throughput and latency of a real ScalerServer on loopback, as many KEDA clients would load it.

Side by side with a no-op grpcio servicer in the same run (same clients, same machine): the ratio of the
two throughputs is the cost of kedascaler's own RPC path. The server runs in this process; the clients run
in separate processes (spawned, each with its own channels) so that the client side does not share the
server's GIL. Prints: clients, calls/s, p50 ms, p99 ms.

    uv run python benchmarks/bench_getmetrics.py [--clients 1 16 64] [--duration 3] [--variants 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec  # noqa: E402
from kedascaler.loop.board import DecisionBoard  # noqa: E402
from kedascaler.proto import externalscaler_pb2 as pb  # noqa: E402
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc  # noqa: E402
from kedascaler.server.app import ScalerServer  # noqa: E402


class NoopScaler(pb_grpc.ExternalScalerServicer):
    """The floor: grpcio's own cost of one GetMetrics, answering a constant without reading anything."""

    _ANSWER = pb.GetMetricsResponse(
        metricValues=[pb.MetricValue(metricName="noop", metricValue=1, metricValueFloat=1.0)])

    async def GetMetrics(self, request, context):  # noqa: N802 - grpc's naming
        return self._ANSWER


async def start_noop() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(NoopScaler(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port

NAMESPACES = 10


@dataclass(frozen=True)
class WorkerResult:
    """What one client process measured: calls made in its own window, and each call's latency."""

    calls: int
    errors: int
    seconds: float
    latencies_ms: list[float]


def variant_keys(n: int) -> list[VariantKey]:
    return [VariantKey(f"team-{i % NAMESPACES}", f"model-{i}-h100") for i in range(n)]


def filled_board(n: int) -> DecisionBoard:
    """A board as a fleet of n variants would leave it after one reconcile cycle."""
    board = DecisionBoard()
    now = time.time()
    keys = variant_keys(n)
    specs = [VariantSpec(key=k, model_id=f"org/{k.name}", target_name=k.name) for k in keys]
    decisions = [
        Decision(key=k, model_id=f"org/{k.name}", desired_replicas=i % 7, active=i % 7 > 0,
                 reason=Reason("hold", "bench"), decided_at=now, data_at=now)
        for i, k in enumerate(keys)
    ]
    board.publish(decisions, specs)
    return board


def run_worker(port: int, clients: int, variants: int, duration: float, warmup: float, seed: int) -> WorkerResult:
    """Entry point of one client process: `clients` concurrent loops, each on its own channel."""
    return asyncio.run(_worker(port, clients, variants, duration, warmup, seed))


async def _worker(port: int, clients: int, variants: int, duration: float, warmup: float, seed: int) -> WorkerResult:
    import grpc

    from kedascaler.proto import externalscaler_pb2 as pb
    from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
    from kedascaler.server.naming import metric_name

    rng = random.Random(seed)
    keys = variant_keys(variants)
    requests = []
    for key in rng.sample(keys, min(len(keys), 256)):
        ref = pb.ScaledObjectRef(name=key.name, namespace=key.namespace, scalerMetadata={"scalerAddress": "bench"})
        requests.append(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric_name(key)))

    latencies: list[float] = []
    counts = {"calls": 0, "errors": 0}

    async def client(index: int, stop_warmup: float, stop: float) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            i = index
            while True:
                request = requests[i % len(requests)]
                i += clients
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
                try:
                    await stub.GetMetrics(request, timeout=10)
                    ok = True
                except grpc.aio.AioRpcError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= stop_warmup:
                    counts["calls" if ok else "errors"] += 1
                    if ok:
                        latencies.append((t1 - t0) * 1000.0)

    start = time.perf_counter()
    stop_warmup = start + warmup
    stop = stop_warmup + duration
    await asyncio.gather(*(client(i, stop_warmup, stop) for i in range(clients)))
    return WorkerResult(counts["calls"], counts["errors"], duration, latencies)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(port: int, pool: ProcessPoolExecutor, processes: int, clients: int,
                  args) -> tuple[float, float, float, int]:
    """Spread `clients` over up to `processes` client processes; return calls/s, p50, p99, errors."""
    loop = asyncio.get_running_loop()
    procs = max(1, min(processes, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    results: list[WorkerResult] = await asyncio.gather(*(
        loop.run_in_executor(pool, run_worker, port, share, args.variants, args.duration, args.warmup, i)
        for i, share in enumerate(shares)
    ))
    rate = sum(r.calls / r.seconds for r in results)
    lat = sorted(x for r in results for x in r.latencies_ms)
    return rate, percentile(lat, 0.50), percentile(lat, 0.99), sum(r.errors for r in results)


async def main_async(args) -> int:
    board = filled_board(args.variants)
    server = ScalerServer(board, port=0, host="127.0.0.1")
    port = await server.start()
    cpus = os.cpu_count() or 1
    print(f"GetMetrics on 127.0.0.1:{port}: {args.variants} variants, {args.duration:g}s per row "
          f"(+{args.warmup:g}s warm-up), up to {args.processes} client process(es), "
          f"{cpus} CPU(s) shared with the server")
    noop, noop_port = await start_noop()
    print(f"{'clients':>8} {'calls/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} | {'no-op calls/s':>13} "
          f"{'no-op p50':>9} {'no-op p99':>9} | {'cost ratio':>10}")
    failed = False
    try:
        with ProcessPoolExecutor(max_workers=args.processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            for clients in args.clients:
                rate, p50, p99, errors = await measure(port, pool, args.processes, clients, args)
                n_rate, n_p50, n_p99, n_errors = await measure(noop_port, pool, args.processes, clients, args)
                failed |= errors > 0 or n_errors > 0
                # cost ratio: time per call of the real servicer over the no-op's (1.00 = no cost of our own)
                print(f"{clients:>8} {rate:>10.0f} {p50:>8.2f} {p99:>8.2f} {errors:>7} | {n_rate:>13.0f} "
                      f"{n_p50:>9.2f} {n_p99:>9.2f} | {n_rate / rate:>10.2f}", flush=True)
    finally:
        await server.stop(grace=1)
        await noop.stop(grace=1)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64], help="concurrent clients per row")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each row")
    parser.add_argument("--variants", type=int, default=1000, help="variants on the board")
    parser.add_argument("--processes", type=int, default=max(1, min(4, (os.cpu_count() or 2) - 1)),
                        help="client processes (default: CPUs - 1, at most 4)")
    args = parser.parse_args(argv)
    if min(args.clients) < 1 or args.duration <= 0 or args.variants < 1 or args.processes < 1:
        parser.error("--clients, --duration, --variants and --processes must be positive")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
