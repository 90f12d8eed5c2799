"""Reconcile cost at fleet scale: CPU, memory, metrics queries, and how the event loop fares, per cycle.

A synthetic inventory (2 variants per model, 4 pods per variant) and a metrics source that answers like
Prometheus does (one batched answer for all pods, matched to variants by pod name, with each pod's usage
over the window as the usage query gives it), so the figure is the scaler's own cost. The query count comes
from the real PrometheusSource's fixed query list.

`--scaling-mode`: `off` is the saturation engine alone (no planner); the others run the reconcile loop with
SLO sizing (`PlannerSettings`) in that global mode, as `serve --scaling-mode` does, every VA with a
`variantProfile` and a service class. With no `--scaling-mode`, the default mode's row runs (`default: true`).

Each row runs in its own process (so `peak_rss_mib` is that row's). CPU per cycle is one full cycle as
`serve` runs it: collect → join → decide → size → publish, then the serve's after-cycle work
(`kedascaler.cli.serve.CycleSink`: /metrics, the metrics-health log; status writes need a cluster and are not
part of it). `scrape_ms` is one /metrics exposition. Then the loop phase, as `serve` runs it: the answering
process (`kedascaler.cli.answerer`: the real gRPC server on the board's mirror, spawned before the first cycle,
so each publish's mirroring is in the cycle's CPU) and `Reconciler.run_forever` with its cycle thread niced, a
client in its own process calling GetMetrics back to back (its p99 during cycles and between them), and how late
the answering process's loop wakes from a 1 ms timer (`loop_stall_ms_*`: the worst during cycles, the p99, the
ticks over 10 ms). With `--probe`, `decider_loop_stall_ms_*` is the same for serve's own loop (which answers
no RPC; its 1 ms timer itself costs the answering process and the client CPU, so it is off otherwise).
`answerer_rss_mib` is the answering process's peak RSS, `peak_rss_mib` serve's own.

`--probe` prints, for every tick of serve's loop more than 10 ms late, where the cycle thread was (the line just
after what held the GIL); `--switch-interval` overrides serve's GIL switch interval, to weigh it.
`benchmarks/probe_stalls.py` finds the holders without the server and client, and times the collector's pauses.

    uv run python benchmarks/bench_reconcile.py [--variants 1000 10000] [--scaling-mode off capacity] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kedascaler.cli.answerer import AnswerConfig, Answerer  # noqa: E402
from kedascaler.cli.serve import CYCLE_NICE  # noqa: E402
from kedascaler.loop.board import DecisionBoard  # noqa: E402
from kedascaler.loop.planner import PlannerSettings  # noqa: E402
from kedascaler.loop.reconcile import Reconciler  # noqa: E402
from kedascaler.sources.base import CollectResult, PodSample, PodUsage, ScrapeTarget, WorkloadStatus  # noqa: E402
from kedascaler.sources.files import StaticInventory  # noqa: E402
from kedascaler.sources.prometheus import cycle_queries  # noqa: E402
from kedascaler.spec.inventory import build_inventory  # noqa: E402

PODS_PER_VARIANT = 4
WINDOW_S = 60.0  # the usage window (PrometheusSource's default 1m)
DEFAULT_MODE = PlannerSettings().global_mode
MODES = ("off", "saturation", "hybrid", "model", "capacity")


def documents(n_variants: int):
    models = (n_variants + 1) // 2
    yield ("bench", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "serviceclass", "namespace": "kedascaler"},
        "data": {"standard": "name: Standard\npriority: 2\ndata:\n" + "".join(
            f"  - model: org/model-{m}\n    slo-tpot: 40\n    slo-ttft: 1000\n" for m in range(models))},
    })
    for i in range(n_variants):
        model, acc = divmod(i, 2)
        name = f"m{model}-{'h100' if acc == 0 else 'a100'}"
        yield ("bench", {
            "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": f"ns{model % 50}"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": f"org/model-{model}",
                     "accelerator": "H100" if acc == 0 else "A100", "variantCost": "40" if acc == 0 else "20",
                     "minReplicas": 1, "maxReplicas": 64,
                     "sloClassRef": {"name": "serviceclass", "key": "standard"},
                     "variantProfile": {"maxBatchSize": 256, "perfParms": {
                         "decodeParms": {"alpha": 7.0 if acc == 0 else 11.0, "beta": 0.035 if acc == 0 else 0.06},
                         "prefillParms": {"gamma": 15.4 if acc == 0 else 25.0,
                                          "delta": 0.00034 if acc == 0 else 0.0007}}}},
        })


def usage(rng: random.Random, running: float) -> PodUsage:
    """A pod's window as the usage query reports it: ~2-8 req/s, ShareGPT-like lengths, ITL from the batch."""
    completed = rng.uniform(2.0, 8.0)
    prompt, output = rng.uniform(150, 300), rng.uniform(150, 250)
    return PodUsage(window_s=WINDOW_S, completed_rate=completed, prompt_tokens_rate=completed * prompt,
                    output_tokens_rate=completed * output, backlog_growth_rate=rng.uniform(-0.2, 0.2),
                    mean_running=running, itl_ms=7.0 + 0.035 * running * rng.uniform(0.9, 1.1),
                    prefill_ms=15.4 + 0.00034 * prompt * rng.uniform(0.9, 1.1), prompt_tokens_mean=prompt,
                    ttft_ms=rng.uniform(20, 60))


