"""The metric name each ScaledObject gets: derived from its VariantAutoscaling alone, the same on every replica."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from kedascaler.engine.types import VariantKey

METRIC_PREFIX = "vllm-desired-replicas-"
MAX_METRIC_NAME = 63
_KEDA_INDEX_PREFIX = re.compile(r"s\d+-")


@lru_cache(maxsize=65536)
def metric_name(key: VariantKey) -> str:
    """`vllm-desired-replicas-<va-name>`, lowercase, '.' as '-', cut to 63 chars with a hash suffix if too long."""
    base = METRIC_PREFIX + key.name.lower().replace(".", "-")
    if len(base) <= MAX_METRIC_NAME:
        return base
    digest = hashlib.sha256(key.name.encode()).hexdigest()[:8]
    return f"{base[: MAX_METRIC_NAME - len(digest) - 1].rstrip('-')}-{digest}"


def strip_keda_prefix(name: str) -> str:
    """Drop the `s{triggerIndex}-` prefix the HPA sees, in case a KEDA version forwards it."""
    match = _KEDA_INDEX_PREFIX.match(name)
    return name[match.end():] if match else name


def matches(requested: str, key: VariantKey) -> bool:
    """Whether a GetMetrics metricName asks for this variant's metric, with or without KEDA's prefix."""
    expected = metric_name(key)
    return requested == expected or strip_keda_prefix(requested) == expected
