"""The `serviceclass` ConfigMap: service classes, their priority and each model's SLO targets.

Canonical form — every data key is one class, its value a YAML string:

    data:
      premium: |
        name: Premium
        priority: 1            # 1 = highest: served first when accelerators run short
        data:
          - model: meta/llama-3.1-8b
            slo-tpot: 24       # ms per output token (ITL); `slo-itl` is accepted too
            slo-ttft: 500      # ms to first token, queueing included; `slo-ttw` is accepted too

Also accepted (older seed documents): a class value that is itself one entry `{name, model, priority, slo-itl,
slo-ttw}`, or a list of such entries. A VariantAutoscaling points at a class with
`spec.sloClassRef: {name: serviceclass, key: premium}`. Like `kedascaler.spec.config`, nothing here raises on bad
input: problems come back as `Problem`s naming the key and the field, and the rest is still used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kedascaler.engine.sizing import DEFAULT_PRIORITY, SloTargets
from kedascaler.spec.config import SERVICECLASS_CONFIGMAP, Checker, load_entry, mapping_or_empty
from kedascaler.spec.problems import Problem

_ITL_KEYS = ("slo-tpot", "slo-itl")
_TTFT_KEYS = ("slo-ttft", "slo-ttw")


@dataclass(frozen=True)
class ModelSlo:
    """One model's targets in a class (ms). A missing target is None: not constrained."""

    model: str
    itl_ms: float | None
    ttft_ms: float | None


@dataclass(frozen=True)
class ServiceClass:
    """One key of the ConfigMap."""

    key: str
    name: str
    priority: int  # 1 = highest
    models: tuple[ModelSlo, ...]
    _by_model: dict[str, ModelSlo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # an index: a class may list thousands of models, looked up per model
        object.__setattr__(self, "_by_model", {m.model: m for m in reversed(self.models)})

    def slo_for(self, model: str) -> ModelSlo | None:
        """The targets of `model` in this class (None: the class does not list it)."""
        return self._by_model.get(model)


@dataclass(frozen=True)
class ServiceClasses:
    """Every class of one `serviceclass` ConfigMap."""

    configmap: str = SERVICECLASS_CONFIGMAP
    classes: tuple[ServiceClass, ...] = ()
    _by_key: dict[str, ServiceClass] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {c.key: c for c in reversed(self.classes)})

    def by_key(self, key: str) -> ServiceClass | None:
        return self._by_key.get(key)

    def resolve(self, ref: tuple[str, str] | None, model: str) -> tuple[ServiceClass | None, ModelSlo | None, str]:
        """A VA's sloClassRef (ConfigMap name, key) and modelID → (class, targets, reason when not found)."""
        if ref is None:
            return None, None, "no spec.sloClassRef"
        name, key = ref
        if name and name != self.configmap:
            return None, None, (f"spec.sloClassRef.name {name!r}: no such service-class ConfigMap "
                                f"(have {self.configmap!r})")
        found = self.by_key(key)
        if found is None:
            keys = ", ".join(c.key for c in self.classes) or "none"
            return None, None, (f"spec.sloClassRef.key {key!r}: no such class in ConfigMap {self.configmap} "
                                f"(keys: {keys})")
        slo = found.slo_for(model)
        if slo is None:
            return found, None, f"service class {found.name!r} has no targets for model {model!r}"
        if slo.itl_ms is None and slo.ttft_ms is None:
            return found, None, f"service class {found.name!r} sets neither slo-tpot nor slo-ttft for {model!r}"
        return found, slo, ""


def _target(entry: Mapping[str, Any], keys: tuple[str, str], check: Checker, path: str) -> float | None:
    present = [k for k in keys if entry.get(k) is not None]
    if len(present) > 1:
        check.add(f"{path}.{present[1]}", f"duplicates {present[0]}: set one of {' or '.join(keys)}")
    if not present:
        return None
    return check.number(entry, present[0], f"{path}.{present[0]}", default=None, minimum=0.0, exclusive_min=True)


