"""`kedascaler analyze`: turn a decision-record file (JSONL) into CSVs, plots and ANALYSIS_SUMMARY.md.

The seeds' analysis notebooks as one command: the scaling decisions over time with their reasons, KV cache
and queue per pod and per model, saturation events (pods over a threshold), the prediction made at cycle N
against what cycle N+1 observed, and SLO violations when the records carry them. Every number in the summary
is computed here from the records (also written as summary.json), so a test can recompute it.

Predictions: a record may carry `predicted_itl_ms`/`predicted_ttft_ms` (model-based mode) and the next
record of the same variant `observed_itl_ms`/`observed_ttft_ms`. Saturation mode always makes one implicit
prediction, which is checked too: after the decision, the model's KV-cache load Σkv spreads over Σdesired
replicas, so the mean KV usage per pod at N+1 should be Σkv(N) / Σdesired(N) (`kv_per_replica`).

With `prometheus_url`, the vLLM TTFT and ITL p50/p90 over the records' time range are pulled as well (best
effort: any error is noted in the summary and skipped).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedascaler.observe.records import iso_time, scrub

CSV_FILES = ("decisions.csv", "pods.csv", "aggregate.csv", "saturation_events.csv", "predictions.csv",
             "slo_violations.csv")
PLOT_FILES = ("decisions.png", "kv_cache.png", "queue.png", "replicas.png")
SUMMARY_FILES = ("ANALYSIS_SUMMARY.md", "summary.json")
ACTIONS = ("scale-up", "scale-down", "hold", "stale", "bounds", "inactive")
MAX_EVENTS_LISTED = 40
ROUND = 4

_QUANTILE = "histogram_quantile({q}, sum by (le, model_name) (rate({metric}_bucket[1m])))"
LATENCY_QUERIES = {
    "ttft_p50_s": _QUANTILE.format(q=0.5, metric="vllm:time_to_first_token_seconds"),
    "ttft_p90_s": _QUANTILE.format(q=0.9, metric="vllm:time_to_first_token_seconds"),
    "itl_p50_s": _QUANTILE.format(q=0.5, metric="vllm:inter_token_latency_seconds"),
    "itl_p90_s": _QUANTILE.format(q=0.9, metric="vllm:inter_token_latency_seconds"),
}


class RecordsError(Exception):
    """The records file cannot be analysed (missing, or no valid record in it)."""


@dataclass
class Analysis:
    """What `analyze` computed and wrote."""

    summary: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ loading

def load_records(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """The decision records of a JSONL file, sorted by time, and how many lines were not valid records."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecordsError(f"cannot read {path}: {exc.strerror or exc}") from None
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not _looks_like_record(record):
            bad += 1
            continue
        records.append(record)
    if not records:
        raise RecordsError(f"{path}: no decision records ({bad} invalid lines)")
    records.sort(key=lambda r: (r["ts"], r["namespace"], r["variant"]))
    return records, bad


def _looks_like_record(r: Any) -> bool:
    try:
        return (isinstance(r, dict) and isinstance(r["ts"], (int, float)) and isinstance(r["variant"], str)
                and isinstance(r["namespace"], str) and isinstance(r["model"], str)
                and isinstance(r["result"]["desired_replicas"], int) and isinstance(r["reason"]["action"], str))
    except (KeyError, TypeError):
        return False


# ------------------------------------------------------------------ small helpers

def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, ROUND)


def _vkey(r: dict[str, Any]) -> str:
    return f"{r['namespace']}/{r['variant']}"


def _mkey(r: dict[str, Any]) -> str:
    return f"{r['namespace']}/{r['model']}"


def _thresholds(r: dict[str, Any]) -> tuple[float | None, float | None]:
    t = r.get("thresholds") or {}
    return _finite(t.get("kv_cache_threshold")), _finite(t.get("queue_length_threshold"))


def _pods(r: dict[str, Any]) -> list[dict[str, Any]]:
    return list((r.get("inputs") or {}).get("pods") or [])


