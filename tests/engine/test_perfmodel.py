"""The performance model: units, batch limits, and the reasons to fall back when parameters are unusable."""

from __future__ import annotations

import math

import pytest

from kedascaler.engine.perfmodel import (
    DEFAULT_MAX_BATCH_SIZE,
    LOCKSTEP,
    PerfModel,
    check_perf_model,
    itl_seen_ms,
    perf_model,
    prefill_seen_ms,
)
from kedascaler.sim.perf import PerfParams as EmulatorParams
from kedascaler.spec.variant import PerfParams

H100 = PerfModel(7.0, 0.035, 15.4, 0.00034, max_batch_size=1024)


def test_itl_and_prefill_are_linear_in_ms():
    assert H100.itl_ms(1) == pytest.approx(7.035)
    assert H100.itl_ms(64) == pytest.approx(7.0 + 0.035 * 64)
    assert H100.prefill_ms(128) == pytest.approx(15.4 + 0.00034 * 128)
    assert H100.prefill_ms(128, batch=4) == pytest.approx(15.4 + 0.00034 * 512)


def test_lockstep_service_rate_is_wvas_as_the_emulator_computes_it():
    lockstep = PerfModel(7.0, 0.035, 15.4, 0.00034, max_batch_size=1024, prefill_mode=LOCKSTEP)
    emulator = EmulatorParams(7.0, 0.035, 15.4, 0.00034, max_num_seqs=1024)
    for batch in (1, 8, 256, 1024):
        assert lockstep.service_rate(batch, 230, 200) == pytest.approx(emulator.max_throughput(230, 200, batch))


def test_mixed_prefill_stretches_one_step_per_arrival():
    e = (15.4 - 7.0) + 0.00034 * 230  # the extra of a step that carries one prefill
    assert itl_seen_ms(7.0, 0.035, 15.4, 0.00034, 1, 230, 200, True) == pytest.approx(7.035)  # alone: no stalls
    assert itl_seen_ms(7.0, 0.035, 15.4, 0.00034, 64, 230, 200, True) == pytest.approx(7.0 + 0.035 * 64 + 63 * e / 199)
    assert prefill_seen_ms(7.0, 0.035, 15.4, 0.00034, 64, 230, True) == pytest.approx(15.4 + 0.035 * 63 + 0.00034 * 230)
    assert prefill_seen_ms(7.0, 0.035, 15.4, 0.00034, 1, 230, False) == pytest.approx(15.4 + 0.00034 * 230)
    cycle = prefill_seen_ms(7.0, 0.035, 15.4, 0.00034, 64, 230, True) + 199 * (7.0 + 0.035 * 64 + 63 * e / 199)
    assert H100.service_rate(64, 230, 200) == pytest.approx(1000 * 64 / cycle)
    assert H100.service_rate(64, 230, 200) < PerfModel(7.0, 0.035, 15.4, 0.00034, 1024, prefill_mode=LOCKSTEP
                                                       ).service_rate(64, 230, 200)


def test_effective_coefficients_are_taken_as_measured():
    """Learned lines already hold the stalls (ITL) and the chunking (prefill): nothing is added to them."""
    from kedascaler.engine.perfmodel import EFFECTIVE, MODE_CODES

    code = MODE_CODES[EFFECTIVE]
    assert itl_seen_ms(11.0, 0.1, 18.6, 0.0086, 12, 1148, 200, code) == pytest.approx(11.0 + 0.1 * 12)
    assert prefill_seen_ms(11.0, 0.1, 18.6, 0.0086, 12, 1148, code) == pytest.approx(18.6 + 0.0086 * 1148)
    effective = PerfModel(11.0, 0.1, 18.6, 0.0086, 64, prefill_mode=EFFECTIVE)
    lockstep = PerfModel(11.0, 0.1, 18.6, 0.0086, 64, prefill_mode=LOCKSTEP)
    assert effective.service_rate(12, 1148, 200) > lockstep.service_rate(12, 1148, 200)  # no batch-wide prefill


def test_kv_capacity_bounds_the_batch():
    model = PerfModel(7.0, 0.035, 15.4, 0.00034, max_batch_size=1024, kv_capacity_tokens=150_000)
    assert model.batch_limit(230, 200) == 150_000 // 330  # a request holds p + o/2 on average over its life
    assert model.batch_limit(10, 10) == 1024  # max-num-seqs binds first for short requests
    assert PerfModel(7, 0.03, 15, 0.0003, 8, kv_capacity_tokens=100).batch_limit(1000, 100) == 0


def test_missing_parameters_fall_back_with_a_reason():
    model, reason = perf_model(None, 256)
    assert model is None and "perfParms" in reason


@pytest.mark.parametrize("params, words", [
    (PerfParams(-1.0, 0.03, 15.0, 0.0003), "alpha must be ≥ 0"),
    (PerfParams(math.nan, 0.03, 15.0, 0.0003), "alpha is not a finite number"),
    (PerfParams(0.0, 0.0, 15.0, 0.0003), "alpha + beta must be > 0"),
    (PerfParams(7.0, 0.03, 0.0, 0.0), "gamma + delta must be > 0"),
])
def test_bad_parameters_fall_back_with_a_reason(params, words):
    model, reason = perf_model(params, 256)
    assert model is None and words in reason


def test_good_parameters_give_a_model_with_the_default_batch_when_none_is_given():
    model, reason = perf_model(PerfParams(7.0, 0.03, 15.0, 0.0003), None)
    assert reason == "" and model is not None and model.max_batch_size == DEFAULT_MAX_BATCH_SIZE
    assert check_perf_model(PerfModel(7.0, 0.03, 15.0, 0.0003, max_batch_size=0)) is not None
    assert "prefill_mode" in check_perf_model(PerfModel(7.0, 0.03, 15.0, 0.0003, prefill_mode="chunky"))
