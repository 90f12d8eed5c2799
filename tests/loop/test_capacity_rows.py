"""The queueing rows' memory: a row met again within a few cycles is not evaluated again, and gives the very
float a fresh evaluation gives; the memory is bounded and forgets rows evaluated with other settings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kedascaler.engine.capacity_estimate import row_capacities
from kedascaler.engine.capacity_types import CapacitySettings
from kedascaler.engine.perfmodel import PerfModel
from kedascaler.loop import capacity_rows
from kedascaler.loop.capacity import CapacityState
from kedascaler.loop.capacity_rows import KEEP_ROW_CYCLES, evaluate

H100 = PerfModel(7.0, 0.035, 15.4, 0.00034, 256)


def row(prompt: float):
    return (H100, prompt, 200.0, 40.0, 1000.0)


@pytest.fixture
def evaluated(monkeypatch):
    """The rows each call of row_capacities evaluates."""
    calls: list[list] = []

    def counting(rows, settings):
        calls.append(list(rows))
        return row_capacities(rows, settings)

    monkeypatch.setattr(capacity_rows, "row_capacities", counting)
    return calls


def test_a_row_met_again_within_the_memory_is_taken_from_it(evaluated):
    settings = CapacitySettings()
    known, state = evaluate(CapacityState(), settings, [row(230.0), row(240.0)])
    assert known[row(230.0)] == row_capacities([row(230.0)], settings)[0] > 0
    for prompt in range(KEEP_ROW_CYCLES - 2):  # other rows for a while: 230 stays remembered
        _, state = evaluate(state, settings, [row(300.0 + prompt)])
    again, state = evaluate(state, settings, [row(230.0)])
    assert again == {row(230.0): known[row(230.0)]}
    assert [r for call in evaluated for r in call].count(row(230.0)) == 1
    # rebuilt (equal) model objects find it too: the memory holds values, not objects
    _, state = evaluate(state, settings, [(replace(H100), 240.0, 200.0, 40.0, 1000.0)])
    assert [r for call in evaluated for r in call].count(row(240.0)) == 1


def test_the_memory_is_bounded_and_forgets_other_settings(evaluated):
    settings = CapacitySettings()
    _, state = evaluate(CapacityState(), settings, [row(230.0)])
    for prompt in range(KEEP_ROW_CYCLES):
        _, state = evaluate(state, settings, [row(500.0 + prompt)])
    assert len(state.known) == KEEP_ROW_CYCLES
    evaluate(state, settings, [row(230.0)])  # out of memory by now
    assert [r for call in evaluated for r in call].count(row(230.0)) == 2
    stricter = replace(settings, miss_budget=settings.miss_budget / 10)
    known, _ = evaluate(state, stricter, [row(500.0)])  # remembered, but with other settings
    assert evaluated[-1] == [row(500.0)]
    assert known[row(500.0)] == row_capacities([row(500.0)], stricter)[0]
