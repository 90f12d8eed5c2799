"""Capacity mode: demand in capacity units, capacity per variant, the cheapest mix per unit of capacity, the
engine-owned hold — each step in the decision's `DecisionSteps.capacity_plan`."""

from __future__ import annotations

import dataclasses

import numpy as np

from kedascaler.engine import decide
from kedascaler.engine.accelerators import accelerator_class, speed_ratios
from kedascaler.engine.arrivals import demand_view, rising_trend
from kedascaler.engine.capacity import with_demand
from kedascaler.engine.capacity_estimate import percentile_batch, variant_capacities
from kedascaler.engine.capacity_types import (
    CapacityInputs,
    CapacitySettings,
    CapacitySource,
    DemandSample,
    Throughput,
    VariantEvidence,
)
from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.queueing import ReplicaArrays
from kedascaler.engine.tails import miss_share
from kedascaler.engine.types import Route, ScalingMode
from tests.engine.builders import by_key, key, snapshot, variant

NOW = 600.0
A100 = PerfModel(11.5, 0.02, 11.5, 0.066, 256, 459_000)  # step times of an 8B model on an A100 (ms)
H100 = PerfModel(7.0, 0.013, 7.0, 0.03, 1024, 448_000)  # and on an H100
SETTINGS = CapacitySettings(default_startup=90.0)


def history(*rates: float, end: float = NOW, every: float = 15.0, lengths: tuple[float, float] = (220, 200)
            ) -> tuple[DemandSample, ...]:
    """One sample per cycle, the last at `end`: req/s arriving, with completions at that rate."""
    start = end - every * (len(rates) - 1)
    return tuple(DemandSample(start + i * every, r, r, r * lengths[0], r * lengths[1], every)
                 for i, r in enumerate(rates))


def inputs(*rates: float, perf: dict[str, PerfModel] | None = None, settings: CapacitySettings = SETTINGS,
           needs: tuple[tuple[float, float], ...] = (), **evidence: VariantEvidence) -> CapacityInputs:
    found = dict(evidence)
    for name, model in (perf or {}).items():
        found[name] = VariantEvidence(key(name), model, "variantProfile", startup_configured=90.0)
    return CapacityInputs(settings, history(*rates), needs, tuple(found.values()), 50.0, 1000.0)


def test_demand_is_the_arrival_rate_and_a_step_shows_in_its_first_cycle():
    d = demand_view(inputs(*[3.0] * 8, 30.0), NOW, 0.0, None, 90.0)
    assert d is not None and d.latest == 30.0
    assert d.short < 15 and d.need >= 30.0 * 0.9  # the step, not the window's mean, sizes this cycle
    assert d.trend == 0.0  # a step is not a ramp: nothing extrapolated


def test_a_ramp_is_forecast_one_start_up_ahead():
    d = demand_view(inputs(*[2.0 + i for i in range(9)]), NOW, 0.0, None, 90.0)
    assert d is not None and d.trend > 0 and d.forecast > d.short
    assert rising_trend(history(3, 3, 3, 3, 20, 20, 20, 20, 20), NOW, 121.0) == 0.0


def test_the_queues_at_the_gateway_and_at_the_pods_drain_over_a_start_up():
    d = demand_view(inputs(*[10.0] * 8), NOW, 90.0, 90.0, 90.0)
    assert d is not None and d.backlog == 180.0 and d.gateway_queue == 90.0
    assert abs(d.drain - 2.0) < 1e-9  # 180 waiting over the 90 s a new replica needs


def test_a_pod_burning_its_queue_down_has_the_arrivals_carried_elsewhere_once():
    # 30 req/s on two A100s (≈ 36 req/s each at these lengths); one holds 3,600 requests queued, which it burns
    # down for ≈ 100 s while the other takes every arrival: 3,600 over the 90 s start-up is 40 req/s of capacity
    # spoken for (73.5 with headroom), so the mix asks for a third A100 — once: with it starting, the next cycle
    # starts none. Without the queue, one A100 carries the 30 req/s
    def decided(current: int, ready: int):
        snap = snapshot(variant("a100", accelerator="A100", cost=20, current=current, ready=ready,
                                loads=[(0.9, 3600), (0.2, 0)]), taken_at=NOW)
        return _decide(snap, inputs(*[30.0] * 8, perf={"a100": A100}))["a100"]

    first = decided(2, 2)
    assert first.desired_replicas == 3 and "backlog 3600 drained at 40 req/s over 90s" in first.reason.message
    assert decided(3, 2).desired_replicas == 3  # the pod asked for is counted, not asked for again
    calm = snapshot(variant("a100", accelerator="A100", cost=20, current=2, loads=[(0.2, 0), (0.2, 0)]),
                    taken_at=NOW)
    assert _decide(calm, inputs(*[30.0] * 8, perf={"a100": A100}))["a100"].desired_replicas == 1


