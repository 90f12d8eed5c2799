"""The queueing model's floats do not depend on how the rows are batched: what lets the cycle evaluate every
model's rows at once, reuse one grid across a bisection, and keep answers between cycles (the decisions are
the same floats either way)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from kedascaler.engine.capacity_estimate import row_capacities
from kedascaler.engine.capacity_types import CapacitySettings
from kedascaler.engine.perfmodel import PREFILL_MODES, PerfModel
from kedascaler.engine.queueing import QueueSolver, ReplicaArrays, column_sums, max_arrival_rate, replica_metrics
from kedascaler.engine.tails import _ERFC_CHUNK, _erfc, max_rate_within, miss_share


def sequential(a: np.ndarray) -> list[float]:
    """Each column's sum, added top to bottom in plain Python floats."""
    out = []
    for j in range(a.shape[1]):
        total = 0.0
        for v in a[:, j].tolist():
            total += v
        out.append(total)
    return out


@pytest.mark.parametrize("columns", [1, 2, 3, 7, 8, 9, 17, 64, 300])
@pytest.mark.parametrize("rows", [1, 2, 9, 129, 257, 700])
def test_column_sums_add_each_column_top_to_bottom(rows, columns):
    rng = np.random.default_rng(rows * 1000 + columns)
    a = rng.random((rows, columns)) * np.exp(rng.normal(0.0, 8.0, (rows, columns)))
    a[rng.random((rows, columns)) < 0.2] = 0.0
    assert column_sums(a).tolist() == sequential(a)


def random_models(rng: random.Random, count: int) -> list[PerfModel]:
    return [PerfModel(rng.uniform(0.5, 30), rng.uniform(0, 0.2), rng.uniform(0, 60), rng.uniform(0, 0.002),
                      rng.choice([1, 2, 7, 64, 256, 700]), rng.choice([None, 20_000, 300_000]),
                      rng.choice(PREFILL_MODES)) for _ in range(count)]


def random_rows(seed: int, count: int) -> tuple[ReplicaArrays, np.ndarray]:
    rng = random.Random(seed)
    models = random_models(rng, count)
    params = ReplicaArrays.from_models(models, np.array([rng.uniform(1, 3000) for _ in models]),
                                       np.array([rng.uniform(1, 900) for _ in models]))
    return params, params.peak_rate() * np.array([rng.choice([0.0, 0.2, 0.7, 0.99, 1.5]) for _ in models])


@pytest.mark.parametrize("seed", range(4))
def test_a_row_evaluated_with_others_gives_the_very_floats_it_gives_alone(seed):
    params, rate = random_rows(seed, 40)
    together = replica_metrics(params, rate)
    for i in range(len(params)):
        alone = replica_metrics(params.take(np.array([i])), rate[i:i + 1])
        for name in together.__dataclass_fields__:
            assert getattr(together, name)[i] == getattr(alone, name)[0] or (
                np.isnan(getattr(together, name)[i]) and np.isnan(getattr(alone, name)[0])), (name, i)


def test_one_solver_across_rates_gives_what_a_fresh_model_gives_at_each():
    params, rate = random_rows(9, 60)
    solver = QueueSolver(params)
    for scale in (0.0, 0.5, 1.0, 2.0):
        reused, fresh = solver.metrics(rate * scale), replica_metrics(params, rate * scale)
        for name in fresh.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(reused, name), getattr(fresh, name))
    np.testing.assert_array_equal(max_arrival_rate(params, 40.0, 1000.0, solver=solver),
                                  max_arrival_rate(params, 40.0, 1000.0))
    upper = params.peak_rate()
    np.testing.assert_array_equal(max_rate_within(params, upper, 40.0, 1000.0, 0.001, solver=solver),
                                  max_rate_within(params, upper, 40.0, 1000.0, 0.001))
    np.testing.assert_array_equal(miss_share(params, rate, 40.0, 1000.0, solver=solver),
                                  miss_share(params, rate, 40.0, 1000.0))


def test_row_capacities_of_many_rows_at_once_are_each_rows_own():
    rng = random.Random(3)
    rows = [(m, rng.uniform(1, 3000), rng.uniform(1, 900), rng.choice([None, 20.0, 40.0]),
             rng.choice([None, 300.0, 1000.0])) for m in random_models(rng, 30)]
    settings = CapacitySettings()
    together = row_capacities(rows, settings)
    assert together == [row_capacities([r], settings)[0] for r in rows]
    assert any(c > 0 for c in together)


def test_erfc_over_many_values_in_pieces_is_math_erfc_of_each():
    """The tails' erfc runs in pieces (so the event loop's thread can take the GIL between them): every value is
    still math.erfc's own float, across piece boundaries, with the exact 2 and 0 and NaN kept."""
    rng = np.random.default_rng(11)
    x = rng.uniform(-8.0, 30.0, 2 * _ERFC_CHUNK + 123)
    x[::997] = np.nan
    got = _erfc(x)
    want = [math.erfc(v) if not math.isnan(v) else math.nan for v in x.tolist()]
    assert np.array_equal(got, np.array(want), equal_nan=True)
