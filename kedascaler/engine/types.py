"""The engine's vocabulary: immutable snapshots in, immutable decisions out.

Everything here is a frozen dataclass with no behaviour beyond small derived properties, so that the
collectors, the engine, the server and the simulator all speak the same words without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SaturationConfig:
    """Thresholds of the saturation analyzer (ConfigMap `saturation-scaling-config`, key `default`)."""

    kv_cache_threshold: float = 0.80
    queue_length_threshold: float = 5.0
    kv_spare_trigger: float = 0.10
    queue_spare_trigger: float = 3.0


@dataclass(frozen=True)
class VariantKey:
    """Identifies one variant: the VariantAutoscaling's namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


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


@dataclass(frozen=True)
class PodMetrics:
    """What one vLLM pod reported: fractions 0-1 and request counts, with the sample's time (seconds)."""

    pod: str
    kv_cache_usage: float
    queue_length: float  # vllm:num_requests_waiting
    running: float = 0.0  # vllm:num_requests_running
    timestamp: float = 0.0


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


@dataclass(frozen=True)
class ModelSnapshot:
    """All variants of one model in one namespace, taken at one instant (`taken_at`, seconds)."""

    namespace: str
    model_id: str
    variants: tuple[VariantState, ...]
    config: SaturationConfig = field(default_factory=SaturationConfig)
    taken_at: float = 0.0
    # Scale to zero (see kedascaler.engine.activation). None everywhere: v1, the model is always kept warm.
    idle_window: float | None = None  # seconds without requests before the model may go to zero; None: never
    gateway_queue: float | None = None  # requests waiting at the gateway for this model; None: not known
    last_request_at: float | None = None  # newest request pushed for this model (POST /v1/activate); None: none


@dataclass(frozen=True)
class Reason:
    """Why a decision is what it is: the signal, its value and the threshold it was compared with."""

    action: str  # "scale-up" | "scale-down" | "hold" | "stale" | "bounds" | "inactive"
    signal: str  # e.g. "avg_spare_kv", "queue_length", "min_replicas", "metrics"
    value: float | None = None
    threshold: float | None = None
    message: str = ""

    def __str__(self) -> str:
        parts = [self.action, self.signal]
        if self.value is not None:
            parts.append(f"value={self.value:.3g}")
        if self.threshold is not None:
            parts.append(f"threshold={self.threshold:.3g}")
        text = " ".join(parts)
        return f"{text}: {self.message}" if self.message else text


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
