"""What the user declared, typed: the VariantAutoscalings, the ConfigMaps, and what was wrong with the input.

`build_inventory` joins (source, document) pairs — a folder's YAML or the Kubernetes API's objects — into
one `InventoryState`; the file and Kubernetes inventories share it. Pure: no I/O. Given a `ParseMemo`, each
object that carries a `metadata.resourceVersion` is parsed once per version: a watch event re-parses the one
object it changed, not the fleet (10,000 VAs and a 5,000-entry serviceclass ConfigMap: 620–780 ms a build).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.spec.config import (
    COST_CONFIGMAP,
    METRICS_ENDPOINTS_ANNOTATION,
    SATURATION_CONFIGMAPS,
    SERVICECLASS_CONFIGMAP,
    VA_KIND,
    SaturationSettings,
    parse_cost_configmap,
    parse_saturation_configmap,
)
from kedascaler.spec.problems import Problem
from kedascaler.spec.serviceclass import ServiceClasses, parse_serviceclass_configmap
from kedascaler.spec.variant import (
    SCALED_OBJECT_KIND,
    VariantAutoscaling,
    parse_scaled_object,
    parse_variant_autoscaling,
)


@dataclass(frozen=True)
class InventoryState:
    """What the inventory knows now: the variants, the configuration, and what was wrong with the input.

    `variants` are `VariantAutoscaling`s; a bare `VariantSpec` given here (an embedded or test inventory)
    is a VariantAutoscaling with nothing but the engine's fields."""

    variants: tuple[VariantAutoscaling, ...] = ()
    saturation: SaturationSettings = field(default_factory=SaturationSettings)
    accelerator_costs: tuple[tuple[str, float], ...] = ()  # accelerator name -> unit cost
    problems: tuple[Problem, ...] = ()
    service_classes: ServiceClasses | None = None  # the `serviceclass` ConfigMap (SLO sizing); None: absent
    # CRD-free variants: described by a ScaledObject alone (no VariantAutoscaling, so no status to write).
    from_scaled_objects: frozenset[VariantKey] = frozenset()

    def __post_init__(self) -> None:
        given: tuple[VariantAutoscaling | VariantSpec, ...] = tuple(self.variants)
        if any(isinstance(v, VariantSpec) for v in given):
            typed = tuple(VariantAutoscaling(v) if isinstance(v, VariantSpec) else v for v in given)
            object.__setattr__(self, "variants", typed)

    @property
    def specs(self) -> tuple[VariantSpec, ...]:
        """The engine's part of every variant, in inventory order."""
        return tuple(v.spec for v in self.variants)

    @property
    def static_targets(self) -> dict[VariantKey, tuple[str, ...]]:
        """Local mode: the metrics URLs listed on each VA (the annotation), for the VAs that list some."""
        return {v.key: v.metrics_endpoints for v in self.variants if v.metrics_endpoints}


_T = TypeVar("_T")


