"""decide(..., sizing=...): the hybrid step — the model-based plan is the plan, saturation the safety net.

Never fewer replicas than saturation asks; fewer than now only when both plans agree; the stale and
scale-to-zero paths keep priority; a fallback sizing keeps today's decision with its reason appended.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kedascaler.engine import decide
from kedascaler.engine.decide import SLO_CAPACITY
from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.sizing import ModelSizing, SloTargets, VariantSizing, Workload, model_demand, size_model
from tests.engine.builders import MODEL, NS, by_key, key, snapshot, variant


def desired(decisions) -> dict[str, int]:
    return {d.key.name: d.desired_replicas for d in decisions}


def sizing(rate: float = 12.0, capacity: float | None = None, **replicas: int) -> ModelSizing:
    """A hand-made model plan: `replicas` per variant, 4 req/s each unless `capacity` says otherwise."""
    per = {name: 4.0 for name in replicas}
    sized = tuple(VariantSizing(key(name), n, per[name], rate / max(1, sum(replicas.values())), 30.0, 400.0, n * 10.0)
                  for name, n in replicas.items())
    cap = sum(n * per[name] for name, n in replicas.items()) if capacity is None else capacity
    return ModelSizing(NS, MODEL, False, f"{rate:g} req/s: predicted ITL 30 ms, TTFT 400 ms", sized, rate, cap,
                       sum(v.cost for v in sized))


def test_without_sizing_nothing_changes():
    snap = snapshot(variant("a", current=2, loads=[(0.5, 8), (0.5, 8)]))
    assert decide(snap, {}) == decide(snap, {}, sizing=None)


def test_the_model_plan_scales_up_ahead_of_saturation_and_names_slo_capacity():
    # Saturation sees a calm pod (holds at 2); the arrival rate needs 5 replicas of 4 req/s: up to 5 at once.
    snap = snapshot(variant("a", current=2, loads=[(0.3, 0), (0.3, 0)]))
    (d,) = decide(snap, {}, sizing=sizing(18.0, a=5))
    assert d.desired_replicas == 5
    assert (d.reason.action, d.reason.signal) == ("scale-up", SLO_CAPACITY)
    assert d.reason.value == pytest.approx(18.0)  # λ
    assert d.reason.threshold == pytest.approx(20.0)  # the planned capacity
    assert "model plan taken" in d.reason.message
    assert "predicted ITL 30 ms, TTFT 400 ms" in d.reason.message


def test_never_fewer_than_saturation_asks():
    # Saturation needs 11 (queue 22 on 2 replicas); the model thinks 3 are enough: the guard-rail holds.
    snap = snapshot(variant("a", current=2, loads=[(0.5, 11), (0.6, 11)]))
    alone = decide(snap, {})
    (d,) = decide(snap, {}, sizing=sizing(10.0, a=3))
    assert d.desired_replicas == alone[0].desired_replicas == 11
    assert d.reason.action == "scale-up"
    assert d.reason.signal == "queue_length"  # the binding signal of the plan taken
    assert "saturation plan taken" in d.reason.message


def test_scales_down_only_when_both_agree():
    calm = [(0.1, 0)] * 6
    # Both agree: saturation would go down, the model needs 2 → the larger of the two plans.
    snap = snapshot(variant("a", current=6, loads=calm))
    sat = decide(snap, {})[0].desired_replicas
    assert sat < 6
    (d,) = decide(snap, {}, sizing=sizing(6.0, a=2))
    assert d.desired_replicas == max(sat, 2) < 6
    assert d.reason.action == "scale-down"
    # The model wants fewer, saturation may not go down (a pod without metrics): hold.
    held = snapshot(variant("a", current=6, ready=6, loads=calm[:5]))
    assert decide(held, {})[0].desired_replicas == 6
    assert decide(held, {}, sizing=sizing(2.0, a=1))[0].desired_replicas == 6


def test_the_cheaper_mix_of_the_model_plan_is_kept_within_bounds():
    snap = snapshot(variant("h100", cost=40, current=2, loads=[(0.3, 0)] * 2),
                    variant("a100", cost=20, current=0, max_replicas=3))
    out = by_key(decide(snap, {}, sizing=sizing(20.0, h100=1, a100=5)))
    assert out["a100"].desired_replicas == 3  # max_replicas
    assert out["h100"].desired_replicas == 1
    assert out["h100"].reason.action == "scale-down" and out["a100"].reason.action == "scale-up"
    assert out["a100"].reason.signal == SLO_CAPACITY


def test_no_load_is_raised_to_the_floor():
    snap = snapshot(variant("a", current=1, loads=[(0.0, 0)]))
    (d,) = decide(snap, {}, sizing=sizing(0.0, a=0))
    assert d.desired_replicas == 1


def test_a_fallback_keeps_saturation_and_says_why():
    snap = snapshot(variant("a", current=2, loads=[(0.5, 8), (0.5, 8)]))
    fallback = ModelSizing(NS, MODEL, True, "fallback to saturation: no SLO targets")
    (plain,), (d,) = decide(snap, {}), decide(snap, {}, sizing=fallback)
    assert d.desired_replicas == plain.desired_replicas
    assert (d.reason.action, d.reason.signal) == (plain.reason.action, plain.reason.signal)
    assert d.reason.message.endswith("fallback to saturation: no SLO targets")


def test_stale_data_keeps_priority_over_sizing():
    snap = snapshot(variant("a", current=4, loads=[(0.5, 0)] * 4, fresh=False))
    (d,) = decide(snap, {}, sizing=sizing(1.0, a=1))
    assert d.stale and d.desired_replicas == 4
    assert d.reason.action == "stale"


def test_an_idle_model_still_goes_to_zero():
    idle = variant("a", current=1, loads=[(0.0, 0)], at=10_000.0)
    snap = replace(snapshot(idle, taken_at=10_000.0), idle_window=300.0, gateway_queue=0.0)
    previous = {}
    # First sight starts the idle timer; a cycle after the window it is inactive, whatever the sizing says.
    first = decide(replace(snap, taken_at=1_000.0), previous, sizing=sizing(0.0, a=0))
    previous = {d.key: d for d in first}
    (d,) = decide(snap, previous, sizing=sizing(5.0, a=3))
    assert d.desired_replicas == 0 and not d.active


def test_with_a_real_plan_from_size_model():
    perf = PerfModel(7.0, 0.035, 15.4, 0.00034, max_batch_size=256)
    snap = snapshot(variant("a", current=1, loads=[(0.2, 0)]))
    demand = model_demand(snap, Workload(40.0, 500.0, 200.0), SloTargets(50.0, 1000.0), {key("a"): (perf, "")})
    plan = size_model(demand)
    assert not plan.fallback and plan.total >= 1
    (d,) = decide(snap, {}, sizing=plan)
    assert d.desired_replicas == max(1, plan.total)
    assert d.reason.signal == SLO_CAPACITY and d.reason.value == pytest.approx(40.0)
    assert "predicted ITL" in d.reason.message
