"""Online estimation: known parameters recovered from noisy data, and unusable fits said to be unusable."""

from __future__ import annotations

import numpy as np
import pytest

from kedascaler.engine.estimation import (
    MIN_SAMPLES,
    VariantObservations,
    Window,
    choose_perf,
    estimate,
    prefill_mode_for,
    robust_line,
)
from kedascaler.spec.variant import PerfParams

ALPHA, BETA, GAMMA, DELTA = 7.0, 0.035, 15.4, 0.018


def noisy_decode(rng, n=200, noise=0.02, outliers=0.0):
    batch = rng.integers(1, 256, n).astype(float)
    itl = (ALPHA + BETA * batch) * (1 + noise * rng.standard_normal(n))
    bad = rng.random(n) < outliers
    itl[bad] *= rng.uniform(2, 5, bad.sum())  # preemption storms, GC pauses: far above the line
    return batch, itl


def noisy_prefill(rng, n=200, noise=0.03):
    tokens = rng.integers(16, 4096, n).astype(float)
    return tokens, (GAMMA + DELTA * tokens) * (1 + noise * rng.standard_normal(n))


def test_clean_noisy_data_recovers_the_parameters():
    rng = np.random.default_rng(7)
    fit = robust_line(*noisy_decode(rng))
    assert fit.usable and fit.reason == ""
    assert fit.intercept == pytest.approx(ALPHA, rel=0.03)
    assert fit.slope == pytest.approx(BETA, rel=0.08)
    assert fit.r2 > 0.9 and fit.n == 200 and fit.relative_spread < 0.05


def test_outliers_do_not_pull_the_fit():
    rng = np.random.default_rng(3)
    fit = robust_line(*noisy_decode(rng, outliers=0.15))
    assert fit.intercept == pytest.approx(ALPHA, rel=0.05)
    assert fit.slope == pytest.approx(BETA, rel=0.1)
    ols = np.polyfit(*noisy_decode(np.random.default_rng(3), outliers=0.15), 1)
    assert abs(ols[0] - BETA) > abs(fit.slope - BETA)  # least squares is pulled, the robust fit is not


@pytest.mark.parametrize("x, y, words", [
    (np.arange(10.0), 7 + 0.03 * np.arange(10.0), f"need ≥ {MIN_SAMPLES}"),
    (np.repeat([8.0, 16.0], 20), np.full(40, 7.5), "distinct x"),
    (np.arange(40.0), np.random.default_rng(1).uniform(1, 100, 40), "relative spread"),
    (np.arange(40.0), 10 + np.random.default_rng(2).normal(0, 2.0, 40) * (np.arange(40.0) % 2 * 2 - 1), "uncertain"),
    (np.arange(40.0), -5 + 0.5 * np.arange(40.0), "intercept"),
    (np.arange(1.0, 41.0), 50 - 0.5 * np.arange(1.0, 41.0), "slope"),
    ([1.0], [2.0], "need ≥"),
])
def test_unusable_fits_say_why(x, y, words):
    fit = robust_line(x, y)
    assert not fit.usable and words in fit.reason


def test_one_window_far_from_the_rest_is_not_a_line_until_the_load_has_been_seen_there_again():
    """Twenty windows at a light load and the first window of a flash crowd (whose ITL also carries the stalls
    of the queued prompts): R² 0.99, yet the slope is that one window's. It becomes a line once the new load
    has been seen in a few more windows, and then it is the steady slope."""
    rng = np.random.default_rng(3)
    light = rng.uniform(4.8, 9.3, 20)
    x = np.append(light, 53.9)
    y = np.append((11.5 + 0.099 * light) * (1 + 0.02 * rng.standard_normal(20)), 21.0)
    burst = robust_line(x, y)
    assert burst.r2 > 0.9 and not burst.usable
    assert "decides the slope" in burst.reason and "53.9" in burst.reason
    busy = np.array([80.0, 100.0, 134.0, 120.0])
    settled = robust_line(np.append(x, busy), np.append(y, 11.5 + 0.099 * busy))
    assert settled.usable and settled.slope == pytest.approx(0.099, rel=0.1)


