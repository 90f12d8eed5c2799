"""Wake-up signals for models at zero replicas: the gateway's queue (read) and requests pushed to us (inbox).

At zero replicas a model has no pods to report load, so demand shows up only outside them:

- the inference gateway queues the requests (the llm-d router's EndpointPicker, flow control). Two
  generations of its metric are read: `llm_d_epp_flow_control_queue_size` (llm-d router v0.10 and later;
  labels fairness_id, priority, inference_pool, model_name, target_model_name) and the older
  `inference_extension_flow_control_queue_size`; per model, the new one wins where present.
  `PrometheusActivationSource` reads them for **all** models in one PromQL query per cycle
  (`DEFAULT_ACTIVATION_QUERY`), together with the router's other v0.10 signals, kept in the reading for
  demand use (`EppSignals`: `llm_d_epp_inflight_tokens`, `llm_d_epp_request_running` per model;
  `llm_d_epp_flow_control_pool_saturation` per pool and stage: prefill, decode, effective). A VariantAutoscaling
  may override the query with `spec.scaleToZero.activationQuery` (one extra query per distinct override, its
  result summed). `GatewayMetricsSource` reads the same metrics straight from a router's /metrics (the
  emulator's). Any failure gives None for the models concerned — "not known", never "idle" — and so does a
  model the answer never mentions: "never seen" is unknown, not an empty queue.
- a gateway or router calls `POST /v1/activate/{namespace}/{model}` (`kedascaler.server.activate`) on a
  request for a cold model: the `ActivationInbox` records the time and wakes the reconcile loop at once.

Models are named by (namespace, modelID). The gateway metrics carry no namespace: a model ID served in two
namespaces shares one reading. The router drops a request queued longer than its `defaultRequestTTL` (60 s):
scale from zero must bring a replica up within it (docs/scale-to-zero.md).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import requests
from prometheus_client.parser import text_string_to_metric_families

from kedascaler.sources.promql import BearerToken, PromQLClient, PromQLError, PromQLReader

log = logging.getLogger("kedascaler.sources.gateway")

ModelRef = tuple[str, str]  # (namespace, modelID)

EPP_QUEUE_METRIC = "llm_d_epp_flow_control_queue_size"  # llm-d router v0.10+
LEGACY_QUEUE_METRIC = "inference_extension_flow_control_queue_size"  # before v0.10 (Gateway API inference extension)
GATEWAY_QUEUE_METRIC = LEGACY_QUEUE_METRIC  # the older name, for importers that predate v0.10
QUEUE_METRICS = (EPP_QUEUE_METRIC, LEGACY_QUEUE_METRIC)  # in order of preference
INFLIGHT_TOKENS_METRIC = "llm_d_epp_inflight_tokens"
REQUEST_RUNNING_METRIC = "llm_d_epp_request_running"
POOL_SATURATION_METRIC = "llm_d_epp_flow_control_pool_saturation"
EPP_METRICS = (EPP_QUEUE_METRIC, INFLIGHT_TOKENS_METRIC, REQUEST_RUNNING_METRIC, POOL_SATURATION_METRIC)
MODEL_LABEL = "target_model_name"
REQUESTED_MODEL_LABEL = "model_name"  # the model the client asked for (before any rewrite)
POOL_LABEL, STAGE_LABEL = "inference_pool", "stage"
_PER_MODEL = "|".join((EPP_QUEUE_METRIC, LEGACY_QUEUE_METRIC, INFLIGHT_TOKENS_METRIC, REQUEST_RUNNING_METRIC))
# One query per cycle: both queue generations and the per-model signals summed per model (the metric name kept,
# so the reader prefers the new queue where present), or'ed with the pool saturation per pool and stage.
DEFAULT_ACTIVATION_QUERY = (
    f'sum by (__name__, {MODEL_LABEL}, {REQUESTED_MODEL_LABEL}) ({{__name__=~"{_PER_MODEL}"}}) '
    f"or max by (__name__, {POOL_LABEL}, {STAGE_LABEL}) ({POOL_SATURATION_METRIC})")


@dataclass(frozen=True)
class EppSignals:
    """What the llm-d router (v0.10+) says of one model besides its queue; None: not exported."""

    inflight_tokens: float | None = None  # llm_d_epp_inflight_tokens
    requests_running: float | None = None  # llm_d_epp_request_running


@dataclass(frozen=True)
class ActivationReading:
    """Requests waiting outside the pods, per model (None: not known this cycle), and how the reading went.

    `generation` says which queue metric a model's value came from (`EPP_QUEUE_METRIC` or
    `LEGACY_QUEUE_METRIC`; absent: the model was not in the answer, or an override answered); `signals` and
    `pool_saturation` ((inference_pool, stage) -> saturation) carry the router's other v0.10 metrics."""

    queues: Mapping[ModelRef, float | None] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    queries: int = 0
    generation: Mapping[ModelRef, str] = field(default_factory=dict)
    signals: Mapping[ModelRef, EppSignals] = field(default_factory=dict)
    pool_saturation: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def queue(self, model: ModelRef) -> float | None:
        return self.queues.get(model)


