"""A queueing model of one vLLM replica, vectorised over many variants at once (numpy, no scipy).

The replica is a birth–death chain on n = requests in the replica (running + waiting), arrivals Poisson at λ:
- n ≤ B (B: the batch limit, max_batch_size or the KV bound): all n run; they complete at
  μ(n) = 1000·n / (prefill(n) + (o − 1)·ITL(n)) requests/s (`kedascaler.engine.perfmodel` for the units and
  the two prefill modes: `lockstep` as WVA, `mixed` as vLLM v1 — the default);
- B < n ≤ B + Q: B run at μ(B), n − B wait; Q is the bound of the waiting queue (arrivals beyond are lost —
  vLLM's queue is unbounded; a large Q stands for it and keeps every λ computable).
Stationary distribution: π_n ∝ λⁿ / Π_{k≤n} μ(k), computed in log space (cumulative sums of log μ), and the
geometric tail beyond B in closed form, so Q costs nothing. From it:
- `mean_running` E[min(n, B)], `mean_waiting` E[(n − B)⁺], `blocking` π_{B+Q}, `throughput` λ(1 − blocking);
- `itl_ms`: the ITL a token sees, ITL(b̂) at b̂ = E[b²]/E[b] over the running batch b (tokens are emitted in
  proportion to b, so the token-weighted mean of a linear ITL(b); → α + β at light load);
- `wait_ms`: queueing delay by Little's law, E[waiting] / throughput;
- `prefill_ms`: prefill(b̂), the batch a request shares its prefill with (→ γ + δ·p at light load, γ ≥ α);
  `step_wait_ms`: the rest of the engine step in progress when a request arrives, P(busy)·(α + β·b̂)/2;
  `ttft_ms` = wait_ms + step_wait_ms + prefill_ms (vLLM's TTFT includes the queue).
`max_arrival_rate` bisects, for all rows together, the largest λ whose ITL and TTFT meet the targets.
Rows are grouped by B (sorted) into blocks of bounded size so the padding to a common grid stays small; a row's
result never depends on the other rows of its block (sums run left to right, padding adds zeros).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kedascaler.engine.frozen import quick
from kedascaler.engine.perfmodel import MODE_CODES, PerfModel, cycle_ms, itl_seen_ms, prefill_seen_ms

DEFAULT_MAX_QUEUE = 1000  # requests waiting per replica in the model (vLLM: unbounded)
DEFAULT_REL_TOL = 1e-4  # bisection stops when the bracket is this fraction of μ(B)
_BLOCK_ELEMENTS = 1 << 18  # rows × (B + 1) per block of work: a few MiB, cache friendly
_TINY_RATE = 1e-300  # λ = 0 is evaluated as this (the light-load limit, exactly in float64)


def _array(value: object, size: int | None, dtype: type) -> np.ndarray:
    out: np.ndarray = np.asarray(value, dtype=dtype)
    return out if size is None else np.broadcast_to(out, (size,)).astype(dtype, copy=True)


@quick
@dataclass(frozen=True, eq=False)
class ReplicaArrays:
    """Per-row (one row per variant, or per variant × scenario) inputs of the model, all 1-D of one length."""

    alpha: np.ndarray  # ms
    beta: np.ndarray  # ms per running request
    gamma: np.ndarray  # ms
    delta: np.ndarray  # ms per prompt token prefilled
    max_batch: np.ndarray  # int ≥ 1: the batch limit B (already bounded by the KV cache)
    prompt_tokens: np.ndarray  # mean prompt length p
    output_tokens: np.ndarray  # mean output length o (≥ 1)
    max_queue: np.ndarray  # int ≥ 0: Q
    mixed: np.ndarray  # int8 prefill-mode code (perfmodel.MODE_CODES): 0 lockstep, 1 mixed, 2 effective

    @classmethod
    def of(cls, *, alpha: object, beta: object, gamma: object, delta: object, max_batch: object,
           prompt_tokens: object, output_tokens: object, max_queue: object = DEFAULT_MAX_QUEUE,
           mixed: object = True) -> ReplicaArrays:
        """Broadcast scalars and arrays to one length; B and Q become integers, B ≥ 1, o ≥ 1."""
        parts: list[Any] = [alpha, beta, gamma, delta, max_batch, prompt_tokens, output_tokens, max_queue, mixed]
        shape = np.broadcast_shapes(*(np.shape(p) for p in parts))
        size = int(np.prod(shape)) if shape else 1
        return cls(
            alpha=_array(alpha, size, np.float64), beta=_array(beta, size, np.float64),
            gamma=_array(gamma, size, np.float64), delta=_array(delta, size, np.float64),
            max_batch=np.maximum(1, _array(max_batch, size, np.int64)),
            prompt_tokens=np.maximum(0.0, _array(prompt_tokens, size, np.float64)),
            output_tokens=np.maximum(1.0, _array(output_tokens, size, np.float64)),
            max_queue=np.maximum(0, _array(max_queue, size, np.int64)),
            mixed=_array(mixed, size, np.int8),
        )

    @classmethod
    def from_models(cls, models: Sequence[PerfModel], prompt_tokens: object, output_tokens: object,
                    max_queue: object = DEFAULT_MAX_QUEUE) -> ReplicaArrays:
        """Rows from PerfModels; each row's batch limit also honours its KV capacity for these lengths."""
        size = len(models)
        prompt = _array(prompt_tokens, size, np.float64)
        output = _array(output_tokens, size, np.float64)
        limits = [m.batch_limit(float(p), float(o)) for m, p, o in zip(models, prompt, output, strict=True)]
        return cls.of(alpha=[m.alpha for m in models], beta=[m.beta for m in models],
                      gamma=[m.gamma for m in models], delta=[m.delta for m in models],
                      max_batch=limits, prompt_tokens=prompt, output_tokens=output, max_queue=max_queue,
                      mixed=[MODE_CODES[m.prefill_mode] for m in models])

    def __len__(self) -> int:
        return int(self.alpha.shape[0])

    def take(self, rows: np.ndarray) -> ReplicaArrays:
        """The given rows, in that order."""
        return ReplicaArrays(*(getattr(self, f)[rows] for f in _FIELDS))

    def service_rate(self, batch: object) -> np.ndarray:
        """μ(n) in requests/s for each row (n broadcast against the rows, capped at B; n ≤ 0 gives 0)."""
        n = np.minimum(np.asarray(batch, dtype=np.float64), self.max_batch)
        cycle = cycle_ms(self.alpha, self.beta, self.gamma, self.delta, n, self.prompt_tokens, self.output_tokens,
                         self.mixed)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, 1000.0 * n / cycle, 0.0)

    def peak_rate(self) -> np.ndarray:
        """μ(B): what a saturated replica completes, requests/s."""
        return self.service_rate(self.max_batch)


