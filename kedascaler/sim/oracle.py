"""The oracle: the cost floor every ratio refers to, and how a replica's capacity is measured.

`oracle` knows the arrival rate of the next 30 s (the busiest 15 s window in it) and starts pods instantly;
each 15 s it runs the cheapest mix of variants whose capacity at the SLO covers that rate (+10% headroom)
and any backlog within 30 s. A variant's capacity is measured, not assumed: the highest Poisson rate at which
one simulated replica keeps 99.5% of this workload's requests (its own length distribution) within the SLO
(`calibrated_capacity`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np

from kedascaler.sim.baselines import _Base
from kedascaler.sim.config import SLO, SimConfig, VariantConfig
from kedascaler.sim.perf import PerfParams
from kedascaler.sim.policy_api import Observation
from kedascaler.sim.replica import FastReplica, SimRequest
from kedascaler.sim.workloads import Workload


def replica_capacity(params: PerfParams, prompt_mean: float, output_mean: float, slo: SLO,
                     kv_tokens: float | None = None, utilization: float = 0.75) -> float:
    """Requests/s one replica carries within the SLO, from the performance model.

    The batch n is the largest that fits max_num_seqs, 90% of the KV cache (`kv_tokens` per request in
    flight, default prompt + output/2) and keeps a decode step under the ITL target; WVA's
    μ(n) = n / (prefill(n) + (out − 1)·ITL(n)) at that n, times `utilization` for queueing headroom (TTFT).
    """
    kv = kv_tokens if kv_tokens is not None else prompt_mean + output_mean / 2
    n_kv = 0.9 * params.num_gpu_blocks * params.block_size / (kv + params.block_size / 2)
    n_itl = (slo.itl * 1000.0 - params.alpha) / params.beta if params.beta > 0 else math.inf
    n = max(1, int(min(params.max_num_seqs, n_kv, n_itl)))
    return utilization * params.max_throughput(max(1, round(prompt_mean)), max(1, round(output_mean)), n)


def slo_attainment_at(params: PerfParams, rate: float, prompt: np.ndarray, output: np.ndarray, slo: SLO,
                      duration: float = 240.0, warmup: float = 30.0, seed: int = 0) -> float:
    """Fraction of requests within the SLO on one replica under Poisson arrivals at `rate`, lengths drawn
    from (prompt, output) pairs; requests arriving in the first `warmup` seconds are not counted."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * duration)
    times = np.sort(rng.uniform(0.0, duration, n))
    pick = rng.integers(0, len(prompt), n)
    rep = FastReplica(params)
    reqs = [SimRequest(i, float(t), int(prompt[j]), int(output[j])) for i, (t, j) in enumerate(zip(times, pick, strict=True))]
    for req in reqs:
        rep.advance(req.arrival)
        rep.submit(req, req.arrival)
    rep.advance(duration + 600.0)
    counted = [r for r in reqs if r.arrival >= warmup]
    if not counted:
        return 1.0
    ok = sum(1 for r in counted if r.finished == r.finished and r.ttft <= slo.ttft and r.itl <= slo.itl)
    return ok / len(counted)


def calibrated_capacity(params: PerfParams, prompt: np.ndarray, output: np.ndarray, slo: SLO,
                        attainment: float = 0.995, seeds: tuple[int, ...] = (0, 1)) -> float:
    """The highest Poisson rate (req/s) one replica serves with `attainment` of requests within the SLO (in
    every seed's run), by bisection around the analytic estimate (`replica_capacity`): a replica measured, not assumed."""
    kv = float(np.sum((prompt + output / 2) * output) / np.sum(output))
    guess = replica_capacity(params, float(prompt.mean()), float(output.mean()), slo, kv, utilization=1.0)
    lo, hi = 0.0, 1.5 * guess
    for _ in range(8):
        mid = (lo + hi) / 2
        if all(slo_attainment_at(params, mid, prompt, output, slo, seed=seed) >= attainment for seed in seeds):
            lo = mid
        else:
            hi = mid
    return max(lo, 0.05 * guess)