def test_a_queue_that_fell_in_the_window_is_drained_at_its_height_now_not_its_worst():
    # the pods' queues are read as the window's worst (max_over_time): 1,500 at the window's start, 200 at its
    # end. The window's counters say running + waiting fell by 1,300 (completions 21.7 req/s above arrivals
    # over 60 s), so 200 are drained, not 1,500 — a queue already gone asks for no replica
    fell = DemandSample(NOW, 40.0, 40.0 + 1300.0 / 60.0, 40.0 * 220, 40.0 * 200, 60.0)
    d = demand_view(CapacityInputs(SETTINGS, (*history(*[40.0] * 7, end=NOW - 15.0), fell)), NOW, 1500.0, None, 90.0)
    assert d is not None and abs(d.backlog - 200.0) < 1e-6 and abs(d.drain - 200.0 / 90.0) < 1e-6
    rising = demand_view(inputs(*[40.0] * 8), NOW, 1500.0, None, 90.0)
    assert rising is not None and rising.backlog == 1500.0  # a queue that did not fall is taken at its height


def test_no_usage_this_cycle_keeps_the_last_rate_and_is_marked_unmeasured():
    past = CapacityInputs(SETTINGS, history(10.0, 10.0, end=NOW - 15.0))
    d = demand_view(past, NOW, 0.0, None, 90.0)
    assert d is not None and not d.measured and d.latest == 10.0


