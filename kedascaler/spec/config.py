"""Parse and validate what a user writes: VariantAutoscaling objects and the scaler's ConfigMaps.

Every function takes plain dicts (as YAML or the Kubernetes API give them) and returns typed values plus a
list of `Problem`s that name the object, the field and the fix. Nothing here raises on bad input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from kedascaler.spec.problems import Problem
from kedascaler.spec.inventory import SaturationSettings
from kedascaler.engine.sizing import parse_mode
from kedascaler.engine.types import SaturationConfig, VariantKey, VariantSpec

API_GROUP = "llmd.ai"
API_VERSION = "llmd.ai/v1alpha1"
VA_KIND = "VariantAutoscaling"
SATURATION_CONFIGMAPS = ("saturation-scaling-config", "capacity-scaling-config")
COST_CONFIGMAP = "accelerator-unitcost"
SERVICECLASS_CONFIGMAP = "serviceclass"
METRICS_ENDPOINTS_ANNOTATION = "kedascaler.llmd.ai/metrics-endpoints"
DEFAULT_VARIANT_COST = 10.0

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Older field names from the seed documents: accepted (mapped to the canonical one) or refused with a hint.
_RENAMED_ACCEPTED = {"modelName": "modelID", "acceleratorType": "accelerator"}
_RENAMED_REFUSED = {
    "serviceClass": "spec.sloClassRef {name: <ConfigMap>, key: <class>}",
    "keepAccelerator": "one VariantAutoscaling per accelerator (a variant never changes accelerator)",
}

_SATURATION_FIELDS = {
    "kvCacheThreshold": "kv_cache_threshold",
    "queueLengthThreshold": "queue_length_threshold",
    "kvSpareTrigger": "kv_spare_trigger",
    "queueSpareTrigger": "queue_spare_trigger",
}


def is_dns1123_subdomain(value: str) -> bool:
    """Kubernetes object names: lowercase alphanumerics, '-' and '.', at most 253 characters."""
    return 0 < len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def is_dns1123_label(value: str) -> bool:
    """Kubernetes namespaces: lowercase alphanumerics and '-', at most 63 characters."""
    return 0 < len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


@dataclass(frozen=True)
class PerfParams:
    """The performance profile of a variant (ms): decode α + β·batch, prefill γ + δ·tokens."""

    alpha: float
    beta: float
    gamma: float
    delta: float


@dataclass(frozen=True)
class VariantExtras:
    """Parts of a VariantAutoscaling the saturation engine does not use yet (SLO sizing, scale to zero)."""

    max_batch_size: int | None = None
    perf: PerfParams | None = None
    slo_class_ref: tuple[str, str] | None = None  # (ConfigMap name, key)
    scale_to_zero: Mapping[str, Any] = field(default_factory=dict)
    metrics_endpoints: tuple[str, ...] = ()  # local mode: pod metrics URLs from an annotation
    scaling_mode: str | None = None  # spec.scalingMode: saturation | model | hybrid; None: the global mode
    prefer_estimate: bool = False  # spec.variantProfile.preferEstimated: learned parameters win over perfParms


@dataclass(frozen=True)
class ParsedVariant:
    spec: VariantSpec | None
    extras: VariantExtras
    problems: tuple[Problem, ...]


def _number(value: Any) -> float | None:
    """A finite number from an int, a float or a decimal string ("10", "40.5"); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


