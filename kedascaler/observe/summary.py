"""The summary of `kedascaler analyze`: every number of summary.json computed from the records and their tables,
and ANALYSIS_SUMMARY.md rendered from it."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from kedascaler.engine.types import Action
from kedascaler.observe.records import iso_time
from kedascaler.observe.tables import finite, mkey, percentile, pods_of, replicas_of, rounded, vkey

ACTIONS = tuple(Action)  # scale-up, scale-down, hold, stale, bounds, inactive
MAX_EVENTS_LISTED = 40


def summarize(records: Sequence[dict[str, Any]], bad_lines: int,
              tables: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every number of ANALYSIS_SUMMARY.md, computed from the records and the tables built from them."""
    ts = [r["ts"] for r in records]
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_variant[vkey(r)].append(r)
    sat_by_variant = Counter(f"{s['namespace']}/{s['variant']}" for s in tables["saturation_events"])
    variants = {}
    for key, rs in sorted(by_variant.items()):
        actions = Counter(r["reason"]["action"] for r in rs)
        desired = [r["result"]["desired_replicas"] for r in rs]
        kvs = [kv for r in rs for p in pods_of(r) if (kv := finite(p.get("kv_cache_usage"))) is not None]
        qs = [q for r in rs for p in pods_of(r) if (q := finite(p.get("queue_length"))) is not None]
        variants[key] = {
            "model": rs[0]["model"], "accelerator": rs[0].get("accelerator", ""), "decisions": len(rs),
            "actions": {a: actions.get(a, 0) for a in sorted(set(ACTIONS) | set(actions))},
            "desired_changes": sum(1 for a, b in pairwise(desired) if a != b),
            "desired_min": min(desired), "desired_max": max(desired), "desired_last": desired[-1],
            "current_max": max(replicas_of(r).get("current", 0) for r in rs),
            "kv_mean": rounded(statistics.fmean(kvs)) if kvs else None, "kv_max": rounded(max(kvs)) if kvs else None,
            "queue_max": rounded(max(qs)) if qs else None,
            "saturation_events": sat_by_variant.get(key, 0),
            "stale_decisions": sum(1 for r in rs if r.get("stale")),
            "active_fraction": rounded(sum(1 for r in rs if r["result"].get("active")) / len(rs)),
        }
    actions = Counter(r["reason"]["action"] for r in records)
    predictions = {}
    by_quantity: dict[str, list[float]] = defaultdict(list)
    for p in tables["predictions"]:
        by_quantity[p["quantity"]].append(p["error"])
    for quantity, errors in sorted(by_quantity.items()):
        predictions[quantity] = {
            "n": len(errors), "bias": rounded(statistics.fmean(errors)),
            "mae": rounded(statistics.fmean(abs(e) for e in errors)),
            "rmse": rounded(math.sqrt(statistics.fmean(e * e for e in errors))),
            "p90_abs_error": rounded(percentile([abs(e) for e in errors], 90)),
        }
    slo_checked = sum(1 for r in records for q in ("itl_ms", "ttft_ms")
                      if finite((r.get("slo") or {}).get(q)) is not None
                      and finite(r.get(f"observed_{q}")) is not None)
    return {
        "records": len(records), "invalid_lines": bad_lines,
        "cycles": len({r["ts"] for r in records}),
        "start": iso_time(min(ts)), "end": iso_time(max(ts)), "duration_s": rounded(max(ts) - min(ts)),
        "models": sorted({mkey(r) for r in records}), "variants": variants,
        "actions": {a: actions.get(a, 0) for a in sorted(set(ACTIONS) | set(actions))},
        "scale_events": sum(1 for r in records if r["reason"]["action"] in ("scale-up", "scale-down")),
        "desired_changes": sum(v["desired_changes"] for v in variants.values()),
        "stale_decisions": sum(1 for r in records if r.get("stale")),
        "pods_seen": len({(p["namespace"], p["pod"]) for p in tables["pods"]}),
        "pod_samples": len(tables["pods"]),
        "saturation_events": len(tables["saturation_events"]),
        "saturated_cycles": len({(s["ts"], s["namespace"], s["model"]) for s in tables["saturation_events"]}),
        "predictions": predictions,
        "slo": {"checked": slo_checked, "violations": len(tables["slo_violations"]),
                "by_metric": dict(Counter(v["metric"] for v in tables["slo_violations"]))},
    }


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def render_summary(summary: dict[str, Any], tables: dict[str, list[dict[str, Any]]], files: Sequence[str],
                   notes: Sequence[str], source: str) -> str:
    s = summary
    lines = [
        "# Scaling analysis", "",
        f"Records: `{source}` — {s['records']} decisions ({s['invalid_lines']} invalid lines skipped), "
        f"{s['cycles']} cycles from {s['start']} to {s['end']} ({_fmt(s['duration_s'])} s).",
        f"Models: {', '.join(s['models'])}.", "",
        "## Decisions", "",
        "| action | decisions |", "|---|---|",
        *[f"| {a} | {n} |" for a, n in s["actions"].items()],
        "",
        f"Scale events (scale-up or scale-down decisions): {s['scale_events']}. "
        f"Changes of desired replicas between consecutive cycles: {s['desired_changes']}. "
        f"Stale decisions (held on missing metrics): {s['stale_decisions']}.", "",
        "## Per variant", "",
        "| variant | accelerator | decisions | scale-up | scale-down | hold | stale | desired min–max (last) | "
        "max current | KV mean | KV max | queue max | saturation events | active |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, v in s["variants"].items():
        a = v["actions"]
        lines.append(
            f"| {key} | {v['accelerator']} | {v['decisions']} | {a.get('scale-up', 0)} | {a.get('scale-down', 0)} | "
            f"{a.get('hold', 0)} | {a.get('stale', 0)} | "
            f"{v['desired_min']}–{v['desired_max']} ({v['desired_last']}) | "
            f"{v['current_max']} | {_fmt(v['kv_mean'])} | {_fmt(v['kv_max'])} | {_fmt(v['queue_max'])} | "
            f"{v['saturation_events']} | {_fmt(v['active_fraction'])} |")
    lines += ["", "## Saturation", "",
              f"Pods seen: {s['pods_seen']} ({s['pod_samples']} pod samples). Saturation events (a pod at or over "
              f"kvCacheThreshold or queueLengthThreshold): {s['saturation_events']}, in {s['saturated_cycles']} "
              "model-cycles. Details: saturation_events.csv.", ""]
    lines += ["## Prediction at cycle N against observation at N+1", ""]
    if s["predictions"]:
        lines += ["error = predicted − observed. `kv_per_replica`: the model's KV load at N spread over the replicas "
                  "desired at N, against the mean KV per pod observed at N+1 (replicas still loading make it "
                  "differ).", "",
                  "| quantity | n | bias | MAE | RMSE | p90 abs error |", "|---|---|---|---|---|---|"]
        for q, p in s["predictions"].items():
            lines.append(f"| {q} | {p['n']} | {_fmt(p['bias'])} | {_fmt(p['mae'])} | {_fmt(p['rmse'])} | "
                         f"{_fmt(p['p90_abs_error'])} |")
    else:
        lines.append("No prediction could be checked (fewer than two cycles with metrics, or no predicted_* fields).")
    lines += ["", "## SLO", ""]
    if s["slo"]["checked"]:
        by_metric = ", ".join(f"{k}: {n}" for k, n in sorted(s["slo"]["by_metric"].items()))
        lines.append(f"Observed latencies checked against their service class: {s['slo']['checked']}; violations: "
                     f"{s['slo']['violations']}" + (f" ({by_metric})" if by_metric else "") + ".")
    else:
        lines.append("The records carry no SLO targets with observed latencies: nothing to check.")
    events = [d for d in tables["decisions"] if d["action"] in ("scale-up", "scale-down")]
    lines += ["", "## Scaling timeline", ""]
    if events:
        lines += [f"The first {min(len(events), MAX_EVENTS_LISTED)} of {len(events)} scale events "
                  "(all decisions: decisions.csv).", "",
                  "| time | variant | current → desired | action | signal | value | threshold | message |",
                  "|---|---|---|---|---|---|---|---|"]
        for d in events[:MAX_EVENTS_LISTED]:
            message = str(d["message"]).replace("|", "/")[:160]
            lines.append(f"| {d['time']} | {d['namespace']}/{d['variant']} | {d['current']} → {d['desired']} | "
                         f"{d['action']} | {d['signal']} | {_fmt(d['value'])} | {_fmt(d['threshold'])} | {message} |")
    else:
        lines.append("No scale-up or scale-down decision.")
    if s.get("prometheus"):
        lines += ["", "## vLLM latency from Prometheus", "", s["prometheus"]["status"]]
        for metric, stats in sorted((s["prometheus"].get("metrics") or {}).items()):
            lines.append(f"- {metric}: mean {_fmt(stats['mean'])}, max {_fmt(stats['max'])} ({stats['points']} points)")
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    lines += ["", "## Files", "", *[f"- `{f}`" for f in files], ""]
    return "\n".join(lines)


__all__ = ["ACTIONS", "MAX_EVENTS_LISTED", "render_summary", "summarize"]
