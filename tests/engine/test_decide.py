"""decide(): scenarios that read like the docs — one step to the right size, cheapest first, safe scale-down,
no cascades while pods load, and never a scale-down on missing data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kedascaler.engine import decide, model_floor, plan_model
from kedascaler.engine.types import Decision, Reason, SaturationConfig
from tests.engine.builders import by_key, key, snapshot, variant


def desired(decisions: tuple[Decision, ...]) -> dict[str, int]:
    return {d.key.name: d.desired_replicas for d in decisions}


class TestScaleUpInOneStep:
    def test_queue_builds_to_22_on_2_replicas_and_new_replicas_go_to_the_cheaper_a100_until_its_max(self):
        # Two variants, H100 cost 30 and A100 cost 20; queue 22 over 2 replicas. With queue threshold 5 and
        # spare trigger 3 a replica may hold 2 queued requests, so the model needs 11: +3 fills A100 to its
        # max of 4, the other 6 go to H100. WVA would have added one replica per cycle.
        snap = snapshot(
            variant("h100", cost=30, current=1, loads=[(0.5, 11)], accelerator="H100"),
            variant("a100", cost=20, current=1, loads=[(0.6, 11)], max_replicas=4, accelerator="A100"),
        )
        out = decide(snap, {})
        assert desired(out) == {"h100": 7, "a100": 4}
        a100 = by_key(out)["a100"]
        assert a100.reason.action == "scale-up"
        assert a100.reason.signal == "queue_length"
        assert a100.reason.value == pytest.approx(11)  # 22 queued over the 2 replicas running
        assert a100.reason.threshold == pytest.approx(2)  # queueLengthThreshold − queueSpareTrigger
        assert a100.reason.message.startswith(
            "model needs 11 replicas for kv 1.10 and queue 22 (spare triggers kv 0.1, queue 3); runs 2")
        assert "+3 on a100 (A100), cost 20, cheapest" in a100.reason.message
        assert "+6 on h100 (H100), cost 30" in a100.reason.message

    def test_kv_cache_pressure_names_the_kv_signal(self):
        # kv 3.10 across 4 replicas (0.775 each): spread over 0.70 per replica the model needs 5.
        snap = snapshot(variant("a", cost=10, current=4, loads=[(0.775, 0)] * 4))
        (d,) = decide(snap, {})
        assert d.desired_replicas == 5
        assert (d.reason.action, d.reason.signal) == ("scale-up", "kv_cache_usage")
        assert d.reason.value == pytest.approx(0.775)
        assert d.reason.threshold == pytest.approx(0.70)

    def test_a_model_capped_by_max_replicas_says_so(self):
        snap = snapshot(variant("a", current=1, loads=[(0.5, 20)], max_replicas=3))
        (d,) = decide(snap, {})
        assert d.desired_replicas == 3
        assert "capped at 3 by max_replicas" in d.reason.message


class TestNoCascadesWhilePodsLoad:
    def test_replicas_still_starting_count_as_capacity_for_the_same_load(self):
        first = snapshot(variant("a", current=2, loads=[(0.5, 8), (0.5, 8)]))
        (d1,) = decide(first, {})
        assert d1.desired_replicas == 8
        # Next cycle: the Deployment asks for 8, only the 2 old pods are ready, the load is unchanged.
        second = snapshot(variant("a", current=8, ready=2, loads=[(0.5, 8), (0.5, 8)]))
        (d2,) = decide(second, {d1.key: d1})
        assert d2.desired_replicas == 8
        assert d2.reason.action == "hold"
        assert "(6 starting)" in d2.reason.message

    def test_more_load_while_pods_start_adds_only_the_difference(self):
        snap = snapshot(variant("a", current=8, ready=2, loads=[(0.5, 10), (0.5, 10)]))
        (d,) = decide(snap, {})
        assert d.desired_replicas == 10


class TestScaleDown:
    def test_idle_replicas_go_in_one_step_most_expensive_first(self):
        snap = snapshot(
            variant("h100", cost=30, current=3, loads=[(0.1, 0)] * 3),
            variant("a100", cost=20, current=3, loads=[(0.1, 0)] * 3),
        )
        out = decide(snap, {})
        # kv 0.6 in total fits on one replica; the H100s go first, then A100s down to the one left.
        assert desired(out) == {"h100": 0, "a100": 1}
        assert by_key(out)["h100"].reason.action == "scale-down"
        assert "-3 on h100, cost 30, most expensive" in by_key(out)["h100"].reason.message

    def test_scale_down_stops_where_the_load_would_overflow_the_rest(self):
        # kv 2.4 over 6 replicas: on 4 it is 0.60 each (fits 0.70), on 3 it would be 0.80 (does not).
        (d,) = decide(snapshot(variant("a", current=6, loads=[(0.4, 1)] * 6)), {})
        assert d.desired_replicas == 4

    def test_no_scale_down_while_a_ready_pod_has_no_metrics(self):
        (d,) = decide(snapshot(variant("a", current=4, loads=[(0.05, 0)] * 3)), {})
        assert d.desired_replicas == 4
        assert d.reason.action == "hold"
        assert "no scale-down: 1 ready pod without metrics" in d.reason.message

    def test_no_scale_down_while_another_variant_of_the_model_is_not_fresh(self):
        snap = snapshot(variant("a", current=4, loads=[(0.05, 0)] * 4), variant("b", current=2, fresh=False))
        assert desired(decide(snap, {})) == {"a": 4, "b": 2}

    def test_scale_up_is_allowed_from_partial_data(self):
        # 2 of 4 ready pods report kv 0.75: the other two are assumed as loaded → kv 3.0 → 5 replicas.
        (d,) = decide(snapshot(variant("a", current=4, loads=[(0.75, 0)] * 2)), {})
        assert d.desired_replicas == 5
        assert "2 ready pods without metrics counted at the average" in d.reason.message

    def test_scale_down_may_drop_replicas_still_starting_when_the_load_is_gone(self):
        (d,) = decide(snapshot(variant("a", current=6, ready=2, loads=[(0.1, 0)] * 2)), {})
        assert d.desired_replicas == 1


class TestMissingData:
    def previous(self, name: str, desired_replicas: int, data_at: float = 50.0) -> Decision:
        return Decision(key(name), "m", desired_replicas, True, Reason("scale-up", "queue_length"),
                        decided_at=60.0, data_at=data_at)

    def test_no_fresh_metrics_keeps_the_previous_decision_marked_stale(self):
        snap = snapshot(variant("a", current=3, fresh=False), variant("b", current=1, fresh=False))
        prev = {key("a"): self.previous("a", 5), key("b"): self.previous("b", 1)}
        out = decide(snap, prev)
        assert desired(out) == {"a": 5, "b": 1}
        for d in out:
            assert d.stale and d.data_at == 50.0 and d.decided_at == 120.0
            assert (d.reason.action, d.reason.signal) == ("stale", "metrics")
            assert "metrics could not be read for any variant" in d.reason.message

    def test_a_previous_scale_down_is_not_carried_out_on_missing_data(self):
        (d,) = decide(snapshot(variant("a", current=4, fresh=False)), {key("a"): self.previous("a", 2)})
        assert d.desired_replicas == 4

    def test_without_a_previous_decision_it_holds_current_or_min(self):
        snap = snapshot(variant("a", current=3, fresh=False), variant("b", current=0, min_replicas=1, fresh=False))
        out = decide(snap, {})
        assert desired(out) == {"a": 3, "b": 1}
        assert all(d.stale and d.data_at == 120.0 for d in out)

    def test_ready_replicas_but_no_pod_reporting_counts_as_no_fresh_data(self):
        (d,) = decide(snapshot(variant("a", current=3)), {key("a"): self.previous("a", 3)})
        assert d.stale
        assert "none of 3 ready replicas reported metrics" in d.reason.message

    def test_replicas_that_are_all_still_starting_are_not_missing_data(self):
        (d,) = decide(snapshot(variant("a", current=3, ready=0)), {})
        assert not d.stale
        assert d.desired_replicas == 3  # nothing measured yet: nothing to scale down on
        assert "no scale-down: no replica reported metrics yet" in d.reason.message


class TestBoundsAndFloor:
    def test_a_model_with_no_replicas_keeps_one_on_the_cheapest_variant(self):
        snap = snapshot(variant("h100", cost=30, current=0), variant("a100", cost=20, current=0))
        out = decide(snap, {})
        assert desired(out) == {"h100": 0, "a100": 1}
        a100 = by_key(out)["a100"]
        assert (a100.reason.action, a100.reason.signal) == ("bounds", "min_replicas")
        assert a100.active and not by_key(out)["h100"].active

    def test_the_floor_is_the_sum_of_min_replicas_and_at_least_one(self):
        assert model_floor(snapshot(variant("a", current=0))) == 1
        assert model_floor(snapshot(variant("a", min_replicas=2), variant("b", min_replicas=1))) == 3

    def test_an_explicit_floor_replaces_the_default(self):
        snap = snapshot(variant("a", current=1, loads=[(0.0, 0)]))
        assert desired(decide(snap, {}, floor=3)) == {"a": 3}
        assert plan_model(snap, floor=0).goal == 0

    def test_a_variant_below_its_min_is_raised_with_a_bounds_reason(self):
        snap = snapshot(variant("a", current=2, loads=[(0.5, 1)] * 2), variant("b", current=0, min_replicas=1))
        out = decide(snap, {})
        assert desired(out) == {"a": 2, "b": 1}  # kv 1.0 needs both replicas of a
        b = by_key(out)["b"]
        assert (b.reason.action, b.reason.signal, b.reason.value, b.reason.threshold) == (
            "bounds", "min_replicas", 0.0, 1.0)
        assert by_key(out)["a"].reason.action == "hold"

    def test_a_replica_raised_to_min_does_not_stand_in_for_a_ready_one_being_removed(self):
        # kv 0.6 fits on 1 replica: a goes 2 → 1 and keeps that ready one; b's new min replica comes on top.
        snap = snapshot(variant("a", current=2, loads=[(0.3, 1)] * 2), variant("b", current=0, min_replicas=1))
        out = decide(snap, {})
        assert desired(out) == {"a": 1, "b": 1}
        assert by_key(out)["a"].reason.action == "scale-down"
        assert by_key(out)["b"].reason.action == "bounds"

    def test_a_variant_over_its_max_hands_its_excess_to_the_cheapest_with_room(self):
        snap = snapshot(variant("h100", cost=30, current=5, loads=[(0.6, 1)] * 5, max_replicas=3),
                        variant("a100", cost=20, current=1, loads=[(0.6, 1)]))
        out = decide(snap, {})
        assert desired(out) == {"h100": 3, "a100": 3}
        assert by_key(out)["h100"].reason.signal == "max_replicas"
        assert by_key(out)["a100"].reason.action == "bounds"

    def test_a_variant_asked_for_no_replicas_stays_inactive_while_its_model_has_load(self):
        # KEDA would otherwise wake it 0 → 1 against GetMetrics' 0 (the simulator showed the cost of that).
        snap = snapshot(variant("a", cost=10, current=1, loads=[(0.2, 1)]), variant("b", cost=20, current=0))
        decided = by_key(decide(snap, {}))
        assert decided["a"].active and decided["b"].desired_replicas == 0
        assert not decided["b"].active
        idle = snapshot(variant("a", cost=10, current=1, loads=[(0.0, 0)]), variant("b", cost=20, current=0))
        assert not by_key(decide(idle, {}))["b"].active


class TestDecisionFields:
    def test_one_decision_per_variant_in_snapshot_order_with_times(self):
        snap = snapshot(variant("b", current=2, ready=1, loads=[(0.3, 0)], at=110.0),
                        variant("a", current=1, loads=[(0.3, 0)], at=115.0), taken_at=130.0)
        out = decide(snap, {})
        assert [d.key.name for d in out] == ["b", "a"]
        assert all(d.decided_at == 130.0 and d.data_at == 115.0 and not d.stale for d in out)
        assert (out[0].current_replicas, out[0].ready_replicas) == (2, 1)
        assert all(d.model_id == snap.variants[0].spec.model_id for d in out)

    def test_samples_without_timestamps_count_as_taken_at_the_snapshot(self):
        (d,) = decide(snapshot(variant("a", current=1, loads=[(0.3, 0)], at=0.0), taken_at=130.0), {})
        assert d.data_at == 130.0

    def test_an_empty_snapshot_decides_nothing(self):
        assert decide(snapshot(), {}) == ()

    def test_the_same_input_gives_the_same_output(self):
        snap = snapshot(variant("a", cost=20, current=2, loads=[(0.7, 4)] * 2), variant("b", cost=20, current=1))
        assert decide(snap, {}) == decide(snap, {})

    def test_a_variant_override_does_not_change_the_models_size(self):
        strict = SaturationConfig(kv_cache_threshold=0.5)
        base = snapshot(variant("a", current=2, loads=[(0.6, 0)] * 2))
        over = replace(base, variants=(replace(base.variants[0], spec=replace(base.variants[0].spec,
                                                                              saturation=strict)),))
        assert desired(decide(base, {})) == desired(decide(over, {})) == {"a": 2}

    def test_the_model_config_sets_the_thresholds(self):
        snap = snapshot(variant("a", current=2, loads=[(0.5, 4)] * 2),
                        config=SaturationConfig(queue_length_threshold=10, queue_spare_trigger=2))
        (d,) = decide(snap, {})
        assert d.desired_replicas == 2  # queue 8 over 8 per replica → 1; kv 1.0 over 0.7 → 2
        assert d.reason.signal == "kv_cache_usage"
