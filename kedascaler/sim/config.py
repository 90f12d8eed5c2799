"""What one simulation run is set up with: the variants (Deployments of the model), the SLO, the clocks.

`SimConfig` holds the fleet's variants, the tick, the scrape interval and metrics window of the scaler's
queries, KEDA's and HPA's settings (`kedascaler.sim.keda_hpa`), the SLO and the sampling of the time series.
`default_variants(profile)` builds the variants of a replica profile (`kedascaler.sim.profile_data`: YAML in
`kedascaler/sim/profiles/`, or a user's file): the scoring default of `kedascaler simulate` is
`SCORING_PROFILE`, the calibrated 80 GB pair (llama-h100 cost 40, llama-a100 cost 20); this module's own
default stays `demo` (the live demo's small limits), so library callers and tests keep their numbers.
`PROFILES` maps each bundled profile to its `PerfParams` fields per accelerator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

from kedascaler.sim.keda_hpa import HPABehavior, KEDAConfig
from kedascaler.sim.perf import PerfParams
from kedascaler.sim.profile_data import DEMO_PROFILE, Profile, load_profile, profile_names


class _Profiles(Mapping[str, Mapping[str, dict]]):
    """Per bundled profile and accelerator, the `PerfParams` fields (`perf_params_for(acc, **PROFILES[p][acc])`),
    read from the YAML when asked for."""

    def __getitem__(self, name: str) -> Mapping[str, dict]:
        if name not in profile_names():
            raise KeyError(name)
        return {a.accelerator: asdict(a.params) for a in load_profile(name).accelerators}

    def __iter__(self) -> Iterator[str]:
        return iter(profile_names())

    def __len__(self) -> int:
        return len(profile_names())


PROFILES: Mapping[str, Mapping[str, dict]] = _Profiles()


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


def default_variants(profile: str | Profile = DEMO_PROFILE, startup_delay: float = 90.0) -> tuple[VariantConfig, ...]:
    """One variant per accelerator entry of a profile (a bundled name, a YAML path, or a loaded `Profile`):
    its variant name, cost and parameters; `demo` and the calibrated pair give llama-h100 (40), llama-a100 (20)."""
    p = profile if isinstance(profile, Profile) else load_profile(profile)
    return tuple(VariantConfig(a.variant, a.accelerator, a.cost, a.params, startup_delay) for a in p.accelerators)


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
    # A pod removed by a scale-down gets SIGTERM: it stops taking requests (its waiting ones go back to the
    # gateway) and has `termination_grace_s` (Kubernetes' terminationGracePeriodSeconds, default 30 s) to finish
    # what it runs; whatever still runs then is killed (aborted, retried by the client from the start).
    # A preStop drain sized for the traffic's outputs is a longer grace; math.inf drains everything.
    termination_grace_s: float = 30.0
