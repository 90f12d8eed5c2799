"""What one simulation run is set up with: the variants (Deployments of the model), the SLO, the clocks.

`SimConfig` holds the fleet's variants, the tick, the scrape interval and metrics window of the scaler's
queries, KEDA's and HPA's settings (`kedascaler.sim.keda_hpa`), the SLO and the sampling of the time series.
`PROFILES` are the server limits of a variant per accelerator (`default_variants`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kedascaler.sim.keda_hpa import HPABehavior, KEDAConfig
from kedascaler.sim.perf import PerfParams, perf_params_for

# Server limits of the default profile: the demo's (`kedascaler.demo.SERVER_LIMITS`) — a small share of the
# GPU's memory for the KV cache and a small batch, so that a chat workload needs several replicas, as a
# larger model would. `vllm-defaults` keeps vLLM's own limits (one replica then carries tens of req/s).
PROFILES: Mapping[str, Mapping[str, dict]] = {
    "demo": {"H100": dict(max_num_seqs=48, num_gpu_blocks=1600), "A100": dict(max_num_seqs=32, num_gpu_blocks=1000)},
    "vllm-defaults": {"H100": {}, "A100": {}},
}


@dataclass(frozen=True)
class VariantConfig:
    """One variant: a Deployment of the model on one accelerator, with its cost per replica-hour."""

    name: str
    accelerator: str
    cost: float  # per replica and hour
    params: PerfParams
    startup_delay: float = 90.0
    min_replicas: int = 0
    max_replicas: int = 100


def default_variants(profile: str = "demo", startup_delay: float = 90.0) -> tuple[VariantConfig, ...]:
    """H100 (cost 40) and A100 (cost 20) serving one model, with the profile's server limits."""
    limits = PROFILES[profile]
    return (VariantConfig("llama-h100", "H100", 40.0, perf_params_for("H100", **limits["H100"]), startup_delay),
            VariantConfig("llama-a100", "A100", 20.0, perf_params_for("A100", **limits["A100"]), startup_delay))


@dataclass(frozen=True)
class SLO:
    """A service class: TTFT and mean ITL targets (seconds)."""

    name: str = "Standard"
    ttft: float = 1.0
    itl: float = 0.05


@dataclass(frozen=True)
class SimConfig:
    variants: tuple[VariantConfig, ...] = field(default_factory=default_variants)
    model: str = "meta/llama-3.1-8b"
    tick: float = 0.25
    scrape_interval: float = 15.0  # 0: the scaler reads the pods directly
    metrics_window: float = 60.0  # max_over_time window of the scaler's queries
    hpa: HPABehavior = field(default_factory=HPABehavior)
    keda: KEDAConfig = field(default_factory=KEDAConfig)
    slo: SLO = field(default_factory=SLO)
    tail: float = 600.0  # simulated time after the workload's end, for requests in flight to finish
    sample_interval: float = 5.0  # time series resolution
    # How requests reach the pods (`kedascaler.sim.cluster.ROUTERS`): "epp", llm-d's endpoint picker (queue and
    # KV-cache scorers, ties at random), or "service", a Kubernetes Service (a random ready pod per request).
    router: str = "epp"
    seed: int = 0  # the router's random choices (the Service's pick, the picker's tie-breaks)
    warmup: float = 300.0  # seconds: the scores "after warm-up" count the requests arriving after it
    # Warm replicas per variant at t = 0, the same for every policy (the oracles included; static-peak is its
    # fixed fleet by definition): ((variant name, replicas), ...); None: one replica of the cheapest variant.
    initial_fleet: tuple[tuple[str, int], ...] | None = None