def workload_capacity(workload: Workload, variants: tuple[VariantConfig, ...], slo: SLO,
                      calibrate: bool = True) -> dict[str, float]:
    """Per variant: requests/s one replica carries within the SLO for this workload's lengths: measured on a
    simulated replica (`calibrated_capacity`), or from the performance model alone (`calibrate=False`)."""
    p = workload.prompt_tokens.astype(float)
    o = workload.output_tokens.astype(float)
    if len(p) == 0:
        p, o = np.array([230.0]), np.array([203.0])
    key = (hash(p.tobytes()), hash(o.tobytes()), slo, calibrate, tuple((v.name, v.params) for v in variants))
    if key not in _CAPACITY_CACHE:
        if calibrate:
            _CAPACITY_CACHE[key] = {v.name: calibrated_capacity(v.params, p, o, slo) for v in variants}
        else:
            kv = float(np.sum((p + o / 2) * o) / np.sum(o))
            _CAPACITY_CACHE[key] = {v.name: replica_capacity(v.params, float(p.mean()), float(o.mean()), slo, kv)
                                    for v in variants}
    return dict(_CAPACITY_CACHE[key])


_CAPACITY_CACHE: dict = {}


def cheapest_mix(rate: float, variants: tuple[VariantConfig, ...], capacity: Mapping[str, float]) -> dict[str, int]:
    """The replicas per variant of least cost whose capacity covers `rate` (0 for none when rate is 0)."""
    if rate <= 0:
        return {v.name: 0 for v in variants}
    ranges = [range(0, min(v.max_replicas, math.ceil(rate / capacity[v.name])) + 1) for v in variants]
    best, best_key = None, None
    for combo in itertools.product(*ranges):
        cap = sum(n * capacity[v.name] for n, v in zip(combo, variants, strict=True))
        if cap < rate:
            continue
        key = (sum(n * v.cost for n, v in zip(combo, variants, strict=True)), sum(combo))
        if best_key is None or key < best_key:
            best, best_key = combo, key
    if best is None:  # the limits cannot carry it: everything
        best = tuple(v.max_replicas for v in variants)
    return {v.name: n for n, v in zip(best, variants, strict=True)}


def future_rates(workload: Workload, interval: float, lookahead: float = 30.0, window: float | None = None,
                 stride: float = 5.0) -> np.ndarray:
    """Per control interval k: the highest arrival rate over `window`-second windows (default: the interval)
    that start between the interval's start and `lookahead` seconds later, every `stride` seconds."""
    window = window or interval
    n = max(1, math.ceil(workload.duration / interval) + 1)
    out = np.zeros(n)
    t = workload.times
    offsets = np.arange(0.0, lookahead + 1e-9, stride)
    for k in range(n):
        starts = k * interval + offsets
        counts = np.searchsorted(t, starts + window) - np.searchsorted(t, starts)
        out[k] = counts.max() / window
    return out


class OraclePolicy(_Base):
    """Knows the next `lookahead` seconds' arrival rate; pods start instantly; cheapest mix that covers it."""

    name = "oracle"
    direct = True
    instant_start = True

    def __init__(self, workload: Workload, config: SimConfig, interval: float = 15.0, lookahead: float = 30.0,
                 headroom: float = 1.1) -> None:
        self.interval = interval
        self.lookahead = lookahead
        self.capacity = workload_capacity(workload, config.variants, config.slo)
        # headroom: a mixed fleet behind a least-loaded router does not split load in proportion to capacity
        self.rates = headroom * future_rates(workload, interval, lookahead)
        self.plans = [cheapest_mix(r, config.variants, self.capacity) for r in self.rates]

    def plan_at(self, now: float) -> dict[str, int]:
        k = min(len(self.plans) - 1, int(now // self.interval))
        return self.plans[k]

    def initial(self, config: SimConfig) -> dict[str, int]:
        return self.plan_at(0.0)

    def decide(self, obs: Observation) -> dict[str, int]:
        plan = self.plan_at(obs.now)
        waiting = sum(p.queue_length for v in obs.variants for p in v.latest) + obs.gateway_queue
        if waiting > 0:  # a backlog is load too: clear it within the lookahead, on top of the arrivals
            k = min(len(self.rates) - 1, int(obs.now // self.interval))
            configs = tuple(v.config for v in obs.variants)
            plan = cheapest_mix(self.rates[k] + waiting / self.lookahead, configs, self.capacity)
        busy = {v.config.name: sum(1 for p in v.latest if p.running + p.queue_length > 0) for v in obs.variants}
        if sum(plan.values()) == 0 and any(busy.values()):  # let the last requests finish where they are
            return {n: max(plan[n], 1 if busy[n] else 0) for n in plan}
        return plan

    def peak(self, config: SimConfig) -> dict[str, int]:
        """The oracle's mix for the highest rate it ever sees: the static fleet."""
        return cheapest_mix(float(np.max(self.rates)) if len(self.rates) else 0.0, config.variants, self.capacity)
