"""The variant selector: cheapest with room first up, most expensive first down, always within min/max."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kedascaler.engine.selector import (
    clamp_replicas,
    max_total,
    min_total,
    scale_down_order,
    scale_up_order,
    select_targets,
)
from kedascaler.engine.types import VariantKey, VariantSpec


def spec(name: str, cost: float, min_replicas: int = 0, max_replicas: int | None = None) -> VariantSpec:
    return VariantSpec(VariantKey("llm", name), "m", name, cost=cost, min_replicas=min_replicas,
                       max_replicas=max_replicas)


def names(targets: dict[VariantKey, int]) -> dict[str, int]:
    return {k.name: v for k, v in targets.items()}


H100 = spec("h100", 30, max_replicas=10)
A100 = spec("a100", 20, max_replicas=4)
L40S = spec("l40s", 12, max_replicas=2)


def test_clamp_respects_min_and_max():
    s = spec("a", 10, min_replicas=1, max_replicas=3)
    assert [clamp_replicas(s, n) for n in (0, 1, 2, 3, 7)] == [1, 1, 2, 3, 3]
    assert clamp_replicas(spec("b", 10), 50) == 50  # no max: unbounded


def test_scale_up_fills_the_cheapest_to_its_max_before_the_next():
    targets = select_targets([(H100, 1), (A100, 1), (L40S, 0)], 9)
    assert names(targets) == {"l40s": 2, "a100": 4, "h100": 3}


def test_scale_up_of_one_goes_to_the_cheapest_with_room():
    assert names(select_targets([(H100, 1), (A100, 4), (L40S, 2)], 8)) == {"h100": 2, "a100": 4, "l40s": 2}


def test_scale_down_removes_from_the_most_expensive_first_never_below_min():
    h100 = spec("h100", 30, min_replicas=1)
    targets = select_targets([(h100, 3), (A100, 4)], 3)
    assert names(targets) == {"h100": 1, "a100": 2}


def test_ties_break_by_name_ascending_up_and_descending_down():
    a, b = spec("a", 10), spec("b", 10)
    assert names(select_targets([(b, 1), (a, 1)], 3)) == {"a": 2, "b": 1}
    assert names(select_targets([(a, 2), (b, 2)], 3)) == {"a": 2, "b": 1}
    assert [s.key.name for s in scale_up_order([b, a])] == ["a", "b"]
    assert [s.key.name for s in scale_down_order([a, b])] == ["b", "a"]


def test_variants_come_within_bounds_before_the_total_is_split():
    low = spec("low", 5, min_replicas=2)
    over = spec("over", 50, max_replicas=1)
    assert names(select_targets([(low, 0), (over, 4)], 4)) == {"low": 3, "over": 1}


def test_an_unreachable_total_stops_at_the_limits():
    assert names(select_targets([(A100, 1), (L40S, 1)], 100)) == {"a100": 4, "l40s": 2}
    h = spec("h", 30, min_replicas=2)
    assert names(select_targets([(h, 5)], 0)) == {"h": 2}


def test_totals():
    assert min_total([spec("a", 1, min_replicas=2), spec("b", 1, min_replicas=1)]) == 3
    assert max_total([A100, L40S]) == 6
    assert max_total([A100, spec("x", 1)]) is None


variant_specs = st.lists(
    st.builds(
        lambda i, cost, lo, span: spec(f"v{i}", cost, lo, None if span is None else lo + span),
        st.integers(0, 9), st.sampled_from([5.0, 10.0, 20.0, 30.0]), st.integers(0, 3),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    min_size=1, max_size=5, unique_by=lambda s: s.key,
)


@given(variant_specs, st.data())
def test_targets_stay_in_bounds_and_move_cheapest_first(specs, data):
    currents = [data.draw(st.integers(0, 12)) for _ in specs]
    total = data.draw(st.integers(0, 40))
    pairs = list(zip(specs, currents, strict=True))
    targets = select_targets(pairs, total)
    assert select_targets(pairs, total) == targets  # deterministic
    start = {s.key: clamp_replicas(s, c) for s, c in pairs}
    for s in specs:
        assert clamp_replicas(s, targets[s.key]) == targets[s.key]  # within [min, max]
    if total >= sum(start.values()):
        up = scale_up_order(specs)
        for i, s in enumerate(up):
            assert targets[s.key] >= start[s.key]
            if targets[s.key] > start[s.key]:  # everything cheaper is full
                assert all(t.max_replicas is not None and targets[t.key] == t.max_replicas for t in up[:i])
        cap = max_total(specs)
        assert sum(targets.values()) == (total if cap is None else min(total, cap))
    else:
        down = scale_down_order(specs)
        for i, s in enumerate(down):
            assert targets[s.key] <= start[s.key]
            if targets[s.key] < start[s.key]:  # everything pricier is at its min
                assert all(targets[t.key] == t.min_replicas for t in down[:i])
        assert sum(targets.values()) == max(total, min_total(specs))
