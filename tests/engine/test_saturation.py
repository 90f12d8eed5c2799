"""The saturation analyzer: per-replica saturation, spare, totals, the needed N in one step, scale-down safety."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kedascaler.engine.saturation import (
    KV_SIGNAL,
    QUEUE_SIGNAL,
    analyze,
    binding_signal,
    fits_on,
    replica_saturation,
    replicas_needed,
)
from kedascaler.engine.types import PodMetrics, SaturationConfig
from tests.engine.builders import key, snapshot, variant

DEFAULT = SaturationConfig()  # kv 0.80 / queue 5, spare triggers kv 0.10 / queue 3 → budgets 0.70 and 2


class TestReplicaSaturation:
    def test_below_both_thresholds_is_not_saturated(self):
        r = replica_saturation(key("a"), PodMetrics("a-0", 0.5, 2), DEFAULT)
        assert not r.saturated
        assert r.spare_kv == pytest.approx(0.3)
        assert r.spare_queue == pytest.approx(3)

    @pytest.mark.parametrize("kv,queue", [(0.80, 0), (0.95, 0), (0.1, 5), (0.1, 12)])
    def test_at_or_over_either_threshold_is_saturated(self, kv, queue):
        assert replica_saturation(key("a"), PodMetrics("a-0", kv, queue), DEFAULT).saturated

    def test_negative_readings_count_as_zero(self):
        r = replica_saturation(key("a"), PodMetrics("a-0", -0.1, -2), DEFAULT)
        assert (r.kv_cache_usage, r.queue_length) == (0.0, 0.0)


class TestReplicasNeeded:
    def test_no_load_needs_no_replicas(self):
        assert replicas_needed(0, 0, DEFAULT) == 0

    def test_any_load_needs_at_least_one(self):
        assert replicas_needed(0.01, 0, DEFAULT) == 1
        assert replicas_needed(0, 0.5, DEFAULT) == 1

    def test_kv_of_3_10_needs_5_replicas_at_0_70_each(self):
        assert replicas_needed(3.10, 0, DEFAULT) == 5

    def test_queue_of_22_needs_11_replicas_at_2_each(self):
        assert replicas_needed(0, 22, DEFAULT) == 11

    def test_the_larger_signal_wins(self):
        assert replicas_needed(3.10, 22, DEFAULT) == 11
        assert replicas_needed(3.10, 4, DEFAULT) == 5

    def test_exact_multiples_do_not_round_up_on_float_noise(self):
        assert replicas_needed(0.7 * 3, 0, DEFAULT) == 3
        assert replicas_needed(0.35 + 0.35 + 0.7, 0, DEFAULT) == 2

    def test_a_trigger_at_its_threshold_is_refused(self):
        with pytest.raises(ValueError, match="kvSpareTrigger"):
            replicas_needed(1, 1, SaturationConfig(kv_cache_threshold=0.5, kv_spare_trigger=0.5))
        with pytest.raises(ValueError, match="queueSpareTrigger"):
            replicas_needed(1, 1, SaturationConfig(queue_length_threshold=3, queue_spare_trigger=4))

    @given(st.floats(0, 50), st.floats(0, 500))
    def test_needed_is_the_smallest_count_that_fits(self, kv, queue):
        n = replicas_needed(kv, queue, DEFAULT)
        assert fits_on(kv, queue, n, DEFAULT)
        assert n == 0 or not fits_on(kv, queue, n - 1, DEFAULT)
        if n > 0:  # the spread load leaves both spare triggers satisfied (with float slack)
            assert kv / n <= 0.70 + 1e-6 and queue / n <= 2 + 1e-6

    def test_binding_signal_is_the_one_asking_for_more(self):
        assert binding_signal(3.10, 22, DEFAULT) == QUEUE_SIGNAL
        assert binding_signal(3.10, 1, DEFAULT) == KV_SIGNAL
        assert binding_signal(0, 0, DEFAULT) == KV_SIGNAL


class TestAnalyze:
    def test_totals_and_spare_are_across_all_variants_of_the_model(self):
        snap = snapshot(
            variant("h100", cost=30, current=2, loads=[(0.5, 1), (0.9, 0)]),  # second pod saturated on kv
            variant("a100", cost=20, current=1, loads=[(0.3, 3)]),
        )
        sat = analyze(snap)
        assert sat.kv_total == pytest.approx(1.7)
        assert sat.queue_total == pytest.approx(4)
        assert sat.saturated_replicas == 1
        assert sat.analysed_replicas == 3
        assert sat.avg_spare_kv == pytest.approx(((0.8 - 0.5) + (0.8 - 0.3)) / 2)  # non-saturated only
        assert sat.avg_spare_queue == pytest.approx(((5 - 1) + (5 - 3)) / 2)
        assert sat.needed_replicas == 3  # kv 1.7 / 0.7 → 3; queue 4 / 2 → 2

    def test_no_non_saturated_replica_leaves_the_averages_undefined(self):
        sat = analyze(snapshot(variant("a", current=1, loads=[(0.85, 9)])))
        assert sat.avg_spare_kv is None and sat.avg_spare_queue is None

    def test_replicas_still_starting_are_counted_as_current_and_pending(self):
        sat = analyze(snapshot(variant("a", current=5, ready=2, loads=[(0.5, 4), (0.5, 4)])))
        assert (sat.current_replicas, sat.ready_replicas, sat.pending_replicas) == (5, 2, 3)
        assert sat.missing_replicas == 0

    def test_ready_pods_without_metrics_are_estimated_at_the_average_and_block_scale_down(self):
        sat = analyze(snapshot(variant("a", current=4, loads=[(0.75, 1), (0.75, 1)])))
        assert sat.missing_replicas == 2
        assert sat.kv_total == pytest.approx(1.5)  # what was measured
        assert sat.estimated_kv_total == pytest.approx(3.0)  # 4 ready pods at the measured average
        assert sat.needed_replicas == 5  # WVA would add one here too: the average spare is 0.05 < 0.10
        assert not sat.complete and not sat.can_scale_down

    def test_a_variant_whose_metrics_are_not_fresh_is_left_out_and_blocks_scale_down(self):
        snap = snapshot(variant("a", current=3, loads=[(0.1, 0)] * 3),
                        variant("b", current=2, loads=[(0.9, 9)] * 2, fresh=False))
        sat = analyze(snap)
        assert sat.analysed_replicas == 3
        assert sat.stale_variants == (key("b"),)
        assert sat.missing_replicas == 2
        assert not sat.can_scale_down

    def test_pods_reporting_nan_count_as_missing(self):
        sat = analyze(snapshot(variant("a", current=2, loads=[(0.2, 0), (math.nan, 1)])))
        assert sat.analysed_replicas == 1
        assert sat.missing_replicas == 1

    def test_scale_down_is_safe_when_the_load_fits_on_one_fewer(self):
        # WVA's rule: 3 replicas at kv 0.4 → 1.2 over 2 = 0.6 per replica, spare 0.2 ≥ 0.1.
        assert analyze(snapshot(variant("a", current=3, loads=[(0.4, 1)] * 3))).can_scale_down
        # 3 replicas at kv 0.5 → 1.5 over 2 = 0.75 per replica, spare 0.05 < 0.1.
        assert not analyze(snapshot(variant("a", current=3, loads=[(0.5, 1)] * 3))).can_scale_down

    def test_scale_down_needs_at_least_two_replicas(self):
        assert not analyze(snapshot(variant("a", current=1, loads=[(0.0, 0)]))).can_scale_down

    def test_scale_down_needs_some_measurement(self):
        assert not analyze(snapshot(variant("a", current=3, ready=0))).can_scale_down

    def test_a_variant_override_changes_its_own_pods_saturation_but_not_the_models_size(self):
        strict = SaturationConfig(kv_cache_threshold=0.5, queue_length_threshold=5, kv_spare_trigger=0.1,
                                  queue_spare_trigger=3)
        plain = analyze(snapshot(variant("a", current=2, loads=[(0.6, 0), (0.6, 0)])))
        override = analyze(snapshot(variant("a", current=2, loads=[(0.6, 0), (0.6, 0)], saturation=strict)))
        assert plain.saturated_replicas == 0 and override.saturated_replicas == 2
        assert override.replicas[0].spare_kv == pytest.approx(-0.1)
        assert plain.needed_replicas == override.needed_replicas == 2

    def test_running_requests_show_load_even_with_an_empty_cache_and_queue(self):
        assert analyze(snapshot(variant("a", current=1, loads=[(0, 0)], running=2))).has_load
        assert not analyze(snapshot(variant("a", current=1, loads=[(0, 0)]))).has_load
