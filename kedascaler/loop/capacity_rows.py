"""The queueing rows of capacity mode, evaluated for every model at once and remembered for a few cycles. Pure.

A row is one variant's model at the model's mean lengths and the class's targets (`CapacityRow`); its capacity
per replica is a pure function of it and the settings (`row_capacities`: a row's answer never depends on the
rows evaluated with it), so a row met again is taken from memory, the very float. Lengths computed over windows
of counters come back to the same floats within a few cycles when the load holds still, so the rows of the
last KEEP_ROW_CYCLES cycles are kept, as plain values (`row_key`: no model objects held), and dropped when the
settings change: the memory is at most KEEP_ROW_CYCLES × the rows of one cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from kedascaler.engine.capacity_estimate import row_capacities
from kedascaler.engine.capacity_types import CapacityRow, CapacitySettings
from kedascaler.loop.capacity import CapacityState

KEEP_ROW_CYCLES = 4

RowKey = tuple[object, ...]


def row_key(row: CapacityRow) -> RowKey:
    """A row as plain values, equal exactly when the rows are equal (`PerfModel` compares its fields)."""
    m, prompt, output, itl, ttft = row
    return (m.alpha, m.beta, m.gamma, m.delta, m.max_batch_size, m.kv_capacity_tokens, m.prefill_mode, prompt,
            output, itl, ttft)


def evaluate(state: CapacityState, settings: CapacitySettings, rows: Iterable[CapacityRow]
             ) -> tuple[Mapping[CapacityRow, float], CapacityState]:
    """Every capacity-planned model's queueing rows: those of the last KEEP_ROW_CYCLES cycles (with these
    settings) from memory, the others in one vectorised call. Kept: this cycle's rows and the previous cycles'."""
    memory = state.known if state.known_settings == settings else ()
    out: dict[CapacityRow, float] = {}
    now: dict[RowKey, float] = {}
    missing: list[tuple[CapacityRow, RowKey]] = []
    for row in dict.fromkeys(rows):
        key = row_key(row)
        for kept in memory:
            if key in kept:
                out[row] = now[key] = kept[key]
                break
        else:
            missing.append((row, key))
    found = row_capacities([r for r, _ in missing], settings) if missing else []
    for (row, key), value in zip(missing, found, strict=True):
        out[row] = now[key] = value
    return out, replace(state, known=(now, *memory[:KEEP_ROW_CYCLES - 1]), known_settings=settings)


__all__ = ["KEEP_ROW_CYCLES", "RowKey", "evaluate", "row_key"]
