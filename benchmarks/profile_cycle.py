"""Where one reconcile cycle's CPU goes: per step of `loop/cycle.step`, or per function in opcodes.

The bench's fleet and serve's after-cycle work (`bench_reconcile.fleet`, `bench_reconcile.sink`), one warm-up cycle,
then the measured ones. Two views:

- phases (default): CPU ms per cycle of each step the cycle calls (snapshots, planner, capacity memory, the queueing
  rows, the engine per model, ...), each the least of `--rounds` runs of the same cycles: on a shared machine the
  least is the figure the code sets, the others carry the neighbours' load;
- `--opcodes`: the bytecodes each Python function ran (exclusive and inclusive), counted by a tracer: the same
  count on every run and any machine, so a change's effect shows without timing noise (numpy's C loops are not
  counted: the queueing rows show as their Python calls only). Slow: use a few hundred VAs.

    uv run python benchmarks/profile_cycle.py [--variants 10000] [--cycles 3] [--rounds 3] [--opcodes]
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_reconcile import PrometheusLikeSource, Replicas, fleet, sink  # noqa: E402

from kedascaler.loop import capacity, capacity_models, cycle, planner  # noqa: E402
from kedascaler.loop.board import DecisionBoard  # noqa: E402
from kedascaler.loop.planner import PlannerSettings  # noqa: E402
from kedascaler.loop.reconcile import Reconciler  # noqa: E402

PHASES: tuple[tuple[Any, str, str], ...] = (
    (cycle, "assign_samples", "samples to variants"), (cycle, "build_snapshots", "snapshots"),
    (cycle, "plan_cycle", "planner (observe, refit, plans)"), (planner, "observe", "  planner observe"),
    (planner, "refit", "  planner refit"), (capacity, "forget", "capacity forget"),
    (capacity, "observe", "capacity observe"), (capacity_models, "keep_models", "capacity keep_models"),
    (capacity_models, "inputs_for", "capacity inputs_for"), (cycle, "with_demand", "demand view"),
    (cycle, "with_rows", "capacity candidates, rows"), (cycle, "evaluate_rows", "queueing rows"),
    (cycle, "decide", "engine decide"), (capacity, "record", "capacity record"),
)


def reconciler(n: int) -> tuple[Reconciler, Any]:
    inventory, samples = fleet(n)
    rec = Reconciler(inventory, PrometheusLikeSource(samples), DecisionBoard(), Replicas(), planner=PlannerSettings())
    _, cycle_sink = sink(rec)
    cycle_sink(rec.run_once())  # warm-up, as the bench does
    return rec, cycle_sink


def phases(n: int, cycles: int) -> dict[str, float]:
    """CPU ms per cycle of each phase, the whole cycle and the after-cycle work."""
    spent: dict[str, float] = collections.defaultdict(float)
    originals = [(module, name, getattr(module, name)) for module, name, _ in PHASES]
    for (module, name, found), (_, _, label) in zip(originals, PHASES, strict=True):
        @functools.wraps(found)
        def timed(*args: Any, _f: Any = found, _label: str = label, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_label] += time.process_time() - t0
        setattr(module, name, timed)
    try:
        rec, cycle_sink = reconciler(n)
        spent.clear()
        for _ in range(cycles):
            t0 = time.process_time()
            report = rec.run_once()
            t1 = time.process_time()
            cycle_sink(report)
            spent["cycle"] += t1 - t0
            spent["after-cycle"] += time.process_time() - t1
    finally:
        for module, name, found in originals:
            setattr(module, name, found)
    return {k: v / cycles * 1000 for k, v in spent.items()}


def opcodes(n: int, cycles: int, top: int) -> None:
    rec, cycle_sink = reconciler(n)
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    names: dict[Any, str] = {}

    def name_of(code: Any) -> str:
        found = names.get(code)
        if found is None:
            found = names[code] = f"{code.co_filename.split('kedascaler/')[-1]}:{code.co_name}"
        return found

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            own[name_of(frame.f_code)] += 1
            seen = set()
            while frame is not None:
                name = name_of(frame.f_code)
                if name not in seen:
                    within[name] += 1
                    seen.add(name)
                frame = frame.f_back
        return local

    def start(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes, frame.f_trace_lines = True, False
        return local

    sys.settrace(start)
    try:
        for _ in range(cycles):
            cycle_sink(rec.run_once())
    finally:
        sys.settrace(None)
    total = sum(own.values())
    print(f"{total // cycles:,} opcodes per cycle")
    for title, counts in (("inclusive", within), ("exclusive", own)):
        print(f"--- {title}")
        for name, count in counts.most_common(top):
            print(f"{100 * count / total:6.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="phases: runs of the cycles (the least counts)")
    parser.add_argument("--opcodes", action="store_true", help="bytecodes per function instead of CPU ms")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    if args.opcodes:
        opcodes(args.variants, args.cycles, args.top)
        return
    runs = [phases(args.variants, args.cycles) for _ in range(args.rounds)]
    best = min(runs, key=lambda r: r["cycle"] + r["after-cycle"])
    print(f"{args.variants} VAs, CPU ms per cycle (the least of {args.rounds} runs of {args.cycles} cycles)")
    for label in ("cycle", "after-cycle", *(label for _, _, label in PHASES)):
        print(f"{best.get(label, 0.0):9.1f}  {label}")


if __name__ == "__main__":
    main()
