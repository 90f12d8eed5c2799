"""Scores of simulator runs, and the report: a terminal table, summary.md, results.json and PNG plots.

Per policy: SLO attainment (a request meets the SLO when its TTFT and its mean ITL are both within the
service class's targets; requests that never finish miss), p50/p95/p99 TTFT and ITL, GPU cost (replica-seconds
× cost per hour / 3600, per variant), cost ratios to the achievable floor (`oracle-startup`, "× oracle") and
to the lower bound (`oracle`, "× bound"), time to reach the capacity needed after each load step, scaling
actions, time at zero ready replicas, and the cold-start penalty (requests that waited at the gateway for a
pod, and for how long). Attainment, latencies, cost and ratios are given over the whole run and after the
warm-up (`SimConfig.warmup`: the requests arriving after it, the cost billed from it on).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kedascaler.sim.report_plots import plot
from kedascaler.sim.report_sizing import learning_notes, learning_table, prediction_table, sizing_sections
from kedascaler.sim.simulator import RunResult
from kedascaler.sim.workloads import Workload

REFERENCE = "oracle-startup"  # "× oracle": the achievable floor (perfect foresight, pays the start-up delay)
BOUND = "oracle"  # "× bound": the lower bound (instant start)


@dataclass(frozen=True)
class AfterWarmup:
    """The scores of the requests that arrived after the warm-up, and the cost billed from it on."""

    requests: int
    slo_attainment: float  # percent; NaN: no request after the warm-up
    ttft_p50: float
    ttft_p95: float
    ttft_p99: float
    itl_p50: float
    itl_p95: float
    itl_p99: float
    cost: float
    cost_ratio: float | None = None  # to oracle-startup's cost after the warm-up
    cost_ratio_bound: float | None = None  # to the oracle's


@dataclass(frozen=True)
class Score:
    policy: str
    requests: int
    slo_attainment: float  # percent
    ttft_p50: float
    ttft_p95: float
    ttft_p99: float
    itl_p50: float
    itl_p95: float
    itl_p99: float
    cost: float
    cost_by_variant: dict[str, float]
    cost_ratio: float | None  # to the reference's cost: oracle-startup (`score_runs`), or `oracle_cost`
    reaction_times: list[float | None]  # per load step: seconds to reach the needed capacity (None: never)
    scaling_actions: int
    actions_by_variant: dict[str, int]
    zero_time: float
    cold_requests: int  # requests that waited at the gateway
    cold_wait_s: float  # their total wait at the gateway
    preemptions: int
    restarts: int  # requests handed back by terminating pods, started over elsewhere
    unfinished: int
    max_replicas: dict[str, int]
    cost_ratio_bound: float | None = None  # to the lower bound's cost (oracle)
    warmup_s: float = 0.0
    after_warmup: AfterWarmup | None = None
    aborted: int = 0  # runs killed mid-generation by a scale-down (the pod's grace period ran out)
    aborted_gpu_s: float = 0.0  # GPU-seconds those runs had used, wasted


def _pct(x: np.ndarray, q: float) -> float:
    """Percentile where inf (never served) sorts last and is returned as inf, without numpy's warnings."""
    if not len(x):
        return math.nan
    v = float(np.percentile(np.where(np.isfinite(x), x, 1e300), q, method="higher"))
    return math.inf if v >= 1e300 else v


def reaction_times(run: RunResult, workload: Workload, capacity: dict[str, float], window: float = 60.0
                   ) -> list[float | None]:
    """Per load step at s: seconds until the ready pods' capacity covers the rate of [s, s + window)."""
    out: list[float | None] = []
    caps = np.array([capacity[v.name] for v in run.variants])
    ready_cap = run.series["ready"] @ caps if len(run.times) else np.zeros(0)
    for s in workload.steps:
        lo, hi = np.searchsorted(workload.times, s), np.searchsorted(workload.times, s + window)
        need = (hi - lo) / window
        idx = np.nonzero((run.times >= s) & (ready_cap >= need))[0]
        out.append(float(run.times[idx[0]] - s) if len(idx) else None)
    return out


def _ratio(cost: float, reference: float | None) -> float | None:
    return cost / reference if reference else None


