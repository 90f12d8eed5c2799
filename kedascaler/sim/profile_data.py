"""Replica profiles as data: one model's step-time coefficients and vLLM limits per accelerator, from YAML.

A profile is a named set of per-accelerator entries (`AcceleratorProfile`: the variant's name and cost per
replica-hour, its `PerfParams`, the inputs of the arithmetic behind them, a published measurement to check
them against) and the `sources` the numbers come from. The bundled profiles live in `kedascaler/sim/profiles/`
(shipped in the wheel): `profile_names()` lists them, `load_profile(name)` reads one, and a path to a YAML
file of the same shape loads a user's own profile (`kedascaler simulate --profile-file PATH`), validated with
errors that name the file and the field. A profile may `include` others by name; their entries come first.

Which profile scores: `SCORING_PROFILE`, the calibrated 80 GB pair `llama-3.1-8b-h100-a100` (H100 cost 40,
A100 cost 20). `demo` keeps the live demo's small limits and is not calibrated. Schema and numbers:
docs/simulator.md, "Replica profiles".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from kedascaler.sim.perf import PerfParams

SCORING_PROFILE = "llama-3.1-8b-h100-a100"
DEMO_PROFILE = "demo"

_PERF_FLOATS = ("alpha", "beta", "gamma", "delta")
_PERF_INTS = ("max_num_seqs", "max_num_batched_tokens", "num_gpu_blocks")
_ENTRY_OPTIONAL = {"kappa", "block_size", "variant", "chunked_prefill", "derivation", "anchor", "notes"}
_ENTRY_KEYS = set(_PERF_FLOATS) | set(_PERF_INTS) | {"cost"} | _ENTRY_OPTIONAL
_TOP_KEYS = {"name", "description", "model", "accelerators", "include", "sources"}


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class AcceleratorProfile:
    """One model on one accelerator: the variant that serves it, its cost per replica-hour, its parameters."""

    accelerator: str
    variant: str
    cost: float
    params: PerfParams
    derivation: Mapping[str, float] = field(default_factory=dict)  # inputs of the arithmetic (documentation)
    anchor: Mapping[str, float] = field(default_factory=dict)  # a published measurement to check against


@dataclass(frozen=True)
class Profile:
    """A named set of per-accelerator entries with the sources of their numbers."""

    name: str
    description: str
    accelerators: tuple[AcceleratorProfile, ...]
    sources: tuple[str, ...] = ()
    path: str = ""

    def entry(self, accelerator: str) -> AcceleratorProfile:
        """The entry for an accelerator (case-insensitive); KeyError when the profile has none."""
        for a in self.accelerators:
            if a.accelerator.upper() == accelerator.upper():
                return a
        raise KeyError(f"profile {self.name} has no {accelerator} entry "
                       f"(it has {', '.join(a.accelerator for a in self.accelerators)})")


def _bundled() -> Any:
    return resources.files("kedascaler.sim") / "profiles"


@functools.cache
def profile_names() -> tuple[str, ...]:
    """The bundled profiles, sorted."""
    return tuple(sorted(p.name[:-5] for p in _bundled().iterdir() if p.name.endswith(".yaml")))


def load_profile(name_or_path: str | Path) -> Profile:
    """A bundled profile by name, or a user's profile from a YAML file path; ProfileError when invalid."""
    text = str(name_or_path)
    if text in profile_names():
        return _load(text, (), bundled=True)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_profile_file(path)
    raise ProfileError(f"no profile {text!r}: bundled ones are {', '.join(profile_names())}, "
                       f"or give the path of a YAML file")


