"""Workloads: reproducible arrivals, the documented shapes, the Azure trace and our CSV/JSONL format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kedascaler.sim.scenarios import SCENARIOS, scenario
from kedascaler.sim.workloads import (
    azure_csv,
    bursts,
    diurnal,
    flash_crowd,
    heavy_tailed_lengths,
    load_file,
    lognormal_lengths,
    overlapping_jobs,
    poisson,
    ramp,
    rescale,
    save_csv,
    sequential_jobs,
    steps,
)

SLICE = Path(__file__).parent / "data" / "azure-conv-slice.csv"


def test_same_seed_same_arrivals_other_seed_other_arrivals():
    a, b, c = poisson(5.0, 200, seed=1), poisson(5.0, 200, seed=1), poisson(5.0, 200, seed=2)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.prompt_tokens, b.prompt_tokens)
    assert len(a) != len(c) or not np.array_equal(a.times, c.times)


def test_poisson_rate_and_sharegpt_like_lengths():
    w = poisson(20.0, 1000, seed=0)
    assert len(w) / 1000 == pytest.approx(20.0, rel=0.03)
    assert np.all(np.diff(w.times) >= 0)
    assert w.prompt_tokens.mean() == pytest.approx(230, rel=0.1)
    assert w.output_tokens.mean() == pytest.approx(203, rel=0.1)
    assert np.median(w.output_tokens) < w.output_tokens.mean()  # right-skewed
    assert w.prompt_tokens.max() <= 1024 and (w.prompt_tokens + w.output_tokens).max() <= 2048


def test_overlapping_jobs_as_in_the_seed_experiments():
    w = overlapping_jobs(seed=0)
    assert w.steps == (120.0, 240.0)
    rate = lambda a, b: np.sum((w.times >= a) & (w.times < b)) / (b - a)  # noqa: E731
    assert rate(0, 120) == pytest.approx(10, rel=0.1)
    assert rate(240, 480) == pytest.approx(37, rel=0.05)
    assert rate(600, 720) == pytest.approx(12, rel=0.1)
    assert rate(720, 1020) == 0


def test_shapes():
    s = steps([(0, 1.0), (100, 10.0)], 200, seed=0)
    assert s.steps == (100.0,)
    assert np.sum(s.times >= 100) > 5 * np.sum(s.times < 100)
    r = ramp(0.0, 10.0, 400, seed=0)
    assert np.sum(r.times >= 200) > 2 * np.sum(r.times < 200)
    b = bursts(0.0, 20.0, 100, 10, 300, seed=0)
    assert np.all((b.times % 100) < 10)
    d = diurnal(0.0, 10.0, 400, 400, seed=0)
    assert np.sum((d.times > 100) & (d.times < 300)) > 3 * np.sum((d.times < 100) | (d.times > 300))
    for name in SCENARIOS:
        assert len(scenario(name, 0)) > 0


def test_sequential_jobs_flash_crowd_and_custom_lengths():
    j = sequential_jobs((4.0, 8.0), length=100, pause=50, tail=20, seed=0)
    assert j.duration == 270 and j.steps == (150.0,)
    assert not np.any((j.times >= 100) & (j.times < 150)) and not np.any(j.times >= 250)
    f = flash_crowd(1.0, 20.0, 100.0, 600, seed=0)
    assert f.steps == (100.0,) and np.sum((f.times >= 100) & (f.times < 160)) > 5 * np.sum(f.times < 60)
    h = poisson(50.0, 100, seed=0, lengths=heavy_tailed_lengths(2000.0, 150.0))
    assert h.prompt_tokens.mean() == pytest.approx(2000, rel=0.1) and h.prompt_tokens.max() <= 8192
    long = poisson(20.0, 100, seed=0, lengths=lognormal_lengths(300.0, 1000.0, max_prompt=2048, max_total=6144))
    assert long.output_tokens.mean() == pytest.approx(1000, rel=0.1)
    assert (long.prompt_tokens + long.output_tokens).max() <= 6144


def test_azure_trace_with_speedup_and_rate_scale():
    w = azure_csv(SLICE)
    assert len(w) == 600 and w.times[0] == 0.0
    assert w.prompt_tokens[0] == 374 and w.output_tokens[0] == 44
    fast = rescale(w, speedup=2.0)
    assert fast.duration == pytest.approx(w.duration / 2)
    np.testing.assert_allclose(fast.times, w.times / 2)
    double = rescale(w, rate_scale=2.0, seed=1)
    assert len(double) == 1200 and np.all(np.diff(double.times) >= 0)
    half = rescale(w, rate_scale=0.5, seed=1)
    assert 200 < len(half) < 400
    np.testing.assert_array_equal(half.times, rescale(w, rate_scale=0.5, seed=1).times)


def test_our_csv_and_jsonl_formats(tmp_path):
    w = poisson(3.0, 50, seed=4)
    save_csv(w, tmp_path / "t.csv")
    back = load_file(tmp_path / "t.csv")
    np.testing.assert_allclose(back.times, w.times - w.times[0], atol=1e-5)
    np.testing.assert_array_equal(back.output_tokens, w.output_tokens)
    with open(tmp_path / "t.jsonl", "w") as f:
        for t, p, o in [(0.5, 10, 3), (0.1, 20, 4)]:
            f.write(json.dumps({"time_s": t, "prompt_tokens": p, "output_tokens": o}) + "\n")
    j = load_file(tmp_path / "t.jsonl")
    assert j.times.tolist() == pytest.approx([0.0, 0.4]) and j.prompt_tokens.tolist() == [20, 10]
    assert load_file(SLICE).prompt_tokens[0] == 374  # the Azure format is recognised by its header
