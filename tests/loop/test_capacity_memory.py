"""Capacity mode's memory between cycles: what stays is the value it was (the same objects), what changes is rebuilt."""

from __future__ import annotations

from kedascaler.engine.capacity_types import CapacitySettings
from kedascaler.engine.perfmodel import EFFECTIVE
from kedascaler.loop.capacity import CapacityState, forget, kept_only
from kedascaler.loop.capacity_models import inputs_for, keep_models
from kedascaler.loop.planner import PlannerState, variant_parameters
from kedascaler.spec.variant import PerfParams, VariantAutoscaling, VariantProfile
from tests.engine.builders import key, snapshot, variant


def test_forget_keeps_the_maps_whose_variants_all_stay_and_drops_the_ones_that_left():
    a, b = key("a"), key("b")
    state = CapacityState(lengths={("ns", "m"): (1.0, 2.0)}, estimates={a: (1.0,), b: (2.0,)})
    assert kept_only(state.estimates, {a, b, key("c")}) is state.estimates
    left = forget(state, {a}, {("ns", "m")})
    assert left.estimates == {a: (1.0,)} and left.lengths is state.lengths
    assert forget(state, set(), set()).lengths == {} and kept_only({}, set()) == {}


def test_a_variants_model_is_kept_while_its_numbers_stay_and_rebuilt_when_they_change():
    snap = snapshot(variant("a", accelerator="H100"))
    va = VariantAutoscaling(snap.variants[0].spec, VariantProfile(256, PerfParams(7.0, 0.035, 15.4, 0.00034)))
    variants = {va.key: va}
    planner = PlannerState()
    first = keep_models(CapacityState(), [snap], planner, variants, 10.0)
    model, source, at = first.models[va.key]
    assert (model.alpha, model.max_batch_size, model.kv_capacity_tokens, source, at) == (
        7.0, 256, None, "variantProfile", 10.0)
    again = keep_models(first, [snap], planner, variants, 20.0)
    assert again.models[va.key][0] is model and again.models[va.key][2] == 20.0  # the same numbers: the same model
    # this cycle's model is the one the engine's inputs carry, as perf_model builds it
    found = inputs_for(again, CapacitySettings(), snap, planner, variants, (50.0, 1000.0), now=20.0)
    assert found.variants[0].perf is model
    assert inputs_for(again, found.settings, snap, planner, variants, (50.0, 1000.0)).variants[0].perf == model
    with_kv = PlannerState(kv_tokens={va.key: 100_000})  # the pods now report their KV cache: a new model
    rebuilt = keep_models(again, [snap], with_kv, variants, 30.0).models[va.key][0]
    assert rebuilt is not model and rebuilt.kv_capacity_tokens == 100_000 and rebuilt.alpha == 7.0
    assert variant_parameters(with_kv, va.key, va).source == "variantProfile" and rebuilt.prefill_mode != EFFECTIVE
