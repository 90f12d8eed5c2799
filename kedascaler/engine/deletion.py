"""Which pod of a shrinking variant should go first: the work each one holds, as one integer. Pure.

`controller.kubernetes.io/pod-deletion-cost` orders a ReplicaSet's deletions (lowest first). The leader writes it
from each pod's last metrics (`kedascaler.actuate.deletion_cost`), and the simulator models the same order from
the same function, so what the suite measures is what the actuator does.

Requests in flight rank first (each one deleted is a request aborted and retried: what a user notices), KV cache
in use breaks ties. Ranking KV first (the tokens in flight: GPU work at stake) was measured on the suite: it
wasted less GPU time on aborted work, but aborted more requests and lost SLO (docs/scaling-down.md).
"""

from __future__ import annotations

REQUEST_WEIGHT = 1000  # one request in flight outweighs any KV-cache difference
KV_WEIGHT = 100  # KV cache in use, 0–1: the tie-break between pods with as many requests


def _requests(running: float, queue: float) -> float:
    return max(0.0, running) + max(0.0, queue)


def requests_in_flight(running: float, queue: float) -> int:
    return int(round(_requests(running, queue)))


def pod_cost(running: float, queue: float, kv_cache_usage: float) -> int:
    """The work a pod holds, as an integer: requests in flight first, then KV cache in use."""
    return int(round(REQUEST_WEIGHT * _requests(running, queue) + KV_WEIGHT * min(1.0, max(0.0, kv_cache_usage))))


__all__ = ["KV_WEIGHT", "REQUEST_WEIGHT", "pod_cost", "requests_in_flight"]