@dataclass
class _Rows:
    """An answer (PromQL rows or exposition samples) sorted by what each row is."""

    queues: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    signals: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    pools: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, name: str | None, labels: Mapping[str, str], value: float) -> None:
        value = value if math.isfinite(value) else math.nan  # a non-finite value poisons its model
        if name == POOL_SATURATION_METRIC:
            key = (labels.get(POOL_LABEL, ""), labels.get(STAGE_LABEL, ""))
            self.pools[key] = value if key not in self.pools else max(self.pools[key], value)
            return
        model = labels.get(MODEL_LABEL) or (labels.get(REQUESTED_MODEL_LABEL) if name in EPP_METRICS else None)
        if model is None:
            return
        if name in (INFLIGHT_TOKENS_METRIC, REQUEST_RUNNING_METRIC):
            self.signals[model][name] += value
        elif name is None or name in QUEUE_METRICS:  # an unnamed row (an aggregated or custom query) is a queue
            self.queues[model][name or LEGACY_QUEUE_METRIC] += value

    def by_model(self) -> tuple[dict[str, float], dict[str, str]]:
        """Per model, the queue of the newest generation present, and which metric that was."""
        found: dict[str, float] = {}
        generation: dict[str, str] = {}
        for model, by_name in self.queues.items():
            name = next(n for n in QUEUE_METRICS if n in by_name)
            found[model], generation[model] = by_name[name], name
        return found, generation

    def reading(self, models: Sequence[ModelRef], errors: list[str], queries: int) -> ActivationReading:
        found, generation = self.by_model()
        signals = {m: EppSignals(self.signals[m[1]].get(INFLIGHT_TOKENS_METRIC),
                                 self.signals[m[1]].get(REQUEST_RUNNING_METRIC))
                   for m in models if m[1] in self.signals}
        seen = {*found, *self.signals}
        return ActivationReading(_finish(models, found, errors, seen), tuple(errors), queries,
                                 {m: generation[m[1]] for m in models if m[1] in generation},
                                 signals, dict(self.pools))


class ActivationSource(Protocol):
    """Reads the gateway queue of many models at once; `overrides` maps a model to its own PromQL."""

    def read(self, models: Sequence[ModelRef], overrides: Mapping[ModelRef, str] = ...) -> ActivationReading: ...

    def close(self) -> None: ...


def _finish(models: Sequence[ModelRef], found: Mapping[str, float], errors: list[str],
            seen: Collection[str] | None = None) -> dict[ModelRef, float | None]:
    """Each model's queue: its value; 0 for a model the gateway knows (`seen`: it has other router series)
    with no queue series; None ("not known") for a model never seen in the answer, or a NaN or negative one.

    "Never seen" is not "empty": a router that does not export the model (flow control off, not scraped, a
    rewritten model name) must not let it go to zero, where nothing else could wake it."""
    seen = found.keys() if seen is None else seen  # the callers' `seen` holds every model in `found`
    queues: dict[ModelRef, float | None] = {}
    for model in models:
        if model[1] not in seen:
            queues[model] = None
            continue
        value = found.get(model[1], 0.0)
        if not math.isfinite(value) or value < 0:
            errors.append(f"gateway queue of {model[1]} is {value}: not known this cycle")
            queues[model] = None
        else:
            queues[model] = value
    return queues