class _Checker:
    """Collects problems for one object, so each check is one line in the parser."""

    def __init__(self, source: str, obj: str) -> None:
        self.source, self.obj, self.problems = source, obj, []

    def add(self, field_path: str, message: str) -> None:
        self.problems.append(Problem(self.source, self.obj, field_path, message))

    def integer(self, mapping: Mapping[str, Any], name: str, path: str, *, default: int | None,
                minimum: int | None = None) -> int | None:
        if name not in mapping or mapping[name] is None:
            return default
        value = _integer(mapping[name])
        if value is None:
            self.add(path, f"expected an integer, got {mapping[name]!r}")
            return default
        if minimum is not None and value < minimum:
            self.add(path, f"must be ≥ {minimum}, got {value}")
            return default
        return value

    def number(self, mapping: Mapping[str, Any], name: str, path: str, *, default: float | None,
               minimum: float | None = None, maximum: float | None = None, exclusive_min: bool = False) -> float | None:
        if name not in mapping or mapping[name] is None:
            return default
        value = _number(mapping[name])
        if value is None:
            self.add(path, f"expected a number (or a decimal string), got {mapping[name]!r}")
            return default
        if minimum is not None and (value < minimum or (exclusive_min and value == minimum)):
            self.add(path, f"must be {'>' if exclusive_min else '≥'} {minimum:g}, got {value:g}")
            return default
        if maximum is not None and value > maximum:
            self.add(path, f"must be ≤ {maximum:g}, got {value:g}")
            return default
        return value

    def string(self, mapping: Mapping[str, Any], name: str, path: str, *, required: bool = False) -> str:
        value = mapping.get(name)
        if value is None or value == "":
            if required:
                self.add(path, "is required: set it to a non-empty string")
            return ""
        if not isinstance(value, str):
            self.add(path, f"expected a string, got {value!r}")
            return ""
        return value

    def mapping(self, mapping: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any]:
        value = mapping.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        return value


def parse_saturation(raw: Mapping[str, Any], base: SaturationConfig, check: _Checker, path: str) -> SaturationConfig:
    """Read the saturation fields present in `raw` over `base`, and check they make sense together."""
    values = {attr: getattr(base, attr) for attr in _SATURATION_FIELDS.values()}
    bounds = {
        "kvCacheThreshold": dict(minimum=0.0, maximum=1.0, exclusive_min=True),
        "queueLengthThreshold": dict(minimum=0.0, exclusive_min=True),
        "kvSpareTrigger": dict(minimum=0.0, maximum=1.0),
        "queueSpareTrigger": dict(minimum=0.0),
    }
    for name, attr in _SATURATION_FIELDS.items():
        got = check.number(raw, name, f"{path}.{name}", default=None, **bounds[name])
        if got is not None:
            values[attr] = got
    config = SaturationConfig(**values)
    if config.kv_spare_trigger >= config.kv_cache_threshold:
        check.add(f"{path}.kvSpareTrigger", f"must be below kvCacheThreshold ({config.kv_cache_threshold:g}), "
                  f"got {config.kv_spare_trigger:g}")
        return base
    if config.queue_spare_trigger >= config.queue_length_threshold:
        check.add(f"{path}.queueSpareTrigger", f"must be below queueLengthThreshold "
                  f"({config.queue_length_threshold:g}), got {config.queue_spare_trigger:g}")
        return base
    return config