def test_a_flat_tight_cloud_is_usable_and_a_tiny_negative_slope_is_clipped():
    rng = np.random.default_rng(5)
    x = rng.integers(1, 64, 60).astype(float)
    fit = robust_line(x, 7.0 * (1 + 0.005 * rng.standard_normal(60)))
    assert fit.usable and fit.slope >= 0 and fit.intercept == pytest.approx(7.0, rel=0.01)


def test_the_window_slides_by_age_and_count():
    w = Window(max_samples=5, max_age=100.0)
    w = w.add(0.0, [1, 2, 3], [1, 2, 3])
    w = w.add(50.0, [4, 5], [4, float("nan")])  # the nan pair is ignored
    assert tuple(w.x) == (1.0, 2.0, 3.0, 4.0)
    w = w.add(150.0, [6], [6])  # the samples from t=0 are too old
    assert tuple(w.x) == (4.0, 6.0)
    w = w.add(151.0, [7, 8, 9, 10], [7, 8, 9, 10])
    assert tuple(w.x) == (6.0, 7.0, 8.0, 9.0, 10.0)  # the newest five


def test_an_estimate_from_observations_gives_params_and_the_user_wins_by_default():
    rng = np.random.default_rng(11)
    obs = VariantObservations()
    for t in range(10):
        obs = obs.add_decode(60.0 * t, *noisy_decode(rng, n=20))
        obs = obs.add_prefill(60.0 * t, *noisy_prefill(rng, n=20))
    est = estimate(obs)
    assert est.usable
    p = est.params
    assert (p.alpha, p.beta, p.gamma, p.delta) == pytest.approx((ALPHA, BETA, GAMMA, DELTA), rel=0.1)
    user = PerfParams(8.0, 0.04, 20.0, 0.02)
    assert choose_perf(user, est) == (user, "variantProfile")
    assert choose_perf(user, est, prefer_estimate=True) == (p, "estimated")
    assert choose_perf(None, est) == (p, "estimated")
    assert prefill_mode_for("estimated") == "effective" and prefill_mode_for("variantProfile") == "mixed"


def test_no_user_parameters_and_no_usable_estimate_means_fallback():
    est = estimate(VariantObservations().add_decode(0.0, [1, 2], [7, 7.1]))
    params, why = choose_perf(None, est)
    assert params is None and "no usable estimate" in why and "decode:" in why
    assert choose_perf(None, None) == (None, "no variantProfile.perfParms and no usable estimate (no observations)")


def emulated_pairs(accelerator: str, max_batch: int, rate: float, rng, seconds: float = 60.0, window: float = 10.0):
    """(mean running batch, mean ITL ms) per window, and (prompt tokens, TTFT ms) per request, from VLLMEngine."""
    from kedascaler.sim.perf import perf_params_for
    from kedascaler.sim.vllm_engine import Request, VLLMEngine

    engine = VLLMEngine(perf_params_for(accelerator, max_num_seqs=max_batch))
    times = np.cumsum(rng.exponential(1.0 / rate, int(rate * seconds * 1.5) + 10))
    prompts = rng.integers(64, 2048, len(times))
    # strict=False: prompts were drawn for every arrival time; only the arrivals before `seconds` are sent
    for i, (t, p) in enumerate(zip(times[times < seconds], prompts, strict=False)):
        engine.add_request(Request(i, int(p), 200, float(t)))
    decode, prefill, running, finished = [], [], [], []
    while engine.now < seconds:
        finished += engine.step(0.1)
        running.append(engine.state().running)
        if len(running) == int(window / 0.1):
            done = [f for f in finished if f.output_tokens > 1]
            if engine.now > window and done:  # skip the first window (warm-up)
                decode.append((np.mean(running), 1000 * np.mean([f.mean_itl for f in done])))
            prefill += [(f.prompt_tokens, 1000 * f.ttft) for f in finished]
            running, finished = [], []
    return decode, prefill


