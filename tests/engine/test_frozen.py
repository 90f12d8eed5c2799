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
