"""The performance model of one model on one accelerator: how long a vLLM step takes, and how big a batch can get.

Units, everywhere in the SLO-sizing code:
- times in **milliseconds**; rates in **requests per second**; lengths in **tokens**.
- decode: one engine step that emits one token for each of the `n` running requests takes
  ITL(n) = α + β·n ms (α: the fixed cost of a step — weights read once; β: the extra cost per request).
- prefill: computing the KV of prompts takes γ + δ·T ms where T is the number of prompt tokens prefilled in
  that step; for `n` requests of `p` tokens prefilled together (WVA's lockstep batch) T = p·n, so
  prefill(n) = γ + δ·p·n; for one request alone prefill(1) = γ + δ·p.
- service rate of a replica with `n` requests in its running batch (WVA, reference/vllm.md):
  μ(n) = n / (prefill(n) + (o − 1)·ITL(n)) · 1000 requests/s, for `o` output tokens per request.
- the running batch is bounded by `max_batch_size` (vLLM `--max-num-seqs`) and by the KV cache:
  a request holds up to p + o tokens of KV at its end, so at most ⌊kv_capacity_tokens / (p + o)⌋ requests
  fit (conservative: vLLM admits on the prompt and preempts later, which costs recomputation).

The emulator's `kedascaler.sim.emulator.PerfParams` uses the same coefficients (it works in seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kedascaler.config import PerfParams

# vLLM's default --max-num-seqs on H100-class GPUs: the batch bound when a VA gives no maxBatchSize.
DEFAULT_MAX_BATCH_SIZE = 256


@dataclass(frozen=True)
class PerfModel:
    """Step-time coefficients (ms) of one model × accelerator, and the limits of its running batch."""

    alpha: float  # decode step, fixed part (ms)
    beta: float  # decode step, per running request (ms)
    gamma: float  # prefill step, fixed part (ms)
    delta: float  # prefill, per prompt token in the step (ms)
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE  # vLLM --max-num-seqs
    kv_capacity_tokens: int | None = None  # tokens of KV the replica holds (num_gpu_blocks × block_size); None: unknown

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
            per_request = max(1.0, prompt_tokens + output_tokens)
            limit = min(limit, int(self.kv_capacity_tokens // per_request))
        return max(0, limit)

    def service_rate(self, batch: int, prompt_tokens: float, output_tokens: float) -> float:
        """μ(n) in requests/s: n requests completed per lockstep cycle of one prefill and (o − 1) decodes."""
        if batch <= 0:
            return 0.0
        cycle_ms = self.prefill_ms(prompt_tokens, batch) + max(0.0, output_tokens - 1.0) * self.itl_ms(batch)
        return 1000.0 * batch / cycle_ms if cycle_ms > 0 else math.inf

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
    if model.kv_capacity_tokens is not None and model.kv_capacity_tokens < 1:
        return f"kv_capacity_tokens must be ≥ 1, got {model.kv_capacity_tokens!r}"
    return None


def perf_model(perf: PerfParams | None, max_batch_size: int | None = None, *,
               kv_capacity_tokens: int | None = None) -> tuple[PerfModel | None, str]:
    """A checked PerfModel from a VariantAutoscaling's variantProfile, or None and the reason to fall back."""
    if perf is None:
        return None, "no spec.variantProfile.perfParms (alpha, beta, gamma, delta)"
    model = PerfModel(perf.alpha, perf.beta, perf.gamma, perf.delta,
                      max_batch_size if max_batch_size is not None else DEFAULT_MAX_BATCH_SIZE, kv_capacity_tokens)
    problem = check_perf_model(model)
    if problem is not None:
        return None, f"unusable perfParms: {problem}"
    return model, ""
