"""Seeded random fleets for the cycle: an inventory, and a few cycles of workload statuses and pod samples.

`fleet_decisions(seed)` runs `kedascaler.loop.cycle.step` over one fleet's cycles and returns, per cycle, every
variant's target, active and stale flags, and a digest of the reasons: what `tests/loop/test_fleet_decisions.py`
pins against the outputs recorded before the cycle was optimised (`tests/loop/fleet_decisions.json`). Everything
drawn here comes from `random.Random(seed)`, so the same seed is the same fleet on every machine.

Each fleet mixes what a cycle meets: 1-4 variants per model over 2-40 models, per-VA scaling modes over a
random global mode (or no planner at all), with and without a `variantProfile` (so the planner learns some),
service classes, pods that queue or saturate or lack usage, ready pods that did not report, replicas still
starting, a variant whose metrics failed, scale-to-zero models with a gateway queue, and a global failure.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from typing import Any

from kedascaler.engine.types import VariantKey
from kedascaler.loop.cycle import CycleConfig, CycleInputs, CycleReport, CycleState, step
from kedascaler.loop.planner import PlannerSettings
from kedascaler.sources.base import CollectResult, PodSample, PodUsage, ScrapeTarget, WorkloadStatus
from kedascaler.sources.gateway import ActivationReading
from kedascaler.spec.inventory import InventoryState, build_inventory

MODES = ("capacity", "saturation", "hybrid", "model", None)  # None: no planner (saturation engine only)


def _documents(rng: random.Random, models: int) -> Iterator[tuple[str, dict[str, Any]]]:
    classes = {"gold": (1, 30, 600), "silver": (2, 50, 1500)}
    entries = {k: [] for k in classes}  # type: dict[str, list[str]]
    for m in range(models):
        for key in classes:
            if rng.random() < 0.6:
                itl, ttft = classes[key][1:]
                entries[key].append(f"  - model: org/model-{m}\n    slo-tpot: {itl * rng.uniform(0.7, 1.3):.1f}\n"
                                    f"    slo-ttft: {ttft * rng.uniform(0.7, 1.3):.0f}\n")
    yield ("fleet", {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "serviceclass", "namespace": "kedascaler"},
                     "data": {k: f"name: {k}\npriority: {classes[k][0]}\ndata:\n" + "".join(entries[k])
                              for k in classes}})
    for m in range(models):
        ns = f"ns{m % 3}"
        zero = rng.random() < 0.2
        for a in range(rng.randint(1, 4)):
            acc = ("H100", "A100", "L40S", "H200")[a]
            spec: dict[str, Any] = {
                "scaleTargetRef": {"kind": "Deployment", "name": f"m{m}-{acc.lower()}"},
                "modelID": f"org/model-{m}", "accelerator": acc, "variantCost": str(rng.choice([10, 20, 40, 80])),
                "minReplicas": 0 if zero else rng.randint(0, 2), "maxReplicas": rng.choice([4, 8, 64])}
            if rng.random() < 0.6:
                alpha, beta = rng.uniform(5, 12), rng.uniform(0.02, 0.08)
                spec["variantProfile"] = {"maxBatchSize": rng.choice([64, 256]), "perfParms": {
                    "decodeParms": {"alpha": round(alpha, 3), "beta": round(beta, 4)},
                    "prefillParms": {"gamma": round(rng.uniform(10, 30), 2),
                                     "delta": round(rng.uniform(0.0002, 0.001), 5)}}}
            if rng.random() < 0.7:
                spec["sloClassRef"] = {"name": "serviceclass", "key": rng.choice(["gold", "silver", "bronze"])}
            if rng.random() < 0.25:
                spec["scalingMode"] = rng.choice(["capacity", "saturation", "hybrid", "model"])
            if zero:
                spec["scaleToZero"] = {"idleWindowSeconds": rng.choice([30, 120])}
            if rng.random() < 0.2:
                spec["startupSeconds"] = rng.choice([30, 90])
            yield ("fleet", {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
                             "metadata": {"name": f"m{m}-{acc.lower()}", "namespace": ns}, "spec": spec})


def _usage(rng: random.Random, running: float, level: float) -> PodUsage | None:
    if rng.random() < 0.1:
        return None
    completed = rng.uniform(0.0, 8.0) * level
    prompt, output = rng.uniform(100, 2000), rng.uniform(50, 600)
    return PodUsage(
        window_s=60.0, completed_rate=None if rng.random() < 0.05 else completed,
        prompt_tokens_rate=completed * prompt, output_tokens_rate=completed * output,
        backlog_growth_rate=rng.uniform(-0.5, 0.5) * level, mean_running=running,
        itl_ms=rng.uniform(5, 60) if rng.random() < 0.9 else None, prefill_ms=rng.uniform(10, 400),
        prompt_tokens_mean=prompt, ttft_ms=rng.uniform(10, 2000),
        kv_capacity_tokens=rng.choice([None, 200_000, 500_000]))


def _cycle(rng: random.Random, inventory: InventoryState, now: float, current: dict[VariantKey, int]
           ) -> CycleInputs:
    statuses: dict[VariantKey, WorkloadStatus | None] = {}
    samples: list[PodSample] = []
    failed: list[str] = []
    levels = {v.model_id: rng.choice([0.0, 0.1, 0.5, 1.0, 2.0]) for v in inventory.variants}
    for va in inventory.variants:
        spec = va.spec
        n = current.get(spec.key, rng.randint(0, 4))
        ready = n if rng.random() < 0.7 else rng.randint(0, n)
        pods = tuple(ScrapeTarget(spec.key, f"{spec.target_name}-7c9f-{p:03d}", "") for p in range(ready))
        statuses[spec.key] = WorkloadStatus(n, ready, pods)
        level = levels[va.model_id]
        if rng.random() < 0.05:
            failed += [f"{spec.key.namespace}/{t.pod}" for t in pods]
            continue
        for t in pods:
            if rng.random() < 0.08:
                continue  # a ready pod that did not report
            running = rng.uniform(0, 60) * level
            kv = rng.uniform(0, 1) * min(1.0, level) if rng.random() > 0.02 else math.nan
            queue = rng.choice([0, 0, 0, 1, 3, 12]) * level
            samples.append(PodSample(spec.key.namespace, t.pod, va.model_id, kv, queue, running, now - 2,
                                     usage=_usage(rng, running, level)))
    errors = ("prometheus down",) if rng.random() < 0.05 else ()
    collect = CollectResult(tuple(samples), errors, 4, tuple(failed))
    models = {(v.key.namespace, v.model_id) for v in inventory.variants}
    gateway = ActivationReading({m: rng.choice([None, 0.0, 0.0, 2.0]) for m in sorted(models)})
    return CycleInputs(inventory, statuses, collect, now, gateway, None)


def fleet_decisions(seed: int, cycles: int = 6) -> dict[str, Any]:
    """One seeded fleet's decisions over `cycles` cycles: per cycle, in variant order, each target, its flags
    ("A" active, "S" stale, "-" neither, "AS" both) and a digest of every reason with its value and threshold."""
    out: list[dict[str, Any]] = []
    reports = fleet_reports(seed, cycles)
    for report in reports:
        decisions = sorted(report.decisions, key=lambda d: (d.key.namespace, d.key.name))
        reasons = "\n".join(f"{d.key} {d.reason} {d.reason.value!r} {d.reason.threshold!r}" for d in decisions)
        out.append({"targets": [d.desired_replicas for d in decisions],
                    "flags": [("A" if d.active else "") + ("S" if d.stale else "") or "-" for d in decisions],
                    "reasons": hashlib.sha256(reasons.encode()).hexdigest()[:16],
                    "keys": hashlib.sha256(" ".join(str(d.key) for d in decisions).encode()).hexdigest()[:16]})
    mode = MODES[seed % len(MODES)]
    return {"seed": seed, "mode": mode or "off", "variants": len(reports[0].decisions), "cycles": out}


def fleet_reports(seed: int, cycles: int = 3) -> list[CycleReport]:
    """One seeded fleet's cycle reports: 2-40 models, a mode by seed, the Deployments following the targets
    (mostly) from one cycle to the next."""
    rng = random.Random(seed)
    inventory = build_inventory(_documents(rng, rng.randint(2, 40)))
    mode = MODES[seed % len(MODES)]
    planner = None if mode is None else PlannerSettings(mode, refit_interval=rng.choice([0.0, 60.0]))
    state = CycleState(CycleConfig(idle_window=None, gateway=True, planner=planner))
    now = 1_000.0
    current: dict[VariantKey, int] = {}
    reports: list[CycleReport] = []
    for _ in range(cycles):
        now += rng.choice([15.0, 30.0, 60.0])
        report, state = step(state, _cycle(rng, inventory, now, current))
        reports.append(report)
        # the Deployments follow the targets (mostly): the next cycle's replicas
        current = {d.key: d.desired_replicas if rng.random() < 0.8 else d.current_replicas for d in report.decisions}
    return reports