def test_kv_holds_a_high_percentile_of_the_batch_not_the_mean():
    mean = int(459_000 // (1155 + 211))  # with cv 1, a request in the batch holds p + o on average
    assert percentile_batch(1024, 459_000, 1155, 211, SETTINGS) < mean
    assert percentile_batch(1024, 459_000, 1155, 211, CapacitySettings(length_z=0.0)) == mean


def test_the_kv_bound_counts_the_long_generations_a_batch_holds_longest():
    # lognormal outputs (σ 0.9, cv ≈ 1.1, as the simulator's): a generation stays in the batch one step per token,
    # so at steady state the batch holds Σ(p + o/2)·o / Σo tokens per request, not the life mean p + o/2
    rng = np.random.default_rng(0)
    sigma, prompt, kv = 0.9, 350.0, 448_000
    output = rng.lognormal(np.log(1000.0) - sigma ** 2 / 2, sigma, 200_000)
    held = float(np.sum((prompt + output / 2) * output) / np.sum(output))
    cv = float(np.sqrt(np.exp(sigma ** 2) - 1))
    bound = percentile_batch(4096, kv, prompt, float(output.mean()), CapacitySettings(length_z=0.0, length_cv=cv))
    assert abs(bound - kv / held) / (kv / held) < 0.03
    assert bound < 0.7 * kv / (prompt + output.mean() / 2)  # the life mean would put 40 % more in the batch


def test_tails_grow_with_the_rate_and_with_long_prompts():
    rows = ReplicaArrays.from_models([A100, A100], [220, 2000], [200, 150])
    light, heavy = miss_share(rows, [1.0, 1.0], 50.0, 1000.0), miss_share(rows, [25.0, 25.0], 50.0, 1000.0)
    assert (heavy >= light).all() and heavy[1] > heavy[0]


def test_a_variant_that_never_ran_gets_an_estimate_from_its_sibling_and_its_class():
    specs = [variant("a100", accelerator="A100", cost=20).spec, variant("h100", accelerator="H100", cost=40).spec]
    found = variant_capacities(specs, [VariantEvidence(key("a100"), A100, "estimated")], 220, 200, 50.0, 1000.0,
                               SETTINGS, [(90.0, "configured")] * 2)
    a100, h100 = found
    assert a100.source == CapacitySource.MODEL and h100.source == CapacitySource.PRIOR
    assert h100.per_replica > a100.per_replica and "never ran" in h100.reason and "A100" not in h100.reason[:0]
    ratios = speed_ratios("H100", 1, "A100", 1)
    assert ratios is not None and ratios[0] > 1.5 and accelerator_class("nvidia-h100-80gb-hbm3").name == "H100"


def test_nothing_to_go_on_is_said_not_guessed():
    specs = [variant("tpu", accelerator="v5e").spec]
    (found,) = variant_capacities(specs, [], 220, 200, 50.0, 1000.0, SETTINGS, [(90.0, "default")])
    assert found.source == CapacitySource.NONE and found.per_replica == 0 and "no capacity estimate" in found.reason


def test_a_saturated_throughput_caps_a_model_that_claims_more():
    sat = Throughput(5.0, 220, 200, NOW)
    specs = [variant("a100", accelerator="A100").spec]
    (found,) = variant_capacities(specs, [VariantEvidence(key("a100"), A100, "estimated", saturated=sat)],
                                  220, 200, 50.0, 1000.0, SETTINGS, [(90.0, "default")])
    assert found.per_replica == 5.0 and "saturated" in found.reason


def test_what_its_pods_completed_while_saturated_within_the_itl_target_floors_a_model_that_claims_less():
    # the one-point model read from an overloaded pod says ≈ 36 req/s; its pods completed 50 req/s in their last
    # saturated window at a mean ITL of 30 ms (target 50): a replica carries 0.85 × 50 within the targets
    specs = [variant("a100", accelerator="A100").spec]

    def capacity(itl_ms: float) -> object:
        sat = Throughput(50.0, 220, 200, NOW, itl_ms=itl_ms)
        (found,) = variant_capacities(specs, [VariantEvidence(key("a100"), A100, "estimated", saturated=sat,
                                                              recent_saturated=sat)],
                                      220, 200, 50.0, 1000.0, SETTINGS, [(90.0, "default")])
        return found

    floored = capacity(30.0)
    assert floored.per_replica == 0.85 * 50.0 and floored.model < floored.per_replica
    assert "last saturated window" in floored.reason
    over = capacity(60.0)  # at full batch its ITL missed the target: the rate it completed says nothing of the SLO
    assert over.per_replica == over.model < 0.85 * 50.0 and "saturated window" not in over.reason


def test_a_one_point_model_is_raised_to_what_a_fitted_sibling_says_of_its_class():
    # an H100 read from one busy window (its prefill holding the other prompts) claims less than the A100's
    # fitted model moved to the H100 says; what its pods completed while saturated still caps it
    specs = [variant("a100", accelerator="A100").spec, variant("h100", accelerator="H100").spec]
    guess = PerfModel(9.0, 0.02, 9.0, 0.2, 1024, 448_000)  # δ three times the H100's

    def h100(source: str, saturated: Throughput | None = None) -> object:
        evidence = [VariantEvidence(key("a100"), A100, "estimated"),
                    VariantEvidence(key("h100"), guess, source, saturated=saturated)]
        return variant_capacities(specs, evidence, 220, 200, 50.0, 1000.0, SETTINGS, [(90.0, "default")] * 2)[1]

    own = h100("variantProfile")  # coefficients the user gave: not a guess, not raised
    raised = h100("one-point (ITL 14 ms at batch 40, prefill 60 ms at 220 tokens)")
    assert raised.per_replica > own.per_replica == own.model and raised.prior == raised.per_replica
    assert "a100's fitted model moved to this class" in raised.reason
    capped = h100("one-point (…)", Throughput(own.model * 1.2, 220, 200, NOW))
    assert capped.per_replica == own.model * 1.2 < raised.per_replica


def _decide(snap, cap, previous=None):
    return by_key(decide(snap, previous or {}, mode=ScalingMode.CAPACITY, capacity=cap))


def test_one_h100_beats_three_a100s_when_it_is_cheaper_per_unit_of_capacity():
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=3, loads=[(0.2, 0)] * 3),
                    variant("h100", accelerator="H100", cost=40, current=0), taken_at=NOW)
    out = _decide(snap, inputs(*[75.0] * 8, perf={"a100": A100, "h100": H100}))  # A100 ≈ 36, H100 ≈ 91 req/s
    plan = out["a100"].steps.capacity_plan
    assert plan is not None and out["a100"].steps.route == Route.CAPACITY
    assert out["h100"].desired_replicas == 1  # the H100 carries 75 req/s for less than three A100s
    assert out["a100"].desired_replicas == 3  # make before break: the A100s serve until the H100 is ready
    assert "make before break" in plan.switch_note and "per replica" in out["a100"].reason.message


