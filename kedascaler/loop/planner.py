"""SLO-driven sizing in the reconcile loop: per-pod usage in, one `ModelSizing` per model out, once per cycle.

The engine's pieces are pure (`engine/sizing.py`, `engine/estimation.py`); so is this module. The state they
need between cycles — each variant's sliding window of observations, its latest fit, its KV cache size, and
each model's last known request lengths — is a `PlannerState` value passed in and returned by `plan_cycle`,
joined with the inventory (modes, `variantProfile`, `sloClassRef`, the `serviceclass` ConfigMap).
Everything it decides carries its reason: the plan, or why a model falls back to saturation, and per
variant where its parameters come from (`variantProfile`, `estimated`) or why none.

No clock and no I/O: `now` comes in; the reconcile loop and the simulator call it the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from kedascaler.engine.capacity_types import CapacitySettings
from kedascaler.engine.estimation import (
    MIN_SAMPLES,
    PerfEstimate,
    VariantObservations,
    Window,
    choose_perf,
    estimate,
    prefill_mode_for,
)
from kedascaler.engine.frozen import evolve, quick
from kedascaler.engine.perfmodel import Coefficients, PerfModel, perf_model
from kedascaler.engine.sizing import (
    CAPACITY,
    SATURATION,
    ModelSizing,
    SloTargets,
    Workload,
    model_demand,
    model_mode,
    size_models,
)
from kedascaler.engine.types import ModelSnapshot, VariantKey
from kedascaler.sources.base import PodUsage
from kedascaler.sources.gateway import ModelRef
from kedascaler.spec.serviceclass import ServiceClasses, model_targets
from kedascaler.spec.variant import VariantAutoscaling

DEFAULT_REFIT_INTERVAL = 60.0  # seconds between two fits of one variant
DEFAULT_MAX_FITS_PER_CYCLE = 200  # a fit costs 1-2 ms: bounds a cycle's cost at 10,000 variants
MIN_DECODE_BATCH = 0.5  # a window whose mean running batch is below this says little about the decode line


@quick
@dataclass(frozen=True)
class VariantParameters:
    """Where one variant's performance parameters stand this cycle: the fit, what sizing uses, and why."""

    key: VariantKey
    estimate: PerfEstimate | None  # the latest fit (None: not fitted yet)
    fitted_at: float | None
    decode_samples: int  # observations in the window now
    prefill_samples: int
    source: str  # "variantProfile" | "estimated" | "" (none usable)
    coefficients: Coefficients | None  # what sizing uses (None: the model falls back to saturation)
    reason: str  # why there are none ("" when there are)


@quick
@dataclass(frozen=True)
class SloPlan:
    """One model's outcome: its mode, and the plan when it is sized (None in saturation mode)."""

    namespace: str
    model_id: str
    mode: str
    sizing: ModelSizing | None
    workload: Workload | None
    note: str = ""  # about the mode (variants that disagree)
    slo: SloTargets | None = None  # the service class's targets, when the model has one

    @property
    def model_based(self) -> bool:
        return self.sizing is not None and not self.sizing.fallback

    def sizes(self, key: VariantKey) -> bool:
        """Whether the plan names this variant (a variant without usable parameters is held, not sized)."""
        return self.sizing is not None and self.model_based and any(v.key == key for v in self.sizing.variants)

    @property
    def why_not(self) -> str:
        """Why this model is decided by saturation alone ("" when it is sized)."""
        if self.mode == SATURATION:
            return self.note or "scaling mode is saturation"
        if self.mode == CAPACITY:
            return self.note or "scaling mode is capacity"
        if self.sizing is None:
            return "not sized this cycle"
        return self.sizing.reason if self.sizing.fallback else ""


