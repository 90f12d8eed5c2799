"""Which VariantAutoscaling a ScaledObject's trigger means: its ScaledObjectRef resolved to a VariantKey.

KEDA sends the trigger's `metadata` map as written by the user, plus keys of its own (`scalerAddress`, ...);
only the keys below are read, anything else is ignored. Every mistake is reported with the key, the value
and what was expected, because the user reads it in `kubectl describe scaledobject`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from kedascaler.engine.types import VariantKey
from kedascaler.server.errors import SHOWN_CHARS, shown

VARIANT_KEY = "variantAutoscaling"  # the VariantAutoscaling's name (default: the ScaledObject's name)
NAMESPACE_KEY = "namespace"  # its namespace (default: the ScaledObject's namespace)

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SUBDOMAIN_RULE = ("a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', "
                   "starting and ending with a letter or digit")
_LABEL_RULE = ("a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
               "starting and ending with a letter or digit")


class InvalidMetadata(ValueError):
    """A trigger metadata value (or ScaledObjectRef field standing in for it) that cannot name a VariantAutoscaling."""

    def __init__(self, key: str, value: str, expected: str, *, from_ref: str | None = None) -> None:
        self.key = key
        self.value = value[:SHOWN_CHARS]  # what the client sent, cut short: never keep or echo a huge value
        self.expected = expected
        echo = shown(value)
        if from_ref is None:
            text = f"trigger metadata {key!r} = {echo} is invalid: expected {expected}"
        else:
            text = (f"ScaledObjectRef.{from_ref} {echo} (the default for trigger metadata {key!r}, "
                    f"which is not set) is invalid: expected {expected}")
        super().__init__(text)


MAX_NAME = 253  # a DNS-1123 subdomain
MAX_NAMESPACE = 63  # a DNS-1123 label


def _is_subdomain(value: str) -> bool:
    """Length first, so a long value is refused before the cache (or the regex) ever sees it."""
    return len(value) <= MAX_NAME and _matches_subdomain(value)


def _is_label(value: str) -> bool:
    return len(value) <= MAX_NAMESPACE and _matches_label(value)


@lru_cache(maxsize=4096)
def _matches_subdomain(value: str) -> bool:
    """Cached: the same few names arrive on every HPA sync; only values of at most 253 characters get here."""
    return _DNS1123_SUBDOMAIN.fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _matches_label(value: str) -> bool:
    """Cached: the same few namespaces arrive on every HPA sync; at most 63 characters each."""
    return _DNS1123_LABEL.fullmatch(value) is not None


def _pick(metadata: Mapping[str, str], key: str, default: str, field: str) -> tuple[str, str | None]:
    """The metadata value if the key is present, else the ScaledObjectRef field it defaults to (and its name)."""
    if key in metadata:
        return metadata[key], None
    return default, field


def variant_key(name: str, namespace: str, metadata: Mapping[str, str]) -> VariantKey:
    """Resolve a ScaledObjectRef's fields to the VariantAutoscaling it scales, or raise InvalidMetadata."""
    va, va_ref = _pick(metadata, VARIANT_KEY, name, "name")
    ns, ns_ref = _pick(metadata, NAMESPACE_KEY, namespace, "namespace")
    if not _is_subdomain(va):
        raise InvalidMetadata(VARIANT_KEY, va, f"the VariantAutoscaling's name, {_SUBDOMAIN_RULE}", from_ref=va_ref)
    if not _is_label(ns):
        raise InvalidMetadata(NAMESPACE_KEY, ns, f"the VariantAutoscaling's namespace, {_LABEL_RULE}", from_ref=ns_ref)
    return VariantKey(ns, va)
