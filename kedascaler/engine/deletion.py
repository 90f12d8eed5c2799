"""Which pod of a shrinking variant should go first: the work each one holds, as one integer. Pure.

`controller.kubernetes.io/pod-deletion-cost` orders a ReplicaSet's deletions (lowest first). The leader writes it
from each pod's last metrics (`kedascaler.actuate.deletion_cost`), and the simulator models the same order from
the same function, so what the suite measures is what the actuator does.

The work at stake is the tokens a pod holds in flight — prompts read and outputs generated so far, which is
what its KV cache in use measures — so KV cache usage ranks first and the requests in flight break ties
(pods with no KV in use, or as full). Ranking by request count first was measured worse on the suite's
long-outputs-drop scenario: it deleted pods holding few but long generations, and wasted more GPU time on
aborted work than Kubernetes' own order (docs/scaling-down.md).
"""

from __future__ import annotations

KV_WEIGHT = 100_000  # KV cache in use, 0–1: the work a pod holds
REQUEST_WEIGHT = 10  # a request in flight: the tie-break between pods holding as much KV


def requests_in_flight(running: float, queue: float) -> int:
    return int(round(max(0.0, running) + max(0.0, queue)))


def pod_cost(running: float, queue: float, kv_cache_usage: float) -> int:
    """The work a pod holds, as an integer: KV cache in use first, then requests in flight."""
    kv = min(1.0, max(0.0, kv_cache_usage))
    return int(round(KV_WEIGHT * kv)) + REQUEST_WEIGHT * requests_in_flight(running, queue)


__all__ = ["KV_WEIGHT", "REQUEST_WEIGHT", "pod_cost", "requests_in_flight"]
