"""SLO-driven sizing: replica counts from the queueing model, the cheapest mix, priorities, hybrid, fallbacks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.queueing import ReplicaArrays, max_arrival_rate, replica_metrics
from kedascaler.engine.sizing import (
    HYBRID,
    MODEL,
    SATURATION,
    ModelDemand,
    SloTargets,
    VariantOption,
    Workload,
    hybrid_targets,
    model_demand,
    model_mode,
    parse_mode,
    replicas_for,
    resolve_mode,
    size_model,
    size_models,
)
from kedascaler.engine.types import VariantKey

H100 = PerfModel(7.0, 0.035, 15.4, 0.00034, max_batch_size=256)
A100 = PerfModel(11.0, 0.06, 25.0, 0.0007, max_batch_size=256)
L40S = PerfModel(22.6, 0.181, 226.0, 0.018, max_batch_size=64)
PREMIUM = SloTargets(24.0, 500.0)
CHAT = (230.0, 200.0)


def key(name: str) -> VariantKey:
    return VariantKey("llm", name)


def option(name: str, perf: PerfModel | None = H100, cost: float = 10.0, **kw) -> VariantOption:
    return VariantOption(key(name), cost, perf, accelerator=kw.pop("accelerator", name.split("-")[-1].upper()), **kw)


def demand(rate: float, *variants: VariantOption, slo: SloTargets | None = PREMIUM, model: str = "llama",
           priority: int = 100) -> ModelDemand:
    return ModelDemand("llm", model, Workload(rate, *CHAT), slo, tuple(variants), priority)


def capacity(perf: PerfModel, slo: SloTargets = PREMIUM) -> float:
    arrays = ReplicaArrays.from_models([perf], *CHAT)
    return float(max_arrival_rate(arrays, slo.itl_ms, slo.ttft_ms)[0])


def test_one_variant_gets_ceil_of_rate_over_capacity_and_the_prediction_meets_the_targets():
    cap = capacity(H100)
    plan = size_model(demand(3.5 * cap, option("llama-h100")))
    assert not plan.fallback and not plan.short
    (v,) = plan.variants
    assert v.replicas == 4 and v.capacity == pytest.approx(cap)
    assert v.load_per_replica == pytest.approx(3.5 * cap / 4)
    assert v.itl_ms <= PREMIUM.itl_ms and v.ttft_ms <= PREMIUM.ttft_ms
    assert "4 × llama-h100" in plan.reason


def test_no_load_runs_the_minimum():
    plan = size_model(demand(0.0, option("llama-h100", min_replicas=1), option("llama-a100")))
    assert plan.targets == {key("llama-h100"): 1, key("llama-a100"): 0}


def test_replicas_for_edges():
    assert replicas_for(0.0, 5.0) == 0
    assert replicas_for(10.0, 5.0) == 2
    assert replicas_for(10.000000001, 5.0) == 2  # float noise does not buy a replica
    assert replicas_for(10.1, 5.0) == 3
    assert replicas_for(1.0, 0.0) is None


def test_the_cheapest_mix_per_unit_of_capacity_carries_the_bulk():
    h, a = capacity(H100), capacity(A100)
    # Priced so the H100 is cheaper per req/s, while an A100 replica is cheaper: the bulk goes to H100s and a
    # small remainder to one A100 (cheaper than one more H100).
    cost_h, cost_a = 40.0, 40.0 * a / h * 1.2
    assert cost_a < cost_h
    rate = 3 * h + 0.5 * a
    plan = size_model(demand(rate, option("llama-h100", H100, cost_h), option("llama-a100", A100, cost_a)))
    assert plan.targets == {key("llama-h100"): 3, key("llama-a100"): 1}
    assert plan.cost == pytest.approx(3 * cost_h + cost_a)


def test_max_replicas_and_accelerators_send_the_rest_to_the_next_variant():
    h, a = capacity(H100), capacity(A100)
    rate = 4 * h
    both = (option("llama-h100", H100, 10.0, max_replicas=2), option("llama-a100", A100, 30.0))
    plan = size_model(demand(rate, *both))
    assert plan.targets[key("llama-h100")] == 2
    assert plan.targets[key("llama-a100")] == math.ceil((rate - 2 * h) / a * (1 - 1e-9))
    by_gpu = size_model(demand(rate, option("llama-h100", H100, 10.0, accelerator_count=2),
                               option("llama-a100", A100, 30.0)), available={"H100": 5})
    assert by_gpu.targets[key("llama-h100")] == 2  # 5 GPUs, 2 per replica


def test_short_of_everything_says_so_and_runs_what_it_can():
    h = capacity(H100)
    plan = size_model(demand(10 * h, option("llama-h100", max_replicas=3)))
    assert plan.short and plan.targets == {key("llama-h100"): 3}
    assert plan.reason.startswith("short:")
    assert plan.variants[0].ttft_ms > PREMIUM.ttft_ms  # the prediction shows the miss


def test_priorities_decide_who_gets_scarce_accelerators():
    h = capacity(H100)
    gold = demand(3 * h, option("gold-h100"), model="gold", priority=1)
    bronze = demand(3 * h, option("bronze-h100"), model="bronze", priority=5)
    for order in ((gold, bronze), (bronze, gold)):
        plans = {p.model_id: p for p in size_models(order, available={"H100": 4})}
        assert plans["gold"].targets == {key("gold-h100"): 3} and not plans["gold"].short
        assert plans["bronze"].targets == {key("bronze-h100"): 1} and plans["bronze"].short


def test_a_variant_that_cannot_meet_the_targets_gets_none():
    strict = SloTargets(10.0, 500.0)  # L40S: α + β > 10 ms
    plan = size_model(demand(5.0, option("llama-l40s", L40S, 1.0), option("llama-h100", H100, 50.0), slo=strict))
    assert plan.targets[key("llama-l40s")] == 0 and plan.targets[key("llama-h100")] >= 1
    assert "cannot meet the targets" in plan.reason


@pytest.mark.parametrize("build, words", [
    (lambda: demand(5.0, option("llama-h100", None, perf_reason="no spec.variantProfile.perfParms")),
     "no spec.variantProfile.perfParms"),
    (lambda: demand(5.0, option("llama-h100"), slo=None), "no SLO targets"),
    (lambda: ModelDemand("llm", "llama", None, PREMIUM, (option("llama-h100"),)), "no workload statistics"),
    (lambda: ModelDemand("llm", "llama", Workload(math.nan, 1, 1), PREMIUM, (option("llama-h100"),)),
     "workload not usable"),
    (lambda: ModelDemand("llm", "llama", Workload(3.0, 0.0, 0.0), PREMIUM, (option("llama-h100"),)),
     "mean prompt/output tokens"),
])
def test_unusable_inputs_fall_back_to_saturation_with_a_reason(build, words):
    plan = size_model(build())
    assert plan.fallback and plan.targets == {}
    assert plan.reason.startswith("fallback to saturation:") and words in plan.reason


def _brute_force(caps, costs, lows, highs, rate):
    best = math.inf
    for counts in itertools.product(*(range(lo, hi + 1) for lo, hi in zip(lows, highs, strict=True))):
        if sum(n * c for n, c in zip(counts, caps, strict=True)) >= rate * (1 - 1e-9):
            best = min(best, sum(n * c for n, c in zip(counts, costs, strict=True)))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["h100", "a100", "l40s"]), st.integers(1, 60), st.integers(0, 2),
                          st.integers(0, 6)), min_size=1, max_size=3),
       st.floats(0.0, 1.0))
def test_the_allocation_is_as_cheap_as_brute_force(specs, fill):
    perfs = {"h100": H100, "a100": A100, "l40s": L40S}
    slo = SloTargets(40.0, 2000.0)
    options = [option(f"v{i}-{acc}", perfs[acc], float(cost), min_replicas=low, max_replicas=low + room)
               for i, (acc, cost, low, room) in enumerate(specs)]
    caps = [capacity(perfs[acc], slo) for acc, *_ in specs]
    most = sum((low + room) * c for c, (_, _, low, room) in zip(caps, specs, strict=True))
    rate = fill * most
    plan = size_model(demand(rate, *options, slo=slo))
    assert not plan.short
    expect = _brute_force(caps, [o.cost for o in options], [o.min_replicas for o in options],
                          [o.max_replicas for o in options], rate)
    assert plan.cost == pytest.approx(expect)
    for o, v in zip(options, plan.variants, strict=True):
        assert o.min_replicas <= v.replicas <= o.max_replicas


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 300.0), st.floats(0.0, 300.0))
def test_more_load_never_needs_fewer_replicas(r1, r2):
    low, high = sorted((r1, r2))
    plans = size_models([demand(low, option("llama-h100")), demand(high, option("llama-h100"))])
    assert plans[0].total <= plans[1].total


@settings(max_examples=30, deadline=None)
@given(st.floats(8.0, 40.0), st.floats(8.0, 40.0), st.floats(100.0, 2000.0), st.floats(1.0, 200.0))
def test_a_stricter_slo_never_needs_fewer_replicas(i1, i2, ttft, rate):
    strict, loose = sorted((i1, i2))
    plans = size_models([demand(rate, option("llama-h100"), slo=SloTargets(strict, ttft)),
                         demand(rate, option("llama-h100"), slo=SloTargets(loose, ttft))])
    assert plans[0].total >= plans[1].total


def test_predictions_come_from_the_queueing_model_at_each_share():
    plan = size_model(demand(12.0, option("llama-h100")))
    v = plan.variants[0]
    m = replica_metrics(ReplicaArrays.from_models([H100], *CHAT), [v.load_per_replica])
    assert v.itl_ms == pytest.approx(float(m.itl_ms[0])) and v.ttft_ms == pytest.approx(float(m.ttft_ms[0]))


def test_hybrid_never_goes_below_saturation_and_goes_down_only_when_both_agree():
    h, a = key("h100"), key("a100")
    current = {h: 2, a: 2}
    up = hybrid_targets({h: 5, a: 0}, {h: 2, a: 3}, current)
    assert up.targets == {h: 5, a: 0} and up.source == MODEL  # the model's cheaper mix, at least as big
    guard = hybrid_targets({h: 1, a: 0}, {h: 2, a: 3}, current)
    assert guard.targets == {h: 2, a: 3} and guard.source == SATURATION
    model_down_only = hybrid_targets({h: 1, a: 1}, {h: 2, a: 2}, current)
    assert sum(model_down_only.targets.values()) == 4  # saturation holds: no scale-down
    both_down = hybrid_targets({h: 1, a: 1}, {h: 2, a: 1}, current)
    assert sum(both_down.targets.values()) == 3 and "scale down" in both_down.reason


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=4))
def test_hybrid_properties(rows):
    keys = [key(f"v{i}") for i in range(len(rows))]
    model = {k: r[0] for k, r in zip(keys, rows, strict=True)}
    sat = {k: r[1] for k, r in zip(keys, rows, strict=True)}
    cur = {k: r[2] for k, r in zip(keys, rows, strict=True)}
    total = sum(hybrid_targets(model, sat, cur).targets.values())
    assert total >= sum(sat.values())
    if total < sum(cur.values()):
        assert sum(model.values()) < sum(cur.values()) and sum(sat.values()) < sum(cur.values())


def test_modes():
    assert parse_mode("Hybrid") == (HYBRID, "")
    assert parse_mode(None) == (SATURATION, "")
    mode, problem = parse_mode("predictive")
    assert mode == SATURATION and "expected one of capacity, saturation, model, hybrid" in problem
    assert resolve_mode(None, MODEL) == MODEL and resolve_mode(HYBRID, MODEL) == HYBRID
    assert model_mode([None, HYBRID], HYBRID) == (HYBRID, "")
    mode, why = model_mode([MODEL, HYBRID])
    assert mode == SATURATION and "disagree" in why


def test_many_models_in_one_call_match_one_at_a_time():
    rng = np.random.default_rng(1)
    demands = [demand(float(r), option(f"m{i}-h100", H100, 40.0), option(f"m{i}-a100", A100, 25.0), model=f"m{i}")
               for i, r in enumerate(rng.uniform(0, 200, 20))]
    together = size_models(demands)
    for d, plan in zip(demands, together, strict=True):
        assert plan.targets == size_model(d).targets


def test_a_snapshot_becomes_a_demand():
    from tests.engine.builders import snapshot, variant

    snap = snapshot(variant("llama-h100", cost=40.0, accelerator="H100", min_replicas=1, max_replicas=8),
                    variant("llama-a100", cost=20.0, accelerator="A100"))
    d = model_demand(snap, Workload(12.0, *CHAT), PREMIUM, {key("llama-h100"): (H100, "")}, priority=2)
    assert d.model_id == snap.model_id and d.priority == 2
    h, a = d.variants
    assert (h.cost, h.accelerator, h.min_replicas, h.max_replicas, h.perf) == (40.0, "H100", 1, 8, H100)
    assert a.perf is None and a.perf_reason == "no performance parameters"
    assert size_model(d).fallback  # one variant without a model: the whole model stays with saturation


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 12), st.floats(0.0, 6.0), st.floats(0.0, 6.0), st.integers(0, 2))
def test_a_lower_priority_model_never_takes_gpus_a_higher_one_is_short_of(gpus, gold_load, bronze_load, bronze_min):
    h = capacity(H100)
    gold = demand(gold_load * h, option("gold-h100"), model="gold", priority=1)
    bronze = demand(bronze_load * h, option("bronze-h100", min_replicas=bronze_min), model="bronze", priority=2)
    plans = {p.model_id: p for p in size_models([bronze, gold], available={"H100": gpus})}
    used = plans["gold"].total + plans["bronze"].total
    assert used <= gpus
    if plans["gold"].short:
        assert plans["bronze"].total == 0 and used == gpus
