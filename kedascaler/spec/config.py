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

from kedascaler.engine.types import SaturationConfig
from kedascaler.spec.problems import Problem


def _safe_loader() -> Any:
    """PyYAML's safe loader with libyaml's scanner and parser (C) when the wheel has them, 3× faster on a
    serviceclass of thousands of entries; the nodes are composed in Python, so input nested 100,000 deep is a
    RecursionError (a problem naming the file) and never a crash of the C composer's stack, as with CSafeLoader."""
    try:
        from yaml._yaml import CParser  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # a PyYAML built without libyaml
        return yaml.SafeLoader
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    class FastSafeLoader(CParser, SafeConstructor, Resolver):  # type: ignore[misc,unused-ignore]
        def __init__(self, stream: Any) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self.anchors: dict[Any, Any] = {}

    for name in ("check_node", "get_node", "get_single_node", "compose_document", "compose_node",
                 "compose_scalar_node", "compose_sequence_node", "compose_mapping_node"):
        setattr(FastSafeLoader, name, getattr(Composer, name))
    return FastSafeLoader


SAFE_LOADER = _safe_loader()

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

_SATURATION_FIELDS = {
    "kvCacheThreshold": "kv_cache_threshold",
    "queueLengthThreshold": "queue_length_threshold",
    "kvSpareTrigger": "kv_spare_trigger",
    "queueSpareTrigger": "queue_spare_trigger",
}


@dataclass(frozen=True)
class SaturationSettings:
    """The saturation ConfigMap: a global default plus per-model (namespace, model) overrides."""

    default: SaturationConfig = field(default_factory=SaturationConfig)
    overrides: tuple[tuple[str, str, SaturationConfig], ...] = ()  # (namespace or "", model_id, config)

    def for_model(self, namespace: str, model_id: str) -> SaturationConfig:
        """The override for this model in this namespace, else one for the model anywhere, else the default."""
        anywhere = None
        for ns, model, cfg in self.overrides:
            if model == model_id:
                if ns == namespace:
                    return cfg
                if ns == "":
                    anywhere = cfg
        return anywhere or self.default



def mapping_or_empty(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping (an object's metadata, say), else an empty one."""
    return value if isinstance(value, Mapping) else {}


def is_dns1123_subdomain(value: str) -> bool:
    """Kubernetes object names: lowercase alphanumerics, '-' and '.', at most 253 characters."""
    return 0 < len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def is_dns1123_label(value: str) -> bool:
    """Kubernetes namespaces: lowercase alphanumerics and '-', at most 63 characters."""
    return 0 < len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def number_or_none(value: Any) -> float | None:
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


def integer_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


class Checker:
    """Collects problems for one object, so each check is one line in the parser."""

    def __init__(self, source: str, obj: str) -> None:
        self.source, self.obj = source, obj
        self.problems: list[Problem] = []

    def add(self, field_path: str, message: str) -> None:
        self.problems.append(Problem(self.source, self.obj, field_path, message))

    def integer(self, mapping: Mapping[str, Any], name: str, path: str, *, default: int | None,
                minimum: int | None = None) -> int | None:
        if name not in mapping or mapping[name] is None:
            return default
        value = integer_or_none(mapping[name])
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
        value = number_or_none(mapping[name])
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


def parse_saturation(raw: Mapping[str, Any], base: SaturationConfig, check: Checker, path: str) -> SaturationConfig:
    """Read the saturation fields present in `raw` over `base`, and check they make sense together."""
    values = {attr: getattr(base, attr) for attr in _SATURATION_FIELDS.values()}
    bounds: dict[str, dict[str, Any]] = {
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


def load_entry(value: Any, check: Checker, path: str) -> Any:
    """ConfigMap data values are strings holding YAML; parse them, reporting where they break."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.load(value, Loader=SAFE_LOADER)  # noqa: S506 - the safe loader, in C when available
    except yaml.YAMLError as exc:
        check.add(path, f"is not valid YAML: {str(exc).splitlines()[0]}")
        return None


def parse_saturation_configmap(doc: Mapping[str, Any], source: str) -> tuple[SaturationSettings, tuple[Problem, ...]]:
    """The saturation ConfigMap: key `default` for everyone, every other key a per-model override."""
    meta = doc.get("metadata")
    name = meta.get("name", "") if isinstance(meta, Mapping) else ""
    check = Checker(source, f"ConfigMap {name}")
    data = doc.get("data") or {}
    if not isinstance(data, Mapping):
        check.add("data", "expected a mapping of keys to YAML strings")
        return SaturationSettings(), tuple(check.problems)
    default = SaturationConfig()
    if "default" in data:
        raw = load_entry(data["default"], check, "data.default")
        if isinstance(raw, Mapping):
            default = parse_saturation(raw, default, check, "data.default")
        elif raw is not None:
            check.add("data.default", "expected a mapping with kvCacheThreshold, queueLengthThreshold, ...")
    overrides = []
    for key, value in sorted(data.items(), key=lambda item: str(item[0])):  # YAML keys may be ints
        if key == "default":
            continue
        raw = load_entry(value, check, f"data.{key}")
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
    check = Checker(source, f"ConfigMap {name}")
    data = doc.get("data") or {}
    costs: dict[str, float] = {}
    if not isinstance(data, Mapping):
        check.add("data", "expected a mapping")
        return costs, tuple(check.problems)
    for key, value in data.items():
        raw = load_entry(value, check, f"data.{key}")
        if key == "costs" and isinstance(raw, Mapping):
            for acc in raw:
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
            got = number_or_none(raw)
            if got is None or got < 0:
                check.add(f"data.{key}", f"expected a cost (number ≥ 0) or {{cost: ...}}, got {raw!r}")
            else:
                costs[str(key)] = got
    return costs, tuple(check.problems)
