"""One model on one accelerator, as the emulator and the simulator model it: step-time coefficients and limits.

The linear performance model of vLLM's step times (decode α + β·batch + κ·Σ context tokens, prefill
γ + δ·tokens, in ms; κ is the KV read, 0 unless a profile sets it) with the server's limits (`max_num_seqs`,
the per-step token budget, the KV cache in blocks), and defaults per accelerator (`ACCELERATOR_PARAMS`: the
old uncalibrated ones, kept for the live emulator and its tests; calibrated profiles are data, in
`kedascaler.sim.profile_data`). `kedascaler.engine.perfmodel` takes α, β, γ, δ for sizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class PerfParams:
    """One model on one accelerator: step-time coefficients (ms) and the server's limits."""

    alpha: float = 7.0  # decode step, fixed part (ms)
    beta: float = 0.035  # decode step, per request in the batch (ms)
    gamma: float = 15.4  # prefill step, fixed part (ms)
    delta: float = 0.00034  # prefill step, per prompt token (ms)
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 8192
    num_gpu_blocks: int = 27_000
    block_size: int = 16
    kappa: float = 0.0  # decode step, per context token the batch's attention reads from the KV cache (ms)

    def step_seconds(self, decode_requests: int, prefill_tokens: int, context_tokens: int = 0) -> float:
        """One engine step: decodes and prefill chunks share the step, so its fixed cost is paid once;
        `context_tokens` is the KV the decoding requests read (Σ of their context lengths)."""
        fixed = max(self.alpha if decode_requests else 0.0, self.gamma if prefill_tokens else 0.0)
        return (fixed + self.beta * decode_requests + self.delta * prefill_tokens
                + self.kappa * context_tokens) / 1000.0

    def itl_seconds(self, batch: int, context_tokens: int = 0) -> float:
        """Inter-token latency of a pure decode step with `batch` requests reading `context_tokens` of KV."""
        return self.step_seconds(batch, 0, context_tokens)

    def max_throughput(self, prompt_tokens: int, output_tokens: int, batch: int | None = None) -> float:
        """WVA's μ(n) = n / (prefill(n) + (out − 1)·ITL(n)) in requests/s: the rate of a full batch in lockstep
        (with κ, decode step j reads n·(prompt + j) tokens of KV)."""
        n = batch or self.max_num_seqs
        cycle = self.step_seconds(0, prompt_tokens * n) + (output_tokens - 1) * self.itl_seconds(n)
        steps = output_tokens - 1
        cycle += self.kappa * n * (steps * prompt_tokens + steps * (steps + 1) / 2) / 1000.0
        return n / cycle


def decode_steps_within(span: float, tau: float, grow: float) -> int:
    """Decode steps (at least 1) until `span` seconds have passed, the first taking `tau` and each next one
    `grow` longer: the smallest k with k·tau + grow·k(k−1)/2 ≥ span (to a relative 1e-9 of a step)."""
    if not grow:
        return max(1, math.ceil(span / tau - 1e-9))
    if span <= tau:
        return 1
    b = tau - grow / 2
    k = max(1, math.ceil((-b + math.sqrt(b * b + 2 * grow * span)) / grow - 1e-9))
    while k > 1 and (k - 1) * tau + grow * (k - 1) * (k - 2) / 2 >= span - 1e-9 * tau:
        k -= 1  # the square root's rounding, either way
    while k * tau + grow * k * (k - 1) / 2 < span - 1e-9 * tau:
        k += 1
    return k


# Llama-3.1-8B-class defaults per accelerator (≈, to calibrate): vllm.md's table and vLLM's limits.
ACCELERATOR_PARAMS = MappingProxyType({
    "H100": PerfParams(7.0, 0.035, 15.4, 0.00034, max_num_seqs=1024, max_num_batched_tokens=8192,
                       num_gpu_blocks=27_000),
    "A100": PerfParams(11.0, 0.06, 25.0, 0.0007, max_num_seqs=256, max_num_batched_tokens=2048,
                       num_gpu_blocks=27_000),
    "L40S": PerfParams(22.6, 0.181, 226.0, 0.018, max_num_seqs=256, max_num_batched_tokens=2048,
                       num_gpu_blocks=13_000),
})


def perf_params_for(accelerator: str, **overrides: Any) -> PerfParams:
    """Defaults for an accelerator (H100 when unknown), with any field overridden."""
    base = ACCELERATOR_PARAMS.get(accelerator.upper(), ACCELERATOR_PARAMS["H100"])
    return replace(base, **overrides) if overrides else base
