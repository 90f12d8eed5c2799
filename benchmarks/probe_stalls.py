"""What holds the GIL during a reconcile cycle: the long holders that make the event loop late, found by a watchdog.

The bench's fleet (`bench_reconcile.fleet`) and serve's after-cycle work (`bench_reconcile.sink`), the cycle run in
a worker thread as `Reconciler.run_forever` runs it. A watchdog thread wakes every millisecond; when it wakes more
than `--late-ms` late, the GIL was held that long by the cycle thread (or a collection, or a free cascade), and it
records where the cycle thread is now: the line just after the long holder. The garbage collector's own pauses are
timed with `gc.callbacks`. Prints the stacks with the most late time, then the collections per generation.

    uv run python benchmarks/probe_stalls.py [--variants 10000] [--cycles 2] [--late-ms 5]
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_reconcile import PrometheusLikeSource, Replicas, fleet, sink  # noqa: E402

from kedascaler.kits.heap import release  # noqa: E402
from kedascaler.loop.board import DecisionBoard  # noqa: E402
from kedascaler.loop.planner import PlannerSettings  # noqa: E402
from kedascaler.loop.reconcile import Reconciler  # noqa: E402


def stack_of(frame, depth: int) -> tuple[str, ...]:
    out = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10000)
    parser.add_argument("--mode", default=PlannerSettings().global_mode)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--late-ms", type=float, default=5.0)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--scrape", action="store_true", help="a /metrics exposition after each cycle, same thread")
    parser.add_argument("--threshold", type=int, nargs=2, help="the young generations' gc thresholds")
    parser.add_argument("--no-gc", action="store_true", help="automatic collections off during the cycles")
    args = parser.parse_args()

    inventory, samples = fleet(args.variants)
    board = DecisionBoard()
    reconciler = Reconciler(inventory, PrometheusLikeSource(samples), board, Replicas(),
                            planner=None if args.mode == "off" else PlannerSettings(args.mode))
    obs, cycle_sink = sink(reconciler)
    cycle_sink(reconciler.run_once())  # warm-up, as the bench does
    if args.threshold:
        gc.set_threshold(args.threshold[0], args.threshold[1], gc.get_threshold()[2])

    collections: dict[int, list[float]] = defaultdict(list)
    spans: list[tuple[float, float]] = []  # each collection's (start, end), perf_counter
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            end = time.perf_counter()
            spans.append((started[0], end))
            collections[info["generation"]].append((end - started[0]) * 1000)

    late: dict[tuple[str, ...], list[float]] = defaultdict(list)
    lateness: list[float] = []
    late_spans: list[tuple[float, float]] = []  # (due, woke) of each late wake-up
    stop = threading.Event()
    worker: list[int] = []

    def watchdog() -> None:
        while not stop.is_set():
            due = time.perf_counter() + 0.001
            time.sleep(0.001)
            ms = (time.perf_counter() - due) * 1000
            lateness.append(ms)
            if ms > args.late_ms:
                late_spans.append((due, due + ms / 1000))
            if ms > args.late_ms and worker:
                frame = sys._current_frames().get(worker[0])
                late[stack_of(frame, args.depth) if frame is not None else ("(cycle thread idle)",)].append(ms)

    def cycles() -> None:
        worker.append(threading.get_ident())
        for _ in range(args.cycles):
            box = [reconciler.run_once()]
            cycle_sink(box[0])
            release(box)
            if args.scrape:
                obs.observer.exposition_chunks()

    gc.callbacks.append(on_gc)
    dog = threading.Thread(target=watchdog, daemon=True)
    dog.start()
    if args.no_gc:
        gc.disable()
    c0 = time.process_time()
    thread = threading.Thread(target=cycles)
    thread.start()
    thread.join()
    cpu = (time.process_time() - c0) * 1000 / args.cycles
    stop.set()
    dog.join()
    gc.callbacks.remove(on_gc)
    gc.enable()
    with_gc = [b - a for a, b in late_spans if any(x < b and y > a for x, y in spans)]

    total = sorted(late.items(), key=lambda kv: -max(kv[1]))
    print(f"{args.variants} VAs, {args.cycles} cycles, {cpu:.0f} ms CPU a cycle; watchdog wake-ups: "
          f"{len(lateness)}, late > {args.late_ms} ms: {sum(len(v) for v in late.values())}, "
          f"max {max(lateness, default=0):.1f} ms, p99 {sorted(lateness)[int(0.99 * len(lateness))]:.2f} ms; "
          f"{len(with_gc)} of them ({sum(with_gc) * 1000:.0f} ms, max {max(with_gc, default=0) * 1000:.1f}) "
          f"overlap a collection")
    for stack, values in total[:args.top]:
        print(f"\n{len(values):5d} late, {sum(values):8.1f} ms in all, max {max(values):6.1f} ms")
        for line in stack:
            print(f"        {line}")
    print("\ngarbage collections during the cycles (generation: count, total ms, max ms):")
    for generation in sorted(collections):
        values = collections[generation]
        print(f"  gen{generation}: {len(values)}, {sum(values):.1f} ms, max {max(values):.1f} ms, "
              f"{sum(1 for v in values if v > 5)} over 5 ms")


if __name__ == "__main__":
    main()