def test_a_pod_in_flight_stays_while_the_mix_without_it_would_carry_less_than_ten_per_cent_over_the_need():
    # one A100 ready (≈ 36 req/s), two more starting; at 65 req/s two A100s would carry the need (68 with
    # headroom) 5 % over: the pod asked for is not cancelled for that, and the decision says why
    def decided(rate: float):
        snap = snapshot(variant("a100", accelerator="A100", cost=20, current=3, ready=1, loads=[(0.2, 0)]),
                        taken_at=NOW)
        return _decide(snap, inputs(*[rate] * 8, perf={"a100": A100}))["a100"]

    kept = decided(65.0)
    assert kept.desired_replicas == 3
    assert "1 starting replica(s) kept: without them the mix carries less than 10% over the need" in \
        kept.steps.capacity_plan.switch_note
    assert decided(50.0).desired_replicas == 2  # 72 req/s for a need of 52.5: the third is cancelled


def test_a_small_saving_does_not_swap_accelerators():
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=2, loads=[(0.2, 0)] * 2),
                    variant("h100", accelerator="H100", cost=40, current=0), taken_at=NOW)
    out = _decide(snap, inputs(*[60.0] * 8, perf={"a100": A100, "h100": H100}))
    assert out["h100"].desired_replicas == 0 and out["a100"].desired_replicas == 2  # 40 = 40: no start-up paid


def test_a_cache_a_little_over_its_budget_asks_for_a_little_more_capacity_not_a_replica_of_the_mean():
    # an H100 (≈ 91 req/s) and an A100 (≈ 36) carry 60 req/s with their caches at 75 %: 2.14 budgets of 70 %.
    # The guard asks for 2.14 × their mean capacity (≈ 136 req/s, one A100 more), not saturation's 3 replicas
    # × the mean (≈ 190, a second H100 and an A100 where at most two A100s may run)
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=1, loads=[(0.75, 0)], max_replicas=2),
                    variant("h100", accelerator="H100", cost=50, current=1, loads=[(0.75, 0)]), taken_at=NOW)
    out = _decide(snap, inputs(*[60.0] * 8, perf={"a100": A100, "h100": H100}))
    plan = out["a100"].steps.capacity_plan
    assert plan is not None and plan.demand.target < plan.ready_capacity  # the arrivals alone need nothing more
    assert "2.14 replicas' worth" in plan.guard
    assert out["a100"].desired_replicas == 2 and out["h100"].desired_replicas == 1
    calm = _decide(dataclasses.replace(snap, variants=tuple(
        dataclasses.replace(v, pods=tuple(dataclasses.replace(p, kv_cache_usage=0.6) for p in v.pods))
        for v in snap.variants)), inputs(*[60.0] * 8, perf={"a100": A100, "h100": H100}))
    assert not calm["a100"].steps.capacity_plan.guard  # within its budget, the cache asks for nothing


def test_a_running_mix_is_kept_while_the_cheapest_is_less_than_ten_per_cent_cheaper():
    # two A100s (≈ 36 req/s each) and an H100 (≈ 91) run for 60 req/s; the last cycle chose the H100 alone
    perf = {"a100": A100, "h100": H100}

    def fleet(h100_cost: float):
        return snapshot(variant("a100", accelerator="A100", cost=20, current=2, loads=[(0.2, 0)] * 2),
                        variant("h100", accelerator="H100", cost=h100_cost, current=1, loads=[(0.2, 0)]),
                        taken_at=NOW)

    chose_h100 = _decide(fleet(35), inputs(*[60.0] * 8, perf=perf))  # the H100 (35) is cheaper than 2 A100s (40)
    assert chose_h100["h100"].desired_replicas == 1 and chose_h100["a100"].desired_replicas == 0
    previous = {d.key: d for d in chose_h100.values()}
    # now the H100 costs 42: two A100s (40) are 5 % cheaper. A swap among running replicas pays no start-up;
    # the mix decided last cycle is kept, and says so
    kept = _decide(fleet(42), inputs(*[60.0] * 8, perf=perf), previous)
    assert kept["h100"].desired_replicas == 1 and kept["a100"].desired_replicas == 0
    assert "as decided last cycle" in kept["h100"].steps.capacity_plan.switch_note
    fresh = _decide(fleet(42), inputs(*[60.0] * 8, perf=perf))  # with no decision before, the cheapest
    assert fresh["a100"].desired_replicas == 2 and fresh["h100"].desired_replicas == 0
    swapped = _decide(fleet(50), inputs(*[60.0] * 8, perf=perf), previous)  # 20 % cheaper: swap
    assert swapped["a100"].desired_replicas == 2 and swapped["h100"].desired_replicas == 0
    # fewer replicas of the same variants is no swap, however small the saving: eleven A100s ran and were
    # decided last cycle, ten carry the demand (≈ 350 req/s) for 10 % less: down to ten
    eleven = snapshot(variant("a100", accelerator="A100", cost=20, current=11, loads=[(0.2, 0)] * 11), taken_at=NOW)
    last = _decide(eleven, inputs(*[370.0] * 8, perf=perf))
    assert last["a100"].desired_replicas == 11
    down = _decide(eleven, inputs(*[333.0] * 8, perf=perf), {d.key: d for d in last.values()})
    assert down["a100"].desired_replicas == 10 and "as decided" not in down["a100"].steps.capacity_plan.switch_note


