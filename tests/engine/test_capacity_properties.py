"""Properties of capacity mode over random models: missing or stale data never lowers a target; demand that the
pods in flight already cover adds no replica; a variant that never ran still gets a capacity estimate and a
reason."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from kedascaler.engine import decide
from kedascaler.engine.capacity_estimate import variant_capacities
from kedascaler.engine.capacity_types import CapacityInputs, CapacitySettings, CapacitySource, VariantEvidence
from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.types import ModelSnapshot, ScalingMode
from tests.engine.builders import key, snapshot, variant
from tests.engine.test_capacity import NOW, history

ACCELERATORS = ("A100", "H100", "L40S")
perf_models = st.builds(lambda a, b, d, seqs: PerfModel(a, b, a, d, seqs, 400_000),
                        st.floats(5.0, 25.0), st.floats(0.0, 0.1), st.floats(0.02, 0.1), st.sampled_from([64, 256]))
rates = st.lists(st.floats(0.0, 80.0), min_size=1, max_size=12)


@st.composite
def models(draw):
    """A model of 1–3 variants with random replicas, pods, capacity evidence and arrival history."""
    n = draw(st.integers(1, 3))
    variants, evidence = [], []
    for i in range(n):
        current = draw(st.integers(0, 5))
        ready = draw(st.integers(0, current))
        loads = [(draw(st.floats(0.0, 0.95)), draw(st.floats(0.0, 20.0))) for _ in range(ready)]
        name = f"v{i}"
        variants.append(variant(name, accelerator=ACCELERATORS[i], cost=draw(st.sampled_from([10.0, 20.0, 40.0])),
                                current=current, ready=ready, loads=loads))
        if draw(st.booleans()):
            evidence.append(VariantEvidence(key(name), draw(perf_models), "estimated",
                                            startup_s=draw(st.floats(10.0, 200.0))))
    past = tuple((NOW - draw(st.floats(1.0, 300.0)), draw(st.floats(0.0, 100.0)))
                 for _ in range(draw(st.integers(0, 4))))
    cap = CapacityInputs(CapacitySettings(), history(*draw(rates)), tuple(sorted(past)), tuple(evidence), 50.0, 1000.0)
    return snapshot(*variants, taken_at=NOW), cap


def _desired(snap: ModelSnapshot, cap: CapacityInputs) -> dict[str, int]:
    return {d.key.name: d.desired_replicas for d in decide(snap, {}, mode=ScalingMode.CAPACITY, capacity=cap)}


@settings(max_examples=150, deadline=None)
@given(models(), st.sampled_from(["stale", "silent", "no-usage"]), st.data())
def test_missing_or_stale_data_never_lowers_a_target(model, gap, data):
    snap, cap = model
    variants = list(snap.variants)
    if gap == "stale":  # one variant's metrics could not be read
        i = data.draw(st.integers(0, len(variants) - 1))
        variants[i] = replace(variants[i], metrics_fresh=False)
    elif gap == "silent":  # a ready pod did not report
        ready = [i for i, v in enumerate(variants) if v.pods]
        if ready:
            i = ready[0]
            variants[i] = replace(variants[i], pods=variants[i].pods[1:])
    else:  # no usage this cycle: the history stops a cycle ago
        cap = replace(cap, history=tuple(replace(s, at=s.at - 15.0) for s in cap.history))
    snap = replace(snap, variants=tuple(variants))
    desired = _desired(snap, cap)
    for v in snap.variants:
        assert desired[v.spec.key.name] >= v.current_replicas, (gap, v.spec.key.name)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.data(), perf_models)
def test_demand_that_pods_in_flight_already_cover_adds_no_replica(current, data, perf):
    ready = data.draw(st.integers(1, current))
    snap = snapshot(variant("a100", accelerator="A100", cost=20, current=current, ready=ready,
                            loads=[(0.1, 0.0)] * ready), taken_at=NOW)
    base = CapacityInputs(CapacitySettings(), history(1.0), (), (VariantEvidence(key("a100"), perf, "estimated"),),
                          50.0, 1000.0)
    per = decide(snap, {}, mode=ScalingMode.CAPACITY, capacity=base)[0].steps.capacity_plan
    assert per is not None
    room = per.variants[0].per_replica * current / (1 + base.settings.headroom) / 1.02  # what is asked covers it
    rate = data.draw(st.floats(0.0, max(0.0, room)))
    cap = replace(base, history=history(*[rate] * 10))
    (d,) = decide(snap, {}, mode=ScalingMode.CAPACITY, capacity=cap)
    assert d.desired_replicas <= current


@settings(max_examples=100, deadline=None)
@given(perf_models, st.sampled_from(ACCELERATORS), st.sampled_from(ACCELERATORS + ("TPU-v5e", "")),
       st.floats(50.0, 2000.0), st.floats(10.0, 800.0))
def test_a_variant_that_never_ran_still_gets_a_capacity_estimate_and_a_reason(perf, ran, never, prompt, output):
    specs = [variant("ran", accelerator=ran).spec, variant("never", accelerator=never, current=0).spec]
    _, found = variant_capacities(specs, [VariantEvidence(key("ran"), perf, "estimated")], prompt, output, 50.0,
                                  1000.0, CapacitySettings(), [(90.0, "default")] * 2)
    assert found.reason
    if never in ACCELERATORS:
        assert found.source == CapacitySource.PRIOR and found.prior is not None and found.per_replica >= 0
        assert "never ran" in found.reason
    else:  # an accelerator of no known class: said, not guessed
        assert found.source == CapacitySource.NONE and "no capacity estimate" in found.reason
