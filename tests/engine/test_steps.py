"""Decisions carry their steps as data: the numbers behind each decision, and the reason rendered from them.

What an operator reads (the reason text, /metrics, decision records) is the engine's own numbers, so these
tests check the steps say what the decision did, and that the reason is exactly what the steps render.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kedascaler.engine import decide, explain
from kedascaler.engine.decide import SLO_CAPACITY
from kedascaler.engine.sizing import HYBRID, MODEL, SATURATION, ModelSizing, VariantSizing, parse_mode
from kedascaler.engine.types import (
    Action,
    Decision,
    DecisionSteps,
    ParameterSource,
    Reason,
    Route,
    SaturationConfig,
    ScalingMode,
    VariantKey,
)
from tests.engine.builders import MODEL as MODEL_ID
from tests.engine.builders import NS, by_key, key, snapshot, variant

TIGHT = SaturationConfig(kv_cache_threshold=0.6, queue_length_threshold=4.0, kv_spare_trigger=0.1,
                         queue_spare_trigger=1.0)


def rendered(d: Decision) -> Reason:
    return explain.reason(d.steps, d.model_id)


def test_a_scale_up_carries_the_analysis_and_the_plan_it_took():
    snap = snapshot(
        variant("h100", cost=30, current=1, loads=[(0.5, 11)], accelerator="H100"),
        variant("a100", cost=20, current=1, loads=[(0.6, 11)], max_replicas=4, accelerator="A100"),
    )
    out = by_key(decide(snap, {}))
    steps = out["a100"].steps
    assert (steps.route, steps.taken, steps.model_action) == (Route.SATURATION, ScalingMode.SATURATION, Action.SCALE_UP)
    assert (steps.signal, steps.binding_signal) == ("queue_length", "queue_length")
    assert steps.value == pytest.approx(11) and steps.threshold == pytest.approx(2)
    assert (steps.needed_replicas, steps.floor, steps.goal) == (11, 1, 11)
    assert (steps.current_total, steps.ready_total, steps.pending_total, steps.missing_total) == (2, 2, 0, 0)
    assert steps.estimated_kv_total == pytest.approx(1.1) and steps.estimated_queue_total == pytest.approx(22)
    assert steps.model_thresholds == SaturationConfig() == steps.thresholds
    assert {t.key.name: t.target for t in steps.plan} == {"h100": 7, "a100": 4}
    assert steps.own is not None and steps.own.target == out["a100"].desired_replicas
    # Both pods are over the queue threshold: saturated, nothing spare.
    assert [p.over for p in steps.pods] == ["queue"] and steps.spare_kv is None and steps.avg_spare_kv is None
    assert steps.saturation_level == pytest.approx(0.6)
    for d in out.values():
        assert d.reason == rendered(d)


def test_a_variant_override_classifies_its_own_pods_only():
    # kv 0.65 is over the override's 0.6 but under the model's 0.8: the H100 pod is saturated, the A100 one not.
    snap = snapshot(variant("h100", current=1, loads=[(0.65, 0)], saturation=TIGHT),
                    variant("a100", current=1, loads=[(0.65, 0)]))
    out = by_key(decide(snap, {}))
    h100, a100 = out["h100"].steps, out["a100"].steps
    assert h100.thresholds == TIGHT and a100.thresholds == SaturationConfig()
    assert h100.model_thresholds == a100.model_thresholds == SaturationConfig()  # the model is sized as one
    assert [p.saturated for p in h100.pods] == [True] and h100.pods[0].over == "kv" and h100.spare_kv is None
    assert [p.saturated for p in a100.pods] == [False] and a100.spare_kv == pytest.approx(0.15)
    assert a100.avg_spare_kv == pytest.approx(0.15)  # over the model's non-saturated replicas


def test_a_missing_pod_and_a_bounds_move_are_in_the_steps():
    snap = snapshot(variant("a", current=3, ready=3, loads=[(0.1, 0), (0.1, 0)], min_replicas=0, max_replicas=2))
    (d,) = decide(snap, {})
    assert d.steps.missing_total == 1 and d.steps.analysed_total == 2
    assert (d.reason.action, d.reason.signal) == ("bounds", "max_replicas") and d.desired_replicas == 2
    assert d.reason == rendered(d)


def test_stale_steps_say_what_is_held():
    fresh = snapshot(variant("a", current=2, loads=[(0.5, 8), (0.5, 8)]))
    (first,) = decide(fresh, {})
    gone = snapshot(variant("a", current=2, fresh=False), taken_at=150.0)
    (held,) = decide(gone, {first.key: first})
    assert held.stale and held.steps.route == Route.STALE and held.steps.taken is None
    assert (held.steps.held_decided_at, held.steps.held_desired) == (first.decided_at, first.desired_replicas)
    assert held.steps.stale_variants == (key("a"),) and held.steps.pods == ()
    assert held.reason == rendered(held)


def test_inactive_and_woken_steps_carry_the_activation():
    idle = replace(snapshot(variant("a", current=1, loads=[(0.0, 0)]), taken_at=1000.0), idle_window=60.0,
                   gateway_queue=0.0)
    prev = Decision(key("a"), MODEL_ID, 1, True, Reason("hold", "x"), decided_at=900.0, last_activity_at=100.0)
    (d,) = decide(idle, {prev.key: prev})
    assert d.steps.route == Route.INACTIVE and d.desired_replicas == 0 and not d.active
    assert d.steps.activation is not None and d.steps.activation.signal == "idle_seconds"
    assert [t.target for t in d.steps.plan] == [0]
    assert d.reason == rendered(d)
    waking = replace(idle, variants=(variant("a", current=0),), gateway_queue=3.0)
    (w,) = decide(waking, {d.key: d})
    # The plan raised the model to its floor of 1 (bounds); woken from zero, the reason is the activation's.
    assert (w.steps.action, w.steps.signal, w.steps.floor) == (Action.BOUNDS, "min_replicas", 1)
    assert w.steps.woken and (w.reason.action, w.reason.signal, w.reason.value) == ("scale-up", "gateway_queue", 3.0)
    assert w.reason.message.startswith("woken from zero, active: 3 request(s) queued at the gateway; model needs 0")
    assert w.reason == rendered(w)


def sized(rate: float, capacity: float, **replicas: int) -> ModelSizing:
    parts = tuple(VariantSizing(key(name), n, 4.0, 1.0, 30.0, 400.0, n * 10.0) for name, n in replicas.items())
    return ModelSizing(NS, MODEL_ID, False, "planned", parts, rate, capacity, 10.0)


@pytest.mark.parametrize(("mode", "route"), [(HYBRID, Route.HYBRID), (MODEL, Route.MODEL)])
def test_model_based_steps_name_both_plans(mode: str, route: Route):
    snap = snapshot(variant("a", current=2, loads=[(0.3, 0), (0.3, 0)]))
    (d,) = decide(snap, {}, sizing=sized(18.0, 20.0, a=5), mode=mode)
    steps = d.steps
    assert (steps.route, steps.taken, steps.signal) == (route, ScalingMode.MODEL, SLO_CAPACITY)
    assert (steps.arrival_rate, steps.capacity, steps.sizing_note) == (18.0, 20.0, "planned")
    (target,) = steps.plan
    assert (target.target, target.model, target.saturation) == (5, 5, steps.saturation_total)
    assert d.reason == rendered(d)


def test_saturation_mode_and_a_fallback_stay_on_the_saturation_route():
    snap = snapshot(variant("a", current=2, loads=[(0.3, 0), (0.3, 0)]))
    (ignored,) = decide(snap, {}, sizing=sized(18.0, 20.0, a=5), mode=SATURATION)
    assert ignored.steps.route == Route.SATURATION and ignored.steps.sizing_note is None
    fallback = ModelSizing(NS, MODEL_ID, True, "fallback to saturation: no SLO targets")
    (d,) = decide(snap, {}, sizing=fallback)
    assert d.steps.route == Route.SATURATION and d.steps.sizing_note == fallback.reason
    assert d.reason.message.endswith(fallback.reason)


def test_kinds_are_their_strings():
    # StrEnum: comparisons with the old strings, JSON and f-strings read exactly as before.
    assert Action.SCALE_UP == "scale-up" and f"{Action.INACTIVE}" == "inactive"
    assert json.dumps({"action": Action.SCALE_DOWN, "mode": ScalingMode.HYBRID}) == (
        '{"action": "scale-down", "mode": "hybrid"}')
    assert ParameterSource.VARIANT_PROFILE == "variantProfile" and ParameterSource.NONE == ""
    assert parse_mode("Model") == (ScalingMode.MODEL, "")
    assert Reason("hold", "bench").action is Action.HOLD
    text = str(Reason("scale-up", "kv_cache_usage", 0.775, 0.7, "m"))
    assert text == "scale-up kv_cache_usage value=0.775 threshold=0.7: m"


def test_a_decision_built_outside_the_engine_has_empty_steps():
    d = Decision(VariantKey(NS, "x"), MODEL_ID, 1, True, Reason("hold", "test"))
    assert d.steps == DecisionSteps() and d.steps.route is None and d.steps.own is None
