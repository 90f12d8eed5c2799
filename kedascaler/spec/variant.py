"""One VariantAutoscaling, typed: what the engine decides on, and what sizing and scale to zero read.

`parse_variant_autoscaling` takes the plain dict YAML or the Kubernetes API gives and returns a
`VariantAutoscaling` (or None) plus the `Problem`s that name the field and the fix; nothing here raises on bad
input. The same value travels from the parser to the status writer: the engine reads its `spec`, the planner
its `profile`, `slo_class_ref` and `scaling_mode`, the cycle its `scale_to_zero`, local mode its
`metrics_endpoints`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kedascaler.engine.sizing import parse_mode
from kedascaler.engine.types import SaturationConfig, VariantKey, VariantSpec
from kedascaler.spec.config import (
    API_VERSION,
    DEFAULT_VARIANT_COST,
    METRICS_ENDPOINTS_ANNOTATION,
    Checker,
    is_dns1123_label,
    is_dns1123_subdomain,
    mapping_or_empty,
    number_or_none,
    parse_saturation,
)
from kedascaler.spec.problems import Problem

# Older field names from the seed documents: accepted (mapped to the canonical one) or refused with a hint.
_RENAMED_ACCEPTED = {"modelName": "modelID", "acceleratorType": "accelerator"}
_RENAMED_REFUSED = {
    "serviceClass": "spec.sloClassRef {name: <ConfigMap>, key: <class>}",
    "keepAccelerator": "one VariantAutoscaling per accelerator (a variant never changes accelerator)",
}


@dataclass(frozen=True)
class PerfParams:
    """The performance profile of a variant (ms): decode α + β·batch, prefill γ + δ·tokens."""

    alpha: float
    beta: float
    gamma: float
    delta: float


@dataclass(frozen=True)
class VariantProfile:
    """`spec.variantProfile`: the server's batch limit and, when the user benchmarked it, its step times."""

    max_batch_size: int | None = None
    perf: PerfParams | None = None  # perfParms; None: learned online
    prefer_estimate: bool = False  # preferEstimated: learned parameters win over perfParms


@dataclass(frozen=True)
class ScaleToZero:
    """`spec.scaleToZero`: each field None when not set (the global default applies)."""

    enabled: bool | None = None  # false turns scale to zero off for the whole model
    idle_window_s: float | None = None  # idleWindowSeconds, a finite number ≥ 0
    activation_query: str | None = None  # PromQL for the model's gateway queue


@dataclass(frozen=True)
class VariantAutoscaling:
    """One VariantAutoscaling: the engine's `VariantSpec` plus what SLO sizing and scale to zero read."""

    spec: VariantSpec
    profile: VariantProfile = field(default_factory=VariantProfile)
    slo_class_ref: tuple[str, str] | None = None  # (ConfigMap name, key)
    scale_to_zero: ScaleToZero = field(default_factory=ScaleToZero)
    scaling_mode: str | None = None  # spec.scalingMode: capacity | saturation | model | hybrid; None: the global mode
    metrics_endpoints: tuple[str, ...] = ()  # local mode: pod metrics URLs from an annotation
    startup_s: float | None = None  # spec.startupSeconds: pod created → ready (capacity mode); None: measured

    @property
    def key(self) -> VariantKey:
        return self.spec.key

    @property
    def model_id(self) -> str:
        return self.spec.model_id


@dataclass(frozen=True)
class ParsedVariant:
    variant: VariantAutoscaling | None
    problems: tuple[Problem, ...]


def parse_scale_to_zero(raw: Mapping[str, Any]) -> ScaleToZero:
    """`spec.scaleToZero` typed. Values of the wrong type count as not set (the CRD schema rejects them first)."""
    enabled = raw.get("enabled")
    window = number_or_none(raw.get("idleWindowSeconds"))
    query = raw.get("activationQuery")
    return ScaleToZero(enabled if isinstance(enabled, bool) else None,
                       window if window is not None and math.isfinite(window) and window >= 0 else None,
                       query if isinstance(query, str) and query.strip() else None)


