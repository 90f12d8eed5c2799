"""One answer from every scaler replica: followers serve the leader's decisions, a new leader keeps its hold.

KEDA spreads its calls over the scaler's replicas, and each replica decides from the same metrics, but the
capacity engine's hysteresis (the needs of the hold window, the arrivals behind the forecast, the start-ups
measured) is memory: a replica that restarted or started later remembers less, and would answer a lower
number than the leader for a hold window — HPA would see the count flap between replicas.

The leader already writes each VA's `status.desiredReplicas` and `status.active` (only when they change); every
replica's watch sees them. So, after each of its own cycles:
- a **follower** (another replica holds the leader Lease and renews it) serves the leader's published number
  and active flag for each variant, with its own reason and data age (its own decision keeps running in its
  state, so that it is ready to take over), and remembers what it served;
- a replica that **takes over** (it leads now, it followed within `takeover_s`) serves, for `takeover_s` after
  it last followed, at least what it last served for each variant — the hold it was serving — so a restarted
  replica becoming leader with a short memory does not drop what the old leader held; its own memory takes over
  once the window ends;
- alone, or leading for longer: its own decisions.
No clock of its own: the caller passes `now` (the cycle's clock), and whether another replica leads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from kedascaler.engine.types import Decision, VariantKey

TAKEOVER_S = 120.0  # a new leader floors its answers at what it served as a follower this long (≥ a hold window)


def published(status: Mapping[str, Any] | None) -> tuple[int, bool] | None:
    """(desiredReplicas, active) of a VA status as the leader wrote it; None when absent or not of those types
    (a status is input from the API server: never trusted to be well-formed)."""
    if not isinstance(status, Mapping):
        return None
    desired, active = status.get("desiredReplicas"), status.get("active")
    if isinstance(desired, bool) or not isinstance(desired, int) or desired < 0 or not isinstance(active, bool):
        return None
    return desired, active


def serve_leaders(decisions: Sequence[Decision], leaders: Mapping[VariantKey, tuple[int, bool]]
                  ) -> tuple[Decision, ...]:
    """This replica's decisions with the leader's number and active flag wherever the leader published one."""
    out = []
    for d in decisions:
        theirs = leaders.get(d.key)
        if theirs is not None and theirs != (d.desired_replicas, d.active):
            n, active = theirs
            reason = replace(d.reason, message=f"the leader's decision ({n}, {'active' if active else 'inactive'});"
                                               f" this replica's own: {d.desired_replicas}; {d.reason.message}")
            d = replace(d, desired_replicas=n, active=active, reason=reason)
        out.append(d)
    return tuple(out)


def floor_at(decisions: Sequence[Decision], floors: Mapping[VariantKey, int], until: float) -> tuple[Decision, ...]:
    """Each decision raised to its floor (what this replica served as a follower), within the VA's own max."""
    out = []
    for d in decisions:
        floor = floors.get(d.key)
        if floor is not None and floor > d.desired_replicas and not d.stale:
            reason = replace(d.reason, message=f"kept at {floor}, served as a follower, until t={until:g} (taking "
                                               f"over from the leader; its own: {d.desired_replicas}); "
                                               f"{d.reason.message}")
            d = replace(d, desired_replicas=floor, active=True, reason=reason)
        out.append(d)
    return tuple(out)


class Follower:
    """What a replica serves after each cycle (see the module docstring). `status_of(key)`: the VA's status as
    the watch last saw it; `other_leads()`: another replica holds the leader Lease and renews it."""

    def __init__(self, status_of: Callable[[VariantKey], Mapping[str, Any] | None],
                 other_leads: Callable[[], bool], takeover_s: float = TAKEOVER_S) -> None:
        self.status_of = status_of
        self.other_leads = other_leads
        self.takeover_s = takeover_s
        self._served: dict[VariantKey, int] = {}  # what this replica last served while following
        self._followed_at: float | None = None  # when it last followed (the cycle's clock)

    def __call__(self, decisions: Sequence[Decision], now: float) -> tuple[Decision, ...]:
        if self.other_leads():
            leaders = {d.key: p for d in decisions if (p := published(self.status_of(d.key))) is not None}
            served = serve_leaders(decisions, leaders)
            self._served.update({d.key: d.desired_replicas for d in served})
            self._followed_at = now
            return served
        if self._followed_at is not None and math.isfinite(now) and now - self._followed_at < self.takeover_s:
            return floor_at(decisions, self._served, self._followed_at + self.takeover_s)
        self._served.clear()
        return tuple(decisions)


__all__ = ["TAKEOVER_S", "Follower", "floor_at", "published", "serve_leaders"]