def test_the_hold_keeps_the_largest_need_of_one_start_up():
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=3, loads=[(0.1, 0)] * 3), taken_at=NOW)
    need = ((NOW - 60.0, 80.0),)
    held = _decide(snap, inputs(*[5.0] * 8, perf={"a100": A100}, needs=need))["a100"]
    assert held.desired_replicas == 3 and held.steps.capacity_plan.held
    after = _decide(snap, inputs(*[5.0] * 8, perf={"a100": A100}, needs=((NOW - 120.0, 80.0),)))["a100"]
    assert after.desired_replicas == 1  # the need is older than the start-up: down in one step


def test_the_hold_keeps_replicas_and_never_starts_one():
    # the need was 80 req/s a minute ago and is 5 now; two A100s (≈ 36 each) run. Holding 80 would start a third
    # for a need that has passed (as when an estimate falls while the load does): the hold keeps the two
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=2, loads=[(0.1, 0)] * 2), taken_at=NOW)
    out = _decide(snap, inputs(*[5.0] * 8, perf={"a100": A100}, needs=((NOW - 60.0, 80.0),)))["a100"]
    plan = out.steps.capacity_plan
    assert out.desired_replicas == 2 and plan.held
    assert plan.hold_kept is not None and plan.hold_kept < plan.demand.held
    assert "starts nothing" in out.reason.message
    rising = _decide(snap, inputs(*[5.0] * 7, 100.0, perf={"a100": A100}, needs=((NOW - 60.0, 80.0),)))["a100"]
    assert rising.desired_replicas == 3 and rising.steps.capacity_plan.hold_kept is None  # a need now starts them


def test_the_demand_worked_out_once_by_the_cycle_is_used_for_that_snapshot_only():
    """The cycle works the demand out once for the rows and the plan (`with_demand`); a wake-up's new snapshot
    of the same model, handed the same inputs, works out its own."""
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=3, loads=[(0.2, 0)] * 3),
                    variant("h100", accelerator="H100", cost=40, current=0), taken_at=NOW)
    given = inputs(*[75.0] * 8, perf={"a100": A100, "h100": H100})
    once = with_demand(snap, given)
    assert _decide(snap, once) == _decide(snap, given)
    queued = dataclasses.replace(snap, gateway_queue=900.0)
    woken = _decide(queued, once)["a100"].steps.capacity_plan
    assert woken.demand.gateway_queue == 900.0 and woken.demand.drain > 0
    assert woken.demand == _decide(queued, given)["a100"].steps.capacity_plan.demand


def test_replicas_in_flight_are_waited_for_only_while_they_are_due():
    # 80 req/s on one ready A100 (≈ 36) with three more loading: the three A100s asked for cover it, so nothing is
    # started — unless they have been loading for longer than their start-up (no GPU free, an image that will not
    # pull): then the H100 (≈ 91 req/s, cheaper than three A100s) is started as if they were not coming
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=4, ready=1, loads=[(0.5, 0)]),
                    variant("h100", accelerator="H100", cost=40, current=0), taken_at=NOW)

    def planned(loading_for: float):
        a100 = VariantEvidence(key("a100"), A100, "variantProfile", startup_configured=90.0, pending_for=loading_for)
        h = VariantEvidence(key("h100"), H100, "variantProfile", startup_configured=90.0)
        return _decide(snap, inputs(*[80.0] * 8, a100=a100, h100=h))

    due = planned(30.0)
    assert due["h100"].desired_replicas == 0 and due["a100"].desired_replicas == 3
    assert "nothing started" in due["a100"].reason.message
    stuck = planned(300.0)
    assert stuck["h100"].desired_replicas == 1 and "nothing started" not in stuck["a100"].reason.message
