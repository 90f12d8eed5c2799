"""The scenario suite: every scenario of `kedascaler.sim.scenarios.SUITE` under every chosen policy, one process
per scenario (`ProcessPoolExecutor`), scored alike; `suite.json`, `suite.md` and two plots.

A scenario's policies run in one process, on the same arrivals and fleet, so that the oracle's capacity is
calibrated once per scenario. Each row of `suite.json` is one scenario × policy: the keys of `results.json`'s
`scores` (`kedascaler.sim.report.Score`) plus `scenario` and `seed`, with `cost_ratio` to the reference
(`oracle-startup` when it ran, else `oracle`) and `cost_ratio_bound` to `oracle`. The oracle always runs
(and `oracle-startup` when that policy exists). The tables: `kedascaler.sim.leaderboard`.

With several seeds (`simulate --suite --seeds 0 1 2`) every scenario runs once per seed, on that seed's arrivals
and router choices: a row per seed × scenario × policy, and the tables judge each scenario by its worst seed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kedascaler.sim import leaderboard
from kedascaler.sim.config import SLO, SimConfig
from kedascaler.sim.policies import (
    EXTRA_POLICY_NAMES,
    POLICY_NAMES,
    make_policies,
    policy_settings,
    workload_capacity,
)
from kedascaler.sim.report import BOUND, REFERENCE, json_safe, score_runs
from kedascaler.sim.scenarios import SUITE, SUITE_NAMES, Scenario, suite_scenario
from kedascaler.sim.simulator import simulate


@dataclass(frozen=True)
class SuiteSettings:
    """What every scenario of one suite run shares (the fleet comes with the scenario)."""

    seed: int = 0
    startup_delay: float = 90.0
    scrape_interval: float = 15.0
    tick: float = 0.25
    slo: SLO = field(default_factory=SLO)
    router: str = "epp"

    def config(self, scenario: Scenario) -> SimConfig:
        return SimConfig(variants=scenario.variants(self.startup_delay), tick=self.tick,
                         scrape_interval=self.scrape_interval, slo=self.slo, router=self.router, seed=self.seed)


@dataclass
class ScenarioResult:
    """One scenario under every policy: its rows (as in suite.json) and what the plots need."""

    scenario: str
    description: str
    fleet: str
    requests: int
    duration: float
    steps: tuple[float, ...]
    capacity: dict[str, float]
    rows: list[dict[str, Any]]
    runtime_s: dict[str, float]
    variants: list[str]
    rate: tuple[np.ndarray, np.ndarray]  # arrivals per 10 s bucket: (starts, req/s)
    replicas: dict[str, tuple[np.ndarray, np.ndarray]]  # policy → (sample times, desired replicas × variants)
    policy_settings: dict[str, dict] = field(default_factory=dict)  # the baselines' configurations, as data
    seed: int = 0  # the arrivals' (and the router's) seed of this run


def known_policies() -> tuple[str, ...]:
    return tuple(dict.fromkeys(POLICY_NAMES + EXTRA_POLICY_NAMES))


def suite_policies(requested: Sequence[str] | None) -> list[str]:
    """The policies to run: the requested ones ('all': every policy; none: the default ones), then the
    oracle and, when it exists, oracle-startup (the ratios refer to them)."""
    names: list[str] = []
    for name in requested or POLICY_NAMES:
        names.extend(known_policies() if name == "all" else (name,))
    names.append(BOUND)
    if REFERENCE in known_policies():
        names.append(REFERENCE)
    return list(dict.fromkeys(names))


def reference_policy(names: Sequence[str]) -> str:
    return REFERENCE if REFERENCE in names else BOUND


def run_scenario(scenario: Scenario | str, policies: Sequence[str], settings: SuiteSettings) -> ScenarioResult:
    """Every policy on one scenario, scored; the cost ratios to the reference and to the bound."""
    sc = suite_scenario(scenario) if isinstance(scenario, str) else scenario
    workload = sc.workload(settings.seed)
    config = settings.config(sc)
    runs, runtime = [], {}
    made = make_policies(list(policies), workload, config)
    for policy in made:
        started = time.perf_counter()
        runs.append(simulate(workload, policy, config))
        runtime[policy.name] = round(time.perf_counter() - started, 3)
    capacity = workload_capacity(workload, config.variants, config.slo)
    rows = [{"scenario": sc.name, "seed": settings.seed, **asdict(s)} for s in score_runs(runs, workload, capacity)]
    return ScenarioResult(
        scenario=sc.name, description=sc.description, fleet=sc.fleet_label, requests=len(workload),
        duration=workload.duration, steps=tuple(workload.steps), capacity=capacity, rows=rows, runtime_s=runtime,
        variants=[v.name for v in config.variants], rate=workload.rate(10.0),
        replicas={r.policy: (r.times, r.series["replicas"]) for r in runs}, policy_settings=policy_settings(made),
        seed=settings.seed)


def _job(sc: Scenario) -> Scenario | str:
    """What crosses to the worker: the name of a suite scenario (its builders are lambdas), else the object."""
    return sc.name if sc.name in SUITE_NAMES and suite_scenario(sc.name) is sc else sc


def run_suite(scenarios: Sequence[Scenario] = SUITE, policies: Sequence[str] | None = None,
              settings: SuiteSettings | None = None, jobs: int | None = None,
              progress: Callable[[ScenarioResult, int, int], None] | None = None,
              seeds: Sequence[int] | None = None) -> list[ScenarioResult]:
    """Run every scenario under the policies, once per seed (`seeds`; default `settings.seed`), in up to `jobs`
    processes (default: the CPU count; 1: in this process); results by seed, then in the scenarios' order. The
    heaviest runs (most requests) start first."""
    settings = settings or SuiteSettings()
    names = suite_policies(policies)
    runs = [(replace(settings, seed=seed), sc) for seed in dict.fromkeys(seeds or (settings.seed,))
            for sc in scenarios]
    # build each workload once here: a missing trace fails before anything starts; the heaviest go first
    weight = {(s.seed, sc.name): len(sc.workload(s.seed)) for s, sc in runs}
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(runs)))
    done: dict[tuple[int, str], ScenarioResult] = {}
    if jobs == 1:
        for s, sc in runs:
            done[(s.seed, sc.name)] = run_scenario(sc, names, s)
            if progress:
                progress(done[(s.seed, sc.name)], len(done), len(runs))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_scenario, _job(sc), names, s)
                       for s, sc in sorted(runs, key=lambda r: -weight[(r[0].seed, r[1].name)])]
            for fut in as_completed(futures):
                res = fut.result()
                done[(res.seed, res.scenario)] = res
                if progress:
                    progress(res, len(done), len(runs))
    return [done[(s.seed, sc.name)] for s, sc in runs]


def first_seed(results: Sequence[ScenarioResult]) -> list[ScenarioResult]:
    """The runs of the first seed (one per scenario): what describes the scenarios and what the plots show."""
    return [r for r in results if r.seed == results[0].seed] if results else []


def suite_data(results: Sequence[ScenarioResult], settings: SuiteSettings, policies: Sequence[str],
               runtime_s: float, jobs: int) -> dict[str, Any]:
    """What suite.json holds: the settings, the scenarios (as the first seed built them) and a row per seed ×
    scenario × policy."""
    seeds = list(dict.fromkeys(r.seed for r in results)) or [settings.seed]
    return json_safe({
        "suite": {"seed": seeds[0], "seeds": seeds, "startup_delay_s": settings.startup_delay,
                  "scrape_interval_s": settings.scrape_interval, "tick_s": settings.tick, "slo": asdict(settings.slo),
                  "policies": list(policies), "reference": reference_policy(policies), "bound": BOUND,
                  "slo_target_pct": leaderboard.SLO_TARGET, "runtime_s": round(runtime_s, 1), "jobs": jobs},
        "scenarios": [{"name": r.scenario, "description": r.description, "fleet": r.fleet, "requests": r.requests,
                       "duration_s": r.duration, "steps_s": list(r.steps), "capacity_req_s_per_replica": r.capacity,
                       "runtime_s": r.runtime_s} for r in first_seed(results)],
        "rows": [row for r in results for row in r.rows],
        # each baseline's configuration as its upstream docs set it (from the first scenario: they do not vary)
        "policy_settings": results[0].policy_settings if results else {},
    })


def write_suite(out: Path, results: Sequence[ScenarioResult], data: dict[str, Any]) -> list[Path]:
    """suite.json, suite.md and the plots (of the first seed's runs) under `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        files = plot_suite(out, first_seed(results))
    except ImportError:  # matplotlib is the optional extra `plots`
        files = []
    (out / "suite.json").write_text(json.dumps(data, indent=1))
    md = ["# Scenario suite", "", leaderboard.scenarios(data), "", leaderboard.leaderboard(data), "",
          leaderboard.footer(data), "", leaderboard.matrix(data), "", leaderboard.full(data), "",
          "Plots: " + ", ".join(f"`{p.name}`" for p in files), ""]
    (out / "suite.md").write_text("\n".join(md))
    return files + [out / "suite.md", out / "suite.json"]


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, max(1, n))
    return math.ceil(n / cols), cols