class PrometheusLikeSource:
    """One answer per cycle for every pod, as the batched PromQL queries return it."""

    def __init__(self, samples: tuple[PodSample, ...]) -> None:
        self.samples = samples
        self.queries = len(cycle_queries())

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        now = time.time()
        return CollectResult(tuple(PodSample(s.namespace, s.pod, s.model_name, s.kv_cache_usage, s.queue_length,
                                             s.running, now, usage=s.usage) for s in self.samples), (), self.queries)

    def close(self) -> None:
        pass


class Replicas:
    def status(self, spec):
        return WorkloadStatus(PODS_PER_VARIANT, PODS_PER_VARIANT, ())


def fleet(n: int) -> tuple[StaticInventory, tuple[PodSample, ...]]:
    inventory = StaticInventory(build_inventory(documents(n)))  # each VA with a variantProfile and a sloClassRef
    assert not inventory.current().problems, inventory.current().problems[:3]
    rng = random.Random(1)
    samples = []
    for spec in inventory.current().specs:
        for p in range(PODS_PER_VARIANT):
            running = rng.randint(1, 64)
            samples.append(PodSample(spec.key.namespace, f"{spec.target_name}-5d8f9c7b6-{p:05d}", spec.model_id,
                                     rng.uniform(0.1, 0.9), rng.choice([0, 0, 1, 4, 9]), running, 0.0,
                                     usage=usage(rng, running)))
    return inventory, tuple(samples)


def sink(reconciler: Reconciler, switch_interval: float | None = None):
    """What serve does after each cycle, without a cluster: its CycleSink with no status writer."""
    from kedascaler.cli.serve import CycleSink, MetricsHealthLog, heap_policy
    from kedascaler.observe.wiring import Observability

    obs = Observability(metrics_port=None)
    heap = heap_policy(switch_interval)
    heap.start()  # as serve does before its first cycle
    return obs, CycleSink(obs, MetricsHealthLog(60.0), reconciler, heap=heap)


def rpc_client(port: int, keys: list[tuple[str, str]], seconds: float, out: Any) -> None:
    """A client process: GetMetrics back to back for `seconds`; sends [(monotonic start, ms)] on `out`."""
    import grpc

    from kedascaler.engine.types import VariantKey
    from kedascaler.proto import externalscaler_pb2 as pb
    from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
    from kedascaler.server.naming import metric_name

    requests = [pb.GetMetricsRequest(scaledObjectRef=pb.ScaledObjectRef(name=name, namespace=ns),
                                     metricName=metric_name(VariantKey(ns, name))) for ns, name in keys]
    calls: list[tuple[float, float]] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        stop = time.monotonic() + seconds
        i = 0
        while (t0 := time.monotonic()) < stop:
            try:
                stub.GetMetrics(requests[i % len(requests)], timeout=10)
                calls.append((t0, (time.monotonic() - t0) * 1000))
            except grpc.RpcError:
                pass
            i += 1
            time.sleep(0.002)
    out.send(calls)


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]


