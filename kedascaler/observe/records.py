"""Decision records: one structured JSON object per decision, for logs, JSONL files and `kedascaler analyze`.

A record carries everything that made the decision: its inputs (per-pod KV cache, queue and running requests,
replica counts), the thresholds the engine used for the variant, the engine's steps (`Decision.steps`: the
saturation analysis, per-pod saturation, the plan per variant), the result (desired replicas, active) and the
reason. Nothing is re-derived here: the numbers are the engine's. Its shape is the JSON schema
`schema/decision-record.schema.json` (version `SCHEMA_ID`), loaded with `load_schema()`.

Also here: `configure_logging(level, fmt)` with a JSON formatter for every log line, and `SecretFilter`, which
scrubs Authorization headers, bearer tokens and `token=`-style secrets from every record before it is written.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kedascaler.engine.types import Decision, DecisionSteps, SaturationConfig, VariantState

if TYPE_CHECKING:
    from kedascaler.loop.reconcile import CycleReport

SCHEMA_ID = "kedascaler.decision-record/v1"


@cache
def load_schema() -> dict[str, Any]:
    """The decision-record JSON schema shipped with the package."""
    text = resources.files("kedascaler.observe").joinpath("schema/decision-record.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _num(x: float | None) -> float | None:
    """JSON has no NaN/inf: a non-finite reading is written as null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def iso_time(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def thresholds_record(config: SaturationConfig | None) -> dict[str, float] | None:
    """The thresholds the engine used for the variant (None: not known)."""
    if config is None:
        return None
    return {"kv_cache_threshold": config.kv_cache_threshold, "queue_length_threshold": config.queue_length_threshold,
            "kv_spare_trigger": config.kv_spare_trigger, "queue_spare_trigger": config.queue_spare_trigger}


def steps_record(steps: DecisionSteps) -> dict[str, Any] | None:
    """The engine's steps behind a decision, as JSON (None: the decision carries none)."""
    if steps.route is None:
        return None
    return {
        "route": steps.route, "taken": steps.taken, "model_action": steps.model_action,
        "binding_signal": steps.binding_signal, "needed_replicas": steps.needed_replicas, "floor": steps.floor,
        "goal": steps.goal,
        "model_replicas": {"current": steps.current_total, "ready": steps.ready_total, "pending": steps.pending_total,
                           "missing": steps.missing_total, "analysed": steps.analysed_total},
        "stale_variants": [k.name for k in steps.stale_variants],
        "estimated_kv_total": _num(steps.estimated_kv_total),
        "estimated_queue_total": _num(steps.estimated_queue_total),
        "avg_spare_kv": _num(steps.avg_spare_kv), "avg_spare_queue": _num(steps.avg_spare_queue),
        "spare_kv": _num(steps.spare_kv), "spare_queue": _num(steps.spare_queue),
        "saturation_level": _num(steps.saturation_level),
        "pods": [{"pod": r.pod, "kv_cache_usage": _num(r.kv_cache_usage), "queue_length": _num(r.queue_length),
                  "saturated": r.saturated, "over": r.over, "spare_kv": _num(r.spare_kv),
                  "spare_queue": _num(r.spare_queue)} for r in steps.pods],
        "plan": [{"variant": t.key.name, "current": t.current, "target": t.target, "saturation": t.saturation,
                  "model": t.model} for t in steps.plan],
        "arrival_rate": _num(steps.arrival_rate), "capacity": _num(steps.capacity),
        "capacity_plan": capacity_record(steps),
    }


def capacity_record(steps: DecisionSteps) -> dict[str, Any] | None:
    """Capacity mode's plan: the demand, the capacity per replica of each variant and why, the mix, the hold."""
    cap = steps.capacity_plan
    if cap is None:
        return None
    d = cap.demand
    return {
        "demand": {k: _num(getattr(d, k)) for k in ("latest", "short", "long", "trend", "forecast", "prompt_tokens",
                                                    "output_tokens", "tokens_per_s", "gateway_queue", "backlog",
                                                    "drain", "drain_horizon", "need", "up", "held", "hold_window",
                                                    "target", "handed_back")} | {"measured": d.measured},
        "variants": [{"variant": c.key.name, "per_replica": _num(c.per_replica), "source": str(c.source),
                      "reason": c.reason, "model": _num(c.model), "measured": _num(c.measured),
                      "carried": _num(c.carried), "prior": _num(c.prior), "batch_limit": c.batch_limit,
                      "startup_s": _num(c.startup_s), "startup_source": c.startup_source} for c in cap.variants],
        "mix": {k.name: n for k, n in cap.mix}, "mix_capacity": _num(cap.mix_capacity), "mix_cost": _num(cap.mix_cost),
        "current_capacity": _num(cap.current_capacity), "ready_capacity": _num(cap.ready_capacity),
        "switch": cap.switch_note, "held": cap.held, "guard": cap.guard, "short": cap.short,
        "hold_kept": _num(cap.hold_kept),
    }


def decision_record(decision: Decision, variant: VariantState | None, *, cycle: int, now: float,
                    predicted_itl_ms: float | None = None, predicted_ttft_ms: float | None = None) -> dict[str, Any]:
    """The record of one decision: its steps, joined with the variant's state (the inputs) in the snapshot."""
    ts = decision.decided_at or now
    pods = [] if variant is None else [
        {"pod": p.pod, "kv_cache_usage": _num(p.kv_cache_usage), "queue_length": _num(p.queue_length),
         "running": _num(p.running), "timestamp": _num(p.timestamp)}
        for p in variant.pods
    ]
    record: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "time": iso_time(ts),
        "ts": ts,
        "cycle": cycle,
        "namespace": decision.key.namespace,
        "variant": decision.key.name,
        "model": decision.model_id,
        "accelerator": variant.spec.accelerator if variant is not None else "",
        "variant_cost": _num(variant.spec.cost) if variant is not None else None,
        "inputs": {
            "pods": pods,
            "replicas": {"current": decision.current_replicas, "ready": decision.ready_replicas,
                         "pending": max(0, decision.current_replicas - decision.ready_replicas)},
            "metrics_fresh": True if variant is None else variant.metrics_fresh,
            "min_replicas": variant.spec.min_replicas if variant is not None else 0,
            "max_replicas": variant.spec.max_replicas if variant is not None else None,
        },
        "thresholds": thresholds_record(decision.steps.thresholds),
        "steps": steps_record(decision.steps),
        "result": {"desired_replicas": decision.desired_replicas, "active": decision.active},
        "reason": {"action": decision.reason.action, "signal": decision.reason.signal,
                   "value": _num(decision.reason.value), "threshold": _num(decision.reason.threshold),
                   "message": decision.reason.message},
        "stale": decision.stale,
        "data_at": decision.data_at,
        "data_age_s": max(0.0, ts - decision.data_at) if decision.data_at > 0 else None,
    }
    if predicted_itl_ms is not None:
        record["predicted_itl_ms"] = _num(predicted_itl_ms)
    if predicted_ttft_ms is not None:
        record["predicted_ttft_ms"] = _num(predicted_ttft_ms)
    return record