def parse_variant_autoscaling(doc: Mapping[str, Any], source: str,
                              accelerator_costs: Mapping[str, float] | None = None) -> ParsedVariant:
    """Validate one VariantAutoscaling and type it (None when it cannot be used, with the problems why)."""
    meta = mapping_or_empty(doc.get("metadata"))
    raw_name, raw_namespace = meta.get("name"), meta.get("namespace")
    name = raw_name if isinstance(raw_name, str) else ""
    namespace = raw_namespace if isinstance(raw_namespace, str) and raw_namespace else "default"
    check = Checker(source, f"VariantAutoscaling {namespace}/{name or '<unnamed>'}")
    if doc.get("apiVersion") != API_VERSION:
        check.add("apiVersion", f"expected {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if not is_dns1123_subdomain(name):
        check.add("metadata.name", f"expected a DNS-1123 name (lowercase letters, digits, '-', '.'), got {name!r}")
    if not is_dns1123_label(namespace):
        check.add("metadata.namespace", f"expected a DNS-1123 label, got {namespace!r}")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        check.add("spec", "is required: a mapping with scaleTargetRef and modelID")
        return ParsedVariant(None, tuple(check.problems))
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
            moved = dict(raw_profile or {})
            moved.setdefault("maxBatchSize", spec.pop("maxBatchSize"))
            spec["variantProfile"] = moved

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
    unpriced: Problem | None = None
    if cost is None:
        cost, unpriced = _cost_of(accelerator, accelerator_count, accelerator_costs or {}, source,
                                  f"VariantAutoscaling {namespace}/{name or '<unnamed>'}")

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
        values = [check.number(decode, k, f"{p}.decodeParms.{k}", default=None, minimum=0.0)
                  for k in ("alpha", "beta")]
        values += [check.number(prefill, k, f"{p}.prefillParms.{k}", default=None, minimum=0.0)
                   for k in ("gamma", "delta")]
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
    scale_to_zero = parse_scale_to_zero(check.mapping(spec, "scaleToZero", "spec.scaleToZero"))
    startup = None
    if spec.get("startupSeconds") is not None:
        startup = number_or_none(spec.get("startupSeconds"))
        if startup is None or not math.isfinite(startup) or startup < 0:
            check.add("spec.startupSeconds", f"expected a number of seconds ≥ 0, got {spec.get('startupSeconds')!r}")
            startup = None

    annotations = mapping_or_empty(meta.get("annotations"))
    endpoints: tuple[str, ...] = ()
    raw_endpoints = annotations.get(METRICS_ENDPOINTS_ANNOTATION)
    if raw_endpoints:
        endpoints = tuple(u.strip() for u in str(raw_endpoints).split(",") if u.strip())
        for url in endpoints:
            if not re.match(r"^https?://[^/\s]+", url):
                check.add(f"metadata.annotations[{METRICS_ENDPOINTS_ANNOTATION}]",
                          f"expected comma-separated http(s) URLs, got {url!r}")
    labels = mapping_or_empty(meta.get("labels"))
    check.string(spec, "variantID", "spec.variantID")  # accepted for WVA compatibility, not used
    if check.problems:
        return ParsedVariant(None, tuple(check.problems))
    engine_spec = VariantSpec(
        key=VariantKey(namespace, name),
        model_id=model_id,
        target_name=target_name,
        accelerator=accelerator,
        accelerator_count=accelerator_count,
        cost=cost,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        saturation=saturation,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )
    variant = VariantAutoscaling(engine_spec, VariantProfile(max_batch, perf, prefer_estimate), slo_ref, scale_to_zero,
                                 scaling_mode, endpoints, startup)
    return ParsedVariant(variant, (unpriced,) if unpriced is not None else ())


def _cost_of(accelerator: str, count: int, unit_costs: Mapping[str, float], source: str, obj: str
             ) -> tuple[float, Problem | None]:
    """A variant's cost from the accelerator-unitcost ConfigMap, and a problem when the map lacks its accelerator.

    An accelerator the map does not list is priced as the most expensive one it lists, never below them: a
    typo must not make a variant the cheapest and draw every scale-up. The variant stays in use (its problem
    is reported, not fatal). With no cost map at all every variant costs DEFAULT_VARIANT_COST."""
    unit = unit_costs.get(accelerator)
    if unit is not None:
        return unit * count, None
    if not unit_costs:
        return DEFAULT_VARIANT_COST, None
    dearest, price = max(unit_costs.items(), key=lambda item: item[1])
    listed = ", ".join(sorted(unit_costs))
    return price * count, Problem(
        source, f"{obj} (still used)", "spec.accelerator",
        f"{accelerator!r} is not in the accelerator-unitcost ConfigMap (it lists {listed}): priced as the most "
        f"expensive listed one ({dearest}, {price:g} per accelerator) until it is added there or spec.variantCost "
        "is set")


# -- CRD-free variants: one KEDA ScaledObject describes the variant ----------------------------------------------
# For WVA v0.9 users (its annotations on the ScaledObject) and plain-KEDA users (keys in the trigger's metadata).
# The ScaledObject is read as the VariantAutoscaling it stands for and parsed by `parse_variant_autoscaling`, so a
# CRD-free variant is typed, defaulted and validated exactly like its CRD twin.
SCALED_OBJECT_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT_KIND = "ScaledObject"
MANAGED_ANNOTATION = "llm-d.ai/managed"  # "true": WVA v0.9's opt-in
MODEL_ANNOTATION = "llm-d.ai/model-id"
COST_ANNOTATION = "llm-d.ai/variant-cost"
ACCELERATOR_ANNOTATION = "llm-d.ai/accelerator"
KEDA_MAX_REPLICAS = 100  # KEDA's default maxReplicaCount
_EXTERNAL_TRIGGERS = ("external", "external-push")
# VA field <- (trigger metadata key, annotation); the trigger's key wins.
_SCALED_OBJECT_FIELDS = {
    "modelID": ("modelID", MODEL_ANNOTATION),
    "accelerator": ("accelerator", ACCELERATOR_ANNOTATION),
    "acceleratorCount": ("acceleratorCount", None),
    "variantCost": ("variantCost", COST_ANNOTATION),
    "scalingMode": ("scalingMode", None),
}


def _kedascaler_trigger(spec: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]] | None:
    """The (index, metadata) of the external trigger that carries modelID, else of the first external one."""
    triggers = spec.get("triggers")
    external = [(i, mapping_or_empty(t.get("metadata"))) for i, t in enumerate(triggers or [])
                if isinstance(t, Mapping) and t.get("type") in _EXTERNAL_TRIGGERS] if isinstance(triggers, list) else []
    return next((t for t in external if "modelID" in t[1]), external[0] if external else None)