def parse_variant_autoscaling(doc: Mapping[str, Any], source: str,
                              accelerator_costs: Mapping[str, float] | None = None) -> ParsedVariant:
    """Validate one VariantAutoscaling and turn it into a VariantSpec (None when it cannot be used)."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) and meta.get("namespace") else "default"
    check = _Checker(source, f"VariantAutoscaling {namespace}/{name or '<unnamed>'}")
    if doc.get("apiVersion") != API_VERSION:
        check.add("apiVersion", f"expected {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if not is_dns1123_subdomain(name):
        check.add("metadata.name", f"expected a DNS-1123 name (lowercase letters, digits, '-', '.'), got {name!r}")
    if not is_dns1123_label(namespace):
        check.add("metadata.namespace", f"expected a DNS-1123 label, got {namespace!r}")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        check.add("spec", "is required: a mapping with scaleTargetRef and modelID")
        return ParsedVariant(None, VariantExtras(), tuple(check.problems))
    spec = dict(spec)
    for old, new in _RENAMED_ACCEPTED.items():
        if old in spec and new not in spec:
            spec[new] = spec.pop(old)
    for old, hint in _RENAMED_REFUSED.items():
        if old in spec:
            check.add(f"spec.{old}", f"is no longer supported: use {hint}")
    if "maxBatchSize" in spec:  # seed 001 kept it at the top of spec
        raw_profile = spec.get("variantProfile")
        if raw_profile is None or isinstance(raw_profile, Mapping):  # else: reported as not a mapping below
            profile = dict(raw_profile or {})
            profile.setdefault("maxBatchSize", spec.pop("maxBatchSize"))
            spec["variantProfile"] = profile

    target = check.mapping(spec, "scaleTargetRef", "spec.scaleTargetRef")
    target_name = check.string(target, "name", "spec.scaleTargetRef.name", required=True)
    if target_name and not is_dns1123_subdomain(target_name):
        check.add("spec.scaleTargetRef.name", f"expected a Deployment name (DNS-1123), got {target_name!r}")
    kind = target.get("kind", "Deployment")
    if kind not in ("Deployment", "StatefulSet", "LeaderWorkerSet"):
        check.add("spec.scaleTargetRef.kind", f"expected Deployment, StatefulSet or LeaderWorkerSet, got {kind!r}")
    model_id = check.string(spec, "modelID", "spec.modelID", required=True)
    accelerator = check.string(spec, "accelerator", "spec.accelerator")
    accelerator_count = check.integer(spec, "acceleratorCount", "spec.acceleratorCount", default=1, minimum=1) or 1
    min_replicas = check.integer(spec, "minReplicas", "spec.minReplicas", default=0, minimum=0) or 0
    max_replicas = check.integer(spec, "maxReplicas", "spec.maxReplicas", default=None, minimum=0)
    if max_replicas is not None and max_replicas < min_replicas:
        check.add("spec.maxReplicas", f"must be ≥ minReplicas ({min_replicas}), got {max_replicas}")
    cost = check.number(spec, "variantCost", "spec.variantCost", default=None, minimum=0.0)
    if cost is None:
        unit = (accelerator_costs or {}).get(accelerator)
        cost = unit * accelerator_count if unit is not None else DEFAULT_VARIANT_COST

    saturation = None
    if "saturation" in spec:
        raw = check.mapping(spec, "saturation", "spec.saturation")
        saturation = parse_saturation(raw, SaturationConfig(), check, "spec.saturation") if raw else None

    profile = check.mapping(spec, "variantProfile", "spec.variantProfile")
    max_batch = check.integer(profile, "maxBatchSize", "spec.variantProfile.maxBatchSize", default=None, minimum=1)
    perf = None
    parms = check.mapping(profile, "perfParms", "spec.variantProfile.perfParms")
    if parms:
        decode = check.mapping(parms, "decodeParms", "spec.variantProfile.perfParms.decodeParms")
        prefill = check.mapping(parms, "prefillParms", "spec.variantProfile.perfParms.prefillParms")
        p = "spec.variantProfile.perfParms"
        values = [check.number(decode, k, f"{p}.decodeParms.{k}", default=None, minimum=0.0) for k in ("alpha", "beta")]
        values += [check.number(prefill, k, f"{p}.prefillParms.{k}", default=None, minimum=0.0) for k in ("gamma", "delta")]
        if all(v is not None for v in values):
            perf = PerfParams(*values)  # type: ignore[arg-type]
    prefer_estimate = False
    if "preferEstimated" in profile:
        if isinstance(profile["preferEstimated"], bool):
            prefer_estimate = profile["preferEstimated"]
        else:
            check.add("spec.variantProfile.preferEstimated",
                      f"expected true or false, got {profile['preferEstimated']!r}")
    scaling_mode = None
    if spec.get("scalingMode") is not None:
        scaling_mode, why = parse_mode(spec.get("scalingMode"))
        if why:
            check.add("spec.scalingMode", why + " (or leave it out for the global --scaling-mode)")
            scaling_mode = None
    slo_ref = None
    slo = check.mapping(spec, "sloClassRef", "spec.sloClassRef")
    if slo:
        slo_ref = (check.string(slo, "name", "spec.sloClassRef.name", required=True),
                   check.string(slo, "key", "spec.sloClassRef.key", required=True))
    scale_to_zero = check.mapping(spec, "scaleToZero", "spec.scaleToZero")

    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
    endpoints: tuple[str, ...] = ()
    raw_endpoints = annotations.get(METRICS_ENDPOINTS_ANNOTATION)
    if raw_endpoints:
        endpoints = tuple(u.strip() for u in str(raw_endpoints).split(",") if u.strip())
        for url in endpoints:
            if not re.match(r"^https?://[^/\s]+", url):
                check.add(f"metadata.annotations[{METRICS_ENDPOINTS_ANNOTATION}]",
                          f"expected comma-separated http(s) URLs, got {url!r}")
    labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}

    extras = VariantExtras(max_batch, perf, slo_ref, dict(scale_to_zero), endpoints, scaling_mode, prefer_estimate)
    if check.problems:
        return ParsedVariant(None, extras, tuple(check.problems))
    variant = VariantSpec(
        key=VariantKey(namespace, name),
        model_id=model_id,
        target_name=target_name,
        accelerator=accelerator,
        accelerator_count=accelerator_count,
        variant_id=check.string(spec, "variantID", "spec.variantID") or f"{model_id}-{accelerator}-{accelerator_count}",
        cost=cost,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        saturation=saturation,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )
    return ParsedVariant(variant, extras, ())


def _load_entry(value: Any, check: _Checker, path: str) -> Any:
    """ConfigMap data values are strings holding YAML; parse them, reporting where they break."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        check.add(path, f"is not valid YAML: {str(exc).splitlines()[0]}")
        return None