class DecisionRecorder:
    """Numbers the cycles and turns each CycleReport into its decision records."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.cycle = 0

    def records(self, report: CycleReport, only: Callable[[Decision], bool] | None = None) -> list[dict[str, Any]]:
        """The cycle's records (numbering it); `only`: of the decisions it accepts."""
        self.cycle += 1
        now = self.clock()
        decisions = report.decisions if only is None else [d for d in report.decisions if only(d)]
        if not decisions:
            return []
        wanted = {d.key for d in decisions}
        states = {v.spec.key: v for snap in report.snapshots for v in snap.variants if v.spec.key in wanted}
        usage = report.usage
        plans = report.plans
        out = []
        for d in decisions:
            record = decision_record(d, states.get(d.key), cycle=self.cycle, now=now,
                                     predicted_itl_ms=d.predicted_itl_ms, predicted_ttft_ms=d.predicted_ttft_ms)
            observed = observed_latencies(usage.get(d.key, ()))
            for name, value in observed.items():
                record[f"observed_{name}"] = value
            plan = plans.get((d.key.namespace, d.model_id))
            if plan is not None:
                record["scaling_mode"] = plan.mode
                if plan.slo is not None:
                    record["slo"] = {"itl_ms": _num(plan.slo.itl_ms), "ttft_ms": _num(plan.slo.ttft_ms)}
            out.append(record)
        return out


