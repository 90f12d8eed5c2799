"""The two oracles: `oracle`, the lower bound (instant start, no headroom), costs no more than any policy that
reaches its SLO; `oracle-startup`, the achievable floor (foresight, the start-up delay, the shared start), costs
no less than the bound and has every planned pod ready when its window begins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kedascaler.sim.config import SimConfig, default_variants
from kedascaler.sim.oracle import OraclePolicy, OracleStartupPolicy, cheapest_mix
from kedascaler.sim.policies import POLICY_NAMES, make_policies
from kedascaler.sim.report import score_runs
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import bursts, steps

H100, A100 = default_variants()


def test_cheapest_mix_with_an_even_split_never_mixes_and_sizes_by_the_slowest():
    cap = {"llama-h100": 3.0, "llama-a100": 1.0}
    assert cheapest_mix(5.5, (H100, A100), cap) == {"llama-h100": 2, "llama-a100": 0}
    assert cheapest_mix(3.5, (H100, A100), cap) == {"llama-h100": 1, "llama-a100": 1}  # 3 + 1 in proportion
    # evenly split, 1 H100 + 1 A100 carry 2 × 1 = 2 < 3.5: two H100s (80) beat four A100s (80, more replicas)
    assert cheapest_mix(3.5, (H100, A100), cap, even=True) == {"llama-h100": 2, "llama-a100": 0}
    for rate in np.arange(0.5, 12, 0.5):
        plan = cheapest_mix(float(rate), (H100, A100), cap, even=True)
        assert min(plan.values()) == 0  # a mixed fleet behind a Service is bound by its slowest pod


def _runs(workload, router: str = "epp"):
    cfg = SimConfig(tail=180, router=router)
    runs = [simulate(workload, p, cfg) for p in make_policies(POLICY_NAMES, workload, cfg)]
    caps = OraclePolicy(workload, cfg).capacity
    return workload, cfg, {r.policy: r for r in runs}, {s.policy: s for s in score_runs(runs, workload, caps)}


CASES = {
    "step-epp": (lambda: steps([(0, 3.0), (120, 20.0)], 420, seed=7), "epp"),
    "bursts-service": (lambda: bursts(2.0, 16.0, 240.0, 60.0, 480, seed=3), "service"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    make, router = CASES[request.param]
    return _runs(make(), router)


def test_the_bound_costs_no_more_than_any_policy_that_reaches_its_slo(case):
    _, _, _, scores = case
    bound = scores["oracle"]
    assert bound.slo_attainment >= 99.0
    for name, s in scores.items():
        if s.slo_attainment >= bound.slo_attainment:
            assert bound.cost <= s.cost + 1e-9, name
        a, b = s.after_warmup, bound.after_warmup
        if a.slo_attainment >= b.slo_attainment:  # within 2%: pods draining across the warm-up's edge
            assert b.cost <= 1.02 * a.cost, name


def test_the_achievable_floor_costs_no_less_than_the_bound(case):
    _, _, _, scores = case
    floor, bound = scores["oracle-startup"], scores["oracle"]
    assert floor.cost >= bound.cost
    assert floor.after_warmup.cost >= 0.98 * bound.after_warmup.cost  # draining pods at the warm-up's edge
    assert floor.cost_ratio == 1.0 and bound.cost_ratio_bound == 1.0
    assert floor.cost_ratio_bound >= 1.0 and bound.cost_ratio <= 1.0
    assert floor.after_warmup.slo_attainment >= 99.0


def test_the_bound_starts_pods_at_once_and_the_floor_pays_the_start_up(case):
    _, cfg, runs, _ = case
    bound, floor = runs["oracle"], runs["oracle-startup"]
    np.testing.assert_array_equal(bound.series["ready"], bound.series["replicas"])
    assert np.any(floor.series["ready"] < floor.series["replicas"])
    assert floor.initial_fleet == bound.initial_fleet == {"llama-h100": 0, "llama-a100": 1}
    first = floor.times < cfg.variants[0].startup_delay  # before any pod started at t = 0 can be ready
    np.testing.assert_array_equal(floor.series["ready"][first], [[0, 1]] * int(first.sum()))


def test_the_floor_has_the_bound_s_plan_ready_when_each_window_begins(case):
    w, cfg, runs, _ = case
    run = runs["oracle-startup"]
    bound = OraclePolicy(w, cfg)
    d = cfg.variants[0].startup_delay
    for k, plan in enumerate(bound.plans):
        t = k * bound.interval
        if t < d or t > run.times[-1]:
            continue
        i = int(np.searchsorted(run.times, t))
        assert run.times[i] == t
        for v, cfg_v in enumerate(cfg.variants):
            assert run.series["ready"][i, v] >= plan[cfg_v.name], (t, cfg_v.name)


def test_the_floor_keeps_a_pod_through_a_dip_shorter_than_the_start_up_delay():
    w = steps([(0, 8.0), (300, 0.0), (330, 8.0), (600, 0.0), (900, 8.0)], 1200, seed=2)
    cfg = SimConfig()
    floor, bound = OracleStartupPolicy(w, cfg), OraclePolicy(w, cfg)
    window = {k: sum(p.values()) for k, p in enumerate(bound.plans)}
    assert window[20] == window[21] == 0  # the bound empties the fleet for the 30 s dip at 300 s …
    assert sum(floor.plans[20].values()) > 0 and sum(floor.plans[21].values()) > 0  # … the floor keeps it
    long_dip = [sum(floor.plans[k].values()) for k in range(40, 60 - math.ceil(90 / 15))]
    assert min(long_dip) == 0  # a 300 s dip: down, and up again 90 s before the load returns
    assert sum(floor.plans[60 - 6].values()) > 0