_FIELDS = ("alpha", "beta", "gamma", "delta", "max_batch", "prompt_tokens", "output_tokens", "max_queue", "mixed")


@quick
@dataclass(frozen=True, eq=False)
class QueueMetrics:
    """Steady-state predictions per row, for the arrival rate each row was given."""

    arrival_rate: np.ndarray  # λ offered, requests/s
    throughput: np.ndarray  # requests/s accepted and served: λ(1 − blocking)
    mean_running: np.ndarray  # E[batch]
    mean_waiting: np.ndarray  # E[queue length]
    blocking: np.ndarray  # probability that the waiting queue is full (arrivals lost)
    itl_ms: np.ndarray  # token-weighted mean inter-token latency
    prefill_ms: np.ndarray  # a request's prefill
    wait_ms: np.ndarray  # mean time in the waiting queue (Little's law)
    step_wait_ms: np.ndarray  # mean rest of the engine step in progress at arrival
    ttft_ms: np.ndarray  # wait_ms + step_wait_ms + prefill_ms

    def row(self, i: int) -> dict[str, float]:
        """One row as plain floats (for reasons and logs)."""
        return {f: float(getattr(self, f)[i]) for f in self.__dataclass_fields__}


def _log_geometric(x: np.ndarray, count: np.ndarray) -> np.ndarray:
    """log Σ_{j=0}^{count−1} e^{j·x}, stable for any x (count ≥ 1)."""
    a = -np.abs(x)
    safe = np.where(a == 0.0, -1.0, a)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        neg = np.log(-np.expm1(count * safe)) - np.log(-np.expm1(safe))
    neg = np.where(a == 0.0, np.log(np.maximum(count, 1)), neg)
    out: np.ndarray = np.where(x > 0, (count - 1) * x + neg, neg)
    return out