def workload_from_usage(usage: Sequence[PodUsage], last_lengths: tuple[float, float] | None = None
                        ) -> tuple[Workload | None, str]:
    """A model's arrival rate and mean prompt/output tokens from its pods' usage over the window.

    λ = Σ completed + Σ backlog growth (requests that arrived but did not finish yet), never below 0. The mean
    lengths are Σ token rate ÷ Σ completed; with nothing completed in the window, the last known lengths.
    """
    completed = [u.completed_rate for u in usage if u.completed_rate is not None]
    if not completed:
        return None, "no request counters (vllm:request_success_total) from the model's pods"
    done = math.fsum(completed)
    growth = math.fsum(u.backlog_growth_rate for u in usage if u.backlog_growth_rate is not None)
    rate = max(0.0, done + growth)
    prompt = [u.prompt_tokens_rate for u in usage if u.prompt_tokens_rate is not None]
    output = [u.output_tokens_rate for u in usage if u.output_tokens_rate is not None]
    if done > 0 and prompt and output and math.fsum(output) > 0:
        lengths = (math.fsum(prompt) / done, max(1.0, math.fsum(output) / done))
    elif last_lengths is not None:
        lengths = last_lengths
    elif rate == 0:
        return Workload(0.0, 0.0, 1.0), ""  # idle and never seen: any length carries no load
    else:
        return None, "no request finished yet: mean prompt/output tokens unknown"
    values = (rate, *lengths)
    if not all(math.isfinite(v) and v >= 0 for v in values):
        return None, f"workload statistics are not finite numbers ≥ 0: {values}"
    return Workload(rate, lengths[0], lengths[1]), ""


def decode_pairs(usage: Sequence[PodUsage]) -> tuple[list[float], list[float]]:
    """(mean running batch, mean ITL ms) per pod window: the points of the decode line."""
    xs, ys = [], []
    for u in usage:
        if u.mean_running is not None and u.itl_ms is not None and u.mean_running >= MIN_DECODE_BATCH:
            xs.append(u.mean_running)
            ys.append(u.itl_ms)
    return xs, ys


def prefill_pairs(usage: Sequence[PodUsage]) -> tuple[list[float], list[float]]:
    """(mean prompt tokens, mean prefill ms) per pod window: the points of the prefill line."""
    xs, ys = [], []
    for u in usage:
        if u.prompt_tokens_mean is not None and u.prefill_ms is not None:
            xs.append(u.prompt_tokens_mean)
            ys.append(u.prefill_ms)
    return xs, ys


def _known_part(snap: ModelSnapshot, workload: Workload | None,
                perf: Mapping[VariantKey, tuple[PerfModel | None, str]],
                usage: Mapping[VariantKey, Sequence[PodUsage]]) -> tuple[ModelSnapshot, Workload | None, str]:
    """Size a model over the variants whose parameters are usable when only some are: the others keep their
    replicas (decide holds a variant the plan does not name) and the load their pods finish now, so a variant
    that never ran — and so could never be learned — does not keep the whole model on saturation."""
    known = [v for v in snap.variants if perf.get(v.spec.key, (None, ""))[0] is not None]
    if not known or len(known) == len(snap.variants):
        return snap, workload, ""
    unknown = [v for v in snap.variants if perf.get(v.spec.key, (None, ""))[0] is None]
    carried = math.fsum(u.completed_rate for v in unknown for u in usage.get(v.spec.key, ())
                        if u.completed_rate is not None)
    if workload is not None and carried > 0:
        workload = replace(workload, arrival_rate=max(0.0, workload.arrival_rate - carried))
    names = ", ".join(f"{v.spec.key.name} ({perf.get(v.spec.key, (None, 'no parameters'))[1]})" for v in unknown)
    held = (f"sized over {', '.join(v.spec.key.name for v in known)}; kept at their replicas and "
            f"{carried:.3g} req/s they serve: {names}")
    return replace(snap, variants=tuple(known)), workload, held


@quick
@dataclass(frozen=True)
class Learned:
    """What one variant's pods taught so far: the observation windows and the latest fit."""

    observations: VariantObservations = field(default_factory=VariantObservations)
    estimate: PerfEstimate | None = None
    fitted_at: float | None = None
    fitted_size: int = 0  # observations in the windows when last fitted

    @property
    def size(self) -> int:
        return self.observations.decode.samples + self.observations.prefill.samples