def _model_slo(entry: Any, check: Checker, path: str) -> ModelSlo | None:
    if not isinstance(entry, Mapping):
        check.add(path, "expected {model, slo-tpot, slo-ttft}")
        return None
    model = check.string(entry, "model", f"{path}.model", required=True)
    itl = _target(entry, _ITL_KEYS, check, path)
    ttft = _target(entry, _TTFT_KEYS, check, path)
    if itl is None and ttft is None and not any(k in entry for k in _ITL_KEYS + _TTFT_KEYS):
        check.add(path, "sets no target: give slo-tpot (ms per output token) and/or slo-ttft (ms)")
        return None
    return ModelSlo(model, itl, ttft) if model else None


def _class(key: str, raw: Any, check: Checker) -> ServiceClass | None:
    path = f"data.{key}"
    entries: Any
    if isinstance(raw, list):  # older form: a list of flat entries sharing name and priority
        entries, head = raw, (raw[0] if raw and isinstance(raw[0], Mapping) else {})
        paths = [f"{path}[{i}]" for i in range(len(raw))]
    elif isinstance(raw, Mapping) and "data" not in raw and "model" in raw:  # older form: one flat entry
        entries, head, paths = [raw], raw, [path]
    elif isinstance(raw, Mapping):
        entries, head = raw.get("data"), raw
        paths = [f"{path}.data[{i}]" for i in range(len(entries))] if isinstance(entries, list) else []
        if not isinstance(entries, list):
            check.add(f"{path}.data", "expected a list of {model, slo-tpot, slo-ttft}")
            entries = []
    else:
        check.add(path, "expected a mapping {name, priority, data: [{model, slo-tpot, slo-ttft}]}")
        return None
    name = check.string(head, "name", f"{path}.name") or key
    priority = check.integer(head, "priority", f"{path}.priority", default=DEFAULT_PRIORITY, minimum=1)
    models: list[ModelSlo] = []
    seen: set[str] = set()
    for entry, entry_path in zip(entries, paths, strict=True):
        slo = _model_slo(entry, check, entry_path)
        if slo is None:
            continue
        if slo.model in seen:
            check.add(f"{entry_path}.model", f"{slo.model!r} is listed twice: keep one entry per model")
            continue
        models.append(slo)
        seen.add(slo.model)
    return ServiceClass(key, name, priority if priority is not None else DEFAULT_PRIORITY, tuple(models))


def parse_serviceclass_configmap(doc: Mapping[str, Any], source: str) -> tuple[ServiceClasses, tuple[Problem, ...]]:
    """The `serviceclass` ConfigMap → its classes (sorted by priority, then key) and the problems found."""
    meta = mapping_or_empty(doc.get("metadata"))
    name = str(meta.get("name") or SERVICECLASS_CONFIGMAP)
    check = Checker(source, f"ConfigMap {name}")
    data = doc.get("data") or {}
    if not isinstance(data, Mapping):
        check.add("data", "expected a mapping of class keys to YAML strings")
        return ServiceClasses(name), tuple(check.problems)
    classes = []
    for key, value in sorted(data.items()):
        raw = load_entry(value, check, f"data.{key}")
        if raw is None:
            continue
        found = _class(str(key), raw, check)
        if found is not None:
            classes.append(found)
    classes.sort(key=lambda c: (c.priority, c.key))
    return ServiceClasses(name, tuple(classes)), tuple(check.problems)


def model_targets(classes: ServiceClasses, refs: list[tuple[str, str] | None], model: str
                  ) -> tuple[SloTargets | None, int, str]:
    """One model's targets and priority from its variants' sloClassRefs: (targets, priority, reason when None).

    Variants of a model should name the same class; when they differ, the highest-priority class that has
    targets for the model wins and the reason says so (the model is decided as a whole).
    """
    found = []
    reasons = []
    for ref in dict.fromkeys(refs):  # unique, in order
        cls, slo, reason = classes.resolve(ref, model)
        if cls is not None and slo is not None:
            found.append((cls.priority, cls.key, cls, slo))
        elif reason:
            reasons.append(reason)
    if not found:
        return None, DEFAULT_PRIORITY, "; ".join(dict.fromkeys(reasons)) or "no spec.sloClassRef"
    found.sort(key=lambda item: (item[0], item[1]))
    _, _, cls, slo = found[0]
    note = ""
    if len(found) > 1:
        note = f"variants name {len(found)} classes: using {cls.name!r} (priority {cls.priority})"
    return SloTargets(slo.itl_ms, slo.ttft_ms), cls.priority, note
