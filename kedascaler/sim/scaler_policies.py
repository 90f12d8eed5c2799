"""kedascaler in the simulator: the very cycle `serve` runs, `kedascaler.loop.cycle.step`, fed simulated inputs.

Each reconcile the policy hands `step` what the shell would have gathered: an `InventoryState` with one
`VariantAutoscaling` per simulated variant (the server's batch limit max_num_seqs, `sloClassRef` to a
`serviceclass` holding the run's SLO — what a user writes; no step times), each Deployment's replicas
(`WorkloadStatus`), one `PodSample` per ready pod (the worst metrics over the last minute, as the Prometheus query
reads them, with the pod's usage over the interval from its vLLM counters: `PodCounters.usage_since`, what
`sources.scrape.usage_between` makes of two scrapes; a pod's first read gives none), the clock, and — with scale
to zero — the simulated gateway's queue as the activation reading. The cycle state is kept between calls exactly
as `Reconciler` keeps it. The desired replicas (value, target 1) and the active flag then go through the
ScaledObject the examples ship (`SCALED_OBJECT`: KEDA's polling and activation, HPA's behaviour, with the
simulator's state machines of `kedascaler.sim.keda_hpa`), as `GetMetrics` / `IsActive` / `StreamIsActive`
answer them: the policy is `direct`, like the baselines that carry their own ScaledObject.

* `kedascaler`: the default scaling mode (`capacity`) with scale to zero (an activation source: the gateway
  queue; KEDA gets the flag pushed and a wake-up cycle runs as soon as a request waits at the gateway with no pod).
* `kedascaler-warm`: the same without an activation source (never to zero).
* `kedascaler-hybrid`, `kedascaler-model` (`--policy`): SLO sizing in hybrid or model mode, parameters learned.
* `kedascaler-hybrid-profile` (`--policy`): hybrid mode with each variant's TRUE step times given as its
  `variantProfile.perfParms`.
* `kedascaler-min1` (`--policy`): `kedascaler-warm` with minReplicas 1 on every variant, the configuration WVA's
  two-variant benchmark runs `wva` with: the same engine judged at the baselines' floor.

The SLO-sizing policies record, per model-based decision and variant, the predicted ITL/TTFT and what its pods
show over the next interval (`predictions`), and what was learned when (`learning()`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kedascaler.engine import DEFAULT_IDLE_WINDOW
from kedascaler.engine.decide import SLO_CAPACITY
from kedascaler.engine.estimation import prefill_mode_for
from kedascaler.engine.perfmodel import perf_model
from kedascaler.engine.queueing import ReplicaArrays, replica_metrics
from kedascaler.engine.sizing import CAPACITY, HYBRID, MODEL
from kedascaler.engine.types import Decision, SaturationConfig, VariantKey, VariantSpec
from kedascaler.loop.cycle import CycleConfig, CycleInputs, CycleReport, CycleState, step
from kedascaler.loop.planner import PlannerSettings, SloPlan
from kedascaler.sim.baselines import _Base
from kedascaler.sim.baselines.keda import ScaledObject, _Clock
from kedascaler.sim.config import SLO, VariantConfig
from kedascaler.sim.keda_hpa import HPABehavior, HPAPolicy, ScalingState, hpa_step, keda_activation
from kedascaler.sim.policy_api import Observation, PodCounters, Prediction, Target, VariantView
from kedascaler.sources.base import CollectResult, PodSample, PodUsage, WorkloadStatus
from kedascaler.sources.gateway import ActivationReading
from kedascaler.spec.config import SERVICECLASS_CONFIGMAP, SaturationSettings
from kedascaler.spec.inventory import InventoryState
from kedascaler.spec.serviceclass import ModelSlo, ServiceClass, ServiceClasses
from kedascaler.spec.variant import PerfParams, VariantAutoscaling, VariantProfile

NAMESPACE = "sim"
CLASS_KEY = "standard"

# The ScaledObject kedascaler ships (examples/kubernetes/scaledobjects.yaml, charts/kedascaler/values.yaml): the
# engine owns the hysteresis (it holds the largest need of a start-up), so HPA follows its number promptly —
# no scale-up window, a 30 s scale-down window, whole steps per 15 s.
HPA_BEHAVIOR = HPABehavior(
    scale_up_stabilization=0.0, scale_down_stabilization=30.0,
    scale_up_policies=(HPAPolicy("Percent", 100, 15.0), HPAPolicy("Pods", 10, 15.0)),
    scale_down_policies=(HPAPolicy("Percent", 100, 15.0),))
SCALED_OBJECT = ScaledObject(
    query="external(-push) trigger: the variant's desired replicas from kedascaler (GetMetrics)", threshold=1.0,
    polling_interval=15.0, cooldown_period=300.0, min_replicas=0, hpa=HPA_BEHAVIOR,
    source="examples/kubernetes/scaledobjects.yaml")


def service_classes(slo: SLO, model_id: str) -> ServiceClasses:
    """The `serviceclass` ConfigMap holding the run's SLO for the model, as a user would write it."""
    return ServiceClasses(SERVICECLASS_CONFIGMAP, (ServiceClass(
        CLASS_KEY, slo.name, 1, (ModelSlo(model_id, slo.itl * 1000.0, slo.ttft * 1000.0),)),))