def score(run: RunResult, workload: Workload, capacity: dict[str, float], oracle_cost: float | None = None) -> Score:
    """The run's scores; `oracle_cost` gives the whole run's `cost_ratio` (`score_runs` gives all ratios)."""
    slo = run.slo
    ok = (run.ttft <= slo.ttft) & (run.itl <= slo.itl)
    cost = run.cost
    names = [v.name for v in run.variants]
    cold = (run.gateway_wait > 1e-9) & (run.restarts == 0)  # waited for a ready pod (not a restart)
    total = float(cost.sum())
    late = run.arrival >= run.warmup
    after = AfterWarmup(
        requests=int(late.sum()), slo_attainment=100.0 * float(ok[late].mean()) if late.any() else math.nan,
        ttft_p50=_pct(run.ttft[late], 50), ttft_p95=_pct(run.ttft[late], 95), ttft_p99=_pct(run.ttft[late], 99),
        itl_p50=_pct(run.itl[late], 50), itl_p95=_pct(run.itl[late], 95), itl_p99=_pct(run.itl[late], 99),
        cost=float(run.cost_after_warmup.sum()) if len(run.replica_seconds_after_warmup) else math.nan)
    return Score(
        policy=run.policy,
        requests=len(run.ttft),
        slo_attainment=100.0 * float(ok.mean()) if len(ok) else 100.0,
        ttft_p50=_pct(run.ttft, 50), ttft_p95=_pct(run.ttft, 95), ttft_p99=_pct(run.ttft, 99),
        itl_p50=_pct(run.itl, 50), itl_p95=_pct(run.itl, 95), itl_p99=_pct(run.itl, 99),
        cost=total,
        cost_by_variant={n: float(c) for n, c in zip(names, cost, strict=True)},
        cost_ratio=_ratio(total, oracle_cost),
        reaction_times=reaction_times(run, workload, capacity),
        scaling_actions=int(run.scaling_actions.sum()),
        actions_by_variant={n: int(a) for n, a in zip(names, run.scaling_actions, strict=True)},
        zero_time=float(run.zero_time),
        cold_requests=int(cold.sum()),
        cold_wait_s=float(run.gateway_wait[cold].sum()),
        preemptions=int(run.preemptions.sum()),
        restarts=int(run.restarts.sum()),
        unfinished=int(np.sum(~np.isfinite(run.itl))),
        max_replicas={n: int(m) for n, m in zip(names, run.series["replicas"].max(axis=0), strict=True)}
        if len(run.times) else {},
        warmup_s=float(run.warmup),
        after_warmup=after,
        aborted=int(run.aborts.sum()) if len(run.aborts) else 0,
        aborted_gpu_s=float(run.aborted_gpu_s),
    )


def with_ratios(scores: list[Score], reference: str = REFERENCE, bound: str = BOUND) -> list[Score]:
    """The scores with their cost ratios, overall and after the warm-up, to the policies named `reference`
    (× oracle) and `bound` (× bound) among them (None where that policy did not run)."""
    by_name = {s.policy: s for s in scores}
    ref, low = by_name.get(reference), by_name.get(bound)

    def warm_cost(s: Score | None) -> float | None:
        return s.after_warmup.cost if s is not None and s.after_warmup is not None else None

    out = []
    for s in scores:
        after = s.after_warmup
        if after is not None:
            after = dataclasses.replace(after, cost_ratio=_ratio(after.cost, warm_cost(ref)),
                                        cost_ratio_bound=_ratio(after.cost, warm_cost(low)))
        out.append(dataclasses.replace(s, cost_ratio=_ratio(s.cost, ref.cost if ref else None),
                                       cost_ratio_bound=_ratio(s.cost, low.cost if low else None),
                                       after_warmup=after))
    return out


def score_runs(runs: list[RunResult], workload: Workload, capacity: dict[str, float]) -> list[Score]:
    """Every run's scores, with the cost ratios to oracle-startup and to the oracle where they ran."""
    return with_ratios([score(r, workload, capacity) for r in runs])


def _fmt_s(x: float) -> str:
    if not math.isfinite(x):
        return "∞"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.1f} s"


def _fmt_react(r: list[float | None]) -> str:
    if not r:
        return "–"
    return " / ".join("never" if x is None else f"{x:.0f} s" for x in r)