class ParseMemo:
    """Each object's parse, by (source, resourceVersion, what else the parse read), for the inventory that owns
    it. Holds the entries of the last build only, so it follows the fleet; an object without a resourceVersion
    (a file) is parsed every time. Not thread-safe: one inventory builds at a time (under its lock)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[object, ...], Any] = {}
        self._used: dict[tuple[object, ...], Any] = {}
        self.parses = 0  # objects parsed, not taken from the memo (for tests and benchmarks)

    def parse(self, source: str, doc: Mapping[str, Any], parse: Callable[[], Any], *also: object) -> Any:
        meta = doc.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if not isinstance(version, str) or not version:
            self.parses += 1
            return parse()
        key = (source, version, *also)
        found = self._used.get(key, self._kept.get(key))  # a parse is a non-empty tuple: None is "not kept"
        if found is None:
            self.parses += 1
            found = parse()
        self._used[key] = found
        return found

    def __len__(self) -> int:
        return len(self._kept)

    def finish(self) -> None:
        """End of a build: forget what it did not use."""
        self._kept, self._used = self._used, {}


def _parsed(memo: ParseMemo | None, parse: Callable[..., _T], doc: Mapping[str, Any], source: str, *args: Any,
            also: tuple[object, ...] = ()) -> _T:
    """`parse(doc, source, *args)`, from the memo when it holds this version (`also`: what else it depends on)."""
    if memo is None:
        return parse(doc, source, *args)
    found: _T = memo.parse(source, doc, lambda: parse(doc, source, *args), *also)
    return found


# The scaler's own ConfigMaps by name, with the parser of each.
SCALER_CONFIGMAPS: dict[str, Callable[[Mapping[str, Any], str], tuple[object, tuple[Problem, ...]]]] = {
    **{name: parse_saturation_configmap for name in SATURATION_CONFIGMAPS},
    COST_CONFIGMAP: parse_cost_configmap, SERVICECLASS_CONFIGMAP: parse_serviceclass_configmap}


def configmap_or_last_good(name: str, doc: Mapping[str, Any], source: str, last_good: dict[str, Mapping[str, Any]],
                           memo: ParseMemo | None = None
                           ) -> tuple[Mapping[str, Any], tuple[Problem, ...], Mapping[str, Any] | None]:
    """One of the scaler's ConfigMaps (`SCALER_CONFIGMAPS`), kept in force across a bad edit: (the version to use,
    its problems, the last good version used instead). A version that validates is remembered in `last_good`
    (the caller's, per inventory) and used; one that does not gives way to the last good version, or is used
    for its valid fields when there is none."""
    _, found = _parsed(memo, SCALER_CONFIGMAPS[name], doc, source)
    if not found:
        last_good[name] = doc
        return doc, (), None
    last = last_good.get(name)
    return (last if last is not None else doc), tuple(found), last


def without_static_targets(state: InventoryState, source_of: Mapping[VariantKey, str] | None = None,
                           flag: str = "--allow-metrics-endpoints-annotation") -> InventoryState:
    """The state with every VA's listed metrics URLs dropped, each drop reported: cluster mode, where whoever
    may create a VariantAutoscaling must not choose what the scaler fetches. The VAs themselves stay in use."""
    if not any(v.metrics_endpoints for v in state.variants):
        return state
    problems = list(state.problems)
    variants = []
    for v in state.variants:
        if v.metrics_endpoints:
            problems.append(Problem(
                (source_of or {}).get(v.key, f"{v.key.namespace}/VariantAutoscaling/{v.key.name}"),
                f"VariantAutoscaling {v.key} (still used)", f"metadata.annotations[{METRICS_ENDPOINTS_ANNOTATION}]",
                "ignored in cluster mode: the pods are found from spec.scaleTargetRef; to scrape the listed URLs "
                f"instead, the operator starts kedascaler serve with {flag}"))
            v = replace(v, metrics_endpoints=())
        variants.append(v)
    return replace(state, variants=tuple(variants), problems=tuple(problems))


def build_inventory(docs: Iterable[tuple[str, Mapping[str, Any]]], memo: ParseMemo | None = None) -> InventoryState:
    """Join (source, document) pairs into one InventoryState; shared by the file and Kubernetes inventories.
    `memo`: parses kept from the last build (see `ParseMemo`); the caller calls `memo.finish()` after."""
    docs = list(docs)
    problems: list[Problem] = []
    saturation = SaturationSettings()
    costs: dict[str, float] = {}
    classes = None
    for source, doc in docs:
        if doc.get("kind") != "ConfigMap":
            continue
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        if name in SATURATION_CONFIGMAPS:
            saturation, found = _parsed(memo, parse_saturation_configmap, doc, source)
            problems += found
        elif name == COST_CONFIGMAP:
            costs, found = _parsed(memo, parse_cost_configmap, doc, source)
            problems += found
        elif name == SERVICECLASS_CONFIGMAP:
            classes, found = _parsed(memo, parse_serviceclass_configmap, doc, source)
            problems += found
    variants: dict[VariantKey, VariantAutoscaling] = {}
    priced = tuple(sorted(costs.items()))  # a VA's parse reads the costs: a new price list parses them again
    for source, doc in docs:
        if doc.get("kind") != VA_KIND:
            continue
        parsed = _parsed(memo, parse_variant_autoscaling, doc, source, costs, also=priced)
        problems += parsed.problems
        if parsed.variant is None:
            continue
        if parsed.variant.key in variants:
            problems.append(Problem(source, f"VariantAutoscaling {parsed.variant.key}", "metadata.name",
                                    "defined twice: the first definition is kept, rename or remove this one"))
            continue
        variants[parsed.variant.key] = parsed.variant
    crd_free: set[VariantKey] = set()
    for source, doc in docs:  # after the VariantAutoscalings: a VA of the same name is the variant
        if doc.get("kind") != SCALED_OBJECT_KIND:
            continue
        parsed = _parsed(memo, parse_scaled_object, doc, source, costs, also=priced)
        problems += parsed.problems
        if parsed.variant is not None and parsed.variant.key not in variants:
            variants[parsed.variant.key] = parsed.variant
            crd_free.add(parsed.variant.key)
    state = InventoryState(
        variants=tuple(variants.values()),
        saturation=saturation,
        accelerator_costs=priced,
        problems=tuple(problems),
        service_classes=classes,
        from_scaled_objects=frozenset(crd_free),
    )
    return state
