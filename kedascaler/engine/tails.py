"""The share of requests that miss the SLO on one replica: the tails the mean-value queueing model cannot see.
Pure numpy, vectorised over rows (variants) like `kedascaler.engine.queueing`.

The queueing model sizes for the *mean* ITL and TTFT. An SLO is met per request, and with chunked prefill every
prompt prefilled stalls the decode steps it shares: a request's mean ITL is its decode step plus the prefill
work that arrived during its life, spread over its output tokens. So a short answer that shares its life with a
long prompt misses its ITL target while the mean is fine. With request lengths known by their means only (vLLM's
counters), both lengths are taken lognormal with coefficient of variation `cv` (≈ 1 for chat and code traces)
and evaluated at K quantiles:

- a request with o output tokens, living L = (o − 1)·ITL_m, meets prefill work S = Σ e_j of the N ~ Poisson(λ·L)
  prompts arriving meanwhile, e = δ·p + (γ − α)⁺·⌈p / chunk⌉ ms each (with learned `effective` lines, the
  measured prefill γ + δ·p less the decode steps it spanned) (compound Poisson: E[S] = λL·E[e],
  Var[S] = λL·E[e²]); its mean ITL is ITL_m + (S − E[S]) / (o − 1), ITL_m = d / (1 − ρ) the mean (d the decode
  step at the mean batch, ρ = λ·E[e] the share of time spent prefilling; with learned `effective` lines d
  already holds the mean stall); it misses when that is over the target (normal approximation of S);
- a request's TTFT is its own prefill (e plus a decode step per chunk) after the prefill work ahead of it
  (M/G/1: waiting > t with probability ρ·exp(−t·(1 − ρ) / r), r = E[e²] / 2E[e] the mean residual) and the
  batch-slot wait of the queueing model.

`miss_share` is the expected share missing either target; `max_rate_within` the largest λ keeping it within a
budget (the SLO's attainment target), by bisection over all rows together.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from kedascaler.engine.perfmodel import MODE_CODES
from kedascaler.engine.queueing import QueueSolver, ReplicaArrays

QUANTILES = 32  # points of each length distribution
DEFAULT_CHUNK = 2048  # vLLM's max_num_batched_tokens default with chunked prefill
_Z = np.array([NormalDist().inv_cdf((k + 0.5) / QUANTILES) for k in range(QUANTILES)])
_ERFC_TWO, _ERFC_ZERO = -6.0, 27.3  # math.erfc is exactly 2.0 at or below the first, exactly 0.0 at or above the second


_ERFC_CHUNK = 16_384  # ≈ 0.7 ms of math.erfc: the event loop's thread may take the GIL between pieces


def _erfc(x: np.ndarray) -> np.ndarray:
    """math.erfc elementwise (numpy has none): called only where it is not exactly 2 or 0, the same floats."""
    out = np.where(x <= _ERFC_TWO, 2.0, 0.0)
    inside = (x > _ERFC_TWO) & (x < _ERFC_ZERO)
    if inside.any():
        values = x[inside]
        found = np.empty(len(values))
        for start in range(0, len(values), _ERFC_CHUNK):  # in pieces: one call over 320,000 values held the GIL 40 ms
            found[start:start + _ERFC_CHUNK] = list(map(math.erfc, values[start:start + _ERFC_CHUNK].tolist()))
        out[inside] = found
    nan = np.isnan(x)
    if nan.any():
        out[nan] = np.nan
    return out


def lognormal_points(mean: np.ndarray, cv: float) -> np.ndarray:
    """(rows, QUANTILES): the quantiles of a lognormal law with this mean and coefficient of variation."""
    s2 = math.log1p(cv * cv)
    mu = np.log(np.maximum(mean, 1e-9)) - s2 / 2.0
    out: np.ndarray = np.exp(mu[:, None] + math.sqrt(s2) * _Z[None, :])
    return out


class _Lengths:
    """What the tails of these rows need that does not depend on the arrival rate: the length quantiles, the
    prefill chunks and the stall each prompt adds to a decode step (computed once per bisection)."""

    def __init__(self, params: ReplicaArrays, cv: float, chunk: float) -> None:
        self.prompts = lognormal_points(params.prompt_tokens, cv)
        self.outputs = np.maximum(1.0, lognormal_points(params.output_tokens, cv))
        self.chunks = np.ceil(self.prompts / max(1.0, chunk))
        self.effective = params.mixed == MODE_CODES["effective"]
        self.step_stall = (params.delta[:, None] * self.prompts
                           + np.maximum(params.gamma - params.alpha, 0.0)[:, None] * self.chunks)
        self.gaps = np.maximum(self.outputs - 1.0, 1.0)


def miss_share(params: ReplicaArrays, rate: np.ndarray, itl_ms: float | np.ndarray, ttft_ms: float | np.ndarray,
               cv: float = 1.0, chunk: float = DEFAULT_CHUNK, solver: QueueSolver | None = None) -> np.ndarray:
    """Per row, the expected share of requests missing the ITL or the TTFT target at arrival rate `rate` (the
    targets: one for every row, or one per row). `solver`: these rows' `QueueSolver`, when the caller has one."""
    return _miss_share(params, rate, itl_ms, ttft_ms, solver or QueueSolver(params), _Lengths(params, cv, chunk))


