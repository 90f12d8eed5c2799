"""The suite's tables, rendered from `suite.json` alone (rows as dicts): what `simulate --suite` prints and
`scripts/sim_tables.py` writes into the README and docs/simulator.md.

* `leaderboard`: per policy over the whole suite — scenarios whose SLO attainment reaches `SLO_TARGET`,
  mean and worst attainment, total cost, the geometric mean of the cost ratio to the reference (and to the
  bound); ranked by scenarios met, then mean attainment, then that ratio;
* `matrix`: scenario × policy, each cell "SLO % · × reference";
* `full`: a row per scenario × policy: SLO %, TTFT p99, cost, × reference (and × bound);
* `scenarios`: the suite's scenarios (shape, fleet, duration, requests).

With rows of several seeds (`simulate --suite --seeds`), every table judges a scenario × policy by `over_seeds`:
its worst seed's SLO attainment (met only if met at every seed), its mean cost, the geometric mean of its cost
ratios, its worst TTFT p99 and the sum of its aborted requests.

The reference is `oracle-startup` when the suite ran it (the oracle that waits for pod start-up like
everyone else), else `oracle`; the bound is always `oracle` (future known, pods start instantly).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

SLO_TARGET = 99.0  # percent of requests within the SLO for a scenario to count as met
Row = Mapping[str, Any]


def _ratio_headers(suite: Mapping[str, Any]) -> tuple[str, str | None]:
    ref, bound = suite.get("reference", "oracle"), suite.get("bound", "oracle")
    return f"× {ref}", (None if ref == bound else "× bound")


def _num(x: Any) -> float:
    return math.inf if x is None else float(x)


def fmt_seconds(x: Any) -> str:
    v = _num(x)
    if math.isnan(v):
        return "–"
    if not math.isfinite(v):
        return "∞"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"


def _fmt_ratio(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.2f}"


def _geomean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _order(rows: Sequence[Row], key: str) -> list[str]:
    return list(dict.fromkeys(str(r[key]) for r in rows))


def seeds_of(rows: Sequence[Row]) -> list[int]:
    """The seeds the rows come from, in order (rows without one: seed 0)."""
    return list(dict.fromkeys(int(r.get("seed", 0)) for r in rows))


def over_seeds(rows: Sequence[Row]) -> list[Row]:
    """One row per scenario × policy: the rows themselves for one seed; over several, the worst seed's SLO
    attainment (`slo_seeds`: each seed's), the mean cost, the geometric mean of the cost ratios, the worst TTFT p99
    and the aborted requests summed (see the module docstring)."""
    if len(seeds_of(rows)) < 2:
        return list(rows)
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((str(r["scenario"]), str(r["policy"])), []).append(r)
    out: list[Row] = []
    for (scenario, policy), mine in groups.items():
        slo = [float(r["slo_attainment"]) for r in mine]
        out.append({"scenario": scenario, "policy": policy, "slo_attainment": min(slo), "slo_seeds": slo,
                    "cost": sum(float(r["cost"]) for r in mine) / len(mine),
                    "cost_ratio": _geomean([_num(r.get("cost_ratio")) for r in mine]),
                    "cost_ratio_bound": _geomean([_num(r.get("cost_ratio_bound")) for r in mine]),
                    "ttft_p99": max(_num(r.get("ttft_p99")) for r in mine),
                    "aborted": sum(int(r.get("aborted") or 0) for r in mine)})
    return out


def summary(rows: Sequence[Row], target: float = SLO_TARGET) -> list[dict[str, Any]]:
    """Per policy over the suite: met (scenarios ≥ target), mean and worst SLO %, total cost, geometric mean of
    cost_ratio and of cost_ratio_bound; ranked by met, then mean SLO (to 0.1%), then that cost ratio: being
    cheap ranks only among policies that serve alike. Rows of several seeds are judged `over_seeds` first."""
    rows = over_seeds(rows)
    out: list[dict[str, Any]] = []
    for policy in _order(rows, "policy"):
        mine = [r for r in rows if r["policy"] == policy]
        slo = [float(r["slo_attainment"]) for r in mine]
        out.append({
            "policy": policy, "scenarios": len(mine), "met": sum(s >= target for s in slo),
            "slo_mean": sum(slo) / len(slo), "slo_worst": min(slo), "cost": sum(float(r["cost"]) for r in mine),
            "ratio": _geomean([_num(r.get("cost_ratio")) for r in mine]),
            "ratio_bound": _geomean([_num(r.get("cost_ratio_bound")) for r in mine]),
            "aborted": sum(int(r.get("aborted") or 0) for r in mine),
        })
    out.sort(key=lambda s: (-int(s["met"]), -round(float(s["slo_mean"]), 1),
                            math.inf if s["ratio"] is None else float(s["ratio"]), str(s["policy"])))
    return out


def leaderboard(data: Mapping[str, Any]) -> str:
    """The ranked per-policy table (Markdown)."""
    suite, rows = data.get("suite", {}), data["rows"]
    target = float(suite.get("slo_target_pct", SLO_TARGET))
    ref, bound = _ratio_headers(suite)
    head = (f"| rank | policy | SLO ≥ {target:g}% | mean SLO | worst SLO | total cost | {ref} (geo-mean) |"
            + (f" {bound} (geo-mean) |" if bound else "") + " aborted requests |")
    lines = [head, "|" + "---|" * (9 if bound else 8)]
    for i, s in enumerate(summary(rows, target), 1):
        lines.append(f"| {i} | {s['policy']} | {s['met']} / {s['scenarios']} | {s['slo_mean']:.1f}% | "
                     f"{s['slo_worst']:.1f}% | {s['cost']:.1f} | {_fmt_ratio(s['ratio'])} |"
                     + (f" {_fmt_ratio(s['ratio_bound'])} |" if bound else "") + f" {s['aborted']} |")
    return "\n".join(lines)


def matrix(data: Mapping[str, Any]) -> str:
    """Scenario × policy, each cell 'SLO % · × reference' (Markdown)."""
    rows = over_seeds(data["rows"])
    ref, _ = _ratio_headers(data.get("suite", {}))
    policies = [s["policy"] for s in summary(rows, float(data.get("suite", {}).get("slo_target_pct", SLO_TARGET)))]
    cell = {(r["scenario"], r["policy"]): r for r in rows}
    lines = ["| scenario | " + " | ".join(policies) + " |", "|" + "---|" * (len(policies) + 1)]
    for sc in _order(rows, "scenario"):
        cells = []
        for p in policies:
            r = cell.get((sc, p))
            cells.append("–" if r is None else f"{float(r['slo_attainment']):.1f}% · {_fmt_ratio(r.get('cost_ratio'))}")
        lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    worst = " (the worst seed's)" if len(seeds_of(data["rows"])) > 1 else ""
    return "\n".join(lines) + f"\n\nEach cell: SLO attainment{worst} · cost {ref}."


def full(data: Mapping[str, Any]) -> str:
    """A row per scenario × policy: SLO %, TTFT p99, cost, × reference (and × bound) (Markdown); over several
    seeds, each seed's SLO and the rest as `over_seeds` judges it."""
    ref, bound = _ratio_headers(data.get("suite", {}))
    several = len(seeds_of(data["rows"])) > 1
    lines = [f"| scenario | policy | SLO met{' (per seed)' if several else ''} | TTFT p99 | cost | {ref} |"
             + (f" {bound} |" if bound else ""), "|" + "---|" * (7 if bound else 6)]
    for r in over_seeds(data["rows"]):
        slo = " / ".join(f"{v:.1f}" for v in r["slo_seeds"]) if several else f"{float(r['slo_attainment']):.1f}"
        slo += "%"
        lines.append(f"| {r['scenario']} | {r['policy']} | {slo} | "
                     f"{fmt_seconds(r.get('ttft_p99'))} | {float(r['cost']):.2f} | {_fmt_ratio(r.get('cost_ratio'))} |"
                     + (f" {_fmt_ratio(r.get('cost_ratio_bound'))} |" if bound else ""))
    return "\n".join(lines)


def scenarios(data: Mapping[str, Any]) -> str:
    """The suite's scenarios: shape, fleet, simulated duration, requests (Markdown)."""
    lines = ["| scenario | shape | fleet | duration | requests |", "|---|---|---|---|---|"]
    for s in data.get("scenarios", []):
        lines.append(f"| {s['name']} | {s['description']} | {s['fleet']} | {float(s['duration_s']):,.0f} s | "
                     f"{int(s['requests']):,} |")
    return "\n".join(lines)


def footer(data: Mapping[str, Any]) -> str:
    """One line: how the tables were made (seed, settings, runtime)."""
    s = data.get("suite", {})
    seeds = seeds_of(data.get("rows", [])) if data.get("rows") else [s.get("seed", 0)]
    seen = (f"Seeds {', '.join(map(str, seeds))} (each scenario judged by its worst seed's SLO, at its mean cost)"
            if len(seeds) > 1 else f"Seed {seeds[0]}")
    return (f"{seen}, start-up {s.get('startup_delay_s', 90):g} s, scrapes "
            f"{s.get('scrape_interval_s', 15):g} s, SLO {s.get('slo', {}).get('name', 'Standard')}; "
            f"{len(data.get('scenarios', []))} scenarios × {len(s.get('policies', []))} policies in "
            f"{float(s.get('runtime_s', 0.0)):.0f} s with {s.get('jobs', 1)} processes "
            f"(`uv run kedascaler simulate --suite{' --seeds ' + ' '.join(map(str, seeds)) if len(seeds) > 1 else ''}"
            " --out DIR`, then "
            "`uv run python scripts/sim_tables.py DIR/suite.json`).")


BLOCKS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "leaderboard": lambda d: leaderboard(d) + "\n\n" + footer(d),
    "matrix": matrix,
    "full": full,
    "scenarios": scenarios,
}