def plot_suite(out: Path, results: Sequence[ScenarioResult]) -> list[Path]:
    """`suite_cost_vs_slo.png` (cost against SLO attainment, a panel per scenario) and `suite_replicas.png`
    (desired replicas of all variants over time per policy, arrivals shaded, a panel per scenario)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    rows, cols = _grid(len(results))
    policies = list(dict.fromkeys(r["policy"] for res in results for r in res.rows))
    cmap = plt.get_cmap("tab10" if len(policies) <= 10 else "tab20")
    color = {p: cmap(i % cmap.N) for i, p in enumerate(policies)}
    files = []
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, res in zip(axes.flat, results, strict=False):
        for r in res.rows:
            ax.scatter(max(r["cost"], 1e-3), r["slo_attainment"], s=30, color=color[r["policy"]], label=r["policy"])
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(res.scenario, fontsize=9, loc="left")
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=7)
    fig.suptitle("SLO attainment (%) against GPU cost (cost units, log), per scenario", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    files.append(out / "suite_cost_vs_slo.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.0 * rows), squeeze=False)
    for ax, res in zip(axes.flat, results, strict=False):
        ax2 = ax.twinx()
        ax2.fill_between(res.rate[0], res.rate[1], step="post", color="0.88")
        ax2.tick_params(labelsize=6, colors="0.5")
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        for policy, (t, reps) in res.replicas.items():
            ax.step(t, reps.sum(axis=1) if reps.ndim == 2 else reps, where="post", linewidth=0.9, label=policy,
                    color=color.get(policy))
        ax.set_title(f"{res.scenario} ({res.fleet})", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=7)
    fig.suptitle("desired replicas of all variants per policy (lines) against time (s); arrivals in req/s "
                 "(shaded, right axis)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    files.append(out / "suite_replicas.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)
    return files
