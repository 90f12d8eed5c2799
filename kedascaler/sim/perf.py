"""One model on one accelerator, as the emulator and the simulator model it: step-time coefficients and limits.

The linear performance model of vLLM's step times (decode α + β·batch, prefill γ + δ·tokens, in ms) with the
server's limits (`max_num_seqs`, the per-step token budget, the KV cache in blocks), and defaults per
accelerator. `kedascaler.engine.perfmodel` takes the same coefficients for sizing.
"""

from __future__ import annotations

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

    def step_seconds(self, decode_requests: int, prefill_tokens: int) -> float:
        """One engine step: decodes and prefill chunks share the step, so its fixed cost is paid once."""
        fixed = max(self.alpha if decode_requests else 0.0, self.gamma if prefill_tokens else 0.0)
        return (fixed + self.beta * decode_requests + self.delta * prefill_tokens) / 1000.0

    def itl_seconds(self, batch: int) -> float:
        """Inter-token latency of a pure decode step with `batch` requests."""
        return self.step_seconds(batch, 0)

    def max_throughput(self, prompt_tokens: int, output_tokens: int, batch: int | None = None) -> float:
        """WVA's μ(n) = n / (prefill(n) + (out − 1)·ITL(n)) in requests/s: the rate of a full batch in lockstep."""
        n = batch or self.max_num_seqs
        cycle = self.step_seconds(0, prompt_tokens * n) + (output_tokens - 1) * self.itl_seconds(n)
        return n / cycle


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
