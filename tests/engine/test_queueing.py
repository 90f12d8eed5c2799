"""The replica queueing model against closed forms, its limits, and the capacity bisection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kedascaler.engine.perfmodel import LOCKSTEP, PerfModel, itl_seen_ms
from kedascaler.engine.queueing import ReplicaArrays, max_arrival_rate, replica_metrics
from kedascaler.sim.perf import perf_params_for
from kedascaler.sim.vllm_engine import Request, VLLMEngine

H100 = dict(alpha=7.0, beta=0.035, gamma=15.4, delta=0.00034)
PROMPT, OUTPUT = 230.0, 200.0


def arrays(max_batch=256, max_queue=1000, mixed=True, **overrides):
    params = {**H100, **overrides}
    return ReplicaArrays.of(**params, max_batch=max_batch, prompt_tokens=PROMPT, output_tokens=OUTPUT,
                            max_queue=max_queue, mixed=mixed)


@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("rho", [0.05, 0.3, 0.5, 0.8, 0.95])
def test_max_batch_one_is_an_mm1_queue(rho, mixed):
    p = arrays(max_batch=1, max_queue=100_000, mixed=mixed)
    mu = float(p.peak_rate()[0])
    m = replica_metrics(p, rho * mu)
    assert m.mean_running[0] == pytest.approx(rho)
    assert m.mean_waiting[0] == pytest.approx(rho * rho / (1 - rho), rel=1e-9)
    assert m.wait_ms[0] == pytest.approx(1000 * rho / (mu - rho * mu), rel=1e-9)
    assert m.itl_ms[0] == pytest.approx(7.035)
    assert m.step_wait_ms[0] == pytest.approx(rho * 7.035 / 2)  # the rest of the step in progress
    assert m.ttft_ms[0] == pytest.approx(m.wait_ms[0] + m.step_wait_ms[0] + 15.4 + 0.00034 * PROMPT)


def test_mm1k_blocking_matches_the_closed_form():
    p = arrays(max_batch=1, max_queue=4)  # M/M/1/K with K = 5 places in the system
    mu = float(p.peak_rate()[0])
    for rho in (0.5, 1.0, 2.0):
        k = 5
        blocking = 1 / (k + 1) if rho == 1.0 else (1 - rho) * rho**k / (1 - rho ** (k + 1))
        m = replica_metrics(p, rho * mu)
        assert m.blocking[0] == pytest.approx(blocking, rel=1e-9)
        assert m.throughput[0] == pytest.approx(rho * mu * (1 - blocking), rel=1e-9)


def test_light_load_gives_one_request_alone():
    m = replica_metrics(arrays(), np.array([0.0]))
    assert m.itl_ms[0] == pytest.approx(7.0 + 0.035)
    assert m.ttft_ms[0] == pytest.approx(15.4 + 0.00034 * PROMPT)
    assert m.throughput[0] == 0.0 and m.wait_ms[0] == 0.0


def test_heavy_load_saturates_at_the_full_batch():
    p = arrays(max_batch=64)
    mu_b = float(p.peak_rate()[0])
    assert mu_b == pytest.approx(PerfModel(**H100, max_batch_size=64).max_throughput(PROMPT, OUTPUT))
    m = replica_metrics(p, 3 * mu_b)
    assert m.throughput[0] == pytest.approx(mu_b, rel=1e-6)
    assert m.mean_running[0] == pytest.approx(64, rel=1e-6)
    assert m.itl_ms[0] == pytest.approx(itl_seen_ms(7.0, 0.035, 15.4, 0.00034, 64, PROMPT, OUTPUT, True), rel=1e-6)
    lock = arrays(max_batch=64, mixed=False)
    lockstep = replica_metrics(lock, 3 * float(lock.peak_rate()[0]))
    assert lockstep.itl_ms[0] == pytest.approx(7.0 + 0.035 * 64, rel=1e-6)
    assert lockstep.throughput[0] == pytest.approx(
        PerfModel(**H100, max_batch_size=64, prefill_mode=LOCKSTEP).max_throughput(PROMPT, OUTPUT), rel=1e-6)
    assert m.mean_waiting[0] == pytest.approx(1000, rel=0.01)


def test_rows_are_independent_and_vectorised():
    p = ReplicaArrays.of(alpha=[7.0, 22.6], beta=[0.035, 0.181], gamma=[15.4, 226.0], delta=[0.00034, 0.018],
                         max_batch=[1024, 8], prompt_tokens=PROMPT, output_tokens=OUTPUT)
    both = replica_metrics(p, [20.0, 1.0])
    for i in range(2):
        one = replica_metrics(p.take(np.array([i])), [[20.0, 1.0][i]])
        assert both.ttft_ms[i] == pytest.approx(one.ttft_ms[0])
        assert both.itl_ms[i] == pytest.approx(one.itl_ms[0])


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99), st.integers(1, 300))
def test_latencies_grow_with_load(a, b, batch):
    p = arrays(max_batch=batch)
    mu = float(p.peak_rate()[0])
    low, high = sorted((a, b))
    m = replica_metrics(ReplicaArrays.of(**H100, max_batch=[batch, batch], prompt_tokens=PROMPT,
                                         output_tokens=OUTPUT), [low * mu, high * mu])
    assert m.itl_ms[0] <= m.itl_ms[1] + 1e-9
    assert m.ttft_ms[0] <= m.ttft_ms[1] + 1e-9
    assert np.all(np.isfinite(m.ttft_ms))


def test_capacity_meets_the_targets_and_a_bit_more_does_not():
    p = arrays(max_batch=256)
    cap = max_arrival_rate(p, 9.0, 1000.0)
    at = replica_metrics(p, cap)
    assert at.itl_ms[0] <= 9.0 and at.ttft_ms[0] <= 1000.0
    over = replica_metrics(p, cap * 1.01)
    assert over.itl_ms[0] > 9.0 or over.ttft_ms[0] > 1000.0


def test_capacity_is_zero_when_a_lone_request_misses_the_target():
    p = arrays()
    assert max_arrival_rate(p, 7.0, 1000.0)[0] == 0.0  # α + β > 7 ms
    assert max_arrival_rate(p, 50.0, 10.0)[0] == 0.0  # prefill alone > 10 ms


def test_capacity_without_targets_is_the_peak_rate():
    p = arrays(max_batch=16)
    assert max_arrival_rate(p, None, None)[0] == pytest.approx(p.peak_rate()[0])


@settings(max_examples=30, deadline=None)
@given(st.floats(7.2, 30.0), st.floats(7.2, 30.0), st.floats(30.0, 3000.0))
def test_capacity_grows_with_a_looser_itl_target(t1, t2, ttft):
    lo, hi = sorted((t1, t2))
    p = ReplicaArrays.of(**H100, max_batch=[128, 128], prompt_tokens=PROMPT, output_tokens=OUTPUT)
    cap = max_arrival_rate(p, [lo, hi], ttft)
    assert cap[0] <= cap[1] * (1 + 1e-3) + 1e-9


def test_from_models_uses_the_kv_bound():
    model = PerfModel(**H100, max_batch_size=1024, kv_capacity_tokens=33_000)
    p = ReplicaArrays.from_models([model], PROMPT, OUTPUT)
    assert int(p.max_batch[0]) == 100  # 33,000 tokens ÷ (230 + 200/2) held per request


def emulate(accelerator: str, max_batch: int, rate: float, seconds: float = 120.0, warmup: float = 30.0):
    """Mean ITL and TTFT (ms) of one emulated vLLM replica under Poisson arrivals at `rate` req/s."""
    params = perf_params_for(accelerator, max_num_seqs=max_batch)
    engine = VLLMEngine(params)
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.exponential(1.0 / rate, int(rate * seconds * 1.5) + 10))
    for i, t in enumerate(times[times < seconds]):
        engine.add_request(Request(i, int(PROMPT), int(OUTPUT), float(t)))
    finished = []
    while engine.outstanding and engine.now < seconds * 3:
        finished += engine.step(1.0)
    done = [f for f in finished if f.created > warmup and f.reason != "abort"]
    return 1000 * np.mean([f.mean_itl for f in done]), 1000 * np.mean([f.ttft for f in done])


@pytest.mark.parametrize("accelerator, max_batch, rho", [("H100", 256, 0.3), ("L40S", 64, 0.3), ("L40S", 64, 0.6)])
def test_the_mixed_model_tracks_the_emulator(accelerator, max_batch, rho):
    ep = perf_params_for(accelerator, max_num_seqs=max_batch)
    p = ReplicaArrays.of(alpha=ep.alpha, beta=ep.beta, gamma=ep.gamma, delta=ep.delta, max_batch=max_batch,
                         prompt_tokens=PROMPT, output_tokens=OUTPUT)
    rate = rho * float(p.peak_rate()[0])
    itl, ttft = emulate(accelerator, max_batch, rate)
    m = replica_metrics(p, rate)
    assert 0.95 * itl <= m.itl_ms[0] <= 1.25 * itl  # close, and on the safe side
    assert m.ttft_ms[0] == pytest.approx(ttft, rel=0.15)


def test_a_replica_loaded_to_its_capacity_meets_the_targets_in_the_emulator():
    ep = perf_params_for("H100", max_num_seqs=256)
    p = ReplicaArrays.of(alpha=ep.alpha, beta=ep.beta, gamma=ep.gamma, delta=ep.delta, max_batch=256,
                         prompt_tokens=PROMPT, output_tokens=OUTPUT)
    cap = float(max_arrival_rate(p, 10.0, 200.0)[0])
    itl, ttft = emulate("H100", 256, cap)
    assert itl <= 10.0 and ttft <= 200.0
