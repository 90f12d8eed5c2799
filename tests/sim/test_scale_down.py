"""Scale-down as a ReplicaSet does it: which pod goes, and what a 30 s grace period costs long generations."""

from __future__ import annotations

import math

from kedascaler.sim.cluster import Cluster
from kedascaler.sim.config import SimConfig, default_variants
from kedascaler.sim.replica import SimRequest

CONFIG = SimConfig(variants=default_variants("llama-3.1-8b-h100-a100")[1:])  # the A100 variant alone


def two_pods(deletion_cost: bool) -> tuple[Cluster, list[SimRequest]]:
    """Two ready A100 pods: the older one nearly idle, the newer one running eight long generations."""
    cluster = Cluster(CONFIG, instant_start=True)
    cluster.deletion_cost = deletion_cost
    cluster.set_replicas(0, 1, 0.0)
    cluster.set_replicas(0, 2, 1.0)
    old, new = cluster.pods[0]
    reqs = [SimRequest(i, 2.0, 200, 4000) for i in range(8)]
    for req in reqs:
        cluster._submit(new, req, 2.0)
    cluster._submit(old, SimRequest(99, 2.0, 200, 20), 2.0)
    cluster.advance(2.0, 10.0)
    cluster.scrape(10.0, 60.0)
    return cluster, reqs


def test_without_deletion_cost_the_newest_pod_goes_and_its_long_generations_are_aborted():
    cluster, reqs = two_pods(deletion_cost=False)
    cluster.set_replicas(0, 1, 10.0)  # HPA: 2 → 1
    t = 10.0
    while t < 60.0:
        cluster.advance(t, t + 0.25)
        t += 0.25
    assert cluster.aborted == 8 and cluster.aborted_gpu_s > 0  # 4,000 tokens do not finish in 30 s
    assert all(r.aborts == 1 and r.restarts == 1 for r in reqs)  # retried from the start elsewhere
    assert cluster.draining == []  # the killed pod is gone once its grace period is over


def test_with_deletion_cost_the_emptiest_pod_goes_and_nothing_is_aborted():
    cluster, reqs = two_pods(deletion_cost=True)
    busy = cluster.pods[0][1]
    cluster.set_replicas(0, 1, 10.0)
    t = 10.0
    while t < 60.0:
        cluster.advance(t, t + 0.25)
        t += 0.25
    assert cluster.pods[0] == [busy]  # the loaded pod stays
    assert cluster.aborted == 0 and all(r.aborts == 0 for r in reqs)


def test_a_long_grace_period_drains_instead_of_aborting():
    cluster = Cluster(SimConfig(variants=CONFIG.variants, termination_grace_s=math.inf), instant_start=True)
    cluster.set_replicas(0, 1, 0.0)
    (pod,) = cluster.pods[0]
    for i in range(4):
        cluster._submit(pod, SimRequest(i, 1.0, 200, 1500), 1.0)
    cluster.advance(1.0, 2.0)
    cluster.set_replicas(0, 0, 2.0)
    t = 2.0
    while cluster.draining and t < 600.0:
        cluster.advance(t, t + 1.0)
        t += 1.0
    assert cluster.aborted == 0 and len(cluster.finished) == 4
