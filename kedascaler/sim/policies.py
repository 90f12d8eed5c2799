"""Scaling policies compared by the simulator, all fed the same arrivals and the same cluster model.

* `kedascaler`: the real engine, `kedascaler.engine.decide(snapshot, previous)` called exactly as
  `kedascaler/loop/reconcile.py` calls it (snapshot of the ready pods' worst metrics over 1 min, variants sorted
  by name, the previous decisions kept between cycles, idle window and gateway queue from the activation
  source); its desired replicas (value, target 1) and active flag go through KEDA + HPA per variant, as
  `GetMetrics` / `IsActive` / `StreamIsActive` answer them. `kedascaler-warm`: the same without an
  activation source (v1: never to zero, every variant of a busy model active).
* `kedascaler-hybrid` (on request, `--policy`): the same engine in hybrid mode, `decide(..., sizing=...)`:
  each reconcile measures the model's arrival rate and mean prompt/output tokens over the last 60 s (what
  the collector reads from vLLM's counters), sizes it with the engine's queueing model (`size_model`) from
  each variant's true step-time coefficients as a user-given `variantProfile` (batch limit max_num_seqs, KV
  capacity num_gpu_blocks × block_size), under the run's SLO (Standard by default); saturation is the safety net.
* `wva`: WVA's saturation scaling (reference/wva.md): +1 replica per cycle to the cheapest variant without
  pending replicas when the average spare KV or queue falls under its trigger, −1 from the most expensive
  when the N → N−1 check passes, a previous desired that differs from current is kept; every 60 s; through
  HPA with target 1 (KEDA reading `wva_desired_replicas`).
* `keda-queue`: KEDA's Prometheus scaler on the model's total queue (waiting in all pods + the gateway),
  threshold 5 per replica, AverageValue, on the cheapest variant only (minReplicaCount 1).
* `hpa-util`: HPA on a utilisation-like metric, running / max_num_seqs averaged over the pods, target 70%,
  on the cheapest variant only (min 1).
* `static-peak`: the oracle's fleet for the peak rate, ready from the start, never changed.
* `oracle`: knows the arrival rate of the next 30 s (the busiest 15 s window in it) and starts pods instantly;
  each 15 s it runs the cheapest mix of variants whose capacity at the SLO covers that rate (+10% headroom)
  and any backlog within 30 s: the cost floor. A variant's capacity
  is measured, not assumed: the highest Poisson rate at which one simulated replica keeps 99.5% of this
  workload's requests (its own length distribution) within the SLO (`calibrated_capacity`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from kedascaler.sources.base import PodUsage
from kedascaler.spec.config import SERVICECLASS_CONFIGMAP, VariantExtras
from kedascaler.engine import DEFAULT_IDLE_WINDOW, decide
from kedascaler.engine.decide import SLO_CAPACITY
from kedascaler.engine.estimation import prefill_mode_for
from kedascaler.engine.perfmodel import perf_model
from kedascaler.engine.queueing import ReplicaArrays, replica_metrics
from kedascaler.engine.sizing import HYBRID, MODEL, SATURATION, ModelSizing, SloTargets, model_demand, size_model
from kedascaler.engine.sizing import Workload as SizingWorkload
from kedascaler.engine.types import (
    Decision,
    ModelSnapshot,
    SaturationConfig,
    VariantKey,
    VariantSpec,
    VariantState,
)
from kedascaler.sim.emulator import PerfParams
from kedascaler.sim.replica import FastReplica, SimRequest
from kedascaler.spec.serviceclass import ModelSlo, ServiceClass, ServiceClasses
from kedascaler.sim.simulator import SLO, Observation, PodCounters, Prediction, SimConfig, Target, VariantConfig
from kedascaler.loop.planner import SloPlan, SloPlanner
from kedascaler.sim.workloads import Workload

NAMESPACE = "sim"


def cheapest(variants: tuple[VariantConfig, ...]) -> VariantConfig:
    """The variant new replicas go to first: lowest cost, then name (the engine's scale-up order)."""
    return min(variants, key=lambda v: (v.cost, v.name))


def replica_capacity(params: PerfParams, prompt_mean: float, output_mean: float, slo: SLO,
                     kv_tokens: float | None = None, utilization: float = 0.75) -> float:
    """Requests/s one replica carries within the SLO, from the performance model.

    The batch n is the largest that fits max_num_seqs, 90% of the KV cache (`kv_tokens` per request in
    flight, default prompt + output/2) and keeps a decode step under the ITL target; WVA's
    μ(n) = n / (prefill(n) + (out − 1)·ITL(n)) at that n, times `utilization` for queueing headroom (TTFT).
    """
    kv = kv_tokens if kv_tokens is not None else prompt_mean + output_mean / 2
    n_kv = 0.9 * params.num_gpu_blocks * params.block_size / (kv + params.block_size / 2)
    n_itl = (slo.itl * 1000.0 - params.alpha) / params.beta if params.beta > 0 else math.inf
    n = max(1, int(min(params.max_num_seqs, n_kv, n_itl)))
    return utilization * params.max_throughput(max(1, round(prompt_mean)), max(1, round(output_mean)), n)


def slo_attainment_at(params: PerfParams, rate: float, prompt: np.ndarray, output: np.ndarray, slo: SLO,
                      duration: float = 240.0, warmup: float = 30.0, seed: int = 0) -> float:
    """Fraction of requests within the SLO on one replica under Poisson arrivals at `rate`, lengths drawn
    from (prompt, output) pairs; requests arriving in the first `warmup` seconds are not counted."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * duration)
    times = np.sort(rng.uniform(0.0, duration, n))
    pick = rng.integers(0, len(prompt), n)
    rep = FastReplica(params)
    reqs = [SimRequest(i, float(t), int(prompt[j]), int(output[j])) for i, (t, j) in enumerate(zip(times, pick))]
    for req in reqs:
        rep.advance(req.arrival)
        rep.submit(req, req.arrival)
    rep.advance(duration + 600.0)
    counted = [r for r in reqs if r.arrival >= warmup]
    if not counted:
        return 1.0
    ok = sum(1 for r in counted if r.finished == r.finished and r.ttft <= slo.ttft and r.itl <= slo.itl)
    return ok / len(counted)


def calibrated_capacity(params: PerfParams, prompt: np.ndarray, output: np.ndarray, slo: SLO,
                        attainment: float = 0.995, seeds: tuple[int, ...] = (0, 1)) -> float:
    """The highest Poisson rate (req/s) one replica serves with `attainment` of requests within the SLO (in
    every seed's run), by bisection around the analytic estimate (`replica_capacity`): a replica measured, not assumed."""
    kv = float(np.sum((prompt + output / 2) * output) / np.sum(output))
    guess = replica_capacity(params, float(prompt.mean()), float(output.mean()), slo, kv, utilization=1.0)
    lo, hi = 0.0, 1.5 * guess
    for _ in range(8):
        mid = (lo + hi) / 2
        if all(slo_attainment_at(params, mid, prompt, output, slo, seed=seed) >= attainment for seed in seeds):
            lo = mid
        else:
            hi = mid
    return max(lo, 0.05 * guess)


def workload_capacity(workload: Workload, variants: tuple[VariantConfig, ...], slo: SLO,
                      calibrate: bool = True) -> dict[str, float]:
    """Per variant: requests/s one replica carries within the SLO for this workload's lengths: measured on a
    simulated replica (`calibrated_capacity`), or from the performance model alone (`calibrate=False`)."""
    p = workload.prompt_tokens.astype(float)
    o = workload.output_tokens.astype(float)
    if len(p) == 0:
        p, o = np.array([230.0]), np.array([203.0])
    key = (hash(p.tobytes()), hash(o.tobytes()), slo, calibrate, tuple((v.name, v.params) for v in variants))
    if key not in _CAPACITY_CACHE:
        if calibrate:
            _CAPACITY_CACHE[key] = {v.name: calibrated_capacity(v.params, p, o, slo) for v in variants}
        else:
            kv = float(np.sum((p + o / 2) * o) / np.sum(o))
            _CAPACITY_CACHE[key] = {v.name: replica_capacity(v.params, float(p.mean()), float(o.mean()), slo, kv)
                                    for v in variants}
    return dict(_CAPACITY_CACHE[key])


_CAPACITY_CACHE: dict = {}


def cheapest_mix(rate: float, variants: tuple[VariantConfig, ...], capacity: Mapping[str, float]) -> dict[str, int]:
    """The replicas per variant of least cost whose capacity covers `rate` (0 for none when rate is 0)."""
    if rate <= 0:
        return {v.name: 0 for v in variants}
    ranges = [range(0, min(v.max_replicas, math.ceil(rate / capacity[v.name])) + 1) for v in variants]
    best, best_key = None, None
    for combo in itertools.product(*ranges):
        cap = sum(n * capacity[v.name] for n, v in zip(combo, variants))
        if cap < rate:
            continue
        key = (sum(n * v.cost for n, v in zip(combo, variants)), sum(combo))
        if best_key is None or key < best_key:
            best, best_key = combo, key
    if best is None:  # the limits cannot carry it: everything
        best = tuple(v.max_replicas for v in variants)
    return {v.name: n for n, v in zip(best, variants)}


def future_rates(workload: Workload, interval: float, lookahead: float = 30.0, window: float | None = None,
                 stride: float = 5.0) -> np.ndarray:
    """Per control interval k: the highest arrival rate over `window`-second windows (default: the interval)
    that start between the interval's start and `lookahead` seconds later, every `stride` seconds."""
    window = window or interval
    n = max(1, math.ceil(workload.duration / interval) + 1)
    out = np.zeros(n)
    t = workload.times
    offsets = np.arange(0.0, lookahead + 1e-9, stride)
    for k in range(n):
        starts = k * interval + offsets
        counts = np.searchsorted(t, starts + window) - np.searchsorted(t, starts)
        out[k] = counts.max() / window
    return out


class _Base:
    """Shared defaults: KEDA+HPA actuation, one warm replica of the cheapest variant at the start."""

    name = "base"
    interval = 15.0
    direct = False
    instant_start = False
    last_note: str | None = None

    def initial(self, config: SimConfig) -> dict[str, int]:
        return {cheapest(config.variants).name: 1}

    def keda_min_replicas(self, variant: VariantConfig) -> int:
        return max(0, variant.min_replicas)


class KedascalerPolicy(_Base):
    """The real engine, as the reconcile loop calls it; previous decisions are the only state kept.

    `scale_to_zero` (default): the reconcile loop has an activation source — the simulated gateway's queue —
    so each snapshot carries `idle_window` and `gateway_queue` as `Reconciler._with_activation` sets them;
    the engine then marks a variant active exactly when it asks for replicas, may take the model to zero
    after the idle window, and KEDA gets the flag pushed (`external-push`: acted on at once) and a wake-up
    cycle runs as soon as a request waits at the gateway with no pod. Without it (`kedascaler-warm`, v1,
    no activation source) the model is kept warm and every variant of a model with load reports active.
    """

    name = "kedascaler"

    def __init__(self, model_id: str = "meta/llama-3.1-8b", interval: float = 15.0,
                 config: SaturationConfig | None = None, scale_to_zero: bool = True,
                 idle_window: float = DEFAULT_IDLE_WINDOW) -> None:
        self.scale_to_zero = scale_to_zero
        self.idle_window = idle_window
        self.push_activation = scale_to_zero
        self.wake_on_gateway = scale_to_zero
        if not scale_to_zero:
            self.name = "kedascaler-warm"
        self.model_id = model_id
        self.interval = interval
        self.config = config or SaturationConfig()
        self.previous: dict[VariantKey, Decision] = {}
        self._specs: dict[str, VariantSpec] = {}

    def _spec(self, v: VariantConfig) -> VariantSpec:
        if v.name not in self._specs:
            self._specs[v.name] = VariantSpec(
                key=VariantKey(NAMESPACE, v.name), model_id=self.model_id, target_name=v.name,
                accelerator=v.accelerator, cost=v.cost, min_replicas=v.min_replicas, max_replicas=v.max_replicas)
        return self._specs[v.name]

    def decide(self, obs: Observation) -> dict[str, Target]:
        states = sorted((VariantState(self._spec(v.config), v.current, v.ready, v.pods) for v in obs.variants),
                        key=lambda s: s.spec.key.name)
        snapshot = ModelSnapshot(NAMESPACE, self.model_id, tuple(states), self.config, obs.now)
        if self.scale_to_zero:
            snapshot = replace(snapshot, idle_window=self.idle_window, gateway_queue=float(obs.gateway_queue))
        sizing, mode = self.plan(snapshot, obs)
        decisions = decide(snapshot, self.previous, sizing=sizing, mode=mode)
        self.previous = {d.key: d for d in decisions}
        self.decided(obs, decisions)
        changed = [d for d in decisions if d.desired_replicas != d.current_replicas]
        self.last_note = str(changed[0].reason) if changed else None
        return {d.key.name: Target(float(d.desired_replicas), d.active) for d in decisions}

    def plan(self, snapshot: ModelSnapshot, obs: Observation) -> tuple[ModelSizing | None, str]:
        """The model-based plan for this cycle and the mode to decide it in (None: saturation only)."""
        return None, HYBRID

    def decided(self, obs: Observation, decisions: tuple[Decision, ...]) -> None:
        """Hook after each cycle's decisions (the learned policies record predictions)."""


class KedascalerHybridPolicy(KedascalerPolicy):
    """The engine in hybrid mode with a user-given profile: the model-based plan from the last `window`
    seconds' arrivals (read from the workload up to `now`) and each variant's TRUE coefficients as its
    `variantProfile`, saturation as the guard-rail (`kedascaler-hybrid-profile`)."""

    name = "kedascaler-hybrid-profile"

    def __init__(self, workload: Workload, slo: SLO, model_id: str = "meta/llama-3.1-8b", window: float = 60.0,
                 **kw) -> None:
        super().__init__(model_id, **kw)
        self.name = "kedascaler-hybrid-profile"
        self.workload = workload
        self.window = window
        self.slo = SloTargets(itl_ms=slo.itl * 1000.0, ttft_ms=slo.ttft * 1000.0)
        self.last_sizing: ModelSizing | None = None

    def measured(self, now: float) -> SizingWorkload:
        """Arrival rate and mean prompt/output tokens of the requests that arrived in (now − window, now]."""
        t = self.workload.times
        lo, hi = np.searchsorted(t, now - self.window, side="right"), np.searchsorted(t, now, side="right")
        span = min(self.window, max(now, 1e-9))
        if hi <= lo:
            return SizingWorkload(0.0, 0.0, 0.0)
        return SizingWorkload((hi - lo) / span, float(self.workload.prompt_tokens[lo:hi].mean()),
                              float(self.workload.output_tokens[lo:hi].mean()))

    def plan(self, snapshot: ModelSnapshot, obs: Observation) -> tuple[ModelSizing | None, str]:
        source = "variantProfile"
        perf = {}
        for v in obs.variants:
            p = v.config.params
            perf[self._spec(v.config).key] = perf_model(
                p, p.max_num_seqs, kv_capacity_tokens=p.num_gpu_blocks * p.block_size,
                prefill_mode=prefill_mode_for(source))
        demand = model_demand(snapshot, self.measured(obs.now), self.slo, perf)
        self.last_sizing = size_model(demand)
        return self.last_sizing, HYBRID


class KedascalerLearnedPolicy(KedascalerPolicy):
    """The engine sized with parameters LEARNED online, as `serve` runs it with an `SloPlanner` and no
    `variantProfile`: each reconcile, every ready pod's vLLM counters are differenced with its previous read
    (`PodCounters.usage_since`: what `collect.scrape.usage_between` makes of two scrapes; a pod's first read
    gives none), the per-pod `PodUsage` goes to the real `SloPlanner.plan` (variants without perf parameters,
    `sloClassRef` to a `serviceclass` holding the run's SLO, batch limit max_num_seqs), and
    `decide(snapshot, previous, sizing=plan.sizing, mode=plan.mode)` as `reconcile.py` calls it. The workload
    (λ, lengths) is measured from the counters too. Until the fits are usable the plan falls back to
    saturation. `mode`: HYBRID (`kedascaler-hybrid`, saturation the guard-rail) or MODEL (`kedascaler-model`).

    Records, per model-based decision and variant, the predicted ITL/TTFT and the mean ITL/TTFT its pods show
    over the next interval (`predictions`), and what was learned when (`learning()`)."""

    reads_counters = True
    CLASS_KEY = "standard"

    def __init__(self, slo: SLO, model_id: str = "meta/llama-3.1-8b", mode: str = HYBRID, **kw) -> None:
        super().__init__(model_id, **kw)
        self.mode = mode
        self.name = "kedascaler-model" if mode == MODEL else "kedascaler-hybrid"
        self.planner = SloPlanner(mode)
        self.classes = ServiceClasses(SERVICECLASS_CONFIGMAP, (ServiceClass(
            self.CLASS_KEY, slo.name, 1, (ModelSlo(model_id, slo.itl * 1000.0, slo.ttft * 1000.0),)),))
        self._reads: dict[str, PodCounters] = {}  # each pod's previous read
        self.last_plan: SloPlan | None = None
        self.cycles = 0
        self.model_based_cycles = 0  # the plan was usable (not a fallback)
        self.model_taken_cycles = 0  # ... and it was the plan taken (hybrid: not overruled by saturation)
        self.first_model_based: float | None = None
        self.predictions: list[Prediction] = []
        self._pending: list[tuple[float, str, float, float, int, bool]] = []  # (t, variant, itl, ttft, replicas, settled)
        self._usable_at: dict[str, float] = {}
        self._first_fit: dict[str, tuple[float, float, float, float]] = {}
        self._true: dict[str, tuple[float, float, float, float]] = {}

    def _extras(self, v: VariantConfig) -> VariantExtras:
        return VariantExtras(max_batch_size=v.params.max_num_seqs, perf=None,
                             slo_class_ref=(SERVICECLASS_CONFIGMAP, self.CLASS_KEY), scaling_mode=None)

    def plan(self, snapshot: ModelSnapshot, obs: Observation) -> tuple[ModelSizing | None, str]:
        usage: dict[VariantKey, tuple[PodUsage, ...]] = {}
        reads: dict[str, PodCounters] = {}
        self._observed: dict[str, tuple[float, float, float, float, set[str]]] = {}
        for v in obs.variants:
            found = []
            gap_sum = gaps = ttft_sum = first = load = 0.0
            both: set[str] = set()
            for pod in v.counters:
                reads[pod.name] = pod
                before = self._reads.get(pod.name)
                if before is None:
                    continue
                u = pod.usage_since(before)
                if u is not None:
                    # what vllm:cache_config_info says (num_gpu_blocks × block_size), as the scrape reads it
                    u = replace(u, kv_capacity_tokens=v.config.params.num_gpu_blocks * v.config.params.block_size)
                    found.append(u)
                    both.add(pod.name)
                    load += (u.completed_rate or 0.0) + (u.backlog_growth_rate or 0.0)
                a, b = pod.counters, before.counters
                gap_sum += a.gap_sum - b.gap_sum
                gaps += a.gaps - b.gaps
                ttft_sum += a.ttft_sum - b.ttft_sum
                first += a.first_tokens - b.first_tokens
            usage[self._spec(v.config).key] = tuple(found)
            self._observed[v.config.name] = (gap_sum, gaps, ttft_sum, first, both, load)
        self._reads = reads
        self._resolve(obs)
        extras = {self._spec(v.config).key: self._extras(v.config) for v in obs.variants}
        self.planner.forget(set(extras))
        plans = self.planner.plan([snapshot], usage, extras, self.classes, obs.now)
        plan = plans.get((snapshot.namespace, snapshot.model_id))
        self.last_plan = plan
        self._learned(obs)
        self.cycles += 1
        if plan is None:
            return None, SATURATION
        if plan.model_based:
            self.model_based_cycles += 1
            if self.first_model_based is None:
                self.first_model_based = obs.now
        return plan.sizing, plan.mode

    def _resolve(self, obs: Observation) -> None:
        """The previous cycle's predictions against what its variants' pods showed since."""
        for t, name, itl, ttft, replicas, settled, model in self._pending:
            gap_sum, gaps, ttft_sum, first, both, load = self._observed.get(name, (0.0, 0.0, 0.0, 0.0, set(), 0.0))
            view = next((v for v in obs.variants if v.config.name == name), None)
            settled = (settled and view is not None and view.ready == replicas and len(both) == replicas)
            itl_ran = ttft_ran = math.nan
            if model is not None and both:
                m = replica_metrics(model, load / len(both))
                itl_ran, ttft_ran = float(m.itl_ms[0]), float(m.ttft_ms[0])
            self.predictions.append(Prediction(
                t, name, itl, gap_sum / gaps * 1000.0 if gaps > 0 else math.nan,
                ttft, ttft_sum / first * 1000.0 if first > 0 else math.nan, settled, itl_ran, ttft_ran))
        self._pending = []

    def _learned(self, obs: Observation) -> None:
        for v in obs.variants:
            p = v.config.params
            self._true[v.config.name] = (p.alpha, p.beta, p.gamma, p.delta)
            params = self.planner.parameters.get(self._spec(v.config).key)
            if params is not None and params.coefficients is not None and v.config.name not in self._usable_at:
                c = params.coefficients
                self._usable_at[v.config.name] = obs.now
                self._first_fit[v.config.name] = (c.alpha, c.beta, c.gamma, c.delta)

    def decided(self, obs: Observation, decisions: tuple[Decision, ...]) -> None:
        if any(d.reason.signal == SLO_CAPACITY for d in decisions):
            self.model_taken_cycles += 1
        views = {v.config.name: v for v in obs.variants}
        for d in decisions:
            if d.predicted_itl_ms is None and d.predicted_ttft_ms is None:
                continue
            view = views[d.key.name]
            settled = d.desired_replicas == d.current_replicas == view.ready
            self._pending.append((obs.now, d.key.name,
                                  d.predicted_itl_ms if d.predicted_itl_ms is not None else math.nan,
                                  d.predicted_ttft_ms if d.predicted_ttft_ms is not None else math.nan,
                                  d.desired_replicas, settled, self._replica_model(view)))

    def _replica_model(self, view) -> ReplicaArrays | None:
        """The queueing model of one replica of this variant as the plan sized it (parameters, batch limit
        max_num_seqs and the KV bound for the measured lengths, prefill mode), to evaluate later at the load
        the pods actually took."""
        params = self.planner.parameters.get(self._spec(view.config).key)
        workload = self.last_plan.workload if self.last_plan is not None else None
        if params is None or params.coefficients is None or workload is None:
            return None
        p = view.config.params
        built, _ = perf_model(params.coefficients, p.max_num_seqs, kv_capacity_tokens=p.num_gpu_blocks * p.block_size,
                              prefill_mode=prefill_mode_for(params.source))
        if built is None:
            return None
        return ReplicaArrays.from_models([built], workload.prompt_tokens, workload.output_tokens)

    def learning(self) -> dict:
        """Per variant: when its parameters first became usable, the fit then and the last one, the true ones;
        and the cycles: all, with a usable model plan, with the model plan taken."""
        variants = {}
        for name, true in self._true.items():
            key = VariantKey(NAMESPACE, name)
            params = self.planner.parameters.get(key)
            est = params.estimate if params is not None else None
            last = None
            if est is not None:
                last = (est.decode.intercept, est.decode.slope, est.prefill.intercept, est.prefill.slope)
            variants[name] = {
                "usable_at": self._usable_at.get(name), "first": self._first_fit.get(name), "last": last,
                "last_usable": bool(est is not None and est.usable),
                "why_not": (est.reason if est is not None else "no observations") if est is None or not est.usable else "",
                "samples": (params.decode_samples, params.prefill_samples) if params is not None else (0, 0),
                "true": true}
        return {"variants": variants, "cycles": self.cycles, "model_based_cycles": self.model_based_cycles,
                "model_taken_cycles": self.model_taken_cycles, "first_model_based": self.first_model_based}


class WVAPolicy(_Base):
    """WVA's saturation scaling: one replica up or down per cycle (reference/wva.md, steps 1-5)."""

    name = "wva"

    def __init__(self, interval: float = 60.0, config: SaturationConfig | None = None) -> None:
        self.interval = interval
        self.config = config or SaturationConfig()
        self.previous: dict[str, int] = {}

    def decide(self, obs: Observation) -> dict[str, Target]:
        cfg = self.config
        current = {v.config.name: v.current for v in obs.variants}
        pods = [p for v in obs.variants for p in v.pods]
        free = [p for p in pods if p.kv_cache_usage < cfg.kv_cache_threshold and p.queue_length < cfg.queue_length_threshold]
        targets = dict(current)
        preserved = any(self.previous.get(n, c) != c for n, c in current.items())
        action = "hold"
        if preserved:
            targets = {n: self.previous.get(n, c) for n, c in current.items()}
            action = "preserve"
        elif pods:
            up = not free
            if free:
                spare_kv = sum(cfg.kv_cache_threshold - p.kv_cache_usage for p in free) / len(free)
                spare_q = sum(cfg.queue_length_threshold - p.queue_length for p in free) / len(free)
                up = spare_kv < cfg.kv_spare_trigger or spare_q < cfg.queue_spare_trigger
            if up:
                for v in sorted(obs.variants, key=lambda v: (v.config.cost, v.config.name)):
                    if v.current == v.ready and v.current < v.config.max_replicas:
                        targets[v.config.name] += 1
                        action = f"+1 {v.config.name}"
                        break
            elif len(free) >= 2 and sum(current.values()) >= 2:
                kv = sum(p.kv_cache_usage for p in free) / (len(free) - 1)
                q = sum(p.queue_length for p in free) / (len(free) - 1)
                if (cfg.kv_cache_threshold - kv >= cfg.kv_spare_trigger
                        and cfg.queue_length_threshold - q >= cfg.queue_spare_trigger):
                    for v in sorted(obs.variants, key=lambda v: (v.config.cost, v.config.name), reverse=True):
                        if targets[v.config.name] > v.config.min_replicas:
                            targets[v.config.name] -= 1
                            action = f"-1 {v.config.name}"
                            break
        if sum(targets.values()) == 0:
            targets[cheapest(tuple(v.config for v in obs.variants)).name] = 1
        self.previous = dict(targets)
        self.last_note = action if action not in ("hold", "preserve") else None
        return {n: Target(float(t), t > 0) for n, t in targets.items()}


class KedaQueuePolicy(_Base):
    """KEDA's Prometheus scaler on the model's total waiting requests, `threshold` per replica."""

    name = "keda-queue"

    def __init__(self, threshold: float = 5.0, interval: float = 15.0) -> None:
        self.threshold = threshold
        self.interval = interval

    def keda_min_replicas(self, variant: VariantConfig) -> int:
        return max(1, variant.min_replicas)

    def decide(self, obs: Observation) -> dict[str, Target]:
        queue = sum(p.queue_length for v in obs.variants for p in v.latest) + obs.gateway_queue
        target = cheapest(tuple(v.config for v in obs.variants))
        return {target.name: Target(queue / self.threshold, queue > 0)}


class HPAUtilPolicy(_Base):
    """HPA on running / max_num_seqs averaged over the cheapest variant's pods, target `target`."""

    name = "hpa-util"

    def __init__(self, target: float = 0.70, interval: float = 15.0) -> None:
        self.target = target
        self.interval = interval

    def keda_min_replicas(self, variant: VariantConfig) -> int:
        return max(1, variant.min_replicas)

    def decide(self, obs: Observation) -> dict[str, Target]:
        v = min(obs.variants, key=lambda v: (v.config.cost, v.config.name))
        util = sum(min(1.0, p.running / v.config.params.max_num_seqs) for p in v.latest)
        # Pods without a sample yet count at the average (HPA skips them; the average is what it uses).
        if v.latest and v.ready > len(v.latest):
            util *= v.ready / len(v.latest)
        return {v.config.name: Target(util / self.target, True)}


class StaticPolicy(_Base):
    """A fixed fleet, ready from the start: `replicas` per variant."""

    name = "static-peak"
    direct = True
    interval = 3600.0 * 24

    def __init__(self, replicas: Mapping[str, int]) -> None:
        self.replicas = dict(replicas)

    def initial(self, config: SimConfig) -> dict[str, int]:
        return dict(self.replicas)

    def decide(self, obs: Observation) -> dict[str, int]:
        return dict(self.replicas)


class OraclePolicy(_Base):
    """Knows the next `lookahead` seconds' arrival rate; pods start instantly; cheapest mix that covers it."""

    name = "oracle"
    direct = True
    instant_start = True

    def __init__(self, workload: Workload, config: SimConfig, interval: float = 15.0, lookahead: float = 30.0,
                 headroom: float = 1.1) -> None:
        self.interval = interval
        self.lookahead = lookahead
        self.capacity = workload_capacity(workload, config.variants, config.slo)
        # headroom: a mixed fleet behind a least-loaded router does not split load in proportion to capacity
        self.rates = headroom * future_rates(workload, interval, lookahead)
        self.plans = [cheapest_mix(r, config.variants, self.capacity) for r in self.rates]

    def plan_at(self, now: float) -> dict[str, int]:
        k = min(len(self.plans) - 1, int(now // self.interval))
        return self.plans[k]

    def initial(self, config: SimConfig) -> dict[str, int]:
        return self.plan_at(0.0)

    def decide(self, obs: Observation) -> dict[str, int]:
        plan = self.plan_at(obs.now)
        waiting = sum(p.queue_length for v in obs.variants for p in v.latest) + obs.gateway_queue
        if waiting > 0:  # a backlog is load too: clear it within the lookahead, on top of the arrivals
            k = min(len(self.rates) - 1, int(obs.now // self.interval))
            configs = tuple(v.config for v in obs.variants)
            plan = cheapest_mix(self.rates[k] + waiting / self.lookahead, configs, self.capacity)
        busy = {v.config.name: sum(1 for p in v.latest if p.running + p.queue_length > 0) for v in obs.variants}
        if sum(plan.values()) == 0 and any(busy.values()):  # let the last requests finish where they are
            return {n: max(plan[n], 1 if busy[n] else 0) for n in plan}
        return plan

    def peak(self, config: SimConfig) -> dict[str, int]:
        """The oracle's mix for the highest rate it ever sees: the static fleet."""
        return cheapest_mix(float(np.max(self.rates)) if len(self.rates) else 0.0, config.variants, self.capacity)


POLICY_NAMES = ("kedascaler", "kedascaler-warm", "wva", "keda-queue", "hpa-util", "static-peak", "oracle")
# run on request (--policy), not by default: SLO sizing with learned parameters (hybrid, model) and with the
# true ones as a user-given profile
EXTRA_POLICY_NAMES: tuple[str, ...] = ("kedascaler-hybrid", "kedascaler-model", "kedascaler-hybrid-profile")


def make_policies(names: list[str] | tuple[str, ...], workload: Workload, config: SimConfig,
                  model_id: str = "meta/llama-3.1-8b") -> list:
    """Fresh policy objects (they hold per-run state) for the given names, in order."""
    out = []
    oracle = OraclePolicy(workload, config)
    for name in names:
        if name == "kedascaler":
            out.append(KedascalerPolicy(model_id))
        elif name == "kedascaler-hybrid":
            out.append(KedascalerLearnedPolicy(config.slo, model_id, mode=HYBRID))
        elif name == "kedascaler-model":
            out.append(KedascalerLearnedPolicy(config.slo, model_id, mode=MODEL))
        elif name == "kedascaler-hybrid-profile":
            out.append(KedascalerHybridPolicy(workload, config.slo, model_id))
        elif name == "kedascaler-warm":
            out.append(KedascalerPolicy(model_id, scale_to_zero=False))
        elif name == "wva":
            out.append(WVAPolicy())
        elif name == "keda-queue":
            out.append(KedaQueuePolicy())
        elif name == "hpa-util":
            out.append(HPAUtilPolicy())
        elif name == "static-peak":
            out.append(StaticPolicy(oracle.peak(config)))
        elif name == "oracle":
            out.append(OraclePolicy(workload, config))
        else:
            raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES + EXTRA_POLICY_NAMES)}")
    return out