def observed_latencies(usage: Iterable[Any]) -> dict[str, float]:
    """Mean ITL and TTFT (ms) a variant's pods showed over the window (weighted by pod throughput when known)."""
    out: dict[str, float] = {}
    for name in ("itl_ms", "ttft_ms"):
        pairs = [(getattr(u, name), u.completed_rate or 0.0) for u in usage if _num(getattr(u, name)) is not None]
        if not pairs:
            continue
        weight = sum(w for _, w in pairs)
        out[name] = (sum(v * w for v, w in pairs) / weight) if weight > 0 else sum(v for v, _ in pairs) / len(pairs)
    return out


class RecordWriter:
    """Appends decision records to a JSONL file, one object per line, flushed after each record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        with self._lock:
            if self._file is None:
                raise ValueError(f"RecordWriter for {self.path} is closed")
            self._file.write(line + "\n")
            self._file.flush()

    def write_all(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- logging

REDACTED = "[REDACTED]"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer abc / 'Authorization': 'Basic abc' / authorization=abc (the whole credential)
    (re.compile(r"""(?i)(\bauthorization\b["']?\s*[:=]\s*["']?)(?:(bearer|basic)\s+)?[^\s"',;}]+"""),
     r"\1\2 " + REDACTED),
    # a bearer token wherever it appears
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 " + REDACTED),
    # token=..., access_token: ..., "api_key": "...", password=..., secret=..., client_secret=...
    (re.compile(r"""(?i)(\b[a-z0-9_\-]*(?:token|api[_-]?key|password|passwd|secret)["']?\s*[:=]\s*["']?)"""
                r"""[^\s"'&,;}]+"""), r"\1" + REDACTED),
    # user:password@ in URLs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)


def scrub(text: str) -> str:
    """The text with credentials replaced by [REDACTED]."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text.replace(" " + " " + REDACTED, " " + REDACTED)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: (REDACTED if _secret_key(k) else _scrub_value(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v) for v in value]
    return value


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and re.search(r"(?i)authorization|token|api[_-]?key|password|secret", key) is not None


class SecretFilter(logging.Filter):
    """Scrubs credentials from a log record's message, arguments, exception text and structured extras.

    Attach it to handlers (it is, by `configure_logging`): filters on a handler see the records of every logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must still be logged, scrubbed
            message = f"{record.msg} {record.args}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for name in _EXTRA_FIELDS:
            if hasattr(record, name):
                setattr(record, name, _scrub_value(getattr(record, name)))
        return True


_EXTRA_FIELDS = ("decision", "fields")
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, exception; plus a `decision` record when given,
    and any other `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return scrub(json.dumps(out, default=str, separators=(",", ":")))


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


_HANDLER_MARK = "_kedascaler_handler"


def configure_logging(level: str | int = "INFO", fmt: str = "plain", stream: IO[str] | None = None) -> logging.Handler:
    """Send every log line to `stream` (stderr) as JSON (`fmt="json"`) or text, with secrets scrubbed.

    Replaces a handler this function installed earlier (so calling it twice is safe) and leaves others alone.
    """
    if fmt not in ("json", "plain"):
        raise ValueError(f"log format must be 'json' or 'plain', got {fmt!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    handler.addFilter(SecretFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
