"""Workloads for the simulator: arrival times and token counts, reproducible from a seed.

A `Workload` is three equal-length arrays (arrival time in seconds from 0, prompt tokens, output tokens),
sorted by time, plus the times at which the offered load steps up (to score reaction time). Generators:

* `poisson(rate, duration)`, and any rate shape through `shaped(rate_fn, duration)` (thinning):
  `steps`, `ramp`, `bursts` (on/off), `diurnal` (a sine over a period);
* `overlapping_jobs()`: the seed experiments' jobs of 10, 15 and 12 req/s starting 120 s apart, 480 s each;
  `sequential_jobs()`: the same jobs one after another; `flash_crowd()`: a sudden rise that decays;
* `azure_csv(path)`: the Azure LLM inference trace (TIMESTAMP, ContextTokens, GeneratedTokens), with
  `speedup` (compress time) and `rate_scale` (thin or multiply requests);
* `load_file(path)`: our own format, CSV with header `time_s,prompt_tokens,output_tokens`, or JSON
  Lines with those keys (one object a line); `save_csv` writes it.

Token counts default to ShareGPT-like lengths (`vllm bench serve`): lognormal, means ≈ 230 prompt and
≈ 203 output tokens, right-skewed, prompts ≤ 1024 and prompt + output ≤ 2048; any other distribution through
`lengths=` (`lognormal_lengths`, `heavy_tailed_lengths`). Same seed → same arrays.

The named scenarios (`SCENARIOS`, `scenario()`) and the suite's fleets live in `kedascaler.sim.scenarios`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

SHAREGPT_PROMPT_MEAN = 230.0
SHAREGPT_OUTPUT_MEAN = 203.0
_SIGMA = 0.9  # lognormal shape: right-skewed, median ≈ 0.67 × mean


@dataclass(frozen=True)
class Workload:
    """Arrivals (s, sorted) with prompt and output tokens; `steps` marks load increases to score reaction."""

    name: str
    times: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    duration: float
    steps: tuple[float, ...] = ()
    description: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times)

    def rate(self, bucket: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
        """Arrival rate (req/s) per bucket: (bucket starts, rates)."""
        edges = np.arange(0.0, self.duration + bucket, bucket)
        counts, _ = np.histogram(self.times, bins=edges)
        return edges[:-1], counts / bucket


LengthSampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _lengths(rng: np.random.Generator, n: int, prompt_mean: float, output_mean: float,
             max_prompt: int = 1024, max_total: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Right-skewed (lognormal) token counts with the given means, clipped like ShareGPT's filters."""
    mu_p = math.log(prompt_mean) - _SIGMA ** 2 / 2
    mu_o = math.log(output_mean) - _SIGMA ** 2 / 2
    prompt = np.clip(np.rint(rng.lognormal(mu_p, _SIGMA, n)), 4, max_prompt).astype(np.int64)
    output = np.clip(np.rint(rng.lognormal(mu_o, _SIGMA, n)), 1, None).astype(np.int64)
    output = np.maximum(1, np.minimum(output, max_total - prompt))
    return prompt, output


def lognormal_lengths(prompt_mean: float, output_mean: float, *, max_prompt: int,
                      max_total: int) -> LengthSampler:
    """Lognormal prompts and outputs (σ 0.9) with these means, prompts ≤ `max_prompt`, prompt + output ≤ `max_total`."""
    return lambda rng, n: _lengths(rng, n, prompt_mean, output_mean, max_prompt, max_total)