def _miss_share(params: ReplicaArrays, rate: np.ndarray, itl_ms: float | np.ndarray, ttft_ms: float | np.ndarray,
                solver: QueueSolver, lengths: _Lengths) -> np.ndarray:
    lam = np.maximum(np.asarray(rate, dtype=np.float64), 0.0)
    ttft = np.asarray(ttft_ms, dtype=np.float64)
    ttft_col = ttft[:, None] if ttft.ndim else ttft
    metrics = solver.metrics(lam)
    batch = np.maximum(metrics.mean_running, 1.0)
    decode = params.alpha + params.beta * batch
    prompts, chunks, effective = lengths.prompts, lengths.chunks, lengths.effective
    # a learned prefill line is the time one request's prefill took, its chunk steps whole: the stall it caused
    # the others is that less the decode steps that would have run anyway
    measured_stall = np.maximum(0.0, params.gamma[:, None] + params.delta[:, None] * prompts
                                - chunks * decode[:, None])
    stall = np.where(effective[:, None], measured_stall, lengths.step_stall)
    mean_e, mean_e2 = stall.mean(axis=1), (stall * stall).mean(axis=1)
    rho = lam * mean_e / 1000.0
    busy = rho >= 1.0
    rho = np.minimum(rho, 0.999)
    itl_mean = np.where(effective, decode, decode / (1.0 - rho))
    gaps = lengths.gaps
    life = gaps * itl_mean[:, None] / 1000.0
    spread = np.sqrt(np.maximum(lam[:, None] * life * mean_e2[:, None], 1e-18))
    z = (itl_ms - itl_mean)[:, None] * gaps / spread
    p_itl = (0.5 * _erfc(z / math.sqrt(2.0))).mean(axis=1)
    residual = np.maximum(mean_e2 / np.maximum(2.0 * mean_e, 1e-12), 1e-9)
    own = stall + chunks * decode[:, None]
    slack = ttft_col - own - metrics.wait_ms[:, None]
    p_ttft = np.where(slack <= 0, 1.0,
                      rho[:, None] * np.exp(-np.maximum(slack, 0.0) * (1.0 - rho[:, None]) / residual[:, None]))
    out: np.ndarray = np.where(busy, 1.0, np.minimum(1.0, p_itl + p_ttft.mean(axis=1)))
    return out


def max_rate_within(params: ReplicaArrays, upper: np.ndarray, itl_ms: float | np.ndarray | None,
                    ttft_ms: float | np.ndarray | None, budget: float, cv: float = 1.0, iterations: int = 14,
                    solver: QueueSolver | None = None) -> np.ndarray:
    """Per row, the largest λ in [0, upper] whose miss share stays within `budget` (bisection, all rows at once;
    the feasible end of the bracket, so it never overstates). A target None (or inf in a per-row array) is no
    constraint; each row's answer is the same whatever other rows are bisected with it. `solver`: these rows'
    `QueueSolver`, when the caller has one (the queueing model's grid is built once either way)."""
    upper = np.maximum(np.asarray(upper, dtype=np.float64), 0.0)
    if len(params) == 0 or (itl_ms is None and ttft_ms is None):
        return upper
    itl = math.inf if itl_ms is None else itl_ms
    ttft = math.inf if ttft_ms is None else ttft_ms
    model = solver if solver is not None else QueueSolver(params)
    lengths = _Lengths(params, cv, DEFAULT_CHUNK)
    lo, hi = np.zeros_like(upper), upper.copy()
    ok_top = _miss_share(params, hi, itl, ttft, model, lengths) <= budget
    lo = np.where(ok_top, hi, lo)
    active = ~ok_top
    for _ in range(iterations):
        if not active.any():
            break
        mid = 0.5 * (lo + hi)
        ok = _miss_share(params, np.where(active, mid, lo), itl, ttft, model, lengths) <= budget
        lo = np.where(active & ok, mid, lo)
        hi = np.where(active & ~ok, mid, hi)
    return lo


__all__ = ["DEFAULT_CHUNK", "QUANTILES", "lognormal_points", "max_rate_within", "miss_share"]