def _replicas(r: dict[str, Any]) -> dict[str, int]:
    return (r.get("inputs") or {}).get("replicas") or {"current": 0, "ready": 0, "pending": 0}


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0-100."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ------------------------------------------------------------------ tables

def decision_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        rep, reason = _replicas(r), r["reason"]
        rows.append({
            "time": r.get("time") or iso_time(r["ts"]), "ts": r["ts"], "cycle": r.get("cycle"),
            "namespace": r["namespace"], "model": r["model"], "variant": r["variant"],
            "accelerator": r.get("accelerator", ""), "current": rep.get("current"), "ready": rep.get("ready"),
            "pending": rep.get("pending"), "desired": r["result"]["desired_replicas"],
            "change": r["result"]["desired_replicas"] - (rep.get("current") or 0),
            "active": r["result"].get("active"), "action": reason["action"], "signal": reason.get("signal", ""),
            "value": reason.get("value"), "threshold": reason.get("threshold"), "stale": r.get("stale", False),
            "message": reason.get("message", ""),
        })
    return rows


def pod_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        kv_t, q_t = _thresholds(r)
        for p in _pods(r):
            kv, q = _finite(p.get("kv_cache_usage")), _finite(p.get("queue_length"))
            over = _over(kv, q, kv_t, q_t)
            rows.append({"ts": r["ts"], "cycle": r.get("cycle"), "namespace": r["namespace"], "model": r["model"],
                         "variant": r["variant"], "pod": p.get("pod"), "kv_cache_usage": kv, "queue_length": q,
                         "running": _finite(p.get("running")), "saturated": bool(over), "over": over})
    return rows


def _over(kv: float | None, q: float | None, kv_t: float | None, q_t: float | None) -> str:
    """Which thresholds a pod is at or over (the analyzer's saturation test): "", "kv", "queue" or "kv+queue"."""
    parts = []
    if kv is not None and kv_t is not None and kv >= kv_t:
        parts.append("kv")
    if q is not None and q_t is not None and q >= q_t:
        parts.append("queue")
    return "+".join(parts)


def saturation_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        kv_t, q_t = _thresholds(r)
        for p in _pods(r):
            kv, q = _finite(p.get("kv_cache_usage")), _finite(p.get("queue_length"))
            over = _over(kv, q, kv_t, q_t)
            if over:
                rows.append({"time": r.get("time") or iso_time(r["ts"]), "ts": r["ts"], "namespace": r["namespace"],
                             "model": r["model"], "variant": r["variant"], "pod": p.get("pod"),
                             "kv_cache_usage": kv, "kv_cache_threshold": kv_t, "queue_length": q,
                             "queue_length_threshold": q_t, "over": over})
    return rows


def aggregate_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and cycle (records of one model in one cycle share its snapshot time `ts`)."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["ts"], _mkey(r))].append(r)
    rows = []
    for (ts, model), rs in sorted(groups.items()):
        kvs = [kv for r in rs for p in _pods(r) if (kv := _finite(p.get("kv_cache_usage"))) is not None]
        qs = [q for r in rs for p in _pods(r) if (q := _finite(p.get("queue_length"))) is not None]
        run = [x for r in rs for p in _pods(r) if (x := _finite(p.get("running"))) is not None]
        rows.append({
            "ts": ts, "time": iso_time(ts), "namespace": rs[0]["namespace"], "model": rs[0]["model"],
            "pods": sum(len(_pods(r)) for r in rs),
            "kv_mean": statistics.fmean(kvs) if kvs else None, "kv_max": max(kvs) if kvs else None,
            "kv_total": sum(kvs), "queue_total": sum(qs), "queue_max": max(qs) if qs else None,
            "running_total": sum(run),
            "current": sum(_replicas(r).get("current", 0) for r in rs),
            "ready": sum(_replicas(r).get("ready", 0) for r in rs),
            "desired": sum(r["result"]["desired_replicas"] for r in rs),
        })
    return rows