def heavy_tailed_lengths(prompt_mean: float = 2000.0, output_mean: float = 150.0, *, tail: float = 0.1,
                         alpha: float = 1.5, tail_start: float = 3000.0, max_prompt: int = 8192,
                         max_output: int = 1024) -> LengthSampler:
    """Code-assistant-like prompts: a lognormal body (σ 0.8) and a share `tail` of Pareto(`alpha`) prompts
    from `tail_start` up to `max_prompt` tokens, the body's mean set so that the whole has `prompt_mean`;
    outputs lognormal (σ 0.9) with `output_mean`, ≤ `max_output`."""
    ratio = tail_start / max_prompt  # mean of the Pareto clipped at max_prompt
    tail_mean = tail_start * (alpha - ratio ** (alpha - 1)) / (alpha - 1)
    body_mean = max(16.0, (prompt_mean - tail * tail_mean) / (1 - tail))
    sigma = 0.8

    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        body = rng.lognormal(math.log(body_mean) - sigma ** 2 / 2, sigma, n)
        pareto = tail_start * (1.0 + rng.pareto(alpha, n))
        raw = np.where(rng.uniform(size=n) < tail, pareto, body)
        prompt = np.clip(np.rint(raw), 4, max_prompt).astype(np.int64)
        out = rng.lognormal(math.log(output_mean) - _SIGMA ** 2 / 2, _SIGMA, n)
        return prompt, np.clip(np.rint(out), 1, max_output).astype(np.int64)

    return sample


def shaped(rate_fn: Callable[[np.ndarray], np.ndarray], duration: float, *, seed: int = 0, name: str = "shaped",
           rate_max: float | None = None, prompt_mean: float = SHAREGPT_PROMPT_MEAN,
           output_mean: float = SHAREGPT_OUTPUT_MEAN, steps: tuple[float, ...] = (), description: str = "",
           lengths: LengthSampler | None = None) -> Workload:
    """Poisson arrivals with a time-varying rate (req/s), by thinning a homogeneous process at `rate_max`;
    token counts from `lengths(rng, n)`, or ShareGPT-like with the given means."""
    rng = np.random.default_rng(seed)
    if rate_max is None:
        grid = np.linspace(0.0, duration, 4096)
        rate_max = float(np.max(rate_fn(grid))) * 1.0001
    if rate_max <= 0:
        times = np.zeros(0)
    else:
        n = rng.poisson(rate_max * duration)
        times = np.sort(rng.uniform(0.0, duration, n))
        keep = rng.uniform(0.0, rate_max, n) < rate_fn(times)
        times = times[keep]
    if lengths is not None:
        prompt, output = lengths(rng, len(times))
    else:
        prompt, output = _lengths(rng, len(times), prompt_mean, output_mean)
    return Workload(name, times, prompt, output, float(duration), steps, description)


def poisson(rate: float, duration: float, *, seed: int = 0, **kw) -> Workload:
    """Poisson arrivals at a fixed rate (req/s)."""
    kw.setdefault("name", f"poisson-{rate:g}")
    return shaped(lambda t: np.full_like(t, rate), duration, seed=seed, rate_max=rate, **kw)