def _fmt_ratio(x: float | None) -> str:
    return f"{x:.2f}" if x is not None and math.isfinite(x) else "–"


def _fmt_pct(x: float) -> str:
    return f"{x:.1f}%" if math.isfinite(x) else "–"


def table(scores: list[Score]) -> str:
    """A Markdown table (reads fine on a terminal too). Where two numbers share a cell, the second is after
    the warm-up: the requests arriving after it, the cost billed from it on."""
    head = ("| policy | SLO met: all / warm | TTFT p50 / p95 / p99 | ITL p50 / p95 / p99 | cost: all / warm | "
            "× oracle: all / warm | × bound: all / warm | max replicas | actions | restarts | aborted (GPU s) | "
            "to capacity after steps | at zero | cold-start waits |")
    rule = "|" + "---|" * 14
    rows = [head, rule]
    for s in scores:
        a = s.after_warmup
        reps = ", ".join(f"{k.split('-')[-1]} {v}" for k, v in s.max_replicas.items())
        cold = f"{s.cold_requests} req, {s.cold_wait_s:.0f} s" if s.cold_requests else "0"
        slo = f"{_fmt_pct(s.slo_attainment)} / {_fmt_pct(a.slo_attainment) if a else '–'}"
        cost = f"{s.cost:.2f} / {a.cost:.2f}" if a else f"{s.cost:.2f} / –"
        ratio = f"{_fmt_ratio(s.cost_ratio)} / {_fmt_ratio(a.cost_ratio if a else None)}"
        bound = f"{_fmt_ratio(s.cost_ratio_bound)} / {_fmt_ratio(a.cost_ratio_bound if a else None)}"
        rows.append(
            f"| {s.policy} | {slo} | {_fmt_s(s.ttft_p50)} / {_fmt_s(s.ttft_p95)} / {_fmt_s(s.ttft_p99)} | "
            f"{_fmt_s(s.itl_p50)} / {_fmt_s(s.itl_p95)} / {_fmt_s(s.itl_p99)} | {cost} | {ratio} | {bound} | {reps} | "
            f"{s.scaling_actions} | {s.restarts} | {s.aborted} ({s.aborted_gpu_s:.0f}) | "
            f"{_fmt_react(s.reaction_times)} | {s.zero_time:.0f} s | {cold} |")
    return "\n".join(rows)


def run_setup(runs: list[RunResult]) -> dict:
    """What every policy shared, for results.json and the report: the router, the warm-up, the initial fleet
    (static-peak's own start apart), and each policy's start."""
    first = runs[0] if runs else None
    shared = next((r.initial_fleet for r in runs if not r.fixed_fleet), first.initial_fleet if first else {})
    return {"router": first.router if first else None, "warmup_s": first.warmup if first else None,
            "initial_fleet": dict(shared), "initial_fleet_by_policy": {r.policy: dict(r.initial_fleet) for r in runs}}


ROUTER_TEXT = {
    "epp": "epp — llm-d's endpoint picker, default profile: queue-scorer ×2 + kv-cache-utilization-scorer ×2 "
           "(prefix-cache-scorer ×3 is 0 without shared prefixes), highest score, ties at random, metrics "
           "refreshed every 50 ms",
    "service": "service — a Kubernetes Service: a ready pod at random per request",
}