async def loop_phase(reconciler: Reconciler, cycle_sink: Any, board: DecisionBoard, answerer: Answerer,
                     cycles: int, interval: float, probe: bool = False) -> dict[str, Any]:
    """serve's loop with a GetMetrics client: how late the answering process's loop wakes and the client's p99,
    during and between cycles; with `probe`, how late serve's own loop wakes too (`decider_*`: it answers no RPC)."""
    port = answerer.port
    assert port is not None
    spans: list[tuple[float, float]] = []
    run_once = reconciler.run_once

    worker: list[int] = []

    def timed(models=None):
        worker[:] = [threading.get_ident()]
        t0 = time.monotonic()
        report = run_once(models)
        spans.append((t0, -1.0))
        return report

    def on_cycle(report):
        cycle_sink(report)
        spans[-1] = (spans[-1][0], time.monotonic())

    reconciler.run_once = timed  # type: ignore[method-assign]
    ticks: list[tuple[float, float]] = []  # serve's loop: (monotonic when the tick was due, ms late)
    sites: dict[str, list[float]] = {}  # --probe: where the cycle thread was when a late tick ran, its lateness

    async def ticker() -> None:
        while True:
            due = time.monotonic() + 0.001
            await asyncio.sleep(0.001)
            late = (time.monotonic() - due) * 1000
            ticks.append((due, late))
            if probe and late > 10 and worker:
                frame = sys._current_frames().get(worker[0])
                where = []
                while frame is not None and len(where) < 4:
                    where.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
                    frame = frame.f_back
                sites.setdefault(" < ".join(where) or "idle", []).append(late)

    keys = sorted((k.namespace, k.name) for k in board.view.decisions)
    keys = random.Random(2).sample(keys, min(256, len(keys)))
    seconds = cycles * (interval + 1.5 * interval) + 1.0
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    client = ctx.Process(target=rpc_client, args=(port, keys, seconds, send))
    client.start()
    await asyncio.sleep(1.0)  # the client's interpreter starts and connects
    await asyncio.to_thread(answerer.ask, "lags")  # forget the lags of the CPU phase
    tick = asyncio.create_task(ticker() if probe else asyncio.sleep(0))  # serve's own loop: only with --probe
    loop_task = asyncio.create_task(reconciler.run_forever(interval, on_cycle=on_cycle, nice=CYCLE_NICE))
    while len([s for s in spans if s[1] > 0]) < cycles:
        await asyncio.sleep(0.05)
    loop_task.cancel()
    calls = await asyncio.to_thread(receive.recv)
    tick.cancel()
    await asyncio.gather(loop_task, tick, return_exceptions=True)
    client.join()
    lags = [(due, late * 1000) for due, late in await asyncio.to_thread(answerer.ask, "lags") or []]
    done = [s for s in spans if s[1] > 0]

    def during(t: float) -> bool:
        return any(a <= t <= b for a, b in done)

    last = done[-1][1]
    first = done[0][0]
    in_cycle = [ms for t, ms in calls if during(t)]
    idle = [ms for t, ms in calls if not during(t) and first - interval <= t <= last]
    if probe:
        for where, lates in sorted(sites.items(), key=lambda kv: -max(kv[1]))[:20]:
            print(f"{len(lates):4d} late ticks, max {max(lates):6.1f} ms: {where}", file=sys.stderr)
    return {"loop_stall_ms_max": round(max((ms for t, ms in lags if during(t)), default=0.0), 2),
            "loop_stall_ms_p99": round(p99([ms for t, ms in lags if during(t)]) or 0.0, 2),
            "loop_stalls_over_10ms": sum(1 for t, ms in lags if during(t) and ms > 10),
            "loop_stall_ms_max_idle": round(max((ms for t, ms in lags if not during(t) and t <= last),
                                                default=0.0), 2),
            "loop_ticks_in_cycle": sum(1 for t, _ in lags if during(t)),
            "rpc_p99_ms_in_cycle": round(p99(in_cycle) or 0.0, 3), "rpc_p99_ms_idle": round(p99(idle) or 0.0, 3),
            "rpc_calls_in_cycle": len(in_cycle), "rpc_calls_idle": len(idle), "loop_cycles": len(done),
            **({"decider_loop_stall_ms_max": round(max((ms for t, ms in ticks if during(t)), default=0.0), 2),
                "decider_loop_stall_ms_p99": round(p99([ms for t, ms in ticks if during(t)]) or 0.0, 2)}
               if probe else {})}


def row(n: int, mode: str, cycles: int, loop_cycles: int, probe: bool = False,
        switch_interval: float | None = None) -> dict[str, Any]:
    return asyncio.run(_row(n, mode, cycles, loop_cycles, probe, switch_interval))