class KedascalerPolicy(_Base):
    """kedascaler through the shared cycle step; the cycle state is the only thing kept between reconciles.

    Actuated through its own ScaledObject (`SCALED_OBJECT`, the one the examples ship), with the simulator's
    KEDA and HPA state machines (`kedascaler.sim.keda_hpa`): KEDA polls activation every pollingInterval (an
    external-push trigger is acted on at once), HPA syncs every 15 s right after the cycle."""

    name = "kedascaler"
    direct = True
    reads_counters = True
    # the leader sets controller.kubernetes.io/pod-deletion-cost from each pod's load (actuate/deletion_cost.py)
    sets_deletion_cost = True

    def __init__(self, model_id: str = "meta/llama-3.1-8b", interval: float = 15.0,
                 config: SaturationConfig | None = None, scale_to_zero: bool = True,
                 idle_window: float = DEFAULT_IDLE_WINDOW, planner: PlannerSettings | None = None,
                 classes: ServiceClasses | None = None, slo: SLO | None = None,
                 scaled_object: ScaledObject = SCALED_OBJECT, min_replicas: int = 0) -> None:
        self.scale_to_zero = scale_to_zero
        self.min_replicas = max(0, min_replicas)  # every variant's minReplicas (its own, if higher)
        self.push_activation = scale_to_zero
        self.wake_on_gateway = scale_to_zero
        if not scale_to_zero:
            self.name = f"kedascaler-min{self.min_replicas}" if self.min_replicas else "kedascaler-warm"
        self.model_id = model_id
        self.interval = interval
        self.config = config or SaturationConfig()
        self.slo = slo or SLO()
        self.classes = classes if classes is not None else service_classes(self.slo, model_id)
        self.state = CycleState(CycleConfig(idle_window if scale_to_zero else None, gateway=scale_to_zero,
                                            planner=planner or PlannerSettings(CAPACITY)))
        self.scaled_object = scaled_object
        self.scaling: dict[str, ScalingState] = {}
        self._poll = _Clock(scaled_object.polling_interval)
        self._sync = _Clock(scaled_object.hpa.sync_period)
        self.last_report: CycleReport | None = None
        self._variants: dict[str, VariantAutoscaling] = {}
        self._reads: dict[str, PodCounters] = {}  # each pod's previous counter read

    @property
    def previous(self) -> Mapping[VariantKey, Decision]:
        return self.state.previous

    def variant(self, v: VariantConfig) -> VariantAutoscaling:
        """The VariantAutoscaling a user would write for this simulated variant."""
        if v.name not in self._variants:
            spec = VariantSpec(key=VariantKey(NAMESPACE, v.name), model_id=self.model_id, target_name=v.name,
                               accelerator=v.accelerator, cost=v.cost,
                               min_replicas=max(v.min_replicas, self.min_replicas), max_replicas=v.max_replicas)
            self._variants[v.name] = self.autoscaling(spec, v)
        return self._variants[v.name]

    def autoscaling(self, spec: VariantSpec, v: VariantConfig) -> VariantAutoscaling:
        """The engine's fields, the server's batch limit (max_num_seqs) and the service class: no step times."""
        return VariantAutoscaling(spec, VariantProfile(max_batch_size=v.params.max_num_seqs),
                                  slo_class_ref=(SERVICECLASS_CONFIGMAP, CLASS_KEY))

    def usage(self, obs: Observation) -> dict[str, PodUsage]:
        """Each ready pod's usage since its previous read (the collector's counter deltas), by pod name."""
        out: dict[str, PodUsage] = {}
        reads: dict[str, PodCounters] = {}
        for v in obs.variants:
            for pod in v.counters:
                reads[pod.name] = pod
                before = self._reads.get(pod.name)
                u = pod.usage_since(before) if before is not None else None
                if u is not None:
                    # what vllm:cache_config_info says (num_gpu_blocks × block_size), as the scrape reads it
                    p = v.config.params
                    out[pod.name] = replace(u, kv_capacity_tokens=p.num_gpu_blocks * p.block_size)
        self._reads = reads
        return out

    def inputs(self, obs: Observation) -> CycleInputs:
        """What `Reconciler.run_once` would gather at this instant, from the simulated cluster."""
        variants = tuple(self.variant(v.config) for v in obs.variants)
        inventory = InventoryState(variants=variants, saturation=SaturationSettings(self.config),
                                   service_classes=self.classes)
        usage = self.usage(obs) if self.reads_counters else {}
        samples = tuple(PodSample(NAMESPACE, p.pod, self.model_id, p.kv_cache_usage, p.queue_length, p.running,
                                  p.timestamp, variant=va.key, usage=usage.get(p.pod))
                        for va, v in zip(variants, obs.variants, strict=True) for p in v.pods)
        statuses: dict[VariantKey, WorkloadStatus | None] = {
            va.key: WorkloadStatus(v.current, v.ready) for va, v in zip(variants, obs.variants, strict=True)}
        gateway = None
        if self.scale_to_zero:
            gateway = ActivationReading({(NAMESPACE, self.model_id): float(obs.gateway_queue)})
        return CycleInputs(inventory, statuses, CollectResult(samples), obs.now, gateway)

    def targets(self, obs: Observation) -> dict[str, Target]:
        """One cycle: the value KEDA reads (desired replicas, target 1) and the active flag, per variant."""
        inputs = self.inputs(obs)
        report, self.state = step(self.state, inputs)
        self.last_report = report
        self.decided(obs, report)
        changed = [d for d in report.decisions if d.desired_replicas != d.current_replicas]
        self.last_note = str(changed[0].reason) if changed else None
        return {d.key.name: Target(float(d.desired_replicas), d.active) for d in report.decisions}

    def decide(self, obs: Observation) -> dict[str, int]:
        """The cycle, then KEDA (activation: at once when pushed, else at its polling) and HPA at its sync."""
        board = self.targets(obs)
        so = self.scaled_object
        poll, sync = self._poll.due(obs.now), self._sync.due(obs.now)
        out: dict[str, int] = {}
        for view in obs.variants:
            name = view.config.name
            target = board.get(name)
            if target is None:
                continue
            keda = so.keda(view.config)
            state = self.scaling.get(name) or ScalingState(replicas=view.current)
            if target.active:
                state = replace(state, last_active=obs.now)  # IsActive / the pushed stream says so now
            if poll or (self.push_activation and target.active and state.replicas == 0):
                state = keda_activation(state, target.active, obs.now, keda)
            if sync and state.replicas > 0:
                state = hpa_step(state, target.value, obs.now, so.hpa, keda, target=so.threshold)
            self.scaling[name] = state
            out[name] = state.replicas
        return out

    def settings(self) -> dict[str, Any]:
        """The policy's configuration as data: its ScaledObject and HPA behaviour, and its scaling mode."""
        planner = self.state.config.planner
        return {"follows": "kedascaler's own cycle (loop/cycle.step), as serve runs it",
                "scaling_mode": planner.global_mode if planner is not None else "saturation",
                "scaled_object": self.scaled_object.settings(),
                "min_replicas_per_variant": self.min_replicas}

    def decided(self, obs: Observation, report: CycleReport) -> None:
        """Hook after each cycle (the SLO-sizing policies record predictions)."""


