"""What every simulated policy shares: the variant new replicas go to first, and the policy defaults.

`_Base` is the root of the baselines here and of kedascaler's and the oracle's policies
(`kedascaler.sim.scaler_policies`, `kedascaler.sim.oracle`): KEDA+HPA actuation by the simulator, one warm
replica of the cheapest variant at the start.
"""

from __future__ import annotations

from kedascaler.sim.config import SimConfig, VariantConfig


def cheapest(variants: tuple[VariantConfig, ...]) -> VariantConfig:
    """The variant new replicas go to first: lowest cost, then name (the engine's scale-up order)."""
    return min(variants, key=lambda v: (v.cost, v.name))


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
