"""Wake-up signals for models at zero replicas: the gateway's queue (read) and requests pushed to us (inbox).

At zero replicas a model has no pods to report load, so demand shows up only outside them:

- the inference gateway queues the requests (llm-d EndpointPicker flow control):
  `inference_extension_flow_control_queue_size{target_model_name="<modelID>"}`. `PrometheusActivationSource`
  reads it for **all** models in one PromQL query per cycle (`DEFAULT_ACTIVATION_QUERY`); a VariantAutoscaling
  may override it with `spec.scaleToZero.activationQuery` (one extra query per distinct override, its result
  summed). `GatewayMetricsSource` reads the same metric straight from a /metrics endpoint (the emulator's).
  Any failure gives None for the models concerned — "not known", never "idle".
- a gateway or router calls `POST /v1/activate/{namespace}/{model}` (`kedascaler.server.activate`) on a
  request for a cold model: the `ActivationInbox` records the time and wakes the reconcile loop at once.

Models are named by (namespace, modelID). The gateway metric carries no namespace: a model ID served in two
namespaces shares one queue reading.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import requests
from prometheus_client.parser import text_string_to_metric_families

from kedascaler.sources.promql import BearerToken, PromQLClient, PromQLError

log = logging.getLogger("kedascaler.sources.gateway")

ModelRef = tuple[str, str]  # (namespace, modelID)

GATEWAY_QUEUE_METRIC = "inference_extension_flow_control_queue_size"
MODEL_LABEL = "target_model_name"
DEFAULT_ACTIVATION_QUERY = f"sum by ({MODEL_LABEL}) ({GATEWAY_QUEUE_METRIC})"


@dataclass(frozen=True)
class ActivationReading:
    """Requests waiting outside the pods, per model (None: not known this cycle), and how the reading went."""

    queues: Mapping[ModelRef, float | None] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    queries: int = 0

    def queue(self, model: ModelRef) -> float | None:
        return self.queues.get(model)


class ActivationSource(Protocol):
    """Reads the gateway queue of many models at once; `overrides` maps a model to its own PromQL."""

    def read(self, models: Sequence[ModelRef], overrides: Mapping[ModelRef, str] = ...) -> ActivationReading: ...

    def close(self) -> None: ...


def _by_model(rows: Iterable[tuple[Mapping[str, str], float]]) -> dict[str, float]:
    """Sum the values per target_model_name; a non-finite value poisons its model (NaN)."""
    out: dict[str, float] = defaultdict(float)
    for labels, value in rows:
        name = labels.get(MODEL_LABEL)
        if name is None:
            continue
        out[name] += value if math.isfinite(value) else math.nan
    return out


def _finish(models: Sequence[ModelRef], found: Mapping[str, float], errors: list[str]) -> dict[ModelRef, float | None]:
    """A model absent from a successful answer has an empty queue; a NaN one is not known."""
    queues: dict[ModelRef, float | None] = {}
    for model in models:
        value = found.get(model[1], 0.0)
        if not math.isfinite(value) or value < 0:
            errors.append(f"gateway queue of {model[1]} is {value}: not known this cycle")
            queues[model] = None
        else:
            queues[model] = value
    return queues


class PrometheusActivationSource:
    """The gateway queue from Prometheus: one batched query for every model on the default, one per override."""

    def __init__(self, url: str, *, query: str = DEFAULT_ACTIVATION_QUERY, bearer_token: BearerToken | None = None,
                 ca_file: str | None = None, insecure_skip_verify: bool = False, timeout: float = 2.0) -> None:
        self.query = query  # must answer one series per model, labelled target_model_name
        self._client = PromQLClient(url, bearer_token=bearer_token, ca_file=ca_file,
                                    insecure_skip_verify=insecure_skip_verify, timeout=timeout)

    @property
    def url(self) -> str:
        return self._client.url

    def __repr__(self) -> str:
        return f"PrometheusActivationSource({self.url!r}, token={'set' if self._client.has_token else 'none'})"

    def read(self, models: Sequence[ModelRef], overrides: Mapping[ModelRef, str] = {}) -> ActivationReading:  # noqa: B006
        """One query for the models on the default query, one per distinct override; errors → None for those."""
        groups: dict[str, list[ModelRef]] = defaultdict(list)
        for model in models:
            groups[overrides.get(model) or self.query].append(model)
        queues: dict[ModelRef, float | None] = {}
        errors: list[str] = []
        for promql, members in groups.items():
            try:
                rows = [(labels, value) for labels, _ts, value in self._client.query(promql)]
            except PromQLError as exc:  # reported, never raised: the models stay "not known"
                errors.append(f"activation query {promql!r} failed: {exc}")
                queues.update({m: None for m in members})
                continue
            if promql == self.query:
                queues.update(_finish(members, _by_model(rows), errors))
            else:  # an override: whatever it answers, summed, is that model's queue
                total = sum(v for _, v in rows)
                queues.update(_finish(members, {m[1]: total for m in members}, errors))
        return ActivationReading(queues, tuple(errors), queries=len(groups))

    def close(self) -> None:
        self._client.close()


class GatewayMetricsSource:
    """The gateway queue read straight from a /metrics exposition (the emulated gateway); overrides ignored."""

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        self.url = url
        self._session = requests.Session()
        self._timeout = timeout

    def read(self, models: Sequence[ModelRef], overrides: Mapping[ModelRef, str] = {}) -> ActivationReading:  # noqa: B006
        try:
            answer = self._session.get(self.url, timeout=self._timeout)
            answer.raise_for_status()
            rows = [(s.labels, s.value) for family in text_string_to_metric_families(answer.text)
                    for s in family.samples if s.name == GATEWAY_QUEUE_METRIC]
        except Exception as exc:  # noqa: BLE001
            error = f"gateway {self.url}: {type(exc).__name__}: {exc}"
            return ActivationReading({m: None for m in models}, (error,), 1)
        errors: list[str] = []
        return ActivationReading(_finish(models, _by_model(rows), errors), tuple(errors), 1)

    def close(self) -> None:
        self._session.close()


__all__ = ["DEFAULT_ACTIVATION_QUERY", "GATEWAY_QUEUE_METRIC", "MODEL_LABEL", "ActivationReading", "ActivationSource",
           "GatewayMetricsSource", "ModelRef", "PrometheusActivationSource"]