@quick
@dataclass(frozen=True)
class PlannerSettings:
    """How the planner works: constant for a run. `global_mode`: for VAs without spec.scalingMode;
    `available`: accelerators per type (None: unlimited); `capacity`: capacity mode's settings."""

    global_mode: str = CAPACITY
    refit_interval: float = DEFAULT_REFIT_INTERVAL
    max_fits_per_cycle: int = DEFAULT_MAX_FITS_PER_CYCLE
    window: Window = field(default_factory=Window)
    available: Mapping[str, int] | None = None
    capacity: CapacitySettings = field(default_factory=CapacitySettings)


@quick
@dataclass(frozen=True)
class PlannerState:
    """Everything the planner keeps between cycles, as one immutable value."""

    learned: Mapping[VariantKey, Learned] = field(default_factory=dict)
    lengths: Mapping[ModelRef, tuple[float, float]] = field(default_factory=dict)  # last known (prompt, output)
    kv_tokens: Mapping[VariantKey, int] = field(default_factory=dict)  # KV cache per replica (cache_config_info)
    parameters: Mapping[VariantKey, VariantParameters] = field(default_factory=dict)  # this cycle's, per variant


def observe(state: PlannerState, settings: PlannerSettings, usage: Mapping[VariantKey, Sequence[PodUsage]],
            now: float) -> PlannerState:
    """This cycle's per-pod windows added to each variant's observations (and its KV cache size)."""
    learned = dict(state.learned)
    kv_tokens = dict(state.kv_tokens)
    for key, pods in usage.items():
        found = learned.get(key) or Learned(VariantObservations(settings.window, settings.window))
        bx, by = decode_pairs(pods)
        px, py = prefill_pairs(pods)
        learned[key] = evolve(found, observations=found.observations.add(now, bx, by, px, py))
        kv = [u.kv_capacity_tokens for u in pods if u.kv_capacity_tokens]
        if kv:
            kv_tokens[key] = min(kv)  # the smallest pod binds: sizing stays on the safe side
    return replace(state, learned=learned, kv_tokens=kv_tokens)


def refit(state: PlannerState, settings: PlannerSettings, now: float) -> tuple[PlannerState, int]:
    """Fit the variants most overdue (at most `max_fits_per_cycle`); returns the new state and how many."""
    due = []
    for key, found in state.learned.items():
        decode, prefill = found.observations.decode.samples, found.observations.prefill.samples
        size = decode + prefill  # found.size
        if min(decode, prefill) < MIN_SAMPLES:
            if found.estimate is None and size == found.fitted_size:
                continue
        if found.fitted_at is not None and now - found.fitted_at < settings.refit_interval:
            continue
        if size == found.fitted_size and found.estimate is not None:
            continue  # nothing new since the last fit
        due.append((found.fitted_at if found.fitted_at is not None else -math.inf, str(key), key))
    due.sort()
    if not due:
        return state, 0
    learned = dict(state.learned)
    for _, _, key in due[: settings.max_fits_per_cycle]:
        found = learned[key]
        learned[key] = replace(found, estimate=estimate(found.observations), fitted_at=now, fitted_size=found.size)
    return replace(state, learned=learned), min(len(due), settings.max_fits_per_cycle)


def forget(state: PlannerState, keep: set[VariantKey]) -> PlannerState:
    """The state without the variants that are gone."""
    if keep.issuperset(set(state.learned)) and keep.issuperset(set(state.parameters)) \
            and keep.issuperset(set(state.kv_tokens)):  # set against set: on the hashes they hold, none computed
        return state
    return replace(state, learned={k: v for k, v in state.learned.items() if k in keep},
                   parameters={k: v for k, v in state.parameters.items() if k in keep},
                   kv_tokens={k: v for k, v in state.kv_tokens.items() if k in keep})


def variant_parameters(state: PlannerState, key: VariantKey, variant: VariantAutoscaling | None) -> VariantParameters:
    """Where one variant's parameters stand: the user's profile or the fit, and why neither when none."""
    found = state.learned.get(key) or Learned()
    user = variant.profile.perf if variant is not None else None
    prefer = variant.profile.prefer_estimate if variant is not None else False
    coefficients, source = choose_perf(user, found.estimate, prefer_estimate=prefer)
    reason = "" if coefficients is not None else source
    return VariantParameters(key, found.estimate, found.fitted_at, found.observations.decode.samples,
                             found.observations.prefill.samples, source if coefficients is not None else "",
                             coefficients, reason)