def parse_scaled_object(doc: Mapping[str, Any], source: str,
                        accelerator_costs: Mapping[str, float] | None = None) -> ParsedVariant:
    """A variant described entirely by a ScaledObject, typed as the `VariantAutoscaling` it stands for.

    The ScaledObject is a variant when it carries `llm-d.ai/managed: "true"` or an external trigger with
    `modelID` in its metadata, and that trigger names no VariantAutoscaling (`variantAutoscaling`: then it is
    the CRD way). Anything else is not ours: `ParsedVariant(None, ())`. The variant is named by the
    ScaledObject (the key KEDA's calls resolve to); min/max are its minReplicaCount (0) and maxReplicaCount
    (100, KEDA's defaults); the target is its scaleTargetRef."""
    meta = mapping_or_empty(doc.get("metadata"))
    annotations = mapping_or_empty(meta.get("annotations"))
    spec = mapping_or_empty(doc.get("spec"))
    trigger = _kedascaler_trigger(spec)
    index, metadata = trigger if trigger is not None else (0, {})
    managed = str(annotations.get(MANAGED_ANNOTATION, "")).strip().lower() == "true"
    if doc.get("kind") != SCALED_OBJECT_KIND or "variantAutoscaling" in metadata:
        return ParsedVariant(None, ())
    if not managed and "modelID" not in metadata:
        return ParsedVariant(None, ())
    where = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace",
             "spec.scaleTargetRef": "spec.scaleTargetRef", "spec.scaleTargetRef.name": "spec.scaleTargetRef.name",
             "spec.scaleTargetRef.kind": "spec.scaleTargetRef.kind", "spec.minReplicas": "spec.minReplicaCount",
             "spec.maxReplicas": "spec.maxReplicaCount", "spec.sloClassRef.key": f"spec.triggers[{index}].metadata"
             ".sloClass", "spec.scaleToZero": f"spec.triggers[{index}].metadata.idleWindowSeconds"}
    va_spec: dict[str, Any] = {"scaleTargetRef": spec.get("scaleTargetRef"),
                               "minReplicas": spec.get("minReplicaCount", 0),
                               "maxReplicas": spec.get("maxReplicaCount", KEDA_MAX_REPLICAS)}
    for field_name, (key, annotation) in _SCALED_OBJECT_FIELDS.items():
        named = f"spec.triggers[{index}].metadata.{key}"
        if annotation is not None and key not in metadata and annotation not in annotations:
            named += f" (or annotation {annotation})"
        if key in metadata:
            va_spec[field_name] = metadata[key]
        elif annotation is not None and annotation in annotations:
            va_spec[field_name] = annotations[annotation]
            named = f"metadata.annotations[{annotation}]"
        where[f"spec.{field_name}"] = named
    if metadata.get("sloClass"):
        va_spec["sloClassRef"] = {"name": "serviceclass", "key": metadata["sloClass"]}
    window = number_or_none(metadata.get("idleWindowSeconds"))
    if window is not None:
        va_spec["scaleToZero"] = {"idleWindowSeconds": window}
    va_doc = {"apiVersion": API_VERSION, "kind": "VariantAutoscaling", "spec": va_spec,
              "metadata": {k: meta[k] for k in ("name", "namespace", "labels") if k in meta}}
    parsed = parse_variant_autoscaling(va_doc, source, accelerator_costs)
    obj = f"ScaledObject {meta.get('namespace') or 'default'}/{meta.get('name') or '<unnamed>'}"
    problems = tuple(Problem(p.source, obj, where.get(p.field, p.field), p.message) for p in parsed.problems)
    return ParsedVariant(parsed.variant, problems)