class PrometheusActivationSource(PromQLReader):
    """The gateway queue from Prometheus: one batched query for every model on the default, one per override."""

    def __init__(self, url: str, *, query: str = DEFAULT_ACTIVATION_QUERY, bearer_token: BearerToken | None = None,
                 ca_file: str | None = None, insecure_skip_verify: bool = False, timeout: float = 2.0) -> None:
        self.query = query  # must answer one series per model, labelled target_model_name
        self._client = PromQLClient(url, bearer_token=bearer_token, ca_file=ca_file,
                                    insecure_skip_verify=insecure_skip_verify, timeout=timeout)

    def read(self, models: Sequence[ModelRef], overrides: Mapping[ModelRef, str] = {}) -> ActivationReading:  # noqa: B006
        """One query for the models on the default query, one per distinct override; errors → None for those."""
        groups: dict[str, list[ModelRef]] = defaultdict(list)
        for model in models:
            groups[overrides.get(model) or self.query].append(model)
        queues: dict[ModelRef, float | None] = {}
        generation: dict[ModelRef, str] = {}
        signals: dict[ModelRef, EppSignals] = {}
        pools: dict[tuple[str, str], float] = {}
        errors: list[str] = []
        for promql, members in groups.items():
            try:
                rows = [(labels, value) for labels, _ts, value in self._client.query(promql)]
            except PromQLError as exc:  # reported, never raised: the models stay "not known"
                errors.append(f"activation query {promql!r} failed: {exc}")
                queues.update({m: None for m in members})
                continue
            if promql == self.query:
                answer = _Rows()
                for labels, value in rows:
                    answer.add(labels.get("__name__"), labels, value)
                part = answer.reading(members, errors, 0)
                queues.update(part.queues)
                generation.update(part.generation)
                signals.update(part.signals)
                pools.update(part.pool_saturation)
            else:  # an override: whatever it answers, summed, is that model's queue (no series: not known)
                total = sum(v for _, v in rows)
                queues.update(_finish(members, {m[1]: total for m in members} if rows else {}, errors))
        return ActivationReading(queues, tuple(errors), len(groups), generation, signals, pools)


class GatewayMetricsSource:
    """The gateway's metrics read straight from a router's /metrics (the emulated one); overrides ignored."""

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        self.url = url
        self._session = requests.Session()
        self._timeout = timeout

    def read(self, models: Sequence[ModelRef], overrides: Mapping[ModelRef, str] = {}) -> ActivationReading:  # noqa: B006
        try:
            answer = self._session.get(self.url, timeout=self._timeout)
            answer.raise_for_status()
            rows = _Rows()
            for family in text_string_to_metric_families(answer.text):
                for sample in family.samples:
                    if sample.name in QUEUE_METRICS or sample.name in EPP_METRICS:
                        rows.add(sample.name, sample.labels, sample.value)
        except Exception as exc:  # noqa: BLE001
            error = f"gateway {self.url}: {type(exc).__name__}: {exc}"
            return ActivationReading({m: None for m in models}, (error,), 1)
        return rows.reading(models, [], 1)

    def close(self) -> None:
        self._session.close()


__all__ = ["DEFAULT_ACTIVATION_QUERY", "EPP_QUEUE_METRIC", "GATEWAY_QUEUE_METRIC", "INFLIGHT_TOKENS_METRIC",
           "LEGACY_QUEUE_METRIC", "MODEL_LABEL", "POOL_SATURATION_METRIC", "QUEUE_METRICS", "REQUEST_RUNNING_METRIC",
           "ActivationReading", "ActivationSource", "EppSignals", "GatewayMetricsSource", "ModelRef",
           "PrometheusActivationSource"]
