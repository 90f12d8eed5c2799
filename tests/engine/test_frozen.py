"""`evolve` builds what `dataclasses.replace` builds, and leaves to it the records it cannot copy."""

from __future__ import annotations

import dataclasses

import pytest

from kedascaler.engine.frozen import evolve
from kedascaler.engine.types import (
    Action,
    DecisionSteps,
    PodMetrics,
    Reason,
    Route,
    VariantKey,
    VariantSpec,
    VariantState,
    VariantTarget,
)

KEY = VariantKey("ns", "llama-h100")


def test_an_evolved_record_is_the_replaced_one():
    steps = DecisionSteps(route=Route.CAPACITY, floor=1, plan=(VariantTarget(KEY, "H100", 40.0, 2, 3),))
    changes = dict(variant=KEY, action=Action.SCALE_UP, value=2.5, goal=3)
    evolved, replaced = evolve(steps, **changes), dataclasses.replace(steps, **changes)
    assert evolved == replaced and hash(evolved) == hash(replaced) and type(evolved) is DecisionSteps
    assert vars(evolved) == vars(replaced)
    assert steps.goal == 0 and steps.variant is None  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        evolved.goal = 4  # type: ignore[misc]


def test_an_unknown_field_is_refused_as_replace_refuses_it():
    with pytest.raises(TypeError):
        evolve(DecisionSteps(), no_such_field=1)


def test_a_record_with_post_init_or_a_cached_property_goes_through_replace():
    reason = evolve(Reason(Action.HOLD, "metrics"), action="scale-up")  # __post_init__ makes it an Action
    assert reason.action is Action.SCALE_UP
    spec = VariantSpec(KEY, "llama", "llama-h100")
    state = VariantState(spec, 1, 1, (PodMetrics("p", 0.5, 0.0),))
    assert len(state.analysed) == 1  # cached
    assert evolve(state, metrics_fresh=False).analysed == ()  # computed again, not copied


def test_a_quick_record_is_the_record_the_dataclass_builds():
    """`quick` changes how a frozen record's fields are set, not what it holds: defaults, factories, keyword and
    positional arguments, `__post_init__`, equality, hash, repr and the frozen setattr are the dataclass's."""
    from dataclasses import dataclass, field

    from kedascaler.engine.frozen import quick

    calls = []

    def make(cls_name: str, fast: bool):
        @dataclass(frozen=True)
        class Record:
            a: int
            d: float = 1.5  # a field named like the generated code's locals must not clash
            items: tuple[int, ...] = field(default_factory=tuple)
            tags: list[str] = field(default_factory=list, compare=False)

            def __post_init__(self) -> None:
                calls.append(cls_name)

        return quick(Record) if fast else Record

    plain, fast = make("plain", False), make("fast", True)
    assert fast.__init__ is not plain.__init__
    for args, kwargs in (((1,), {}), ((1, 2.5, (3,)), {}), ((), {"a": 4, "items": (5, 6)})):
        a, b = plain(*args, **kwargs), fast(*args, **kwargs)
        assert vars(a) == vars(b) and repr(a).replace("plain", "") == repr(b).replace("fast", "")
        assert (a.a, a.d, a.items, a.tags) == (b.a, b.d, b.items, b.tags) and hash(b) == hash(fast(*args, **kwargs))
    assert fast(1).tags is not fast(1).tags  # each record its own factory-made list
    calls.clear()
    plain(1), fast(1)
    assert calls == ["plain", "fast"]  # __post_init__ once per record
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast(1).a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        fast()  # a required field, as the dataclass requires it
    assert dataclasses.replace(fast(1), d=9.0) == fast(1, 9.0)


def test_quick_leaves_what_it_cannot_build_alone():
    from dataclasses import dataclass

    from kedascaler.engine.frozen import quick

    @dataclass(frozen=True)
    class Cached:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    @dataclass
    class Mutable:
        a: int

    assert quick(Cached).__init__.__qualname__.endswith("__init__") and quick(Cached)(1).b == 0
    init = Mutable.__init__
    assert quick(Mutable).__init__ is init
    assert VariantKey("ns", "a") == VariantKey("ns", "a") and hash(VariantKey("ns", "a")) == hash(("ns", "a"))
