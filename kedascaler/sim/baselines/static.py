"""`static-peak`: the fleet the oracle picks for the workload's peak, ready from the start, never changed.

Not an upstream autoscaler: the "provision for the peak" a team runs without one. The replicas come from
`OraclePolicy.peak` (`kedascaler.sim.oracle`: the least-cost mix of variants whose measured capacity at the
SLO covers the busiest 15 s of the workload, + 10%).
"""

from __future__ import annotations

from collections.abc import Mapping

from kedascaler.sim.baselines.base import _Base
from kedascaler.sim.config import SimConfig
from kedascaler.sim.policy_api import Observation


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

    def settings(self) -> dict:
        return {"follows": "the oracle's fleet for the peak (kedascaler.sim.oracle.OraclePolicy.peak)",
                "deviations": [], "replicas": dict(self.replicas)}