def prediction_rows(records: Sequence[dict[str, Any]], aggregate: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prediction at cycle N against the observation at N+1 (error = predicted − observed)."""
    rows = []
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in aggregate:
        by_model[f"{a['namespace']}/{a['model']}"].append(a)
    for model, seq in sorted(by_model.items()):
        for now, nxt in zip(seq, seq[1:]):
            if now["desired"] > 0 and now["kv_mean"] is not None and nxt["kv_mean"] is not None:
                predicted = now["kv_total"] / now["desired"]
                rows.append(_prediction(now["ts"], nxt["ts"], model, "", "kv_per_replica", predicted, nxt["kv_mean"]))
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_variant[_vkey(r)].append(r)
    for variant, seq in sorted(by_variant.items()):
        for now, nxt in zip(seq, seq[1:]):
            for quantity in ("itl_ms", "ttft_ms"):
                predicted = _finite(now.get(f"predicted_{quantity}"))
                observed = _finite(nxt.get(f"observed_{quantity}"))
                if predicted is not None and observed is not None:
                    rows.append(_prediction(now["ts"], nxt["ts"], _mkey(now), variant, quantity, predicted, observed))
    return rows


def _prediction(ts_n: float, ts_n1: float, model: str, variant: str, quantity: str, predicted: float,
                observed: float) -> dict[str, Any]:
    return {"ts_n": ts_n, "ts_n1": ts_n1, "model": model, "variant": variant, "quantity": quantity,
            "predicted": _r(predicted), "observed": _r(observed), "error": _r(predicted - observed)}


def slo_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every observed latency that exceeds the record's service-class target."""
    rows = []
    for r in records:
        slo = r.get("slo") or {}
        for quantity in ("itl_ms", "ttft_ms"):
            target, observed = _finite(slo.get(quantity)), _finite(r.get(f"observed_{quantity}"))
            if target is not None and observed is not None and observed > target:
                rows.append({"time": r.get("time") or iso_time(r["ts"]), "ts": r["ts"], "namespace": r["namespace"],
                             "model": r["model"], "variant": r["variant"], "slo_class": slo.get("class", ""),
                             "metric": quantity, "observed": observed, "target": target})
    return rows


# ------------------------------------------------------------------ summary

def summarize(records: Sequence[dict[str, Any]], bad_lines: int,
              tables: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every number of ANALYSIS_SUMMARY.md, computed from the records and the tables built from them."""
    ts = [r["ts"] for r in records]
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_variant[_vkey(r)].append(r)
    sat_by_variant = Counter(f"{s['namespace']}/{s['variant']}" for s in tables["saturation_events"])
    variants = {}
    for key, rs in sorted(by_variant.items()):
        actions = Counter(r["reason"]["action"] for r in rs)
        desired = [r["result"]["desired_replicas"] for r in rs]
        kvs = [kv for r in rs for p in _pods(r) if (kv := _finite(p.get("kv_cache_usage"))) is not None]
        qs = [q for r in rs for p in _pods(r) if (q := _finite(p.get("queue_length"))) is not None]
        variants[key] = {
            "model": rs[0]["model"], "accelerator": rs[0].get("accelerator", ""), "decisions": len(rs),
            "actions": {a: actions.get(a, 0) for a in sorted(set(ACTIONS) | set(actions))},
            "desired_changes": sum(1 for a, b in zip(desired, desired[1:]) if a != b),
            "desired_min": min(desired), "desired_max": max(desired), "desired_last": desired[-1],
            "current_max": max(_replicas(r).get("current", 0) for r in rs),
            "kv_mean": _r(statistics.fmean(kvs)) if kvs else None, "kv_max": _r(max(kvs)) if kvs else None,
            "queue_max": _r(max(qs)) if qs else None,
            "saturation_events": sat_by_variant.get(key, 0),
            "stale_decisions": sum(1 for r in rs if r.get("stale")),
            "active_fraction": _r(sum(1 for r in rs if r["result"].get("active")) / len(rs)),
        }
    actions = Counter(r["reason"]["action"] for r in records)
    predictions = {}
    by_quantity: dict[str, list[float]] = defaultdict(list)
    for p in tables["predictions"]:
        by_quantity[p["quantity"]].append(p["error"])
    for quantity, errors in sorted(by_quantity.items()):
        predictions[quantity] = {
            "n": len(errors), "bias": _r(statistics.fmean(errors)),
            "mae": _r(statistics.fmean(abs(e) for e in errors)),
            "rmse": _r(math.sqrt(statistics.fmean(e * e for e in errors))),
            "p90_abs_error": _r(_percentile([abs(e) for e in errors], 90)),
        }
    slo_checked = sum(1 for r in records for q in ("itl_ms", "ttft_ms")
                      if _finite((r.get("slo") or {}).get(q)) is not None
                      and _finite(r.get(f"observed_{q}")) is not None)
    return {
        "records": len(records), "invalid_lines": bad_lines,
        "cycles": len({r["ts"] for r in records}),
        "start": iso_time(min(ts)), "end": iso_time(max(ts)), "duration_s": _r(max(ts) - min(ts)),
        "models": sorted({_mkey(r) for r in records}), "variants": variants,
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


# ------------------------------------------------------------------ output

def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


COLUMNS = {
    "decisions": ("time", "ts", "cycle", "namespace", "model", "variant", "accelerator", "current", "ready", "pending",
                  "desired", "change", "active", "action", "signal", "value", "threshold", "stale", "message"),
    "pods": ("ts", "cycle", "namespace", "model", "variant", "pod", "kv_cache_usage", "queue_length", "running",
             "saturated", "over"),
    "aggregate": ("time", "ts", "namespace", "model", "pods", "kv_mean", "kv_max", "kv_total", "queue_total",
                  "queue_max", "running_total", "current", "ready", "desired"),
    "saturation_events": ("time", "ts", "namespace", "model", "variant", "pod", "kv_cache_usage", "kv_cache_threshold",
                          "queue_length", "queue_length_threshold", "over"),
    "predictions": ("ts_n", "ts_n1", "model", "variant", "quantity", "predicted", "observed", "error"),
    "slo_violations": ("time", "ts", "namespace", "model", "variant", "slo_class", "metric", "observed", "target"),
}


def analyze_records(records: Sequence[dict[str, Any]], out_dir: str | Path, *, bad_lines: int = 0,
                    prometheus_url: str | None = None, prometheus_token: str | None = None,
                    source: str = "records") -> Analysis:
    """Write the CSVs, plots, summary.json and ANALYSIS_SUMMARY.md for `records` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: (r["ts"], r["namespace"], r["variant"]))
    tables: dict[str, list[dict[str, Any]]] = {
        "decisions": decision_rows(records), "pods": pod_rows(records), "aggregate": aggregate_rows(records),
        "saturation_events": saturation_rows(records), "slo_violations": slo_rows(records),
    }
    tables["predictions"] = prediction_rows(records, tables["aggregate"])
    analysis = Analysis(summarize(records, bad_lines, tables))
    for name, columns in COLUMNS.items():
        path = out / f"{name}.csv"
        write_csv(path, tables[name], columns)
        analysis.files.append(path)
    latency: list[dict[str, Any]] = []
    if prometheus_url:
        latency, status = fetch_latency(prometheus_url, min(r["ts"] for r in records), max(r["ts"] for r in records),
                                        token=prometheus_token)
        analysis.summary["prometheus"] = {"status": status, "metrics": _latency_stats(latency)}
        path = out / "latency.csv"
        write_csv(path, latency, ("ts", "model", "metric", "value"))
        analysis.files.append(path)
    analysis.files += plot_all(out, tables, latency, analysis.notes)
    (out / "summary.json").write_text(json.dumps(analysis.summary, indent=2, sort_keys=True) + "\n")
    analysis.files.append(out / "summary.json")
    names = [p.name for p in analysis.files] + ["ANALYSIS_SUMMARY.md"]
    (out / "ANALYSIS_SUMMARY.md").write_text(render_summary(analysis.summary, tables, names, analysis.notes, source))
    analysis.files.append(out / "ANALYSIS_SUMMARY.md")
    return analysis


def analyze_file(path: str | Path, out_dir: str | Path, *, prometheus_url: str | None = None,
                 prometheus_token: str | None = None) -> Analysis:
    records, bad = load_records(path)
    return analyze_records(records, out_dir, bad_lines=bad, prometheus_url=prometheus_url,
                           prometheus_token=prometheus_token, source=Path(path).name)


# ------------------------------------------------------------------ Prometheus (best effort)

def fetch_latency(url: str, start: float, end: float, *, token: str | None = None,
                  timeout: float = 10.0) -> tuple[list[dict[str, Any]], str]:
    """vLLM TTFT/ITL quantiles over [start, end] (padded by a minute); ([], why) on any error."""
    import requests

    start, end = start - 60, end + 60
    step = max(15.0, (end - start) / 500)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    rows: list[dict[str, Any]] = []
    try:
        for metric, query in LATENCY_QUERIES.items():
            response = requests.get(f"{url.rstrip('/')}/api/v1/query_range", headers=headers, timeout=timeout,
                                    params={"query": query, "start": start, "end": end, "step": step})
            response.raise_for_status()
            body = response.json()
            if body.get("status") != "success":
                raise ValueError(f"query failed: {body.get('error', body)}")
            for series in body["data"]["result"]:
                model = series.get("metric", {}).get("model_name", "")
                for t, v in series.get("values", []):
                    value = _finite(float(v)) if v not in ("NaN", "+Inf", "-Inf") else None
                    if value is not None:
                        rows.append({"ts": float(t), "model": model, "metric": metric, "value": value})
    except Exception as exc:  # noqa: BLE001 - best effort: the records' analysis stands without it
        return [], scrub(f"Prometheus at {url} skipped: {type(exc).__name__}: {exc}")
    series = len({(r["model"], r["metric"]) for r in rows})
    return rows, f"Prometheus at {url}: {len(rows)} points in {series} series."


def _latency_stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["metric"]].append(r["value"])
    return {m: {"points": len(v), "mean": _r(statistics.fmean(v)), "max": _r(max(v))} for m, v in by.items()}