def steps(levels: list[tuple[float, float]], duration: float, *, seed: int = 0, **kw) -> Workload:
    """Piecewise-constant rate: `levels` = [(start time, rate), ...] sorted by time."""
    starts = np.array([s for s, _ in levels])
    rates = np.array([r for _, r in levels])

    def rate_fn(t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(starts, t, side="right") - 1
        return np.where(i >= 0, rates[np.clip(i, 0, None)], 0.0)

    ups = tuple(float(s) for k, (s, r) in enumerate(levels) if r > (levels[k - 1][1] if k else 0.0) and s > 0)
    kw.setdefault("name", "steps")
    return shaped(rate_fn, duration, seed=seed, steps=ups, **kw)


def ramp(start_rate: float, end_rate: float, duration: float, *, seed: int = 0, **kw) -> Workload:
    """Linear ramp of the rate from `start_rate` to `end_rate` over `duration`."""
    kw.setdefault("name", "ramp")
    return shaped(lambda t: start_rate + (end_rate - start_rate) * t / duration, duration, seed=seed, **kw)


def bursts(base: float, peak: float, period: float, on: float, duration: float, *, seed: int = 0, **kw) -> Workload:
    """On/off load: `peak` req/s for `on` seconds at the start of every `period`, `base` otherwise."""
    kw.setdefault("name", "bursts")
    ups = tuple(float(s) for s in np.arange(period, duration, period)) if peak > base else ()
    return shaped(lambda t: np.where((t % period) < on, peak, base), duration, seed=seed, steps=ups, **kw)


def diurnal(low: float, high: float, period: float, duration: float, *, seed: int = 0, **kw) -> Workload:
    """A day compressed into `period` seconds: the rate follows a sine between `low` and `high`."""
    kw.setdefault("name", "diurnal")
    mid, amp = (high + low) / 2, (high - low) / 2
    return shaped(lambda t: mid - amp * np.cos(2 * math.pi * t / period), duration, seed=seed, **kw)


def overlapping_jobs(rates: tuple[float, ...] = (10.0, 15.0, 12.0), gap: float = 120.0, length: float = 480.0,
                     *, seed: int = 0, tail: float = 300.0, **kw) -> Workload:
    """The seed experiments: jobs at `rates` req/s starting `gap` s apart, `length` s each, overlapping."""
    starts = [i * gap for i in range(len(rates))]
    duration = starts[-1] + length + tail

    rate_fn = _jobs(starts, rates, length)

    kw.setdefault("name", "overlapping-jobs")
    kw.setdefault("description", f"jobs of {', '.join(f'{r:g}' for r in rates)} req/s, {gap:g} s apart, "
                                 f"{length:g} s each (peak {sum(rates):g} req/s), ShareGPT-like lengths")
    return shaped(rate_fn, duration, seed=seed, rate_max=sum(rates), steps=tuple(float(s) for s in starts[1:]), **kw)


def _jobs(starts: list[float], rates: tuple[float, ...], length: float) -> Callable[[np.ndarray], np.ndarray]:
    """The arrival rate of jobs at `rates` req/s starting at `starts`, `length` s each (overlapping ones add up)."""
    def rate_fn(t: np.ndarray) -> np.ndarray:
        out = np.zeros_like(t)
        for s, r in zip(starts, rates, strict=True):
            out += np.where((t >= s) & (t < s + length), r, 0.0)
        return out
    return rate_fn


def sequential_jobs(rates: tuple[float, ...] = (10.0, 15.0, 12.0), length: float = 300.0, pause: float = 60.0,
                    *, seed: int = 0, tail: float = 300.0, **kw) -> Workload:
    """The seed experiments' jobs one after another: `length` s at each rate, `pause` s of nothing between."""
    starts = [i * (length + pause) for i in range(len(rates))]
    duration = starts[-1] + length + tail

    rate_fn = _jobs(starts, rates, length)

    kw.setdefault("name", "sequential-jobs")
    kw.setdefault("description", f"jobs of {', '.join(f'{r:g}' for r in rates)} req/s one after another, "
                                 f"{length:g} s each, {pause:g} s apart, ShareGPT-like lengths")
    return shaped(rate_fn, duration, seed=seed, rate_max=max(rates), steps=tuple(float(s) for s in starts[1:]), **kw)


def flash_crowd(base: float, peak: float, at: float, duration: float, *, rise: float = 10.0, decay: float = 120.0,
                seed: int = 0, **kw) -> Workload:
    """`base` req/s, then at `at` a linear rise to `peak` within `rise` s that decays back exponentially
    (time constant `decay` s)."""

    def rate_fn(t: np.ndarray) -> np.ndarray:
        up = base + (peak - base) * np.clip((t - at) / rise, 0.0, 1.0)
        down = base + (peak - base) * np.exp(-np.maximum(0.0, t - at - rise) / decay)
        return np.where(t < at + rise, up, down)

    kw.setdefault("name", "flash-crowd")
    return shaped(rate_fn, duration, seed=seed, rate_max=max(base, peak), steps=(float(at),), **kw)


def rescale(w: Workload, *, speedup: float = 1.0, rate_scale: float = 1.0, seed: int = 0) -> Workload:
    """Compress time by `speedup`; thin (< 1) or multiply (> 1) requests by `rate_scale`, copies jittered
    by up to one mean inter-arrival gap so that they do not arrive in lockstep."""
    times, prompt, output = w.times / speedup, w.prompt_tokens, w.output_tokens
    duration = w.duration / speedup
    if rate_scale != 1.0 and len(times):
        rng = np.random.default_rng(seed)
        copies = np.floor(rate_scale) + (rng.uniform(size=len(times)) < rate_scale - np.floor(rate_scale))
        idx = np.repeat(np.arange(len(times)), copies.astype(np.int64))
        first = np.ones(len(idx), dtype=bool)
        first[1:] = idx[1:] != idx[:-1]
        gap = duration / max(1, len(times))
        jitter = np.where(first, 0.0, rng.uniform(0.0, gap, len(idx)))
        times = np.minimum(times[idx] + jitter, duration)
        prompt, output = prompt[idx], output[idx]
        order = np.argsort(times, kind="stable")
        times, prompt, output = times[order], prompt[order], output[order]
    name = (w.name + (f" x{speedup:g} speed" if speedup != 1 else "")
            + (f" x{rate_scale:g} rate" if rate_scale != 1 else ""))
    return Workload(name, times, prompt, output, duration, tuple(s / speedup for s in w.steps), w.description,
                    dict(w.meta, speedup=speedup, rate_scale=rate_scale))


def _parse_ts(text: str) -> float:
    """'2023-11-16 18:15:46.6805900' → POSIX seconds (fractions beyond microseconds dropped)."""
    date, _, frac = text.strip().partition(".")
    base = datetime.strptime(date, "%Y-%m-%d %H:%M:%S").timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def azure_csv(path: str | Path, *, speedup: float = 1.0, rate_scale: float = 1.0, seed: int = 0,
              limit: int | None = None) -> Workload:
    """The Azure LLM inference trace (columns TIMESTAMP, ContextTokens, GeneratedTokens), time from 0."""
    times, prompt, output = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            times.append(_parse_ts(row["TIMESTAMP"]))
            prompt.append(int(row["ContextTokens"]))
            output.append(int(row["GeneratedTokens"]))
            if limit is not None and len(times) >= limit:
                break
    return _from_lists(Path(path).stem, times, prompt, output, speedup, rate_scale, seed,
                       "Azure LLM inference trace 2023 (CC BY 4.0, Microsoft Azure)")


def load_file(path: str | Path, *, speedup: float = 1.0, rate_scale: float = 1.0, seed: int = 0) -> Workload:
    """A trace in our format (CSV `time_s,prompt_tokens,output_tokens` or JSONL), or an Azure-style CSV."""
    path = Path(path)
    with open(path, newline="") as f:
        head = f.readline()
    if "TIMESTAMP" in head:
        return azure_csv(path, speedup=speedup, rate_scale=rate_scale, seed=seed)
    times, prompt, output = [], [], []
    if path.suffix in (".jsonl", ".ndjson") or head.lstrip().startswith("{"):
        with open(path) as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    times.append(float(obj["time_s"]))
                    prompt.append(int(obj["prompt_tokens"]))
                    output.append(int(obj["output_tokens"]))
    else:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                times.append(float(row["time_s"]))
                prompt.append(int(row["prompt_tokens"]))
                output.append(int(row["output_tokens"]))
    return _from_lists(path.stem, times, prompt, output, speedup, rate_scale, seed, f"trace {path.name}")


def _from_lists(name: str, times: list[float], prompt: list[int], output: list[int], speedup: float,
                rate_scale: float, seed: int, description: str) -> Workload:
    t = np.asarray(times, dtype=float)
    order = np.argsort(t, kind="stable")
    t = t[order] - (t.min() if len(t) else 0.0)
    w = Workload(name, t, np.asarray(prompt, dtype=np.int64)[order],
                 np.maximum(1, np.asarray(output, dtype=np.int64)[order]),
                 float(math.ceil(t.max() + 1)) if len(t) else 0.0, (), description)
    return rescale(w, speedup=speedup, rate_scale=rate_scale, seed=seed)


def save_csv(w: Workload, path: str | Path) -> None:
    """Write a workload in our CSV format."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time_s", "prompt_tokens", "output_tokens"])
        for t, p, o in zip(w.times, w.prompt_tokens, w.output_tokens, strict=True):
            out.writerow([f"{t:.6f}", int(p), int(o)])
