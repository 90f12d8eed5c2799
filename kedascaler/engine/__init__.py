"""The pure engine: immutable snapshots in, immutable decisions out (no I/O, no clock, no globals).

`decide(snapshot, previous)` is the entry point; every Decision carries its `DecisionSteps` (the numbers that
made it) and a Reason rendered from them (`kedascaler.engine.explain`). The analyzer and the selector are public
for the simulator, reports and tests.
"""

from kedascaler.engine.activation import (
    DEFAULT_IDLE_WINDOW,
    INACTIVE,
    Activation,
    activation,
    can_scale_to_zero,
)
from kedascaler.engine.decide import (
    BOUNDS,
    HOLD,
    SCALE_DOWN,
    SCALE_UP,
    STALE,
    ModelPlan,
    decide,
    has_fresh_data,
    model_floor,
    plan_model,
)
from kedascaler.engine.saturation import (
    KV_SIGNAL,
    QUEUE_SIGNAL,
    ModelSaturation,
    analyze,
    fits_on,
    kv_budget,
    queue_budget,
    replica_saturation,
    replicas_needed,
)
from kedascaler.engine.selector import (
    clamp_replicas,
    max_total,
    min_total,
    scale_down_order,
    scale_up_order,
    select_targets,
)
from kedascaler.engine.types import (
    Action,
    Decision,
    DecisionSteps,
    ModelSnapshot,
    ParameterSource,
    PodMetrics,
    Reason,
    ReplicaSaturation,
    Route,
    SaturationConfig,
    ScalingMode,
    VariantKey,
    VariantSpec,
    VariantState,
    VariantTarget,
)

__all__ = [
    "DEFAULT_IDLE_WINDOW", "INACTIVE", "Activation", "activation", "can_scale_to_zero",
    "BOUNDS", "HOLD", "KV_SIGNAL", "QUEUE_SIGNAL", "SCALE_DOWN", "SCALE_UP", "STALE",
    "Action", "Decision", "DecisionSteps", "ModelPlan", "ModelSaturation", "ModelSnapshot", "ParameterSource",
    "PodMetrics", "Reason", "ReplicaSaturation", "Route", "SaturationConfig", "ScalingMode", "VariantKey",
    "VariantSpec", "VariantState", "VariantTarget",
    "analyze", "clamp_replicas", "decide", "fits_on", "has_fresh_data", "kv_budget", "max_total", "min_total",
    "model_floor", "plan_model", "queue_budget", "replica_saturation", "replicas_needed", "scale_down_order",
    "scale_up_order", "select_targets",
]
