"""`wva-v2`: WVA v0.9's token-based analyzer and CostAwareOptimizer (d5d58640): capacity = min(k1, k2) per
replica, required / spare against 0.85 / 0.70, ⌈remaining ÷ capacity⌉ on the best cost ÷ capacity, ⌊spare ÷
capacity⌋ off the priciest, the cheapest kept at 1 only when it is the last with replicas."""

from __future__ import annotations

import math

import numpy as np

from kedascaler.sim.baselines import WVAV2Policy
from kedascaler.sim.baselines.wva_v2_capacity import CapacityModel, derived_k2, median
from kedascaler.sim.config import SimConfig
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import steps
from tests.sim.test_baselines import A100, BIG, H100, SMALL, counters, obs, view

# avg input 200, output 100 tokens per finished request, between a read at t = 0 and one at t = 15
BEFORE, AFTER = counters(0.0), counters(15.0, prompt=2000, finished=10, output=1000, completed=10)


def _primed(policy: WVAV2Policy, *views_at_0):
    """Run one cycle at t = 0 so that every pod has a first counter read (the 5 m rates need two)."""
    policy.analyse(obs(0.0, *views_at_0))
    return policy


def test_capacity_is_min_of_kv_bound_and_compute_bound():
    model = CapacityModel()
    # SMALL: 500 blocks × 16 = 8000 tokens, k1 = 6400; k2 derived: min(2048·100/300, 32) × (200 + 50) = 8000
    assert derived_k2(SMALL, 200, 100) == 8000
    rep = model.replica(SMALL, kv=0.5, queue=0, avg_in=200, avg_out=100)
    assert (rep.capacity, rep.demand, rep.k2_source) == (6400, 4000.0, "derived")
    # a queue at the threshold: the tokens in use are the observed k2, kept in a rolling mean of 10
    rep = model.replica(BIG, kv=0.25, queue=5, avg_in=200, avg_out=100)
    assert (rep.capacity, rep.k2_source) == (8000, "observed")  # 0.25 × 32000; k1 = 25600
    assert rep.demand == 8000 + 5 * (200 + 100)  # tokens in use + queue × (avg in + avg out)
    assert model.replica(BIG, kv=0.1, queue=0, avg_in=200, avg_out=100).k2_source == "history"
    assert median([3, 1, 2, 10]) == 2 and median([5]) == 5


def test_sizes_a_jump_in_one_cycle_on_the_best_cost_per_capacity():
    pods_0 = (view(SMALL, 1, 1, [(0.5, 0)], reads=[BEFORE]), view(BIG, 1, 1, [(0.9, 200)], reads=[BEFORE]))
    policy = _primed(WVAV2Policy(), *pods_0)
    now = (view(SMALL, 1, 1, [(0.5, 0)], now=15, reads=[AFTER]), view(BIG, 1, 1, [(0.9, 200)], now=15, reads=[AFTER]))
    out = policy.analyse(obs(15.0, *now))
    # small: capacity 6400 (k1), demand 4000; big: tokens in use 28800 (observed k2) → capacity = k1 = 25600,
    # demand 28800 + 200 × 300; cost ÷ capacity: small 10 / 6400 > big 15 / 25600 — the pricier replica wins
    demand, supply = 4000 + 28800 + 200 * 300, 6400 + 25600
    required = demand / 0.85 - supply
    assert out == {"small": 1, "big": 1 + math.ceil(required / 25600)} == {"small": 1, "big": 5}


def test_anticipates_pending_pods_instead_of_adding_again():
    policy = WVAV2Policy()
    now = (view(SMALL, 1, 1, [(0.5, 0)]), view(BIG, 5, 1, [(0.9, 200)]))  # the 4 added are starting
    policy.analyse(obs(0.0, *now))
    assert policy.analyse(obs(15.0, *now)) == {"small": 1, "big": 5}  # anticipated supply covers the demand


def test_removes_floor_spare_over_capacity_from_the_priciest_first():
    policy = WVAV2Policy(min_replicas=0)  # no finished requests: k2 falls back to k1 (small 6400, big 25600)
    out = policy.analyse(obs(0.0, view(SMALL, 2, 2, [(0.1, 0)] * 2), view(BIG, 4, 4, [(0.1, 0)] * 4)))
    supply, demand = 2 * 6400 + 4 * 25600, 2 * 800 + 4 * 3200
    spare = supply - demand / 0.70
    big_off = math.floor(spare / 25600)
    assert big_off == 3
    # then the small one: ⌊(spare − 3 × 25600) ÷ 6400⌋ = 2, all of it — the big one still has a replica
    assert out == {"small": 0, "big": 1}


def test_the_cheapest_keeps_one_only_when_it_is_the_last_with_replicas():
    views = (view(SMALL, 1, 1, [(0.0, 0)]), view(BIG, 1, 1, [(0.0, 0)]))
    out = WVAV2Policy(min_replicas=0).analyse(obs(0.0, *views))
    assert out == {"small": 1, "big": 0}  # spare 32000: the big one goes, the small one (6400 left) is kept
    assert WVAV2Policy().analyse(obs(0.0, *views)) == {"small": 1, "big": 1}  # minReplicaCount 1 (the default)


def test_a_variant_without_replicas_enters_at_its_deployment_derived_capacity():
    pods_0 = (view(H100, 0, 0, []), view(A100, 1, 1, [(0.9, 100)], reads=[BEFORE]))
    policy = _primed(WVAV2Policy(), *pods_0)
    policy.analyse(obs(15.0, view(H100, 0, 0, []), view(A100, 1, 1, [(0.9, 100)], now=15, reads=[AFTER])))
    # H100 at zero: min(8192·100/300, 48) × 250 = 12000 < its k1 (20480); A100 live: 12800 (k1)
    assert policy.model.stored(H100, 200, 100) == 12000
    assert policy.model.store["llama-a100"].live and policy.model.store["llama-a100"].effective == 12800


def test_a_model_without_metrics_is_skipped():
    assert WVAV2Policy().analyse(obs(0.0, view(H100, 0, 0, []), view(A100, 1, 0, []))) is None


def test_in_a_run_it_jumps_by_more_than_one_replica_in_a_cycle():
    w = steps([(0, 2.0), (60, 45.0)], 360, seed=7)
    cfg = SimConfig(tail=120)
    run = simulate(w, WVAV2Policy(), cfg)
    total = run.series["replicas"].sum(axis=1)
    assert np.max(np.diff(total)) > 1  # one cycle, several replicas (HPA: up to max(100%/30 s, 5 pods/15 s))
    assert run.decisions and all(t % 15 == 0 for t, _ in run.decisions)