def _geometric_mean_index(x: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean of k over k = 1..count with weights e^{k·x} (a truncated geometric law), stable for any x."""
    a = -np.abs(x)
    small = np.abs(x) * np.maximum(count, 1) < 1e-9
    safe = np.where(small, -1.0, a)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        neg = -1.0 / np.expm1(safe) - count / np.expm1(-count * safe)
    neg = np.where(small, (count + 1) / 2.0, neg)
    return np.where(x > 0, count + 1 - neg, neg)


def column_sums(a: np.ndarray) -> np.ndarray:
    """Σ of each column of a C-contiguous (grid × rows) array, added top to bottom: a column's sum is the same
    whatever columns share the block and however far it is padded with zeros (a pairwise or BLAS sum depends on
    both), so one variant's capacity never depends on which other variants are evaluated with it — what lets the
    cycle batch and cache them. numpy reduces a leading axis of two or more columns row by row, in order (the
    same floats as `np.cumsum(a, axis=0)[-1]`, ~20× faster; tests/engine/test_queueing.py pins it); one column
    would be summed pairwise, so it is accumulated."""
    if a.ndim != 2 or a.shape[1] < 2 or not a.flags.c_contiguous:
        out: np.ndarray = np.cumsum(a, axis=0)[-1]
    else:
        out = np.add.reduce(a, axis=0)
    return out


class _Block:
    """Rows of similar B on one grid n = 0..B_max, with log Π μ(k) precomputed (it does not depend on λ). Laid out
    grid × rows, so that every sum over the grid runs over whole rows of memory."""

    def __init__(self, params: ReplicaArrays, rows: np.ndarray) -> None:
        self.rows = rows
        self.p = params.take(rows)
        size = len(rows)
        width = int(self.p.max_batch.max())
        n = np.arange(width + 1, dtype=np.float64)
        self.n = n[:, None]
        self.n2 = (n * n)[:, None]
        k = n[1:, None]
        log_mu = np.log(self._mu(k))
        inside = k <= self.p.max_batch[None, :]
        cum = np.cumsum(np.where(inside, log_mu, 0.0), axis=0)
        self.log_prod = np.concatenate([np.zeros((1, size)), np.where(inside, cum, np.inf)], axis=0)
        b = self.p.max_batch
        self.b = b.astype(np.float64)
        self.log_prod_b = cum[b - 1, np.arange(size)]
        self.log_mu_b = log_mu[b - 1, np.arange(size)]
        self.q = self.p.max_queue.astype(np.float64)

    def _mu(self, k: np.ndarray) -> np.ndarray:
        p = self.p
        cycle = cycle_ms(p.alpha[None, :], p.beta[None, :], p.gamma[None, :], p.delta[None, :], k,
                         p.prompt_tokens[None, :], p.output_tokens[None, :], p.mixed[None, :])
        with np.errstate(divide="ignore"):
            mu: np.ndarray = 1000.0 * k / cycle
        return mu

    def metrics(self, rate: np.ndarray) -> tuple[np.ndarray, ...]:
        """(throughput, running, waiting, blocking, itl_ms, prefill_ms, wait_ms, step_wait_ms, ttft_ms) at λ = rate."""
        p = self.p
        lam = np.maximum(rate, _TINY_RATE)
        log_lam = np.log(lam)
        log_w = self.n * log_lam[None, :] - self.log_prod  # −inf beyond each row's B
        log_w_b = log_lam * self.b - self.log_prod_b
        x = log_lam - self.log_mu_b  # log ρ of the tail beyond B
        has_tail = self.q > 0
        q1 = np.maximum(self.q, 1.0)
        log_tail = np.where(has_tail, log_w_b + x + _log_geometric(x, q1), -np.inf)
        top = np.maximum(log_w.max(axis=0), log_tail)
        weights = np.exp(log_w - top[None, :])
        s0 = column_sums(weights)
        s1 = column_sums(weights * self.n)
        s2 = column_sums(weights * self.n2)
        tail = np.exp(log_tail - top)
        z = s0 + tail
        running = (s1 + self.b * tail) / z
        running2 = (s2 + self.b * self.b * tail) / z
        waiting = np.where(has_tail, tail / z * _geometric_mean_index(x, q1), 0.0)
        blocking = np.exp(np.where(has_tail, log_w_b + self.q * x, log_w_b) - top) / z
        throughput = rate * (1.0 - blocking)
        with np.errstate(divide="ignore", invalid="ignore"):
            seen = np.where(running > 0, running2 / running, 1.0)
            seen = np.where(np.isfinite(seen), np.maximum(seen, 1.0), 1.0)
            wait_s = np.where(throughput > 0, waiting / throughput, 0.0)
        itl = itl_seen_ms(p.alpha, p.beta, p.gamma, p.delta, seen, p.prompt_tokens, p.output_tokens, p.mixed)
        prefill = prefill_seen_ms(p.alpha, p.beta, p.gamma, p.delta, seen, p.prompt_tokens, p.mixed)
        wait_ms = 1000.0 * wait_s
        busy = 1.0 - weights[0] / z
        step_wait = busy * (p.alpha + p.beta * seen) / 2.0
        return throughput, running, waiting, blocking, itl, prefill, wait_ms, step_wait, wait_ms + step_wait + prefill


def _blocks(params: ReplicaArrays) -> list[_Block]:
    """Rows sorted by B, cut into blocks whose padded grid stays under _BLOCK_ELEMENTS (one row at least)."""
    order = np.argsort(params.max_batch, kind="stable")
    sizes = params.max_batch[order] + 1
    blocks, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * sizes[end] <= _BLOCK_ELEMENTS:
            end += 1
        blocks.append(_Block(params, order[start:end]))
        start = end
    return blocks


class QueueSolver:
    """The model of every row, ready to be evaluated at any arrival rates: the blocks and their log Π μ(k) are
    built once (they do not depend on λ), so a bisection pays for them once, not at every step."""

    def __init__(self, params: ReplicaArrays) -> None:
        self.params = params
        self.blocks = _blocks(params) if len(params) else []

    def evaluate(self, rate: np.ndarray) -> list[np.ndarray]:
        """The nine outputs of `_Block.metrics`, per row, at λ = rate (one per row, ≥ 0)."""
        size = len(self.params)
        outs = [np.empty(size) for _ in range(9)]
        for block in self.blocks:
            for out, value in zip(outs, block.metrics(rate[block.rows]), strict=True):
                out[block.rows] = value
        return outs

    def metrics(self, arrival_rate: object) -> QueueMetrics:
        """`replica_metrics` of these rows."""
        size = len(self.params)
        rate = np.maximum(0.0, _array(arrival_rate, size, np.float64))
        if size == 0:
            empty = np.empty(0)
            return QueueMetrics(*([empty] * 10))
        return QueueMetrics(rate, *self.evaluate(rate))


def replica_metrics(params: ReplicaArrays, arrival_rate: object, solver: QueueSolver | None = None) -> QueueMetrics:
    """Steady-state ITL, TTFT, batch, queue and throughput of one replica of each row at its arrival rate (req/s);
    `solver`: these rows' `QueueSolver`, when the caller evaluates them at several rates."""
    return (solver if solver is not None else QueueSolver(params)).metrics(arrival_rate)


def max_arrival_rate(params: ReplicaArrays, itl_target_ms: object, ttft_target_ms: object, *,
                     rel_tol: float = DEFAULT_REL_TOL, solver: QueueSolver | None = None) -> np.ndarray:
    """The largest λ (req/s) one replica of each row carries with ITL ≤ its target and TTFT ≤ its target.

    0 where even a lone request misses a target (α + β > ITL target, or γ + δ·p > TTFT target). Bracketed in
    [0, μ(B)] (a replica cannot usefully take more than it completes) and bisected to `rel_tol`·μ(B), all rows
    together; the returned value is the feasible end of the bracket, so it never overstates capacity.
    A target of inf (or None) is no constraint. `solver`: these rows' `QueueSolver`, when the caller has one.
    """
    size = len(params)
    if size == 0:
        return np.empty(0)
    itl_t = _array(np.inf if itl_target_ms is None else itl_target_ms, size, np.float64)
    ttft_t = _array(np.inf if ttft_target_ms is None else ttft_target_ms, size, np.float64)
    model = solver if solver is not None else QueueSolver(params)

    def feasible(rate: np.ndarray) -> np.ndarray:
        out = model.evaluate(rate)
        itl, ttft = out[4], out[8]
        return (itl <= itl_t * (1 + 1e-12)) & (ttft <= ttft_t * (1 + 1e-12))

    hi = params.peak_rate()
    lo = np.zeros(size)
    ok_light = feasible(lo)
    ok_peak = feasible(hi)
    lo = np.where(ok_peak, hi, lo)
    active = ok_light & ~ok_peak
    iterations = max(1, math.ceil(math.log2(1.0 / max(rel_tol, 1e-15))))
    for _ in range(iterations):
        if not active.any():
            break
        mid = 0.5 * (lo + hi)
        ok = feasible(np.where(active, mid, lo))
        lo = np.where(active & ok, mid, lo)
        hi = np.where(active & ~ok, mid, hi)
    return np.where(ok_light, lo, 0.0)