def test_parameters_learned_from_the_emulator_predict_it_at_another_load():
    from kedascaler.engine.perfmodel import LOCKSTEP, PerfModel
    from kedascaler.engine.queueing import ReplicaArrays, replica_metrics
    from kedascaler.sim.perf import perf_params_for

    rng = np.random.default_rng(2)
    obs = VariantObservations()
    for rate in (2.0, 8.0, 15.0, 25.0, 35.0):
        decode, _ = emulated_pairs("H100", 256, rate, rng)
        obs = obs.add_decode(0.0, [b for b, _ in decode], [i for _, i in decode])
    _, prefill = emulated_pairs("H100", 256, 0.5, rng, seconds=120.0)  # light load: TTFT ≈ prefill
    obs = obs.add_prefill(0.0, [p for p, _ in prefill], [t for _, t in prefill])
    est = estimate(obs)
    assert est.usable, est.reason
    truth = perf_params_for("H100")
    assert est.params.alpha == pytest.approx(truth.alpha, rel=0.15)
    assert est.params.gamma == pytest.approx(truth.gamma, rel=0.2)  # δ·p is < 1 ms on an H100: γ dominates
    # The decode fit sees ITLs with prefill stalls in them ("effective" α, β): size with them in lockstep mode.
    learned = PerfModel(*(getattr(est.params, f) for f in ("alpha", "beta", "gamma", "delta")), max_batch_size=256,
                        prefill_mode=LOCKSTEP)
    emulated_itl = np.mean([i for _, i in emulated_pairs("H100", 256, 20.0, rng)[0]])
    predicted = replica_metrics(ReplicaArrays.from_models([learned], 1056.0, 200.0), [20.0])
    assert float(predicted.itl_ms[0]) == pytest.approx(emulated_itl, rel=0.15)


@pytest.mark.parametrize("seed", range(3))
def test_median_is_numpys_float_for_every_size_and_odd_value(seed):
    from kedascaler.engine.estimation import median

    rng = np.random.default_rng(seed)
    for n in [1, 2, 3, 4, 5, 8, 9, 100, 255, 256, 257, 600]:
        values = rng.normal(0, 10, n) * np.exp(rng.normal(0, 5, n))
        values[rng.random(n) < 0.3] = 1.25  # ties
        if n > 4:
            values[0], values[1] = np.inf, -np.inf
        for v in (values, np.abs(values)):
            assert median(v) == float(np.median(v)), n
        holed = values.copy()
        holed[-1] = np.nan
        assert np.isnan(median(holed)) and np.isnan(np.median(holed))


def _sliding_reference(steps, max_samples, max_age):
    """The window as every observation so far, cut at each step as the search over the whole window cuts it."""
    import bisect

    at, xs = [], []
    for now, new in steps:
        at += [now] * len(new)
        xs += new
        first = max(bisect.bisect_left(at, now - max_age), len(at) - max_samples)
        at, xs = at[first:], xs[first:]
    return at, xs


@pytest.mark.parametrize("times", [
    [0.0, 10.0, 20.0, 130.0, 131.0, 400.0],  # in order: the oldest one tells whether any is too old
    [0.0, 50.0, 20.0, 30.0, 200.0, 190.0],  # the clock went back: searched over the whole window, as before
    [5.0, 5.0, 5.0, 5.0],
])
def test_a_window_keeps_what_a_search_over_all_its_observations_keeps(times):
    w = Window(max_samples=6, max_age=100.0)
    steps = []
    for i, now in enumerate(times):
        new = [float(10 * i + k) for k in range(i % 3 + 1)]
        steps.append((now, new))
        w = w.add(now, new, [1.0] * len(new))
        at, xs = _sliding_reference(steps, 6, 100.0)
        assert w.at.tolist() == at and w.x.tolist() == xs and w.samples == len(xs)
    assert w.ordered == (times == sorted(times))
