"""The performance model of one model on one accelerator: how long a vLLM step takes, and how big a batch can get.

Units, everywhere in the SLO-sizing code:
- times in **milliseconds**; rates in **requests per second**; lengths in **tokens**.
- decode: one engine step that emits one token for each of the `n` running requests takes
  ITL(n) = α + β·n ms (α: the fixed cost of a step — weights read once; β: the extra cost per request).
- prefill: computing the KV of prompts takes γ + δ·T ms where T is the number of prompt tokens prefilled in
  that step; for `n` requests of `p` tokens prefilled together (WVA's lockstep batch) T = p·n, so
  prefill(n) = γ + δ·p·n; for one request alone prefill(1) = γ + δ·p.
- service rate of a replica with `n` requests in its running batch, for `o` output tokens per request:
  μ(n) = 1000·n / cycle(n) requests/s, cycle(n) = prefill(n) + (o − 1)·ITL(n) the life of one request (ms).
  Two ways to count prefill (`prefill_mode`):
  * `lockstep` — WVA's model (reference/vllm.md): the batch is prefilled together once per cycle,
    prefill(n) = γ + δ·p·n and ITL(n) = α + β·n;
  * `mixed` (default) — vLLM v1 with chunked prefill, and our emulator: each arriving request's prefill joins
    one decode step and stretches it by e = (γ − α)⁺ + δ·p. In steady state about n − 1 other requests arrive
    during one request's life (Little), so a request sees prefill(n) = max(α, γ) + β·(n − 1) + δ·p and
    ITL(n) = α + β·n + (n − 1)·e / (o − 1). Checked against `VLLMEngine` (tests/engine/test_queueing.py);
    lockstep underestimates ITL badly when γ ≫ α (an L40S profile: 29 ms predicted, 49 ms seen).
  * `effective` — coefficients learned online (`kedascaler.engine.estimation`): the fitted ITL line already
    holds the prefill stalls and the fitted prefill line is what one request measured (chunking included),
    so ITL(n) = α̂ + β̂·n and prefill(n) = γ̂ + δ̂·p, with nothing added (lockstep would charge each request
    the prompts of the whole batch: 2–3× the TTFT observed on the Azure trace).
- the running batch is bounded by `max_batch_size` (vLLM `--max-num-seqs`) and by the KV cache: a running
  request holds p tokens of KV at its start and p + o at its end, p + o/2 on average over its life, so about
  ⌊kv_capacity_tokens / (p + o/2)⌋ requests fit in steady state (vLLM admits on the prompt and preempts when
  the cache runs out; p + o, the worst case, made the planner predict queues that never formed).

The emulator's `kedascaler.sim.emulator.PerfParams` takes the same coefficients in ms (its step times come out in s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kedascaler.engine.frozen import quick


class Coefficients(Protocol):
    """Anything with the four coefficients in ms: `kedascaler.config.PerfParams` (a VA's variantProfile),
    `PerfModel`, or an estimate (`kedascaler.engine.estimation`). The engine does not import the config layer."""

    @property
    def alpha(self) -> float: ...
    @property
    def beta(self) -> float: ...
    @property
    def gamma(self) -> float: ...
    @property
    def delta(self) -> float: ...


@quick
@dataclass(frozen=True)
class Estimated:
    """Coefficients learned online (ms), see `kedascaler.engine.estimation`."""

    alpha: float
    beta: float
    gamma: float
    delta: float


Numeric = Any  # a float or a numpy array: the step-time functions broadcast like numpy

LOCKSTEP, MIXED, EFFECTIVE = "lockstep", "mixed", "effective"
PREFILL_MODES = (LOCKSTEP, MIXED, EFFECTIVE)
# the modes as array codes for the vectorised functions (a bool works too: False lockstep, True mixed)
MODE_CODES = {LOCKSTEP: 0, MIXED: 1, EFFECTIVE: 2}


def prefill_seen_ms(alpha: Numeric, beta: Numeric, gamma: Numeric, delta: Numeric, batch: Numeric,
                    prompt_tokens: Numeric, mode: Numeric) -> np.ndarray:
    """A request's prefill at running batch `batch` (ms); numpy-broadcasting, `mode` a MODE_CODES value or array."""
    lockstep = gamma + delta * prompt_tokens * batch
    joined = np.maximum(alpha, gamma) + beta * np.maximum(batch - 1, 0) + delta * prompt_tokens
    alone = gamma + delta * prompt_tokens + 0.0 * batch  # effective: the fitted per-request line, as measured
    seen: np.ndarray = np.where(mode == 2, alone, np.where(mode == 1, joined, lockstep))
    return seen


def itl_seen_ms(alpha: Numeric, beta: Numeric, gamma: Numeric, delta: Numeric, batch: Numeric, prompt_tokens: Numeric,
                output_tokens: Numeric, mode: Numeric) -> np.ndarray:
    """The inter-token latency a request sees at running batch `batch` (ms), prefill stalls included when mixed
    (an effective line has them inside already)."""
    decode = alpha + beta * batch
    stall = (np.maximum(gamma - alpha, 0.0) + delta * prompt_tokens) * np.maximum(batch - 1, 0)
    seen: np.ndarray = np.where(mode == 1, decode + stall / np.maximum(output_tokens - 1.0, 1.0), decode)
    return seen


def cycle_ms(alpha: Numeric, beta: Numeric, gamma: Numeric, delta: Numeric, batch: Numeric, prompt_tokens: Numeric,
             output_tokens: Numeric, mode: Numeric) -> np.ndarray:
    """The life of one request at running batch `batch` (ms): its prefill and (o − 1) inter-token gaps."""
    life: np.ndarray = (prefill_seen_ms(alpha, beta, gamma, delta, batch, prompt_tokens, mode)
                        + np.maximum(output_tokens - 1.0, 0.0)
                        * itl_seen_ms(alpha, beta, gamma, delta, batch, prompt_tokens, output_tokens, mode))
    return life


# vLLM's default --max-num-seqs on H100-class GPUs: the batch bound when a VA gives no maxBatchSize.
DEFAULT_MAX_BATCH_SIZE = 256


@quick
@dataclass(frozen=True)
class PerfModel:
    """Step-time coefficients (ms) of one model × accelerator, and the limits of its running batch."""

    alpha: float  # decode step, fixed part (ms)
    beta: float  # decode step, per running request (ms)
    gamma: float  # prefill step, fixed part (ms)
    delta: float  # prefill, per prompt token in the step (ms)
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE  # vLLM --max-num-seqs
    kv_capacity_tokens: int | None = None  # tokens of KV the replica holds (num_gpu_blocks × block_size); None: unknown
    prefill_mode: str = MIXED  # LOCKSTEP (WVA), MIXED (vLLM v1 chunked prefill), EFFECTIVE (learned lines)

    def itl_ms(self, batch: float) -> float:
        """Inter-token latency with `batch` requests decoding together."""
        return self.alpha + self.beta * batch

    def prefill_ms(self, prompt_tokens: float, batch: float = 1.0) -> float:
        """Time to prefill `batch` prompts of `prompt_tokens` tokens together (one request: batch 1)."""
        return self.gamma + self.delta * prompt_tokens * batch

    def batch_limit(self, prompt_tokens: float, output_tokens: float) -> int:
        """The largest running batch: max_batch_size, or fewer when the KV cache cannot hold that many requests."""
        limit = self.max_batch_size
        if self.kv_capacity_tokens is not None:
            per_request = max(1.0, prompt_tokens + output_tokens / 2.0)  # held on average over a request's life
            limit = min(limit, int(self.kv_capacity_tokens // per_request))
        return max(0, limit)

    def service_rate(self, batch: int, prompt_tokens: float, output_tokens: float) -> float:
        """μ(n) in requests/s: n requests completed per cycle(n) (see the module docstring)."""
        if batch <= 0:
            return 0.0
        cycle = float(cycle_ms(self.alpha, self.beta, self.gamma, self.delta, batch, prompt_tokens,
                               max(1.0, output_tokens), MODE_CODES[self.prefill_mode]))
        return 1000.0 * batch / cycle if cycle > 0 else math.inf

    def max_throughput(self, prompt_tokens: float, output_tokens: float) -> float:
        """μ at the batch limit (requests/s): what a saturated replica completes."""
        return self.service_rate(self.batch_limit(prompt_tokens, output_tokens), prompt_tokens, output_tokens)


def check_perf_model(model: PerfModel) -> str | None:
    """Why these parameters cannot drive sizing (None: they can)."""
    values = {"alpha": model.alpha, "beta": model.beta, "gamma": model.gamma, "delta": model.delta}
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return f"{name} is not a finite number ({value!r})"
        if value < 0:
            return f"{name} must be ≥ 0 ms, got {value:g}"
    if model.alpha + model.beta <= 0:
        return "alpha + beta must be > 0: a decode step cannot take no time"
    if model.gamma + model.delta <= 0:
        return "gamma + delta must be > 0: a prefill cannot take no time"
    if not isinstance(model.max_batch_size, int) or model.max_batch_size < 1:
        return f"maxBatchSize must be an integer ≥ 1, got {model.max_batch_size!r}"
    if model.prefill_mode not in PREFILL_MODES:
        return f"prefill_mode must be one of {', '.join(PREFILL_MODES)}, got {model.prefill_mode!r}"
    if model.kv_capacity_tokens is not None and model.kv_capacity_tokens < 1:
        return f"kv_capacity_tokens must be ≥ 1, got {model.kv_capacity_tokens!r}"
    return None


def perf_model(perf: Coefficients | None, max_batch_size: int | None = None, *,
               kv_capacity_tokens: int | None = None, prefill_mode: str = MIXED) -> tuple[PerfModel | None, str]:
    """A checked PerfModel from a VariantAutoscaling's variantProfile, or None and the reason to fall back."""
    if perf is None:
        return None, "no spec.variantProfile.perfParms (alpha, beta, gamma, delta)"
    model = PerfModel(perf.alpha, perf.beta, perf.gamma, perf.delta,
                      max_batch_size if max_batch_size is not None else DEFAULT_MAX_BATCH_SIZE, kv_capacity_tokens,
                      prefill_mode)
    problem = check_perf_model(model)
    if problem is not None:
        return None, f"unusable perfParms: {problem}"
    return model, ""