# ------------------------------------------------------------------ plots

def plot_all(out: Path, tables: dict[str, list[dict[str, Any]]], latency: Sequence[dict[str, Any]],
             notes: list[str]) -> list[Path]:
    """The PNGs (matplotlib, Agg); without matplotlib, none, and a note says so."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("matplotlib is not installed: no plots (pip install 'kedascaler[plots]').")
        return []
    written = []
    t0 = min((d["ts"] for d in tables["decisions"]), default=0.0)
    written.append(_plot_decisions(plt, out / "decisions.png", tables["decisions"], t0))
    written.append(_plot_pods(plt, out / "kv_cache.png", tables["pods"], tables["aggregate"], t0,
                              "kv_cache_usage", "kv_mean", "KV-cache usage (fraction)",
                              "KV cache per pod and model mean"))
    written.append(_plot_pods(plt, out / "queue.png", tables["pods"], tables["aggregate"], t0,
                              "queue_length", "queue_total", "waiting requests", "Queue per pod and model total"))
    written.append(_plot_replicas(plt, out / "replicas.png", tables["aggregate"], t0))
    if tables["predictions"]:
        written.append(_plot_predictions(plt, out / "prediction_error.png", tables["predictions"]))
    if latency:
        written.append(_plot_latency(plt, out / "latency.png", latency, t0))
    return written



def _save(plt, fig, path: Path) -> Path:
    """Write a finished figure and free it (matplotlib keeps every open figure otherwise)."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

