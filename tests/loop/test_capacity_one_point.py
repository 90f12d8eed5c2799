"""The one-point model capacity mode builds from a window, fed a busy replica's window (kedascaler.loop.capacity)."""

from __future__ import annotations

import pytest

from kedascaler.engine.capacity_estimate import model_capacities
from kedascaler.engine.capacity_types import CapacitySettings
from kedascaler.engine.estimation import prefill_stall
from kedascaler.loop.capacity import Point
from kedascaler.loop.capacity_models import one_point

# Llama-3.1-8B on an A100 as the simulator's profile has it (α 11.49 ms, δ 0.066 ms per prompt token, κ for the
# KV reads), serving prompts of 223 and outputs of 202 tokens on average: one replica carries 32.5 req/s within a
# 50 ms ITL and 1 s TTFT (measured on the simulated replica, `kedascaler.sim.oracle.calibrated_capacity`).
TRUE_CAPACITY = 32.5
DECODE_FIT = (11.4, 0.0999)  # the effective ITL line the planner fitted from the same pods
KV_TOKENS = 28693 * 16
PROMPT, OUTPUT = 223.0, 202.0


def _capacity(point: Point) -> float:
    model = one_point(point, 256, KV_TOKENS, decode=DECODE_FIT)
    assert model is not None
    return model_capacities([model], PROMPT, OUTPUT, 50.0, 1000.0, CapacitySettings())[0]


@pytest.mark.parametrize("point", [
    # windows of one simulated replica under Poisson load (0.1 → 1.0 of its capacity): the prefill a request
    # measures grows with the load (27 → 59 ms) because the step it joins also prefills the others' prompts
    Point(batch=8.0, itl_ms=12.2, prompt_tokens=216, prefill_ms=26.3, at=0.0, rate=3.2),
    Point(batch=99.2, itl_ms=21.3, prompt_tokens=227, prefill_ms=38.6, at=0.0, rate=22.7),
    Point(batch=237.3, itl_ms=36.3, prompt_tokens=227, prefill_ms=59.2, at=0.0, rate=32.5),
    # a window from the overlapping-jobs-high scenario (4 A100 + 1 H100 behind the gateway): 67 ms prefills
    Point(batch=103.8, itl_ms=20.6, prompt_tokens=215, prefill_ms=67.0, at=0.0, rate=23.8),
])
def test_capacity_from_a_busy_window_stays_near_the_truth(point: Point) -> None:
    """A window taken while the replica was busy gives about the capacity a light one gives: within 10 % of
    the true one (it fell to 12 req/s, 0.37×, when P − ITL was read as one prompt's prefill work)."""
    assert _capacity(point) == pytest.approx(TRUE_CAPACITY, rel=0.10)


def test_prefill_stall_takes_out_the_prompts_admitted_alongside() -> None:
    """At light load the stall is P − ITL; under load it is less, and the share of time stays below 1."""
    share, stall = prefill_stall(12.0, 26.0, 0.0)
    assert (share, stall) == (0.0, 14.0)
    share, stall = prefill_stall(20.6, 67.0, 23.8)
    assert stall < (67.0 - 20.6) / 2
    assert 0 < share < 0.9 and share == pytest.approx(23.8 * stall / 1000.0)
    assert prefill_stall(30.0, 20.0, 10.0) == (0.0, 0.0)  # a prefill shorter than the ITL adds nothing seen
