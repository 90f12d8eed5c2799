"""`wva`: WVA's V1 saturation loop as upstream ran it (main b08b1c77): ±1 per model per 30 s cycle, the
whole-model hold, never a variant's last replica, the enforcer, KEDA on `wva_desired_replicas`."""

from __future__ import annotations

import numpy as np
import pytest

from kedascaler.sim.baselines import WVAPolicy
from kedascaler.sim.config import SimConfig
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import steps
from tests.sim.test_baselines import A100, H100, a100_h100, counters, obs, view

HOT = [(0.95, 30.0)] * 2  # two saturated pods
IDLE = [(0.10, 0.0)] * 2


def test_adds_one_replica_to_the_cheapest_variant_that_reports_metrics():
    out = WVAPolicy().analyse(a100_h100(0, (2, 2, HOT), h100=(1, 1, [(0.95, 30.0)])))
    assert out == {"llama-a100": 3, "llama-h100": 1}  # +1 only, however saturated; A100 is cheaper (20 < 40)


def test_each_variant_starts_warm_at_its_minimum_of_one():
    assert WVAPolicy().initial(SimConfig()) == {"llama-a100": 1, "llama-h100": 1}
    assert WVAPolicy(scale_to_zero=True).initial(SimConfig()) == {"llama-a100": 1, "llama-h100": 0}


def test_a_variant_at_zero_replicas_reports_no_metrics_and_is_not_decided():
    out = WVAPolicy().analyse(a100_h100(0, (1, 1, [(0.95, 30.0)])))
    assert out == {"llama-a100": 2}  # the H100 (0 replicas) is not among the analysed variants


@pytest.mark.parametrize(("a100", "why"), [
    ((3, 2, HOT), "a pod is starting: metrics 2 != current 3"),
    ((2, 2, HOT[:1]), "a ready pod reports no metrics yet"),
])
def test_holds_the_whole_model_while_a_variant_is_in_transition(a100, why):
    out = WVAPolicy().analyse(a100_h100(0, a100, h100=(1, 1, [(0.95, 30.0)])))
    assert out == {"llama-a100": a100[0], "llama-h100": 1}, why  # no +1 anywhere, not even on the H100


def test_holds_its_previous_desired_until_the_deployment_follows():
    wva = WVAPolicy()
    assert wva.analyse(a100_h100(0, (2, 2, HOT))) == {"llama-a100": 3}
    wva.desired.update({"llama-a100": 3})
    assert wva.analyse(a100_h100(30, (2, 2, HOT))) == {"llama-a100": 3}  # HPA has not applied 3 yet: kept, no 4


def test_removes_one_from_the_most_expensive_variant_with_more_than_one():
    wva = WVAPolicy()
    out = wva.analyse(a100_h100(0, (2, 2, IDLE), h100=(2, 2, IDLE)))
    assert out == {"llama-a100": 2, "llama-h100": 1}
    out = wva.analyse(a100_h100(0, (2, 2, IDLE), h100=(1, 1, IDLE[:1])))
    assert out == {"llama-a100": 1, "llama-h100": 1}  # the H100's last replica stays: the A100 gives one
    assert wva.analyse(a100_h100(0, (1, 1, IDLE[:1]), h100=(1, 1, IDLE[:1]))) == {"llama-a100": 1, "llama-h100": 1}


def test_scale_down_is_vetoed_unless_n_minus_one_keeps_the_spare():
    assert WVAPolicy().analyse(a100_h100(0, (2, 2, [(0.6, 0), (0.6, 0)]))) == {"llama-a100": 2}  # 1.2 KV on one
    assert WVAPolicy().analyse(a100_h100(0, (2, 2, [(0.3, 0), (0.3, 0)]))) == {"llama-a100": 1}  # 0.6 on one: safe
    assert WVAPolicy().analyse(a100_h100(0, (1, 1, [(0.0, 0)]))) == {"llama-a100": 1}  # < 2 non-saturated