def _plot_decisions(plt, path: Path, rows: Sequence[dict[str, Any]], t0: float) -> Path:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in rows:
        by[f"{d['namespace']}/{d['variant']}"].append(d)
    keys = sorted(by)[:12]
    fig, axes = plt.subplots(max(1, len(keys)), 1, figsize=(11, 2.6 * max(1, len(keys))), sharex=True, squeeze=False)
    marks = {"scale-up": ("^", "tab:green"), "scale-down": ("v", "tab:red"), "stale": ("x", "tab:gray"),
             "bounds": ("s", "tab:purple")}
    for ax, key in zip(axes[:, 0], keys):
        seq = by[key]
        t = [d["ts"] - t0 for d in seq]
        ax.step(t, [d["current"] for d in seq], where="post", label="current", color="tab:blue")
        ax.step(t, [d["desired"] for d in seq], where="post", label="desired", color="tab:orange", linestyle="--")
        for action, (marker, color) in marks.items():
            pts = [(d["ts"] - t0, d["desired"]) for d in seq if d["action"] == action]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, label=action, zorder=3)
        ax.set_ylabel("replicas")
        ax.set_title(key, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since first record")
    fig.suptitle("Scaling decisions (markers: actions; reasons in decisions.csv)")
    return _save(plt, fig, path)


def _plot_pods(plt, path: Path, pods: Sequence[dict[str, Any]], aggregate: Sequence[dict[str, Any]], t0: float,
               field_: str, agg_field: str, ylabel: str, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4))
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in pods:
        if p[field_] is not None:
            by[f"{p['variant']}/{p['pod']}"].append((p["ts"] - t0, p[field_]))
    for key, pts in sorted(by.items())[:30]:
        ax.plot(*zip(*pts), linewidth=0.8, alpha=0.6, label=key if len(by) <= 10 else None)
    models: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in aggregate:
        if a[agg_field] is not None:
            models[a["model"]].append((a["ts"] - t0, a[agg_field]))
    for model, pts in sorted(models.items()):
        ax.plot(*zip(*pts), linewidth=2.2, color="black", label=f"{model} ({agg_field})")
    ax.set_xlabel("seconds since first record")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    return _save(plt, fig, path)


