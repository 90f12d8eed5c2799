"""Metric names and metadata resolution: the same answer on every replica, valid for the HPA, never ambiguous."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kedascaler.engine.types import VariantKey
from kedascaler.server.metadata import InvalidMetadata, variant_key
from kedascaler.server.naming import matches, metric_name, strip_keda_prefix

LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
va_names = st.from_regex(rf"{LABEL}(\.{LABEL}){{0,3}}", fullmatch=True).filter(lambda s: len(s) <= 253)
namespaces = st.from_regex(LABEL, fullmatch=True)


@given(va_names, namespaces)
def test_metric_name_is_short_lowercase_deterministic_and_matches_itself(name, namespace):
    key = VariantKey(namespace, name)
    got = metric_name(key)
    assert got == metric_name(VariantKey(namespace, name))
    assert len(got) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", got), got
    assert got.startswith("vllm-desired-replicas-")
    assert matches(got, key) and matches(f"s0-{got}", key) and matches(f"s12-{got}", key)


def test_short_names_read_plainly_and_long_ones_stay_distinct():
    assert metric_name(VariantKey("ns", "llama-8b-h100")) == "vllm-desired-replicas-llama-8b-h100"
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    assert metric_name(VariantKey("ns", long_a)) != metric_name(VariantKey("ns", long_b))


def test_strip_keda_prefix_only_strips_the_index_prefix():
    assert strip_keda_prefix("s0-vllm-desired-replicas-a") == "vllm-desired-replicas-a"
    assert strip_keda_prefix("s10-x") == "x"
    assert strip_keda_prefix("vllm-desired-replicas-s0-a") == "vllm-desired-replicas-s0-a"
    assert strip_keda_prefix("sx-a") == "sx-a"


@given(va_names, namespaces, st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5))
def test_metadata_defaults_to_the_scaledobject_and_ignores_unknown_keys(name, namespace, extra):
    extra = {k: v for k, v in extra.items() if k not in ("variantAutoscaling", "namespace")}
    assert variant_key(name, namespace, extra) == VariantKey(namespace, name)
    named = {**extra, "variantAutoscaling": name, "namespace": namespace}
    assert variant_key("other", "elsewhere", named) == VariantKey(namespace, name)


@given(st.text(max_size=20).filter(lambda s: not re.fullmatch(LABEL, s)))
def test_any_bad_namespace_is_refused_naming_the_key(bad):
    try:
        variant_key("llama", "llm", {"namespace": bad})
    except InvalidMetadata as exc:
        assert exc.key == "namespace" and exc.value == bad and "'namespace'" in str(exc)
    else:
        raise AssertionError(f"namespace {bad!r} was accepted")
