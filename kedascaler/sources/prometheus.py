"""vLLM per-pod metrics from Prometheus: a fixed handful of PromQL queries per cycle, for all models at once.

Each saturation query aggregates by (namespace, pod, model_name) over `max_over_time[window]` — the worst
value of the window, as WVA's saturation analysis reads it — so the number of queries never grows with the
number of models or pods. Anything that goes wrong (connection, timeout, HTTP error, malformed answer, NaN)
ends up in `CollectResult.errors`, never raised: the reconcile loop holds its last decision instead.

One more query reads every pod's usage over the window (`PodUsage`, for SLO sizing): each signal a
sub-expression tagged `signal="<name>"` by `label_replace`, all joined by `or`, so it is one answer too.
Usage is optional: when that query fails the samples come back without usage and the problem is a
`CollectResult.warnings` entry, never an error that would hold the decisions.

Sample times are on the scaler's clock (`clock`), never on Prometheus's: an answer is stamped when it
arrives, and a series lagging the answer's evaluation time (the newest timestamp in it: an instant query
stamps every series with it) is stamped that much earlier. So a Prometheus whose clock is off by more than
`--stale-after` neither makes every decision stale (behind) nor hides staleness (ahead): the age the server
checks is measured on one clock.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kedascaler.sources.base import CollectResult, PodSample, PodUsage, ScrapeTarget
from kedascaler.sources.promql import BearerToken, PromQLClient, PromQLError, PromQLReader, Series
from kedascaler.sources.scrape import (
    CACHE_CONFIG,
    GENERATION_TOKENS,
    ITL,
    ITL_OLD,
    KV_USAGE,
    KV_USAGE_V0,
    PREFILL,
    PROMPT_TOKENS,
    QUEUE,
    REQUEST_PROMPT,
    RUNNING,
    SUCCESS,
    TTFT,
    WAITING,
    implausible,
    kv_cache_tokens,
)

log = logging.getLogger("kedascaler.sources.prometheus")

_BY = "namespace, pod, model_name"

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
USAGE = "usage"  # the signal of the usage query
SIGNAL_LABEL = "signal"  # the label that tags each usage sub-expression
# The usage query's signals, tagged by label_replace. Rates are per second; the means are Δ_sum ÷ Δ_count.
USAGE_SIGNALS = ("completed", "prompt_tokens", "output_tokens", "itl", "ttft", "prefill", "prompt_tokens_mean",
                 "mean_running", "backlog_delta", "kv_capacity")


def window_seconds(window: str) -> float:
    """A Prometheus duration ("1m", "30s", "1m30s", "500ms") in seconds; ValueError when it is not one."""
    parts = _DURATION.findall(window)
    if not window or "".join(n + u for n, u in parts) != window:
        raise ValueError(f"not a Prometheus duration: {window!r} (expected e.g. 30s, 1m, 1m30s)")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"the window must be longer than 0 s: {window!r}")
    return seconds


def _worst(agg: str, metric: str, window: str) -> str:
    return f"{agg} by ({_BY}) (max_over_time({metric}[{window}]))"


@dataclass(frozen=True)
class Query:
    """One PromQL query of the cycle and the signal it yields."""

    signal: str  # "kv_cache_usage" | "queue_length" | "running" | "usage" (labelled per signal)
    promql: str


def usage_query(window: str = "1m") -> str:
    """Every pod's usage signals over the window in one answer: per (namespace, pod, model_name), summed over
    the pod's engines, each sub-expression tagged `signal="<name>"` (see USAGE_SIGNALS) and joined by `or`.

    A mean is rate(_sum) ÷ rate(_count): NaN (0 ÷ 0) when nothing was observed in the window. ITL: the v1
    name, else the older one; prefill: request_prefill_time, else TTFT − queue time (when not negative);
    backlog_delta: the change of running + waiting over the window (÷ the window's span in Python)."""
    def total(expr: str) -> str:
        return f"sum by ({_BY}) ({expr})"

    def rate(metric: str) -> str:
        return total(f"rate({metric}[{window}])")

    def mean(histogram: str) -> str:
        return f"({rate(histogram + '_sum')} / {rate(histogram + '_count')})"

    def tag(signal: str, expr: str) -> str:
        return f'label_replace({expr}, "{SIGNAL_LABEL}", "{signal}", "", "")'

    expressions = {
        "completed": rate(SUCCESS),
        "prompt_tokens": rate(PROMPT_TOKENS),
        "output_tokens": rate(GENERATION_TOKENS),
        "itl": f"({mean(ITL)} or {mean(ITL_OLD)})",
        "ttft": mean(TTFT),
        "prefill": f"({mean(PREFILL)} or ({mean(TTFT)} - {mean(QUEUE)} >= 0))",
        "prompt_tokens_mean": mean(REQUEST_PROMPT),
        "mean_running": total(f"avg_over_time({RUNNING}[{window}])"),
        "backlog_delta": f"({total(f'delta({RUNNING}[{window}])')} + {total(f'delta({WAITING}[{window}])')})",
        # the KV cache size lives in the info gauge's labels: engines per (blocks, block size), multiplied in Python
        "kv_capacity": f"count by (namespace, pod, num_gpu_blocks, block_size) ({CACHE_CONFIG})",
    }
    assert tuple(expressions) == USAGE_SIGNALS
    return " or ".join(tag(signal, expr) for signal, expr in expressions.items())


def cycle_queries(window: str = "1m") -> tuple[Query, ...]:
    """The queries of one cycle. KV: the v1 name, else the v0 one; requests: summed over a pod's engines;
    then the usage query (optional: its failure holds nothing)."""
    return (
        Query("kv_cache_usage", f"{_worst('max', KV_USAGE, window)} or {_worst('max', KV_USAGE_V0, window)}"),
        Query("queue_length", _worst("sum", WAITING, window)),
        Query("running", _worst("sum", RUNNING, window)),
        Query(USAGE, usage_query(window)),
    )


def usage_from_signals(signals: dict[str, float], window_s: float) -> PodUsage:
    """A pod's PodUsage from its usage query's values (signal -> value); a field is None when its signal is
    absent or not a finite number (NaN: nothing observed in the window), or negative (but the backlog's)."""
    def get(signal: str, scale: float = 1.0, signed: bool = False) -> float | None:
        value = signals.get(signal)
        if value is None or not math.isfinite(value) or (value < 0 and not signed):
            return None
        return value * scale

    backlog = get("backlog_delta", signed=True)
    return PodUsage(window_s=window_s, completed_rate=get("completed"), prompt_tokens_rate=get("prompt_tokens"),
                    output_tokens_rate=get("output_tokens"),
                    backlog_growth_rate=None if backlog is None else backlog / window_s,
                    mean_running=get("mean_running"), itl_ms=get("itl", 1000.0), prefill_ms=get("prefill", 1000.0),
                    prompt_tokens_mean=get("prompt_tokens_mean"), ttft_ms=get("ttft", 1000.0),
                    kv_capacity_tokens=int(kv) if (kv := get("kv_capacity")) else None)


class PrometheusSource(PromQLReader):
    """A `MetricsSource` reading Prometheus' HTTP API (or Thanos/Mimir/Cortex, same API); ignores targets."""

    def __init__(self, url: str, *, bearer_token: BearerToken | None = None, ca_file: str | None = None,
                 insecure_skip_verify: bool = False, timeout: float = 5.0, window: str = "1m",
                 clock: Callable[[], float] = time.time) -> None:
        """`clock`: what samples are stamped with on arrival (the clock the staleness check reads)."""
        self.clock = clock
        self.window_s = window_seconds(window)
        self.queries = cycle_queries(window)
        self._client = PromQLClient(url, bearer_token=bearer_token, ca_file=ca_file,
                                    insecure_skip_verify=insecure_skip_verify, timeout=timeout)

    def collect(self, targets: Sequence[ScrapeTarget] = ()) -> CollectResult:
        """Run the cycle's queries and join them per pod; pods with a missing or invalid value are left out.
        Usage joins the samples where it can; its failure is a warning and leaves every `usage` None."""
        values: dict[tuple[str, str, str], dict[str, tuple[float, float]]] = {}
        usage: dict[tuple[str, str, str], dict[str, float]] = {}
        errors: list[str] = []
        warnings: list[str] = []
        bad: dict[tuple[str, str, str], str] = {}
        failed_queries = 0
        for query in self.queries:
            try:
                rows = self._client.query(query.promql)
            except PromQLError as e:  # any failure of one query is reported, not raised
                if query.signal == USAGE:
                    warnings.append(f"prometheus usage query failed (usage for SLO sizing only; saturation "
                                    f"decisions unaffected): {e}")
                    continue
                failed_queries += 1
                errors.append(f"prometheus {query.signal} query failed: {e}")
                continue
            if query.signal == USAGE:
                warnings += _usage_rows(rows, usage)
                continue
            received = self.clock()
            evaluated = max((ts for _, ts, _ in rows), default=0.0)  # Prometheus's clock: only differences count
            unlabelled = 0
            for labels, ts, value in rows:
                if not labels.get("pod"):
                    unlabelled += 1
                    continue
                key = (labels.get("namespace", ""), labels["pod"], labels.get("model_name", ""))
                why = implausible(query.signal, value)
                if why is not None:
                    bad[key] = why
                    continue
                values.setdefault(key, {})[query.signal] = (received - max(0.0, evaluated - ts), value)
            if unlabelled:
                errors.append(f"prometheus {query.signal}: {unlabelled} series without a pod label ignored")
        samples: list[PodSample] = []
        failed: list[str] = []
        signals = [q.signal for q in self.queries if q.signal != USAGE]
        for key in sorted(set(values) | set(bad)):
            namespace, pod, model = key
            got = values.get(key, {})
            missing = [s for s in signals if s not in got]
            if key in bad or missing:
                failed.append(f"{namespace}/{pod}")
                if key in bad or not failed_queries:
                    why = bad.get(key) or f"no {', '.join(missing)}"
                    errors.append(f"prometheus: {namespace}/{pod} ({model}) left out: {why}")
                continue
            found = usage.get(key)
            kv = usage.get((namespace, pod, ""), {}).get("kv_capacity")  # cache_config_info has no model_name
            if kv is not None and model:
                found = {**(found or {}), "kv_capacity": kv}
            samples.append(PodSample(namespace=namespace, pod=pod, model_name=model,
                                     kv_cache_usage=got["kv_cache_usage"][1], queue_length=got["queue_length"][1],
                                     running=got["running"][1], timestamp=min(ts for ts, _ in got.values()),
                                     usage=None if found is None else usage_from_signals(found, self.window_s)))
        if errors or warnings:
            log.debug("prometheus: %s", "; ".join(errors + warnings))
        return CollectResult(tuple(samples), tuple(errors), queries=len(self.queries), failed_pods=tuple(failed),
                             warnings=tuple(warnings))



def _usage_rows(rows: list[Series],
                into: dict[tuple[str, str, str], dict[str, float]]) -> list[str]:
    """File the usage query's rows by pod and signal; what could not be filed, as warnings."""
    unlabelled = unknown = 0
    for labels, _ts, value in rows:
        signal = labels.get(SIGNAL_LABEL, "")
        if not labels.get("pod"):
            unlabelled += 1
        elif signal not in USAGE_SIGNALS:
            unknown += 1
        elif signal == "kv_capacity":  # engines × num_gpu_blocks × block_size, summed over the pod's configs
            # filed under the pod alone: vLLM's info gauge carries no model_name
            found = into.setdefault((labels.get("namespace", ""), labels["pod"], ""), {})
            found[signal] = found.get(signal, 0.0) + value * kv_cache_tokens(labels)
        else:
            pod_key = (labels.get("namespace", ""), labels["pod"], labels.get("model_name", ""))
            into.setdefault(pod_key, {})[signal] = value
    out = []
    if unlabelled:
        out.append(f"prometheus usage: {unlabelled} series without a pod label ignored (usage for SLO sizing only)")
    if unknown:
        out.append(f"prometheus usage: {unknown} series without a known {SIGNAL_LABEL} label ignored "
                   "(usage for SLO sizing only)")
    return out