def load_profile_file(path: str | Path) -> Profile:
    """A user's profile from a YAML file of the bundled profiles' shape; ProfileError when invalid."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile: {exc.strerror or exc}") from exc
    return _parse(text, str(path), (), default_name=path.stem)


@functools.lru_cache(maxsize=64)
def _load(name: str, stack: tuple[str, ...], bundled: bool) -> Profile:
    resource = _bundled() / f"{name}.yaml"
    return _parse(resource.read_text(), f"profiles/{name}.yaml", stack, default_name=name, bundled=bundled)


def _parse(text: str, source: str, stack: tuple[str, ...], default_name: str, bundled: bool = False) -> Profile:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ProfileError(f"{source}: expected a mapping with 'accelerators' (and 'name', 'sources'), "
                           f"got {type(doc).__name__}")
    _no_unknown(doc, _TOP_KEYS, source, "")
    name = _text(doc.get("name", default_name), source, "name")
    if bundled and name != default_name:
        raise ProfileError(f"{source}: name: {name!r} differs from the file name {default_name!r}")
    if name in stack:
        raise ProfileError(f"{source}: include: circular ({' -> '.join(stack + (name,))})")
    entries: list[AcceleratorProfile] = []
    sources: list[str] = []
    for i, inc in enumerate(_list(doc.get("include", []), source, "include")):
        inc = _text(inc, source, f"include[{i}]")
        if inc not in profile_names():
            raise ProfileError(f"{source}: include[{i}]: no bundled profile {inc!r} "
                               f"(bundled: {', '.join(profile_names())})")
        sub = _load(inc, stack + (name,), bundled=True)
        entries += sub.accelerators
        sources += [s for s in sub.sources if s not in sources]
    accelerators = doc.get("accelerators", {})
    if not isinstance(accelerators, dict):
        raise ProfileError(f"{source}: accelerators: expected a mapping of accelerator → entry, "
                           f"got {type(accelerators).__name__}")
    for acc, body in accelerators.items():
        entries.append(_entry(str(acc), body, source))
    if not entries:
        raise ProfileError(f"{source}: accelerators: none (give at least one entry, or include a profile)")
    seen: set[tuple[str, str]] = set()
    for e in entries:
        for what, key in (("accelerator", e.accelerator.upper()), ("variant", e.variant)):
            if (what, key) in seen:
                raise ProfileError(f"{source}: accelerators: {what} {key} appears twice")
            seen.add((what, key))
    for i, s in enumerate(_list(doc.get("sources", []), source, "sources")):
        if isinstance(s, list | dict) or s is None:
            raise ProfileError(f"{source}: sources[{i}]: expected text, got {s!r}")
        if str(s) not in sources:
            sources.append(str(s))  # a bare date or number is text here
    description = _text(doc.get("description", ""), source, "description")
    return Profile(name, description, tuple(entries), tuple(sources), source)


def _entry(acc: str, body: object, source: str) -> AcceleratorProfile:
    where = f"accelerators.{acc}"
    if not isinstance(body, dict):
        raise ProfileError(f"{source}: {where}: expected a mapping of fields, got {type(body).__name__}")
    _no_unknown(body, _ENTRY_KEYS, source, where + ".")
    missing = [k for k in (*_PERF_FLOATS, *_PERF_INTS, "cost") if k not in body]
    if missing:
        raise ProfileError(f"{source}: {where}: missing {', '.join(missing)}")
    values: dict[str, Any] = {k: _number(body[k], source, f"{where}.{k}") for k in _PERF_FLOATS}
    values["kappa"] = _number(body.get("kappa", 0.0), source, f"{where}.kappa")
    for k in _PERF_INTS:
        values[k] = _count(body[k], source, f"{where}.{k}")
    values["block_size"] = _count(body.get("block_size", 16), source, f"{where}.block_size")
    if values["alpha"] + values["beta"] <= 0:
        raise ProfileError(f"{source}: {where}.alpha: alpha + beta must be > 0 (a decode step takes time)")
    if values["gamma"] + values["delta"] <= 0:
        raise ProfileError(f"{source}: {where}.gamma: gamma + delta must be > 0 (a prefill takes time)")
    if body.get("chunked_prefill", True) is not True:
        raise ProfileError(f"{source}: {where}.chunked_prefill: only true is modelled (vLLM v1's default)")
    cost = _number(body["cost"], source, f"{where}.cost")
    if cost <= 0:
        raise ProfileError(f"{source}: {where}.cost: must be > 0 (per replica-hour), got {cost:g}")
    variant = _text(body.get("variant", f"llama-{acc.lower()}"), source, f"{where}.variant")
    derivation = _numbers(body.get("derivation", {}), source, f"{where}.derivation")
    anchor = _numbers(body.get("anchor", {}), source, f"{where}.anchor")
    if "notes" in body:
        _text(body["notes"], source, f"{where}.notes")
    return AcceleratorProfile(acc, variant, cost, PerfParams(**values), derivation, anchor)


def _no_unknown(body: dict, allowed: set[str], source: str, prefix: str) -> None:
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise ProfileError(f"{source}: {prefix}{unknown[0]}: unknown field (known: {', '.join(sorted(allowed))})")


def _number(value: object, source: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (YAML reads 8e9 or 8.03e9 as text: write 8.03e+9)"
            except ValueError:
                pass
        raise ProfileError(f"{source}: {where}: expected a number, got {value!r}{hint}")
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{source}: {where}: must be a finite number ≥ 0, got {value!r}")
    return float(value)


def _count(value: object, source: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProfileError(f"{source}: {where}: expected a whole number ≥ 1, got {value!r}")
    return value


def _text(value: object, source: str, where: str) -> str:
    if not isinstance(value, str):
        raise ProfileError(f"{source}: {where}: expected text, got {value!r}")
    return value


def _list(value: object, source: str, where: str) -> list:
    if not isinstance(value, list):
        raise ProfileError(f"{source}: {where}: expected a list, got {value!r}")
    return value


def _numbers(value: object, source: str, where: str) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise ProfileError(f"{source}: {where}: expected a mapping of numbers, got {value!r}")
    return MappingProxyType({str(k): _number(v, source, f"{where}.{k}") for k, v in value.items()})


__all__ = ["DEMO_PROFILE", "SCORING_PROFILE", "AcceleratorProfile", "Profile", "ProfileError", "load_profile",
           "load_profile_file", "profile_names"]