def _plot_replicas(plt, path: Path, aggregate: Sequence[dict[str, Any]], t0: float) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4))
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in aggregate:
        by[f"{a['namespace']}/{a['model']}"].append(a)
    for model, seq in sorted(by.items()):
        t = [a["ts"] - t0 for a in seq]
        ax.step(t, [a["current"] for a in seq], where="post", label=f"{model} current")
        ax.step(t, [a["ready"] for a in seq], where="post", label=f"{model} ready", linestyle=":")
        ax.step(t, [a["desired"] for a in seq], where="post", label=f"{model} desired", linestyle="--")
    ax.set_xlabel("seconds since first record")
    ax.set_ylabel("replicas (all variants)")
    ax.set_title("Replicas per model")
    ax.legend(fontsize=7, loc="upper left")
    return _save(plt, fig, path)


def _plot_predictions(plt, path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["quantity"]].append(r["error"])
    fig, axes = plt.subplots(1, len(by), figsize=(5 * len(by), 3.5), squeeze=False)
    for ax, (quantity, errors) in zip(axes[0], sorted(by.items())):
        ax.hist(errors, bins=min(30, max(5, len(errors) // 3)), color="tab:blue", alpha=0.8)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_title(f"{quantity}: predicted(N) − observed(N+1)", fontsize=9)
        ax.set_xlabel("error")
        ax.set_ylabel("cycles")
    return _save(plt, fig, path)


def _plot_latency(plt, path: Path, rows: Sequence[dict[str, Any]], t0: float) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4))
    by: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        by[(r["model"], r["metric"])].append((r["ts"] - t0, r["value"]))
    for (model, metric), pts in sorted(by.items()):
        ax.plot(*zip(*sorted(pts)), label=f"{model} {metric}")
    ax.set_xlabel("seconds since first record")
    ax.set_ylabel("seconds")
    ax.set_title("vLLM latency (Prometheus)")
    ax.legend(fontsize=7)
    return _save(plt, fig, path)
