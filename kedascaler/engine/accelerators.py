"""Accelerator classes: how fast one accelerator is against another, for the capacity prior of a variant that
never ran. Pure data and arithmetic.

A vLLM decode step is bound by memory bandwidth (every step reads the weights and the KV cache), a prefill by
dense compute. So a variant of a model that never ran gets its step times from a variant of the same model
that did: the decode coefficients (α, β) scaled by the ratio of memory bandwidths, the prefill ones (γ by
bandwidth, like α; δ by dense bf16 FLOPs), each × the accelerators per replica (tensor parallel). Its own
vLLM limits (max_num_seqs, KV cache) bound its batch. This is a prior, to be replaced by the variant's own
measurements once it runs (`kedascaler.engine.capacity_estimate`).

Figures are the vendors' data-sheet peaks (SXM/OAM parts unless named): what matters is their ratio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kedascaler.engine.frozen import quick
from kedascaler.engine.perfmodel import PerfModel


@quick
@dataclass(frozen=True)
class AcceleratorClass:
    """One accelerator type's data-sheet peaks."""

    name: str
    bandwidth_tbs: float  # HBM/GDDR bandwidth, TB/s
    dense_bf16_tflops: float  # dense (no sparsity) bf16 tensor throughput, TFLOPS
    memory_gb: float


CLASSES: tuple[AcceleratorClass, ...] = (
    AcceleratorClass("B200", 8.0, 2250.0, 180.0),
    AcceleratorClass("H200", 4.8, 989.0, 141.0),
    AcceleratorClass("GH200", 4.0, 989.0, 96.0),
    AcceleratorClass("H100-PCIE", 2.0, 756.0, 80.0),
    AcceleratorClass("H100", 3.35, 989.0, 80.0),
    AcceleratorClass("H800", 3.35, 989.0, 80.0),
    AcceleratorClass("A100-40GB", 1.555, 312.0, 40.0),
    AcceleratorClass("A100", 2.039, 312.0, 80.0),
    AcceleratorClass("A800", 2.039, 312.0, 80.0),
    AcceleratorClass("L40S", 0.864, 362.0, 48.0),
    AcceleratorClass("L40", 0.864, 181.0, 48.0),
    AcceleratorClass("L4", 0.3, 121.0, 24.0),
    AcceleratorClass("A10G", 0.6, 70.0, 24.0),
    AcceleratorClass("A10", 0.6, 125.0, 24.0),
    AcceleratorClass("V100", 0.9, 125.0, 32.0),
    AcceleratorClass("T4", 0.32, 65.0, 16.0),
    AcceleratorClass("MI325X", 6.0, 1307.0, 256.0),
    AcceleratorClass("MI300X", 5.3, 1307.0, 192.0),
    AcceleratorClass("MI250X", 3.2, 383.0, 128.0),
    AcceleratorClass("GAUDI3", 3.7, 1835.0, 128.0),
    AcceleratorClass("GAUDI2", 2.46, 432.0, 96.0),
)
_BY_NAME = {c.name: c for c in CLASSES}


def _normal(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "-", name.upper()).strip("-")


def accelerator_class(name: str) -> AcceleratorClass | None:
    """The class of an accelerator name as VAs spell it (`H100`, `nvidia-h100-80gb-hbm3`, `A100-40GB`…); None
    when unknown. The longest class name found in the name wins (`H100-PCIE` before `H100`)."""
    text = _normal(name)
    if not text:
        return None
    if text in _BY_NAME:
        return _BY_NAME[text]
    found = [c for c in CLASSES if re.search(rf"(^|-){re.escape(c.name)}(-|$)", text)]
    if "A100" in text and "40GB" in text:
        return _BY_NAME["A100-40GB"]
    return max(found, key=lambda c: len(c.name)) if found else None


def speed_ratios(target: str, target_count: int, source: str, source_count: int) -> tuple[float, float] | None:
    """(decode, prefill) speed of a `target` replica relative to a `source` one: bandwidth and dense-FLOPs
    ratios, × the accelerators per replica. None when either class is unknown."""
    a, b = accelerator_class(target), accelerator_class(source)
    if a is None or b is None:
        return None
    ta, sb = max(1, target_count), max(1, source_count)
    return (a.bandwidth_tbs * ta) / (b.bandwidth_tbs * sb), (a.dense_bf16_tflops * ta) / (b.dense_bf16_tflops * sb)


def scaled_kv(kv_tokens: int | None, target: str, target_count: int, source: str, source_count: int) -> int | None:
    """A sibling's KV cache (tokens) moved to another accelerator, in proportion to the memory per replica (a
    rough prior: the weights take the same memory on both, so a smaller card keeps less than its share)."""
    a, b = accelerator_class(target), accelerator_class(source)
    if kv_tokens is None or a is None or b is None:
        return None
    share = (a.memory_gb * max(1, target_count)) / (b.memory_gb * max(1, source_count))
    return max(1, int(kv_tokens * share))


def scaled_model(source: PerfModel, decode_speed: float, prefill_speed: float, max_batch_size: int,
                 kv_capacity_tokens: int | None) -> PerfModel:
    """A sibling's performance model moved to another accelerator: step times ÷ speed, the target's own limits."""
    return PerfModel(source.alpha / decode_speed, source.beta / decode_speed, source.gamma / decode_speed,
                     source.delta / prefill_speed, max_batch_size, kv_capacity_tokens, source.prefill_mode)


__all__ = ["CLASSES", "AcceleratorClass", "accelerator_class", "scaled_kv", "scaled_model", "speed_ratios"]