async def _row(n: int, mode: str, cycles: int, loop_cycles: int, probe: bool,
               switch_interval: float | None) -> dict[str, Any]:
    inventory, samples = fleet(n)
    source = PrometheusLikeSource(samples)
    planner = None if mode == "off" else PlannerSettings(mode)
    board = DecisionBoard()
    reconciler = Reconciler(inventory, source, board, Replicas(), planner=planner)
    # serve's answering process from the start: each publish is mirrored to it, in the cycle's CPU
    answerer = Answerer(board, AnswerConfig(port=0, host="127.0.0.1", lag_probe_s=0.001, keep_lags=True,
                                            log_level="WARNING"))
    await answerer.start()
    obs, cycle_sink = sink(reconciler, switch_interval)
    cycle_sink(reconciler.run_once())  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    cycle_cpu = 0.0
    for _ in range(cycles):
        c0 = time.process_time()
        report = reconciler.run_once()
        cycle_cpu += time.process_time() - c0
        cycle_sink(report)
    cpu = (time.process_time() - cpu0) / cycles * 1000
    wall = (time.perf_counter() - wall0) / cycles * 1000
    s0 = time.process_time()
    obs.observer.exposition_chunks()  # what the /metrics server renders
    scrape = (time.process_time() - s0) * 1000
    assert len(report.decisions) == n
    out: dict[str, Any] = {
        "vas": n, "pods": len(samples), "mode": mode, "default": mode == DEFAULT_MODE,
        "queries_per_cycle": report.collect.queries, "cpu_ms_per_cycle": round(cpu, 1),
        "cycle_cpu_ms": round(cycle_cpu / cycles * 1000, 1), "after_cycle_cpu_ms": round(cpu - cycle_cpu / cycles
                                                                                          * 1000, 1),
        "wall_ms_per_cycle": round(wall, 1), "scrape_ms": round(scrape, 1),
        "model_sized": sum(1 for plan in report.plans.values() if plan.model_based) if planner else None}
    if loop_cycles:
        out.update(await loop_phase(reconciler, cycle_sink, board, answerer, loop_cycles, max(0.5, wall / 1000),
                                    probe))
    out["answerer_rss_mib"] = answerer_rss(answerer)
    await answerer.stop(grace=1)
    out["full_gc"] = cycle_sink.heap.full_collections  # full collections the heap policy ran (kits/heap.py)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def answerer_rss(answerer: Answerer) -> float | None:
    """The answering process's peak RSS (MiB), from /proc (Linux)."""
    try:
        status = Path(f"/proc/{answerer.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


COLUMNS = (("vas", "VAs", "{:>7}"), ("pods", "pods", "{:>7}"), ("mode", "mode", "{:>10}"),
           ("queries_per_cycle", "queries", "{:>8}"), ("cpu_ms_per_cycle", "CPU ms", "{:>8}"),
           ("after_cycle_cpu_ms", "of which after", "{:>15}"), ("peak_rss_mib", "RSS MiB", "{:>8}"),
           ("loop_stall_ms_max", "stall ms", "{:>9}"), ("rpc_p99_ms_in_cycle", "p99 in", "{:>8}"),
           ("rpc_p99_ms_idle", "p99 idle", "{:>9}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--cycles", type=int, default=3, help="measured cycles for the CPU figure")
    parser.add_argument("--loop-cycles", type=int, default=4,
                        help="cycles of the loop phase (server, ticker, client); 0: skip it")
    parser.add_argument("--scaling-mode", nargs="+", choices=MODES, default=[DEFAULT_MODE],
                        help=f"off: no planner (saturation engine only); else the planner's global mode "
                             f"(default: {DEFAULT_MODE}, the default of serve)")
    parser.add_argument("--json", action="store_true", help="one JSON object per row instead of the table")
    parser.add_argument("--probe", action="store_true",
                        help="print where the cycle thread was at each tick more than 10 ms late (to stderr)")
    parser.add_argument("--switch-interval", type=float,
                        help="sys.setswitchinterval while serving (default: kedascaler.kits.heap.HeapPolicy's)")
    parser.add_argument("--row", nargs=2, metavar=("VAS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(row(int(args.row[0]), args.row[1], args.cycles, args.loop_cycles, args.probe,
                             args.switch_interval)), flush=True)
        return
    if not args.json:
        print(" ".join(fmt.format(title) for _, title, fmt in COLUMNS))
    for n in args.variants:
        for mode in args.scaling_mode:
            extra = (["--probe"] if args.probe else []) + (
                ["--switch-interval", str(args.switch_interval)] if args.switch_interval is not None else [])
            done = subprocess.run([sys.executable, __file__, "--row", str(n), mode, "--cycles", str(args.cycles),
                                   "--loop-cycles", str(args.loop_cycles), *extra], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"row {n} {mode} failed:\n{done.stderr}")
            if args.probe:
                print(done.stderr, file=sys.stderr, end="")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(" ".join(fmt.format("-" if result.get(k) is None else result[k]) for k, _, fmt in COLUMNS),
                      flush=True)


if __name__ == "__main__":
    main()
