"""SLO-driven sizing in the reconcile loop: per-pod usage in, one `ModelSizing` per model out, once per cycle.

The engine's pieces are pure (`engine/sizing.py`, `engine/estimation.py`); this module holds the only state
they need between cycles — each variant's sliding window of observations, its latest fit, and each model's
last known request lengths — and joins them with the inventory (modes, `variantProfile`, `sloClassRef`,
the `serviceclass` ConfigMap). Everything it decides carries its reason: the plan, or why a model falls back
to saturation, and per variant where its parameters come from (`variantProfile`, `estimated`) or why none.

No clock and no I/O: `now` comes in; the reconcile loop and the simulator call it the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kedascaler.sources.base import PodUsage
from kedascaler.engine.estimation import (
    MIN_SAMPLES,
    PerfEstimate,
    VariantObservations,
    Window,
    choose_perf,
    estimate,
    prefill_mode_for,
)
from kedascaler.engine.perfmodel import Coefficients, PerfModel, perf_model
from kedascaler.engine.sizing import (
    HYBRID,
    SATURATION,
    ModelSizing,
    SloTargets,
    Workload,
    model_demand,
    model_mode,
    size_models,
)
from kedascaler.engine.types import ModelSnapshot, VariantKey
from kedascaler.spec.serviceclass import ServiceClasses, model_targets

DEFAULT_REFIT_INTERVAL = 60.0  # seconds between two fits of one variant
DEFAULT_MAX_FITS_PER_CYCLE = 200  # a fit costs 1-2 ms: bounds a cycle's cost at 10,000 variants
MIN_DECODE_BATCH = 0.5  # a window whose mean running batch is below this says little about the decode line


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
        return self.model_based and any(v.key == key for v in self.sizing.variants)

    @property
    def why_not(self) -> str:
        """Why this model is decided by saturation alone ("" when it is sized)."""
        if self.mode == SATURATION:
            return self.note or "scaling mode is saturation"
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


@dataclass
class _Learned:
    observations: VariantObservations = field(default_factory=VariantObservations)
    estimate: PerfEstimate | None = None
    fitted_at: float | None = None
    fitted_size: int = 0


class SloPlanner:
    """Keeps each variant's observations and fit between cycles and sizes every model once per cycle."""

    def __init__(self, global_mode: str = HYBRID, *, refit_interval: float = DEFAULT_REFIT_INTERVAL,
                 max_fits_per_cycle: int = DEFAULT_MAX_FITS_PER_CYCLE, window: Window | None = None,
                 available: Mapping[str, int] | None = None) -> None:
        """`global_mode`: for VAs without spec.scalingMode; `available`: accelerators per type (None: unlimited)."""
        self.global_mode = global_mode
        self.refit_interval = refit_interval
        self.max_fits_per_cycle = max_fits_per_cycle
        self.window = window or Window()
        self.available = available
        self._learned: dict[VariantKey, _Learned] = {}
        self._lengths: dict[tuple[str, str], tuple[float, float]] = {}
        self._kv_tokens: dict[VariantKey, int] = {}  # KV cache size per replica, from vllm:cache_config_info
        self.parameters: dict[VariantKey, VariantParameters] = {}
        self.plans: dict[tuple[str, str], SloPlan] = {}

    def observe(self, usage: Mapping[VariantKey, Sequence[PodUsage]], now: float) -> None:
        """Add this cycle's per-pod windows to each variant's observations."""
        for key, pods in usage.items():
            learned = self._learned.get(key)
            if learned is None:
                learned = self._learned[key] = _Learned(VariantObservations(self.window, self.window))
            obs = learned.observations
            bx, by = decode_pairs(pods)
            if bx:
                obs = obs.add_decode(now, bx, by)
            px, py = prefill_pairs(pods)
            if px:
                obs = obs.add_prefill(now, px, py)
            learned.observations = obs
            kv = [u.kv_capacity_tokens for u in pods if u.kv_capacity_tokens]
            if kv:
                self._kv_tokens[key] = min(kv)  # the smallest pod binds: sizing stays on the safe side

    def refit(self, now: float) -> int:
        """Fit the variants most overdue (at most `max_fits_per_cycle`); returns how many were fitted."""
        due = []
        for key, learned in self._learned.items():
            size = len(learned.observations.decode.x) + len(learned.observations.prefill.x)
            if min(len(learned.observations.decode.x), len(learned.observations.prefill.x)) < MIN_SAMPLES:
                if learned.estimate is None and size == learned.fitted_size:
                    continue
            if learned.fitted_at is not None and now - learned.fitted_at < self.refit_interval:
                continue
            if size == learned.fitted_size and learned.estimate is not None:
                continue  # nothing new since the last fit
            due.append((learned.fitted_at if learned.fitted_at is not None else -math.inf, str(key), key))
        due.sort()
        for _, _, key in due[: self.max_fits_per_cycle]:
            learned = self._learned[key]
            learned.estimate = estimate(learned.observations)
            learned.fitted_at = now
            learned.fitted_size = len(learned.observations.decode.x) + len(learned.observations.prefill.x)
        return min(len(due), self.max_fits_per_cycle)

    def forget(self, keep: set[VariantKey]) -> None:
        """Drop the state of variants that are gone."""
        for key in [k for k in self._learned if k not in keep]:
            del self._learned[key]
        for key in [k for k in self.parameters if k not in keep]:
            del self.parameters[key]
        for key in [k for k in self._kv_tokens if k not in keep]:
            del self._kv_tokens[key]

    def plan(self, snapshots: Sequence[ModelSnapshot], usage: Mapping[VariantKey, Sequence[PodUsage]],
             extras: Mapping[VariantKey, Any], classes: ServiceClasses | None, now: float
             ) -> dict[tuple[str, str], SloPlan]:
        """One cycle: observe, refit what is due, and size every model not in saturation mode (all at once:
        service-class priorities share one accelerator pool)."""
        self.observe(usage, now)
        self.refit(now)
        classes = classes or ServiceClasses()
        plans: dict[tuple[str, str], SloPlan] = {}
        demands = []
        workloads: dict[tuple[str, str], Workload | None] = {}
        for snap in snapshots:
            model = (snap.namespace, snap.model_id)
            keys = [v.spec.key for v in snap.variants]
            for key in keys:
                self.parameters[key] = self._parameters(key, extras.get(key))
            mode, note = model_mode([getattr(extras.get(k), "scaling_mode", None) for k in keys], self.global_mode)
            if mode == SATURATION:
                plans[model] = SloPlan(snap.namespace, snap.model_id, mode, None, None, note)
                continue
            pods = [u for k in keys for u in usage.get(k, ())]
            workload, why = workload_from_usage(pods, self._lengths.get(model))
            if workload is not None and workload.arrival_rate > 0 and workload.prompt_tokens > 0:
                self._lengths[model] = (workload.prompt_tokens, workload.output_tokens)
            workloads[model] = workload
            refs = [getattr(extras.get(k), "slo_class_ref", None) for k in keys]
            slo, priority, slo_note = model_targets(classes, refs, snap.model_id)
            perf: dict[VariantKey, tuple[PerfModel | None, str]] = {}
            for key in keys:
                params = self.parameters[key]
                if params.coefficients is None:
                    perf[key] = (None, params.reason)
                    continue
                extra = extras.get(key)
                built, problem = perf_model(params.coefficients, getattr(extra, "max_batch_size", None),
                                            kv_capacity_tokens=self._kv_tokens.get(key),
                                            prefill_mode=prefill_mode_for(params.source))
                perf[key] = (built, f"{params.source} parameters: {problem}" if built is None else "")
            snap, workload, held = _known_part(snap, workload, perf, usage)
            if held:
                note = "; ".join(filter(None, (note, held)))
            demand = model_demand(snap, workload, slo, perf, priority=priority,
                                  slo_reason=slo_note if slo is None else "")
            demands.append((model, mode, note, why, demand))
        sized = size_models([d for *_, d in demands], self.available) if demands else ()
        for (model, mode, note, why, demand), sizing in zip(demands, sized, strict=True):
            if sizing.fallback and workloads.get(model) is None and why:
                sizing = replace(sizing, reason=f"fallback to saturation: {why}")
            plans[model] = SloPlan(model[0], model[1], mode, sizing, workloads.get(model), note, demand.slo)
        self.plans = plans
        for gone in [m for m in self._lengths if m not in plans]:  # models that left the inventory
            del self._lengths[gone]
        return plans

    def _parameters(self, key: VariantKey, extra: Any) -> VariantParameters:
        learned = self._learned.get(key) or _Learned()
        user = getattr(extra, "perf", None)
        coefficients, source = choose_perf(user, learned.estimate,
                                           prefer_estimate=bool(getattr(extra, "prefer_estimate", False)))
        reason = "" if coefficients is not None else source
        return VariantParameters(key, learned.estimate, learned.fitted_at, len(learned.observations.decode.x),
                                 len(learned.observations.prefill.x), source if coefficients is not None else "",
                                 coefficients, reason)