class KedascalerSloPolicy(KedascalerPolicy):
    """kedascaler with SLO sizing: a planner, a `serviceclass` holding the run's SLO, and each variant's
    batch limit (max_num_seqs); `profile=True` also gives the true step times as `variantProfile.perfParms`."""

    reads_counters = True

    def __init__(self, slo: SLO, model_id: str = "meta/llama-3.1-8b", mode: str = HYBRID, profile: bool = False,
                 **kw: Any) -> None:
        super().__init__(model_id, planner=PlannerSettings(mode), slo=slo, **kw)
        self.mode = mode
        self.profile = profile
        self.name = "kedascaler-hybrid-profile" if profile else ("kedascaler-model" if mode == MODEL
                                                                 else "kedascaler-hybrid")
        self.cycles = 0
        self.model_based_cycles = 0  # the plan was usable (not a fallback)
        self.model_taken_cycles = 0  # ... and it was the plan taken (hybrid: not overruled by saturation)
        self.first_model_based: float | None = None
        self.predictions: list[Prediction] = []
        # (t, variant, predicted itl, predicted ttft, replicas, settled, the replica model as sized)
        self._pending: list[tuple[float, str, float, float, int, bool, ReplicaArrays | None]] = []
        self._observed: dict[str, tuple[float, float, float, float, set[str], float]] = {}
        self._usable_at: dict[str, float] = {}
        self._first_fit: dict[str, tuple[float, float, float, float]] = {}
        self._true: dict[str, tuple[float, float, float, float]] = {}

    def autoscaling(self, spec: VariantSpec, v: VariantConfig) -> VariantAutoscaling:
        p = v.params
        perf = PerfParams(p.alpha, p.beta, p.gamma, p.delta) if self.profile else None
        return VariantAutoscaling(spec, VariantProfile(max_batch_size=p.max_num_seqs, perf=perf),
                                  slo_class_ref=(SERVICECLASS_CONFIGMAP, CLASS_KEY))

    @property
    def last_plan(self) -> SloPlan | None:
        report = self.last_report
        return report.plans.get((NAMESPACE, self.model_id)) if report is not None else None

    def usage(self, obs: Observation) -> dict[str, PodUsage]:
        """The collector's usage, and what each variant's pods showed since the last read (for the predictions)."""
        before = dict(self._reads)
        out = super().usage(obs)
        self._observed = {}
        for v in obs.variants:
            gap_sum = gaps = ttft_sum = first = load = 0.0
            both: set[str] = set()
            for pod in v.counters:
                prev = before.get(pod.name)
                if prev is None:
                    continue
                u = out.get(pod.name)
                if u is not None:
                    both.add(pod.name)
                    load += (u.completed_rate or 0.0) + (u.backlog_growth_rate or 0.0)
                a, b = pod.counters, prev.counters
                gap_sum += a.gap_sum - b.gap_sum
                gaps += a.gaps - b.gaps
                ttft_sum += a.ttft_sum - b.ttft_sum
                first += a.first_tokens - b.first_tokens
            self._observed[v.config.name] = (gap_sum, gaps, ttft_sum, first, both, load)
        self._resolve(obs)
        return out

    def decided(self, obs: Observation, report: CycleReport) -> None:
        self._learned(obs)
        self.cycles += 1
        plan = self.last_plan
        if plan is not None and plan.model_based:
            self.model_based_cycles += 1
            if self.first_model_based is None:
                self.first_model_based = obs.now
        if any(d.reason.signal == SLO_CAPACITY for d in report.decisions):
            self.model_taken_cycles += 1
        views = {v.config.name: v for v in obs.variants}
        for d in report.decisions:
            if d.predicted_itl_ms is None and d.predicted_ttft_ms is None:
                continue
            view = views[d.key.name]
            settled = d.desired_replicas == d.current_replicas == view.ready
            self._pending.append((obs.now, d.key.name,
                                  d.predicted_itl_ms if d.predicted_itl_ms is not None else math.nan,
                                  d.predicted_ttft_ms if d.predicted_ttft_ms is not None else math.nan,
                                  d.desired_replicas, settled, self._replica_model(view)))

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
            params = self.state.planner.parameters.get(self.variant(v.config).key)
            if params is not None and params.coefficients is not None and v.config.name not in self._usable_at:
                c = params.coefficients
                self._usable_at[v.config.name] = obs.now
                self._first_fit[v.config.name] = (c.alpha, c.beta, c.gamma, c.delta)

    def _replica_model(self, view: VariantView) -> ReplicaArrays | None:
        """The queueing model of one replica of this variant as the plan sized it (parameters, batch limit
        max_num_seqs and the KV bound for the measured lengths, prefill mode), to evaluate later at the load
        the pods actually took."""
        params = self.state.planner.parameters.get(self.variant(view.config).key)
        plan = self.last_plan
        workload = plan.workload if plan is not None else None
        if params is None or params.coefficients is None or workload is None:
            return None
        p = view.config.params
        built, _ = perf_model(params.coefficients, p.max_num_seqs, kv_capacity_tokens=p.num_gpu_blocks * p.block_size,
                              prefill_mode=prefill_mode_for(params.source))
        if built is None:
            return None
        return ReplicaArrays.from_models([built], workload.prompt_tokens, workload.output_tokens)

    def learning(self) -> dict[str, Any]:
        """Per variant: when its parameters first became usable, the fit then and the last one, the true ones;
        and the cycles: all, with a usable model plan, with the model plan taken."""
        variants = {}
        for name, true in self._true.items():
            params = self.state.planner.parameters.get(VariantKey(NAMESPACE, name))
            est = params.estimate if params is not None else None
            last = None
            if est is not None:
                last = (est.decode.intercept, est.decode.slope, est.prefill.intercept, est.prefill.slope)
            variants[name] = {
                "usable_at": self._usable_at.get(name), "first": self._first_fit.get(name), "last": last,
                "last_usable": bool(est is not None and est.usable),
                "why_not": ((est.reason if est is not None else "no observations")
                            if est is None or not est.usable else ""),
                "samples": (params.decode_samples, params.prefill_samples) if params is not None else (0, 0),
                "true": true}
        return {"variants": variants, "cycles": self.cycles, "model_based_cycles": self.model_based_cycles,
                "model_taken_cycles": self.model_taken_cycles, "first_model_based": self.first_model_based}
