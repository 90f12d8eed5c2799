"""Print docs/hardening.md's metrics-fault table, measured: each fault of tests/hardening/test_metrics_faults.py
run once, as the test runs it (one good cycle, 5 cycles of fault, then until fresh), and what the scaler did.

Usage: `uv run python scripts/fault_table.py` (about 15 s). The test asserts the same runs; this only prints them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from tests.hardening.test_metrics_faults import (  # noqa: E402
    CURRENT,
    FAULT_CYCLES,
    FAULTS,
    INTERVAL,
    RECOVERY_CYCLES,
    Outcome,
    run_fault,
)


def _replicas(outcome: Outcome) -> str:
    """Desired replicas per variant: last good → lowest and highest during the fault."""
    parts = []
    for key in sorted(CURRENT, key=lambda k: k.name):
        during = [c.decisions[key].desired_replicas for c in outcome.fault]
        low, high = min(during), max(during)
        span = f"{low}" if low == high else f"{low}–{high}"
        parts.append(f"{key.name.split('-')[-1]} {outcome.good.decisions[key].desired_replicas} → {span}")
    return ", ".join(parts)


def _decision(outcome: Outcome) -> str:
    stale = sum(all(d.stale for d in c.decisions.values()) for c in outcome.fault)
    inactive = sum(not d.active for c in outcome.fault for d in c.decisions.values())
    held = f"held, stale in {stale} of {len(outcome.fault)} cycles" if stale else "fresh: the pods that reported"
    return held + ("" if not inactive else f"; {inactive} inactive")


def _keda(outcome: Outcome) -> str:
    ok = [c.age for c in outcome.fault if all(r[0] == grpc.StatusCode.OK for r in c.reads.values())]
    down = [c.age for c in outcome.fault if all(r[0] == grpc.StatusCode.UNAVAILABLE for r in c.reads.values())]
    text = f"OK up to {max(ok):g} s" if ok else "never OK"
    return text + (f", `UNAVAILABLE` from {min(down):g} s" if down else "")


def _recovered(outcome: Outcome) -> str:
    last = outcome.recovery[-1]
    if any(d.stale for d in last.decisions.values()):
        return f"not within {RECOVERY_CYCLES}"
    return str(len(outcome.recovery))


async def main() -> None:
    print(f"One good cycle, then {FAULT_CYCLES} cycles of {INTERVAL:g} s under the fault; "
          "ages are seconds since the last good data.\n")
    print("| fault | desired: last good → during | decision | `GetMetrics` | cycles to recover |")
    print("|---|---|---|---|---|")
    for name, direct, inject, heal, _held in FAULTS:
        outcome = await run_fault(direct, inject, heal)
        print(f"| {name} | {_replicas(outcome)} | {_decision(outcome)} | {_keda(outcome)} | {_recovered(outcome)} |",
              flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the faults' warnings are expected; the table says what happened
    asyncio.run(main())
