"""The scenario suite: every scenario builds the same arrivals from the same seed, with the shape it claims."""

from __future__ import annotations

import numpy as np
import pytest

from kedascaler.sim import scenarios as sc
from kedascaler.sim.config import default_variants
from kedascaler.sim.profile_data import SCORING_PROFILE
from kedascaler.sim.scenarios import CONV_TRACE, SCENARIOS, SUITE, SUITE_NAMES, scenario, suite_scenario
from kedascaler.sim.workloads import Workload

HAS_TRACE = CONV_TRACE.is_file()
BUILDABLE = [s for s in SUITE if s.name != "azure-conv" or HAS_TRACE]


def _w(name: str, seed: int = 0) -> Workload:
    return suite_scenario(name).workload(seed)


def _rate(w: Workload, a: float, b: float) -> float:
    return float(np.sum((w.times >= a) & (w.times < b)) / (b - a))


@pytest.mark.parametrize("s", BUILDABLE, ids=lambda s: s.name)
def test_same_seed_same_arrivals(s):
    a, b = s.workload(0), s.workload(0)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.prompt_tokens, b.prompt_tokens)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)
    assert a.name == s.name and a.description == s.description
    assert len(a) > 1000 and np.all(np.diff(a.times) >= 0) and a.times[-1] <= a.duration
    assert a.duration <= 3600 and np.all(a.prompt_tokens >= 1) and np.all(a.output_tokens >= 1)
    if s.name != "azure-conv":  # a trace is what it is; generated arrivals follow the seed
        assert not np.array_equal(a.times[:100], s.workload(1).times[:100])


def test_suite_names_and_fleets():
    assert len(SUITE_NAMES) == len(set(SUITE_NAMES)) == 13
    for s in SUITE:
        variants = s.variants(90.0)
        if s.name == "three-accelerators":
            assert [v.accelerator for v in variants] == ["H100", "A100", "L40S"]
            assert len({v.cost for v in variants}) == 3 and variants[2].params.gamma > variants[0].params.gamma
        else:
            assert variants == default_variants(SCORING_PROFILE, 90.0)  # the calibrated 80 GB pair
    assert "three-accelerators" not in SCENARIOS  # `--scenario` runs on the default fleet only
    assert {"overlapping-jobs", "step", "diurnal", "idle-then-burst"} <= set(SCENARIOS)
    assert len(scenario("on-off")) == len(_w("on-off"))


@pytest.mark.skipif(not HAS_TRACE, reason="needs ../shared/traces/azure-llm-2023-conv.csv")
def test_azure_conv_is_the_whole_trace():
    w = _w("azure-conv")
    assert len(w) == 19_366 and 3500 <= w.duration <= 3510
    assert w.prompt_tokens.mean() == pytest.approx(1155, rel=0.01)


def test_missing_trace_fails_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(sc, "CONV_TRACE", tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match=r"azure-conv needs .*shared/traces/azure-llm-2023-conv.csv"):
        _w("azure-conv")


def test_jobs_sequential_and_overlapping():
    for name, rates in [("sequential-jobs", (10, 15, 12)), ("sequential-jobs-high", (20, 30, 15))]:
        w = _w(name)
        for i, r in enumerate(rates):
            assert _rate(w, i * 360, i * 360 + 300) == pytest.approx(r, rel=0.08)
            assert _rate(w, i * 360 + 300, i * 360 + 360) == 0  # the pause between jobs
        assert w.steps == (360.0, 720.0)
    assert _rate(_w("overlapping-jobs"), 240, 480) == pytest.approx(37, rel=0.05)
    assert _rate(_w("overlapping-jobs-high"), 240, 480) == pytest.approx(65, rel=0.05)


def test_step_up_and_down():
    w = _w("step-up-down")
    levels = [_rate(w, a, b) for a, b in [(0, 200), (200, 400), (400, 700), (700, 900), (900, 1200)]]
    assert levels == pytest.approx([2, 10, 20, 8, 2], rel=0.15)
    assert w.steps == (200.0, 400.0)


def test_flash_crowd_peaks_at_least_five_times_its_base():
    w = _w("flash-crowd")
    base = _rate(w, 0, 300)
    _, rate = w.rate(10.0)
    assert base == pytest.approx(3, rel=0.15)
    assert rate.max() >= 5 * base
    assert _rate(w, 1000, 1200) < 1.5 * base  # decayed back


def test_on_off_idle_gaps_allow_scale_to_zero():
    w = _w("on-off")
    gaps = np.diff(w.times)
    assert np.sum(gaps >= 600) == 2  # idle window 300 s + KEDA cooldown 300 s, between the three bursts
    assert w.duration - w.times[-1] >= 600  # and after the last one
    assert np.all((w.times % 840) < 120)


def test_diurnal_day():
    w = _w("diurnal-day")
    assert _rate(w, 500, 700) > 8 * _rate(w, 0, 100)


def test_long_prompts_heavy_tailed_mean_2k():
    w = _w("long-prompts")
    p = w.prompt_tokens
    assert p.mean() == pytest.approx(2000, rel=0.1)
    assert np.percentile(p, 99) >= 4 * np.median(p) and p.max() <= 8192
    assert w.output_tokens.mean() == pytest.approx(150, rel=0.15)


def test_long_outputs():
    w = _w("long-outputs")
    assert w.output_tokens.mean() == pytest.approx(1000, rel=0.1)
    assert w.prompt_tokens.mean() == pytest.approx(300, rel=0.15)
