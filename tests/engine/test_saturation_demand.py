"""Sizing a backlog: waiting requests are sized by what they will need once admitted, not by queue ÷ 2.

The simulator showed why (docs/simulator.md): a queue that builds while new pods load (60-120 s) is not
steady load, and spreading it over N at 2 waiting requests per replica asked for 30 replicas where 5 serve.
"""

from __future__ import annotations

from kedascaler.engine import analyze, decide
from kedascaler.engine.saturation import demand_replicas
from kedascaler.engine.types import SaturationConfig
from tests.engine.builders import snapshot, variant

CONFIG = SaturationConfig()


def test_a_backlog_on_full_pods_asks_for_the_batches_it_needs():
    # Three A100 pods, each running its full batch of 32 at KV 0.4, each with 20 requests waiting.
    snap = snapshot(variant("a100", current=3, loads=[(0.4, 20)] * 3, running=32))
    sat = analyze(snap)
    # 96 running + 60 waiting = 156 requests; a full pod holds 32 running + 2 waiting within the budget: 5.
    assert sat.needed_replicas == 5
    assert sat.binding_signal == "queue_length"
    (d,) = decide(snap, {})
    assert d.desired_replicas == 5 and d.reason.action == "scale-up"


def test_waiting_requests_count_for_the_kv_cache_they_will_hold():
    # Pods that are KV-bound (few running, large contexts): each admitted request needs 0.7/7 = 0.1 of a cache.
    needed, signal = demand_replicas(kv_total=1.4, queue_total=14, running_total=14, full_batch=7, config=CONFIG)
    assert (needed, signal) == (4, "kv_cache_usage")  # (1.4 + 14 × 0.1) / 0.7 = 4


def test_without_a_running_batch_to_learn_from_the_queue_is_spread_as_before():
    assert demand_replicas(0.0, 6.0, 0.0, 0.0, CONFIG) == (3, "queue_length")


def test_going_down_still_needs_the_load_to_fit_as_it_is_spread_now():
    # 5 replicas asked for (1 ready, 4 loading) and a queue of 6.3 on the ready one: keep 4, not 3.
    snap = snapshot(variant("a100", current=5, ready=1, loads=[(0.0, 6.3)], running=1.2))
    (d,) = decide(snap, {})
    assert d.desired_replicas == 4