def setup_lines(runs: list[RunResult]) -> list[str]:
    """The run's set-up in words: router, initial fleet, warm-up (summary.md and the terminal)."""
    setup = run_setup(runs)
    fleet = ", ".join(f"{n} × {k}" for k, n in setup["initial_fleet"].items() if n) or "none"
    router = setup["router"]
    return [f"Router: {ROUTER_TEXT.get(router, router)}.",
            f"Initial fleet, the same for every policy (the oracles included): {fleet}, warm and ready at t = 0; "
            "static-peak is by definition its fixed fleet from t = 0.",
            f"Warm-up: {setup['warmup_s']:.0f} s; 'warm' = requests arriving after it, cost billed from it on. "
            "× oracle: cost ÷ oracle-startup's (perfect foresight, pays the start-up delay: the achievable floor); "
            "× bound: cost ÷ oracle's (instant start, no headroom: the lower bound)."]


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float as None (JSON has no NaN or infinity), nested dicts and lists too."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def write_report(out: Path, workload: Workload, runs: list[RunResult], scores: list[Score], capacity: dict[str, float],
                 settings: dict, runtime_s: dict[str, float],
                 policy_settings: dict[str, dict] | None = None) -> list[Path]:
    """summary.md, results.json and the plots under `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        files = plot(out, workload, runs, scores)
    except ImportError:  # matplotlib is the optional extra `plots`: the numbers are still worth writing
        files = []
    results = {
        "workload": {"name": workload.name, "requests": len(workload), "duration_s": workload.duration,
                     "steps_s": list(workload.steps), "description": workload.description},
        "settings": settings,
        # the measured capacity per replica at the SLO, per variant: what both oracles plan with
        "capacity_req_s_per_replica": capacity,
        **run_setup(runs),  # router, warmup_s, initial_fleet (shared), initial_fleet_by_policy
        "reference": REFERENCE, "bound": BOUND,  # cost_ratio: ÷ the reference's cost; cost_ratio_bound: ÷ the bound's
        "runtime_s": runtime_s,
        # each baseline's configuration as its upstream docs set it: source, commit, clocks, ScaledObject, deviations
        "policy_settings": policy_settings or {},
        "scores": [asdict(s) for s in scores],
        "series": {r.policy: {"t": r.times.tolist(), **{k: v.tolist() for k, v in r.series.items()}} for r in runs},
        # the policy's reasons when it changed something (kedascaler: the engine's Reason), first 500 per policy
        "decisions": {r.policy: [{"t": t, "reason": text} for t, text in r.decisions[:500]] for r in runs},
        # policies that size by the queueing model: predictions against the next interval, and what they learned
        "predictions": {r.policy: [x._asdict() for x in r.predictions] for r in runs if r.predictions},
        "learning": {r.policy: r.learning for r in runs if r.learning},
    }
    (out / "results.json").write_text(json.dumps(json_safe(results), indent=1))
    slo = runs[0].slo if runs else None
    lines = [f"# Simulation: {workload.name}", "",
             f"{len(workload)} requests over {workload.duration:.0f} s. {workload.description}", ""]
    if slo:
        lines += [f"SLO class {slo.name}: TTFT ≤ {slo.ttft * 1000:.0f} ms and mean ITL ≤ {slo.itl * 1000:.0f} ms "
                  "per request.", ""]
    lines += ["Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()), "",
              "Capacity per replica at the SLO (req/s, the oracles' and the reaction-time yardstick): "
              + ", ".join(f"{k} {v:.2f}" for k, v in capacity.items()), ""]
    lines += [x for line in setup_lines(runs) for x in (line, "")]
    for name, cfg in (policy_settings or {}).items():
        source = cfg.get("source") or cfg.get("follows") or ""
        lines += [f"- `{name}`: " + (f"{source}; " if source else "")
                  + ", ".join(f"{k} = {v}" for k, v in cfg.items() if k not in ("source", "follows"))]
    if policy_settings:
        lines.append("")
    lines += [table(scores), "",
              "Cost: replica-seconds × cost per hour / 3600 (pods billed while starting, serving and draining). "
              "'to capacity after steps': seconds after each load step until the ready pods' capacity covers the "
              "next minute's rate. Restarts: waiting requests handed back by a terminating pod and started over "
              "elsewhere. "
              "Cold-start waits: requests queued at the gateway with no ready pod.", "",
              "Plots: " + ", ".join(f"`{p.name}`" for p in files), ""]
    lines += sizing_sections(runs, "## Predictions of the model-based plans",
                             "## Parameters learned online (α, β, γ, δ in ms)")
    (out / "summary.md").write_text("\n".join(lines))
    return files + [out / "summary.md", out / "results.json"]


# The sizing sections live in `kedascaler.sim.report_sizing`; re-exported for the CLI and the tests.
__all__ = ["BOUND", "REFERENCE", "AfterWarmup", "Score", "json_safe", "learning_notes", "learning_table",
           "prediction_table", "reaction_times", "run_setup", "score", "score_runs", "setup_lines", "sizing_sections",
           "table", "with_ratios", "write_report"]
