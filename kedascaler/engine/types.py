"""The engine's vocabulary: immutable snapshots in, immutable decisions out, and the steps between.

Everything here is a frozen dataclass (or a string enum) with no behaviour beyond small derived properties, so
that the collectors, the engine, the observers, the server and the simulator all speak the same words without
importing each other. The kinds are `enum.StrEnum`s: each member *is* its string (`Action.SCALE_UP ==
"scale-up"`), so records, metrics and JSON read exactly as plain strings would.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from functools import cached_property

from kedascaler.engine.capacity_types import CapacityPlan
from kedascaler.engine.frozen import quick
from kedascaler.engine.keys import VariantKey as VariantKey


class Action(enum.StrEnum):
    """What a decision does to its variant (the reason's first word)."""

    SCALE_UP = "scale-up"
    SCALE_DOWN = "scale-down"
    HOLD = "hold"
    STALE = "stale"  # no fresh metrics: the previous decision held
    BOUNDS = "bounds"  # moved only by the variant's min/max (or the model's floor)
    INACTIVE = "inactive"  # idle past the window: to zero


class ScalingMode(enum.StrEnum):
    """How a model is sized: by saturation alone, by the queueing model alone, by both (hybrid), or by capacity."""

    SATURATION = "saturation"
    MODEL = "model"
    HYBRID = "hybrid"
    CAPACITY = "capacity"  # demand in capacity units, the cheapest mix per unit of capacity, engine-owned hysteresis


class ParameterSource(enum.StrEnum):
    """Where the performance parameters sizing uses come from."""

    VARIANT_PROFILE = "variantProfile"  # the VA's spec.variantProfile.perfParms
    ESTIMATED = "estimated"  # fitted online from the pods' metrics
    NONE = ""  # none usable


class Route(enum.StrEnum):
    """Which way the engine took to a decision (see `DecisionSteps.route`)."""

    SATURATION = "saturation"  # the saturation plan (saturation mode, or a model-based sizing that fell back)
    MODEL = "model"  # model mode: the model-based plan alone, within min/max and the floor
    HYBRID = "hybrid"  # the model-based plan with saturation as the guard-rail (`DecisionSteps.taken` says whose)
    CAPACITY = "capacity"  # capacity mode: demand, capacity per variant, the cheapest mix, the hold (`capacity_plan`)
    STALE = "stale"  # no fresh metrics: the previous decision held
    INACTIVE = "inactive"  # idle past the window: every variant to zero


@quick
@dataclass(frozen=True)
class SaturationConfig:
    """Thresholds of the saturation analyzer (ConfigMap `saturation-scaling-config`, key `default`)."""

    kv_cache_threshold: float = 0.80
    queue_length_threshold: float = 5.0
    kv_spare_trigger: float = 0.10
    queue_spare_trigger: float = 3.0


@quick
@dataclass(frozen=True)
class VariantSpec:
    """One VariantAutoscaling: one Deployment serving one model on one accelerator type."""

    key: VariantKey
    model_id: str
    target_name: str  # the Deployment named by scaleTargetRef
    accelerator: str = ""
    accelerator_count: int = 1
    variant_id: str = ""
    cost: float = 10.0  # per replica
    min_replicas: int = 0
    max_replicas: int | None = None  # None: unbounded
    saturation: SaturationConfig | None = None  # per-VA override, else the model's/global config
    labels: tuple[tuple[str, str], ...] = ()


@quick
@dataclass(frozen=True)
class PodMetrics:
    """What one vLLM pod reported: fractions 0-1 and request counts, with the sample's time (seconds)."""

    pod: str
    kv_cache_usage: float
    queue_length: float  # vllm:num_requests_waiting
    running: float = 0.0  # vllm:num_requests_running
    timestamp: float = 0.0


@quick
@dataclass(frozen=True)
class VariantState:
    """A variant as seen now: its spec, the Deployment's replicas, and the metrics of its pods."""

    spec: VariantSpec
    current_replicas: int  # the Deployment's spec.replicas (what it is asked to run)
    ready_replicas: int
    pods: tuple[PodMetrics, ...] = ()
    metrics_fresh: bool = True  # False when the collector could not get this variant's metrics this cycle

    @property
    def pending_replicas(self) -> int:
        """Replicas asked for but not ready yet (loading the model): capacity on its way."""
        return max(0, self.current_replicas - self.ready_replicas)

    @cached_property
    def analysed(self) -> tuple[PodMetrics, ...]:
        """The pods that go into the analysis: finite readings, none when the metrics are not fresh. Computed once
        per variant state (activation, freshness, saturation and the decision all read it)."""
        if not self.metrics_fresh:
            return ()
        return tuple(p for p in self.pods
                     if math.isfinite(p.kv_cache_usage) and math.isfinite(p.queue_length) and math.isfinite(p.running))


@quick
@dataclass(frozen=True)
class ModelSnapshot:
    """All variants of one model in one namespace, taken at one instant (`taken_at`, seconds)."""

    namespace: str
    model_id: str
    variants: tuple[VariantState, ...]
    config: SaturationConfig = field(default_factory=SaturationConfig)
    taken_at: float = 0.0
    # Scale to zero (see kedascaler.engine.activation). With idle_window None the model is always kept warm.
    idle_window: float | None = None  # seconds without requests before the model may go to zero; None: never
    gateway_queue: float | None = None  # requests waiting at the gateway for this model; None: not known
    last_request_at: float | None = None  # newest request pushed for this model (POST /v1/activate); None: none


@quick
@dataclass(frozen=True)
class ReplicaSaturation:
    """One replica (a pod with metrics) against its variant's thresholds; spare is negative when over."""

    variant: VariantKey
    pod: str
    kv_cache_usage: float  # as analysed: negative readings count as 0
    queue_length: float
    saturated: bool
    spare_kv: float  # kvCacheThreshold − kv_cache_usage
    spare_queue: float  # queueLengthThreshold − queue_length

    @property
    def over(self) -> str:
        """Which thresholds the replica is at or over: "", "kv", "queue" or "kv+queue"."""
        return "+".join(name for name, spare in (("kv", self.spare_kv), ("queue", self.spare_queue)) if spare <= 0)


@quick
@dataclass(frozen=True)
class Activation:
    """A model's activation this cycle: the flag, why, and the idle timer to carry to the next cycle."""

    active: bool
    last_activity_at: float | None  # carry in Decision.last_activity_at; None: never seen active
    idle_for: float | None  # seconds since the last activity (None: never)
    window: float
    signal: str  # what decided: "running", "queue_length", "kv_cache_usage", "gateway_queue", "request",
    #              "idle_seconds", "recent" (within the window), "started" (timer starts), "missing_data"
    value: float | None
    waking: bool  # active while no replica of the model is asked for: coming back from zero
    message: str


@quick
@dataclass(frozen=True)
class VariantTarget:
    """One variant of the model in this cycle's plans: its price, its replicas now, and what each plan asks."""

    key: VariantKey
    accelerator: str = ""
    cost: float = 0.0
    current: int = 0
    target: int = 0  # the plan taken: the variant's desired replicas
    saturation: int | None = None  # what the saturation plan asks (None: not consulted)
    model: int | None = None  # what the model-based plan asks (None: none this cycle)

    @property
    def label(self) -> str:
        """The variant as the reasons name it: `name (accelerator)`."""
        return f"{self.key.name} ({self.accelerator})" if self.accelerator else self.key.name


@quick
@dataclass(frozen=True)
class DecisionSteps:
    """The numbers behind one decision, as the engine computed them: what observers show and reasons render.

    Model-wide numbers are the same in every decision of one model and cycle; the per-variant ones are this
    decision's variant's. A decision built outside the engine has the defaults (`route` None: no steps).
    """

    route: Route | None = None  # the way taken; None: no steps recorded
    variant: VariantKey | None = None  # the variant these steps are for
    taken: ScalingMode | None = None  # whose targets the decision carries (SATURATION or MODEL); None: neither
    # This variant's reason in numbers (a model woken from zero reads as a scale-up on the activation's signal).
    action: Action | None = None
    signal: str = ""  # e.g. "kv_cache_usage", "queue_length", "slo_capacity", "min_replicas", "metrics"
    value: float | None = None
    threshold: float | None = None
    # The saturation analysis of the model (all its variants together).
    binding_signal: str = ""  # the saturation signal that asks for the most replicas
    model_action: Action | None = None  # the saturation plan for the model: SCALE_UP, SCALE_DOWN or HOLD
    needed_replicas: int = 0  # the smallest N that carries the model's load
    floor: int = 0  # the fewest replicas the model may run this cycle
    goal: int = 0  # max(needed, floor)
    current_total: int = 0  # Σ current over the model's variants (ready + starting)
    ready_total: int = 0
    pending_total: int = 0  # Σ (current − ready)
    missing_total: int = 0  # ready pods without usable metrics
    analysed_total: int = 0  # pods whose metrics went into the analysis
    stale_variants: tuple[VariantKey, ...] = ()  # variants whose metrics are not fresh
    estimated_kv_total: float = 0.0  # Σ KV cache with missing ready pods counted at the average
    estimated_queue_total: float = 0.0
    avg_spare_kv: float | None = None  # over the model's non-saturated replicas (None: none)
    avg_spare_queue: float | None = None
    model_thresholds: SaturationConfig | None = None  # the model's config: sizes the model
    # This variant's own view: its thresholds (after its override), its analysed pods and their spare.
    thresholds: SaturationConfig | None = None
    pods: tuple[ReplicaSaturation, ...] = ()
    spare_kv: float | None = None  # mean over its non-saturated pods (None: none)
    spare_queue: float | None = None
    saturation_level: float = 0.0  # max KV-cache usage over its analysed pods (0: none)
    # The plan: every variant of the model, in snapshot order.
    plan: tuple[VariantTarget, ...] = ()
    # Model-based sizing (hybrid and model modes).
    arrival_rate: float | None = None  # req/s the model-based plan is sized for
    capacity: float | None = None  # req/s the model-based plan carries
    sizing_note: str | None = None  # the sizing's own account (None: no sizing this cycle)
    # Scale to zero, and holding on stale data.
    activation: Activation | None = None  # None: scale to zero is off for the model
    held_decided_at: float | None = None  # stale: when the held decision was made (None: no previous one)
    held_desired: int | None = None
    # Capacity mode: demand in capacity units, capacity per replica of each variant, the mix, forecast and hold.
    capacity_plan: CapacityPlan | None = None

    @property
    def saturation_total(self) -> int:
        """What the saturation plan adds up to over the model's variants."""
        return sum(v.saturation or 0 for v in self.plan)

    @property
    def model_total(self) -> int:
        """What the model-based plan adds up to over the model's variants."""
        return sum(v.model or 0 for v in self.plan)

    @property
    def total(self) -> int:
        """What the plan taken adds up to over the model's variants."""
        return sum(v.target for v in self.plan)

    @property
    def own(self) -> VariantTarget | None:
        """This variant's entry in the plan."""
        variant = self.variant
        return next((v for v in self.plan if v.key is variant or v.key == variant), None)  # `is`: no __eq__

    @property
    def woken(self) -> bool:
        """The model comes back from zero and this variant is asked to run: its reason reads as a scale-up on
        the activation's signal."""
        own = self.own
        return self.activation is not None and self.activation.waking and own is not None and own.target > 0


@quick
@dataclass(frozen=True)
class Reason:
    """Why a decision is what it is: the signal, its value and the threshold it was compared with.

    The engine renders `message` from the decision's steps (`kedascaler.engine.explain`)."""

    action: Action
    signal: str  # e.g. "avg_spare_kv", "queue_length", "min_replicas", "metrics"
    value: float | None = None
    threshold: float | None = None
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action(self.action))  # a plain "hold" becomes Action.HOLD

    def __str__(self) -> str:
        parts = [str(self.action), self.signal]
        if self.value is not None:
            parts.append(f"value={self.value:.3g}")
        if self.threshold is not None:
            parts.append(f"threshold={self.threshold:.3g}")
        text = " ".join(parts)
        return f"{text}: {self.message}" if self.message else text


@quick
@dataclass(frozen=True)
class Decision:
    """What the scaler wants for one variant, with why, and when the data behind it was taken."""

    key: VariantKey
    model_id: str
    desired_replicas: int
    active: bool
    reason: Reason
    current_replicas: int = 0
    ready_replicas: int = 0
    decided_at: float = 0.0  # the snapshot's taken_at
    data_at: float = 0.0  # time of the last fresh metrics behind this decision
    stale: bool = False  # True when held from an earlier cycle because metrics were missing
    last_activity_at: float | None = None  # scale to zero: when the model last had a request anywhere
    # SLO sizing: the latencies the queueing model predicts for this variant under the plan taken (None when
    # the decision is not model-based), to compare with what the next cycle observes.
    predicted_itl_ms: float | None = None
    predicted_ttft_ms: float | None = None
    steps: DecisionSteps = field(default_factory=DecisionSteps)  # the numbers behind it (default: none recorded)
