"""The tables `kedascaler analyze` builds from decision records: decisions, pods, per-model aggregates,
saturation events, predictions against the next cycle's observations, and SLO violations.

Every number comes from the records as written: whether a pod was saturated is the engine's verdict, recorded in
the decision's steps (`steps.pods[].over`), never a threshold test redone here. Records without steps (written
before kedascaler recorded them, or decisions made outside the engine) have no saturated pods; `without_steps`
counts them so the summary can say so.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from kedascaler.observe.records import iso_time

ROUND = 4


def finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def rounded(x: float | None) -> float | None:
    return None if x is None else round(x, ROUND)


def vkey(r: dict[str, Any]) -> str:
    return f"{r['namespace']}/{r['variant']}"


def mkey(r: dict[str, Any]) -> str:
    return f"{r['namespace']}/{r['model']}"


def _analysed(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods the engine analysed for this decision, with its saturation verdict (none without steps)."""
    return list((r.get("steps") or {}).get("pods") or [])


def without_steps(records: Iterable[dict[str, Any]]) -> int:
    """How many records carry no engine steps (their pods count as not saturated)."""
    return sum(1 for r in records if not r.get("steps"))


def pods_of(r: dict[str, Any]) -> list[dict[str, Any]]:
    return list((r.get("inputs") or {}).get("pods") or [])


def replicas_of(r: dict[str, Any]) -> dict[str, int]:
    return (r.get("inputs") or {}).get("replicas") or {"current": 0, "ready": 0, "pending": 0}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0-100."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)



def decision_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        rep, reason = replicas_of(r), r["reason"]
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
    """Every pod sample as collected, with whether the engine found it saturated (a pod it did not analyse —
    a non-finite reading, a variant without fresh metrics — is not)."""
    rows = []
    for r in records:
        flags = {p.get("pod"): p for p in _analysed(r)}
        for p in pods_of(r):
            over = str(flags.get(p.get("pod"), {}).get("over") or "")
            rows.append({"ts": r["ts"], "cycle": r.get("cycle"), "namespace": r["namespace"], "model": r["model"],
                         "variant": r["variant"], "pod": p.get("pod"),
                         "kv_cache_usage": finite(p.get("kv_cache_usage")),
                         "queue_length": finite(p.get("queue_length")), "running": finite(p.get("running")),
                         "saturated": bool(over), "over": over})
    return rows


def saturation_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Saturation events: every analysed pod the engine found at or over a threshold, with the thresholds it used."""
    rows = []
    for r in records:
        t = r.get("thresholds") or {}
        for p in _analysed(r):
            if p.get("over"):
                rows.append({"time": r.get("time") or iso_time(r["ts"]), "ts": r["ts"], "namespace": r["namespace"],
                             "model": r["model"], "variant": r["variant"], "pod": p.get("pod"),
                             "kv_cache_usage": finite(p.get("kv_cache_usage")),
                             "kv_cache_threshold": finite(t.get("kv_cache_threshold")),
                             "queue_length": finite(p.get("queue_length")),
                             "queue_length_threshold": finite(t.get("queue_length_threshold")), "over": p["over"]})
    return rows


def aggregate_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and cycle (records of one model in one cycle share its snapshot time `ts`)."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["ts"], mkey(r))].append(r)
    rows = []
    for (ts, _), rs in sorted(groups.items()):
        kvs = [kv for r in rs for p in pods_of(r) if (kv := finite(p.get("kv_cache_usage"))) is not None]
        qs = [q for r in rs for p in pods_of(r) if (q := finite(p.get("queue_length"))) is not None]
        run = [x for r in rs for p in pods_of(r) if (x := finite(p.get("running"))) is not None]
        rows.append({
            "ts": ts, "time": iso_time(ts), "namespace": rs[0]["namespace"], "model": rs[0]["model"],
            "pods": sum(len(pods_of(r)) for r in rs),
            "kv_mean": statistics.fmean(kvs) if kvs else None, "kv_max": max(kvs) if kvs else None,
            "kv_total": sum(kvs), "queue_total": sum(qs), "queue_max": max(qs) if qs else None,
            "running_total": sum(run),
            "current": sum(replicas_of(r).get("current", 0) for r in rs),
            "ready": sum(replicas_of(r).get("ready", 0) for r in rs),
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
        for now, nxt in pairwise(seq):
            if now["desired"] > 0 and now["kv_mean"] is not None and nxt["kv_mean"] is not None:
                predicted = now["kv_total"] / now["desired"]
                rows.append(_prediction(now["ts"], nxt["ts"], model, "", "kv_per_replica", predicted, nxt["kv_mean"]))
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_variant[vkey(r)].append(r)
    for variant, seq in sorted(by_variant.items()):
        for now, nxt in pairwise(seq):
            for quantity in ("itl_ms", "ttft_ms"):
                predicted = finite(now.get(f"predicted_{quantity}"))
                observed = finite(nxt.get(f"observed_{quantity}"))
                if predicted is not None and observed is not None:
                    rows.append(_prediction(now["ts"], nxt["ts"], mkey(now), variant, quantity, predicted, observed))
    return rows


def _prediction(ts_n: float, ts_n1: float, model: str, variant: str, quantity: str, predicted: float,
                observed: float) -> dict[str, Any]:
    return {"ts_n": ts_n, "ts_n1": ts_n1, "model": model, "variant": variant, "quantity": quantity,
            "predicted": rounded(predicted), "observed": rounded(observed), "error": rounded(predicted - observed)}


def slo_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every observed latency that exceeds the record's service-class target."""
    rows = []
    for r in records:
        slo = r.get("slo") or {}
        for quantity in ("itl_ms", "ttft_ms"):
            target, observed = finite(slo.get(quantity)), finite(r.get(f"observed_{quantity}"))
            if target is not None and observed is not None and observed > target:
                rows.append({"time": r.get("time") or iso_time(r["ts"]), "ts": r["ts"], "namespace": r["namespace"],
                             "model": r["model"], "variant": r["variant"], "slo_class": slo.get("class", ""),
                             "metric": quantity, "observed": observed, "target": target})
    return rows


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


__all__ = ["COLUMNS", "ROUND", "aggregate_rows", "decision_rows", "pod_rows", "prediction_rows", "saturation_rows",
           "slo_rows", "finite", "mkey", "percentile", "pods_of", "replicas_of", "rounded", "vkey",
           "without_steps", "write_csv"]