def plan_cycle(state: PlannerState, settings: PlannerSettings, snapshots: Sequence[ModelSnapshot],
               usage: Mapping[VariantKey, Sequence[PodUsage]], variants: Mapping[VariantKey, VariantAutoscaling],
               classes: ServiceClasses | None, now: float) -> tuple[dict[ModelRef, SloPlan], PlannerState]:
    """One cycle: forget variants that left `variants`, observe, refit what is due, and size every model not in
    saturation mode (all at once: service-class priorities share one accelerator pool)."""
    state = forget(state, set(variants))
    state = observe(state, settings, usage, now)
    state, _ = refit(state, settings, now)
    classes = classes or ServiceClasses()
    plans: dict[ModelRef, SloPlan] = {}
    demands = []
    workloads: dict[ModelRef, Workload | None] = {}
    parameters = dict(state.parameters)
    lengths = dict(state.lengths)
    for snap in snapshots:
        model = (snap.namespace, snap.model_id)
        keys = [v.spec.key for v in snap.variants]
        for key in keys:
            parameters[key] = variant_parameters(state, key, variants.get(key))
        found = [variants.get(k) for k in keys]
        mode, note = model_mode([v.scaling_mode if v is not None else None for v in found], settings.global_mode)
        if mode == SATURATION:
            plans[model] = SloPlan(snap.namespace, snap.model_id, mode, None, None, note)
            continue
        if mode == CAPACITY:  # sized by kedascaler.loop.capacity: the plan carries the service class's targets
            refs = [v.slo_class_ref if v is not None else None for v in found]
            slo, _, slo_note = model_targets(classes, refs, snap.model_id)
            plans[model] = SloPlan(snap.namespace, snap.model_id, mode, None, None,
                                   "; ".join(filter(None, (note, "" if slo is not None else slo_note))), slo)
            continue
        pods = [u for k in keys for u in usage.get(k, ())]
        workload, why = workload_from_usage(pods, lengths.get(model))
        if workload is not None and workload.arrival_rate > 0 and workload.prompt_tokens > 0:
            lengths[model] = (workload.prompt_tokens, workload.output_tokens)
        workloads[model] = workload
        refs = [v.slo_class_ref if v is not None else None for v in found]
        slo, priority, slo_note = model_targets(classes, refs, snap.model_id)
        perf: dict[VariantKey, tuple[PerfModel | None, str]] = {}
        for key, variant in zip(keys, found, strict=True):
            params = parameters[key]
            if params.coefficients is None:
                perf[key] = (None, params.reason)
                continue
            built, problem = perf_model(params.coefficients,
                                        variant.profile.max_batch_size if variant is not None else None,
                                        kv_capacity_tokens=state.kv_tokens.get(key),
                                        prefill_mode=prefill_mode_for(params.source))
            perf[key] = (built, f"{params.source} parameters: {problem}" if built is None else "")
        snap, workload, held = _known_part(snap, workload, perf, usage)
        if held:
            note = "; ".join(filter(None, (note, held)))
        demand = model_demand(snap, workload, slo, perf, priority=priority,
                              slo_reason=slo_note if slo is None else "")
        demands.append((model, mode, note, why, demand))
    sized = size_models([d for *_, d in demands], settings.available) if demands else ()
    for (model, mode, note, why, demand), sizing in zip(demands, sized, strict=True):
        if sizing.fallback and workloads.get(model) is None and why:
            sizing = replace(sizing, reason=f"fallback to saturation: {why}")
        plans[model] = SloPlan(model[0], model[1], mode, sizing, workloads.get(model), note, demand.slo)
    lengths = {m: v for m, v in lengths.items() if m in plans}  # models that left the inventory
    return plans, replace(state, parameters=parameters, lengths=lengths)