def parse_saturation_configmap(doc: Mapping[str, Any], source: str) -> tuple[SaturationSettings, tuple[Problem, ...]]:
    """The saturation ConfigMap: key `default` for everyone, every other key a per-model override."""
    meta = doc.get("metadata")
    name = meta.get("name", "") if isinstance(meta, Mapping) else ""
    check = _Checker(source, f"ConfigMap {name}")
    data = doc.get("data") or {}
    if not isinstance(data, Mapping):
        check.add("data", "expected a mapping of keys to YAML strings")
        return SaturationSettings(), tuple(check.problems)
    default = SaturationConfig()
    if "default" in data:
        raw = _load_entry(data["default"], check, "data.default")
        if isinstance(raw, Mapping):
            default = parse_saturation(raw, default, check, "data.default")
        elif raw is not None:
            check.add("data.default", "expected a mapping with kvCacheThreshold, queueLengthThreshold, ...")
    overrides = []
    for key, value in sorted(data.items(), key=lambda item: str(item[0])):  # YAML keys may be ints
        if key == "default":
            continue
        raw = _load_entry(value, check, f"data.{key}")
        if not isinstance(raw, Mapping):
            if raw is not None:
                check.add(f"data.{key}", "expected a mapping with model_id and the fields to override")
            continue
        model = raw.get("model_id") or raw.get("modelID")
        if not isinstance(model, str) or not model:
            check.add(f"data.{key}.model_id", "is required in a per-model override: the model's modelID")
            continue
        before = len(check.problems)
        cfg = parse_saturation(raw, default, check, f"data.{key}")
        if len(check.problems) == before:
            overrides.append((str(raw.get("namespace") or ""), model, cfg))
    return SaturationSettings(default, tuple(overrides)), tuple(check.problems)


def parse_cost_configmap(doc: Mapping[str, Any], source: str) -> tuple[dict[str, float], tuple[Problem, ...]]:
    """Accelerator unit costs, in any of the seeds' forms: `costs` map, `accelerators` list, or key per accelerator."""
    meta = doc.get("metadata")
    name = meta.get("name", "") if isinstance(meta, Mapping) else ""
    check = _Checker(source, f"ConfigMap {name}")
    data = doc.get("data") or {}
    costs: dict[str, float] = {}
    if not isinstance(data, Mapping):
        check.add("data", "expected a mapping")
        return costs, tuple(check.problems)
    for key, value in data.items():
        raw = _load_entry(value, check, f"data.{key}")
        if key == "costs" and isinstance(raw, Mapping):
            for acc, cost in raw.items():
                got = check.number(raw, acc, f"data.costs.{acc}", default=None, minimum=0.0)
                if got is not None:
                    costs[str(acc)] = got
        elif key == "accelerators" and isinstance(raw, list):
            for i, item in enumerate(raw):
                if not isinstance(item, Mapping) or not item.get("name"):
                    check.add(f"data.accelerators[{i}]", "expected {name, cost, ...}")
                    continue
                got = check.number(item, "cost", f"data.accelerators[{i}].cost", default=None, minimum=0.0)
                if got is not None:
                    costs[str(item["name"])] = got
        elif isinstance(raw, Mapping) and "cost" in raw:
            got = check.number(raw, "cost", f"data.{key}.cost", default=None, minimum=0.0)
            if got is not None:
                costs[str(key)] = got
        elif raw is not None:
            got = _number(raw)
            if got is None or got < 0:
                check.add(f"data.{key}", f"expected a cost (number ≥ 0) or {{cost: ...}}, got {raw!r}")
            else:
                costs[str(key)] = got
    return costs, tuple(check.problems)
