"""`kedascaler analyze`: turn a decision-record file (JSONL) into CSVs, plots and ANALYSIS_SUMMARY.md.

The seeds' analysis notebooks as one command: the scaling decisions over time with their reasons, KV cache
and queue per pod and per model, saturation events (pods the engine found at or over a threshold, as its
recorded steps say), the prediction made at cycle N against what cycle N+1 observed, and SLO violations when
the records carry them. Every number in the summary is computed from the records (also written as
summary.json), so a test can recompute it. The tables are built in `kedascaler.observe.tables`, the summary in
`kedascaler.observe.summary`, the plots in `kedascaler.observe.plots`.

Predictions: a record may carry `predicted_itl_ms`/`predicted_ttft_ms` (model-based mode) and the next
record of the same variant `observed_itl_ms`/`observed_ttft_ms`. Saturation mode always makes one implicit
prediction, which is checked too: after the decision, the model's KV-cache load Σkv spreads over Σdesired
replicas, so the mean KV usage per pod at N+1 should be Σkv(N) / Σdesired(N) (`kv_per_replica`).

With `prometheus_url`, the vLLM TTFT and ITL p50/p90 over the records' time range are pulled as well (best
effort: any error is noted in the summary and skipped).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedascaler.observe.plots import plot_all
from kedascaler.observe.records import scrub
from kedascaler.observe.summary import ACTIONS, MAX_EVENTS_LISTED, render_summary, summarize
from kedascaler.observe.tables import (
    COLUMNS,
    ROUND,
    aggregate_rows,
    decision_rows,
    finite,
    pod_rows,
    prediction_rows,
    rounded,
    saturation_rows,
    slo_rows,
    without_steps,
    write_csv,
)

CSV_FILES = ("decisions.csv", "pods.csv", "aggregate.csv", "saturation_events.csv", "predictions.csv",
             "slo_violations.csv")
PLOT_FILES = ("decisions.png", "kv_cache.png", "queue.png", "replicas.png")
SUMMARY_FILES = ("ANALYSIS_SUMMARY.md", "summary.json")

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
    missing = without_steps(records)
    if missing:
        analysis.notes.append(f"{missing} of {len(records)} records carry no engine steps (written by an older "
                              "kedascaler, or decided outside the engine): their pods count as not saturated.")
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
            params: dict[str, str | float] = {"query": query, "start": start, "end": end, "step": step}
            response = requests.get(f"{url.rstrip('/')}/api/v1/query_range", headers=headers, timeout=timeout,
                                    params=params)
            response.raise_for_status()
            body = response.json()
            if body.get("status") != "success":
                raise ValueError(f"query failed: {body.get('error', body)}")
            for series in body["data"]["result"]:
                model = series.get("metric", {}).get("model_name", "")
                for t, v in series.get("values", []):
                    value = finite(float(v)) if v not in ("NaN", "+Inf", "-Inf") else None
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
    return {m: {"points": len(v), "mean": rounded(statistics.fmean(v)), "max": rounded(max(v))} for m, v in by.items()}


__all__ = ["ACTIONS", "CSV_FILES", "LATENCY_QUERIES", "MAX_EVENTS_LISTED", "PLOT_FILES", "ROUND", "SUMMARY_FILES",
           "Analysis", "RecordsError", "analyze_file", "analyze_records", "fetch_latency", "load_records", "plot_all"]
