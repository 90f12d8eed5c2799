"""vLLM per-pod metrics from Prometheus: a fixed handful of PromQL queries per cycle, for all models at once.

Each query aggregates by (namespace, pod, model_name) over `max_over_time[window]` — the worst value of the
window, as WVA's saturation analysis reads it — so the number of queries never grows with the number of
models or pods. Anything that goes wrong (connection, timeout, HTTP error, malformed answer, NaN) ends up
in `CollectResult.errors`, never raised: the reconcile loop holds its last decision instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from kedascaler.collect.base import CollectResult, PodSample, ScrapeTarget
from kedascaler.collect.scrape import KV_USAGE, KV_USAGE_V0, RUNNING, WAITING, implausible

log = logging.getLogger("kedascaler.collect.prometheus")

_BY = "namespace, pod, model_name"
_QUERY_STRING = re.compile(r"\?query=[^\s)]*")


def _worst(agg: str, metric: str, window: str) -> str:
    return f"{agg} by ({_BY}) (max_over_time({metric}[{window}]))"


@dataclass(frozen=True)
class Query:
    """One PromQL query of the cycle and the signal it yields."""

    signal: str  # "kv_cache_usage" | "queue_length" | "running"
    promql: str


def cycle_queries(window: str = "1m") -> tuple[Query, ...]:
    """The queries of one cycle. KV: the v1 name, else the v0 one; requests: summed over a pod's engines."""
    return (
        Query("kv_cache_usage", f"{_worst('max', KV_USAGE, window)} or {_worst('max', KV_USAGE_V0, window)}"),
        Query("queue_length", _worst("sum", WAITING, window)),
        Query("running", _worst("sum", RUNNING, window)),
    )


class PrometheusSource:
    """A `MetricsSource` reading Prometheus' HTTP API (or Thanos/Mimir/Cortex, same API); ignores targets."""

    def __init__(self, url: str, *, bearer_token: str | None = None, ca_file: str | None = None,
                 insecure_skip_verify: bool = False, timeout: float = 5.0, window: str = "1m") -> None:
        self.url = url.rstrip("/")
        self.queries = cycle_queries(window)
        self._secret = bearer_token or None
        session = requests.Session()
        session.verify = ca_file if ca_file else not insecure_skip_verify
        if insecure_skip_verify and not ca_file:
            log.warning("prometheus: TLS certificate verification is off for %s", self.url)
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else None
        # No retries inside a cycle: the next cycle is the retry, and a cycle must stay bounded in time.
        self._client = PrometheusConnect(self.url, headers=headers, session=session, timeout=timeout,
                                         retry=Retry(total=0, raise_on_status=False))

    def __repr__(self) -> str:
        return f"PrometheusSource({self.url!r}, token={'set' if self._secret else 'none'})"

    def collect(self, targets: Sequence[ScrapeTarget] = ()) -> CollectResult:
        """Run the cycle's queries and join them per pod; pods with a missing or invalid value are left out."""
        values: dict[tuple[str, str, str], dict[str, tuple[float, float]]] = {}
        errors: list[str] = []
        bad: dict[tuple[str, str, str], str] = {}
        failed_queries = 0
        for query in self.queries:
            try:
                result = self._client.custom_query(query.promql)
                rows = _rows(result)
            except Exception as e:  # noqa: BLE001 - any failure of one query is reported, not raised
                failed_queries += 1
                errors.append(f"prometheus {query.signal} query failed: {self._scrub(e)}")
                continue
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
                values.setdefault(key, {})[query.signal] = (ts, value)
            if unlabelled:
                errors.append(f"prometheus {query.signal}: {unlabelled} series without a pod label ignored")
        samples: list[PodSample] = []
        failed: list[str] = []
        signals = [q.signal for q in self.queries]
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
            samples.append(PodSample(namespace=namespace, pod=pod, model_name=model,
                                     kv_cache_usage=got["kv_cache_usage"][1], queue_length=got["queue_length"][1],
                                     running=got["running"][1], timestamp=min(ts for ts, _ in got.values())))
        if errors:
            log.debug("prometheus: %s", "; ".join(errors))
        return CollectResult(tuple(samples), tuple(errors), queries=len(self.queries), failed_pods=tuple(failed))

    def _scrub(self, error: Exception) -> str:
        """The error's text, without the bearer token should anything have echoed it."""
        text = f"{type(error).__name__}: {error}"
        text = _QUERY_STRING.sub("?query=…", text)  # the PromQL is long and known: keep room for the cause
        if self._secret:
            text = text.replace(self._secret, "***")
        return text if len(text) <= 300 else text[:300] + "…"

    def close(self) -> None:
        self._client.close()


def _rows(result: object) -> list[tuple[dict[str, str], float, float]]:
    """(labels, timestamp, value) per series of an instant-vector answer; ValueError when it is not one."""
    if not isinstance(result, list):
        raise ValueError(f"malformed answer: expected a vector, got {type(result).__name__}")
    rows = []
    for item in result:
        try:
            labels = item["metric"]
            ts, raw = item["value"]
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise TypeError(f"labels are not a map of strings: {labels!r:.100}")
            if isinstance(raw, bool) or isinstance(ts, bool) or not isinstance(raw, (str, int, float)):
                raise TypeError(f"sample value is not a number: {raw!r:.100}")
            rows.append((dict(labels), float(ts), float(raw)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed series in the answer: {e!r}") from None
    return rows
