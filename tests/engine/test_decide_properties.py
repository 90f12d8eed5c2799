"""Properties of decide() over random models: bounds, safe scale-down, cost order, no scale-down on missing data,
determinism, and no cascades while pods start."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import assume, given
from hypothesis import strategies as st

from kedascaler.engine import analyze, decide, explain, fits_on, plan_model, scale_down_order, scale_up_order
from kedascaler.engine.selector import clamp_replicas
from kedascaler.engine.types import (
    Decision,
    ModelSnapshot,
    PodMetrics,
    Reason,
    Route,
    SaturationConfig,
    VariantKey,
    VariantSpec,
    VariantState,
)

configs = st.one_of(
    st.just(SaturationConfig()),
    st.builds(
        lambda kv, kv_trig, q, q_trig: SaturationConfig(kv, q, kv * kv_trig, q * q_trig),
        st.floats(0.3, 0.95), st.floats(0.0, 0.8), st.floats(1, 20), st.floats(0.0, 0.8),
    ),
)


@st.composite
def variant_states(draw, index: int, level: float = 1.0, complete: bool = False) -> VariantState:
    """A variant with random bounds, replicas and pods; `level` scales the load, `complete` has every pod report."""
    lo = draw(st.integers(0, 3))
    hi = draw(st.one_of(st.none(), st.integers(lo, lo + 8)))
    spec = VariantSpec(VariantKey("llm", f"v{index}"), "m", f"v{index}", cost=draw(st.sampled_from([10.0, 20.0, 30.0])),
                       min_replicas=lo, max_replicas=hi)
    current = draw(st.integers(0, 10))
    ready = draw(st.integers(0, current))
    often_all = complete or draw(st.booleans())
    reporting = ready if often_all else draw(st.integers(0, ready))
    pods = tuple(
        PodMetrics(f"v{index}-{i}", draw(st.floats(0, 1)) * level, draw(st.floats(0, 30)) * level,
                   draw(st.floats(0, 20)) * level, draw(st.floats(1, 100)))
        for i in range(reporting)
    )
    fresh = complete or draw(st.sampled_from([True, True, True, False]))
    return VariantState(spec, current, ready, pods, fresh)


@st.composite
def snapshots(draw, complete: bool = False) -> ModelSnapshot:
    """A model of 1-4 variants under light, medium or heavy load."""
    n = draw(st.integers(1, 4))
    level = draw(st.sampled_from([0.05, 0.3, 1.0]))
    variants = tuple(draw(variant_states(i, level, complete)) for i in range(n))
    return ModelSnapshot("llm", "m", variants, draw(configs), draw(st.floats(100, 200)))


@st.composite
def previous_decisions(draw, snap: ModelSnapshot) -> dict[VariantKey, Decision]:
    out = {}
    for v in snap.variants:
        if draw(st.booleans()):
            out[v.spec.key] = Decision(v.spec.key, "m", draw(st.integers(0, 12)), draw(st.booleans()),
                                       Reason("hold", "kv_cache_usage"), decided_at=90.0, data_at=80.0)
    return out


def ceiling(spec: VariantSpec) -> float:
    return float("inf") if spec.max_replicas is None else spec.max_replicas


@given(st.data())
def test_never_below_min_nor_above_max_and_one_decision_per_variant(data):
    snap = data.draw(snapshots())
    out = decide(snap, data.draw(previous_decisions(snap)))
    assert [d.key for d in out] == [v.spec.key for v in snap.variants]
    for v, d in zip(snap.variants, out, strict=True):
        assert v.spec.min_replicas <= d.desired_replicas <= ceiling(v.spec)
        assert d.decided_at == snap.taken_at
        assert d.current_replicas == v.current_replicas and d.ready_replicas == v.ready_replicas


@given(st.data())
def test_every_decision_carries_steps_that_say_what_it_did(data):
    snap = data.draw(snapshots())
    out = decide(snap, data.draw(previous_decisions(snap)))
    for v, d in zip(snap.variants, out, strict=True):
        own = d.steps.own
        assert own is not None and own.target == d.desired_replicas and own.current == v.current_replicas
        assert d.steps.thresholds == (v.spec.saturation or snap.config)
        assert d.reason == explain.reason(d.steps, d.model_id)  # the text is rendered from the numbers
        assert d.stale == (d.steps.route == Route.STALE)
        assert d.steps.current_total == sum(x.current_replicas for x in snap.variants)


@given(st.data())
def test_the_same_input_gives_the_same_output(data):
    snap = data.draw(snapshots())
    prev = data.draw(previous_decisions(snap))
    assert decide(snap, prev) == decide(snap, dict(reversed(list(prev.items()))))


@given(st.data())
def test_scale_down_keeps_enough_ready_replicas_for_the_load(data):
    snap = data.draw(snapshots(complete=data.draw(st.booleans())))
    out = decide(snap, {})
    # Replicas a variant gives up by choice (not because its max forces it): then the load must fit on the rest.
    kept = [min(v.current_replicas, ceiling(v.spec), d.desired_replicas)
            for v, d in zip(snap.variants, out, strict=True)]
    voluntary = any(k < min(v.current_replicas, ceiling(v.spec)) for v, k in zip(snap.variants, kept, strict=True))
    if voluntary:
        sat = analyze(snap)
        assert sat.complete and sat.analysed_replicas > 0
        n = int(sum(kept))
        assert n >= 1
        cfg = snap.config
        assert fits_on(sat.kv_total, sat.queue_total, n, cfg)
        slack = 1e-6
        assert sat.kv_total / n <= cfg.kv_cache_threshold - cfg.kv_spare_trigger + slack
        assert sat.queue_total / n <= cfg.queue_length_threshold - cfg.queue_spare_trigger + slack


@given(st.data())
def test_missing_metrics_never_lower_desired_below_current(data):
    snap = data.draw(snapshots())
    sat = analyze(snap)
    assume(not sat.complete)
    for v, d in zip(snap.variants, decide(snap, data.draw(previous_decisions(snap))), strict=True):
        assert d.desired_replicas >= min(v.current_replicas, ceiling(v.spec))


@given(st.data())
def test_no_fresh_metrics_at_all_holds_previous_decisions_marked_stale(data):
    snap = data.draw(snapshots())
    snap = replace(snap, variants=tuple(replace(v, metrics_fresh=False) for v in snap.variants))
    prev = data.draw(previous_decisions(snap))
    for v, d in zip(snap.variants, decide(snap, prev), strict=True):
        assert d.stale and d.reason.action == "stale"
        p = prev.get(v.spec.key)
        base = v.spec.min_replicas if p is None else p.desired_replicas
        assert d.desired_replicas == clamp_replicas(v.spec, max(base, v.current_replicas))
        assert d.data_at == (snap.taken_at if p is None else p.data_at)


@given(st.data())
def test_new_replicas_go_cheapest_first_and_removals_priciest_first(data):
    snap = data.draw(snapshots())
    plan = plan_model(snap)
    specs = [v.spec for v in snap.variants]
    start = {v.spec.key: clamp_replicas(v.spec, v.current_replicas) for v in snap.variants}
    target = plan.targets
    up, down = scale_up_order(specs), scale_down_order(specs)
    added = [s for s in specs if target[s.key] > start[s.key]]
    removed = [s for s in specs if target[s.key] < start[s.key]]
    assert not (added and removed)
    for s in added:  # everything cheaper (earlier in the order) is full
        assert all(target[t.key] == t.max_replicas for t in up[:up.index(s)])
    for s in removed:  # everything pricier is at its min
        assert all(target[t.key] == t.min_replicas for t in down[:down.index(s)])
    if plan.mode != "scale-down":  # up and hold never take a replica from a variant within its bounds
        assert not removed


@given(st.data())
def test_pending_replicas_prevent_cascades(data):
    """Same load next cycle, the new replicas still starting: no variant is asked for more."""
    snap = data.draw(snapshots())
    first = decide(snap, {})
    assume(not any(d.stale for d in first))
    assume(all(d.desired_replicas >= v.ready_replicas for v, d in zip(snap.variants, first, strict=True)))
    later = replace(snap, variants=tuple(replace(v, current_replicas=d.desired_replicas)
                                         for v, d in zip(snap.variants, first, strict=True)),
                    taken_at=snap.taken_at + 60)
    second = decide(later, {d.key: d for d in first})
    for a, b in zip(first, second, strict=True):
        assert b.desired_replicas <= a.desired_replicas


@given(st.data())
def test_scale_up_reaches_the_needed_total_unless_max_stops_it(data):
    snap = data.draw(snapshots())
    plan = plan_model(snap)
    assume(plan.mode == "scale-up")
    room = sum(ceiling(v.spec) for v in snap.variants)
    within_bounds = sum(clamp_replicas(v.spec, v.current_replicas) for v in snap.variants)
    assert plan.total == min(max(plan.goal, within_bounds), room)  # more only when mins ask for more
    assert plan.goal >= plan.saturation.needed_replicas