def test_a_model_without_metrics_keeps_its_previous_desired():
    wva = WVAPolicy()
    wva.desired.update({"llama-a100": 2})
    assert wva.analyse(a100_h100(0, (2, 0, []))) is None
    assert wva.metric(a100_h100(0, (2, 0, []))) == {"llama-h100": 0.0, "llama-a100": 2.0}


def test_enforcer_keeps_one_on_the_cheapest_or_scales_to_zero_after_the_retention():
    warm = WVAPolicy()
    assert warm.enforce(a100_h100(0, (1, 1, IDLE[:1])), {"llama-h100": 0, "llama-a100": 0},
                        {"llama-h100": 40.0, "llama-a100": 20.0}) == {"llama-h100": 0, "llama-a100": 1}
    cold = WVAPolicy(scale_to_zero=True)
    assert cold.reads_counters
    busy = obs(0, view(H100, 0, 0, []), view(A100, 1, 1, [(0.1, 0)], reads=[counters(0, completed=5)]))
    assert cold.analyse(busy) == {"llama-a100": 1}
    for t in (300, 570):
        idle = obs(t, view(H100, 0, 0, []), view(A100, 1, 1, [(0.0, 0)], now=t, reads=[counters(t, completed=5)]))
        assert cold.analyse(idle) == {"llama-a100": 1}  # the 5 requests are still within the 10 min
    idle = obs(600, view(H100, 0, 0, []), view(A100, 1, 1, [(0.0, 0)], now=600, reads=[counters(600, completed=5)]))
    assert cold.analyse(idle) == {"llama-a100": 0}  # increase(request_success_total[10m]) == 0


def test_the_desired_count_reaches_the_deployment_through_keda_ten_seconds_later():
    wva = WVAPolicy()
    replicas = [wva.decide(a100_h100(t, (1, 1, [(0.95, 30.0)])))["llama-a100"] for t in (0, 5, 10)]
    assert replicas == [1, 1, 2]  # decided at 0, scraped and read by HPA (AverageValue, threshold 1) at 10
    assert wva.interval == 5.0 and wva.cycle == 30.0


def test_scale_from_zero_sets_every_inactive_variant_to_one():
    wva = WVAPolicy(scale_to_zero=True)
    assert wva.wake_on_gateway  # the engine polls every 100 ms: the simulator calls it as soon as requests wait
    waiting = [obs(t, view(H100, 0, 0, []), view(A100, 0, 0, []), gateway=3) for t in (0, 5, 10)]
    out = [wva.decide(o) for o in waiting]
    assert wva.desired == {"llama-h100": 1, "llama-a100": 1}
    assert wva.last_note and "scale from zero" in wva.last_note
    # KEDA, polling before WVA's new desired is scraped, reads 0 and takes the patch back; once the scrape
    # has it (10 s), KEDA activates both
    assert out[0] == out[1] == {"llama-h100": 0, "llama-a100": 0}
    assert out[2] == {"llama-h100": 1, "llama-a100": 1}


@pytest.fixture(scope="module")
def step_run():
    w = steps([(0, 3.0), (60, 45.0)], 480, seed=7)  # beyond the warm H100 + A100 (≈ 29 req/s)
    cfg = SimConfig(tail=120)
    return simulate(w, WVAPolicy(), cfg), cfg


def test_in_a_run_it_adds_one_replica_per_cycle_and_waits_for_each(step_run):
    run, cfg = step_run
    ups = [t for t, note in run.decisions if note.startswith("+1")]
    assert len(ups) >= 2
    assert all(t % 30 == 0 for t in ups)  # its 30 s loop
    assert min(np.diff(ups)) >= cfg.variants[1].startup_delay  # held while the last one starts
    total = run.series["replicas"].sum(axis=1)
    per_cycle = total[:: round(30 / cfg.sample_interval)]
    assert np.max(np.diff(per_cycle)) <= 1 and total.max() > total[0]
    assert np.all(run.series["replicas"][:, 0] == 1)  # the H100 (minReplicaCount 1): +1 goes to the cheaper A100
