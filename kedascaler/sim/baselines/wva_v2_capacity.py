"""WVA v0.9's token-based saturation analyzer: per-replica capacity and demand, per-variant capacity.

Follows `internal/engines/analyzers/saturation_v2/` (`analyzer.go`, `capacity_store.go`, `history.go`,
`deployment_parser.go`, `constants.go`) and `internal/collector/replica_metrics.go`,
`internal/collector/registration/saturation.go` of llm-d/llm-d-workload-variant-autoscaler v0.9.0
(d5d586408420fbe0545f827a6ff5dc2f818b16de, "Prepare for release v0.9.0", in the
deanlorenz/llm-d-workload-variant-autoscaler mirror). In our words:

* per replica (pod with metrics): total KV tokens = num_gpu_blocks × block_size (`vllm:cache_config_info`);
  tokens in use = round(kv × total); demand = tokens in use + queue × (avg input + avg output tokens) (the
  queue term of a role-`both` replica); k1 = total × kvCacheThreshold; k2, first of: the tokens in use when
  queue ≥ queueLengthThreshold (observed, added to a rolling mean of 10 per accelerator and output-length
  bucket: < 100, < 500, longer), that rolling mean, N·(I + O/2) with N = min(B·O/(I + O), max_num_seqs) from
  the Deployment's vLLM args (B = max_num_batched_tokens), else k1; capacity = min(k1, k2); each replica
  writes its capacity to the store as the variant's live record;
* per variant: the median capacity of its replicas with metrics × their count, pending = current − ready;
  a variant without metrics: its ready pods at the stored capacity (a live record as is; a Deployment-derived
  one by the k2 formula at the model's average lengths, bounded by k1 when the KV blocks are known), else 0;
* avg input / output tokens per pod: `rate(vllm:request_prompt_tokens_sum[5m]) / rate(…_count[5m])` and the
  same on `request_generation_tokens`; 0 when nothing finished in the window.

Deviations: the average output tokens is Δ generation tokens ÷ Δ successes over the 5 m window (the
simulator's replicas keep no per-request generation-token histogram); the Deployment's vLLM args are taken to
state the profile's `--max-num-seqs`, `--max-num-batched-tokens` and `--num-gpu-blocks-override`; the
history is not evicted (24 h) and no compatible-variant lookup is needed (one variant per accelerator).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from kedascaler.sim.config import VariantConfig
from kedascaler.sim.policy_api import PodCounters

ROLLING_WINDOW = 10  # RollingAverageWindowSize
TOKEN_WINDOW = 300.0  # the [5m] of the avg input/output token queries


def output_bucket(avg_output: float) -> str:
    return "short" if avg_output < 100 else "medium" if avg_output < 500 else "long"


def derived_k2(cfg: VariantConfig, avg_in: float, avg_out: float) -> int:
    """estimateCapacityFromParams: N_steady = min(B·O/(I + O), S), capacity = N_steady·(I + O/2); 0 without O."""
    p = cfg.params
    if avg_out <= 0 or p.max_num_batched_tokens <= 0:
        return 0
    n = min(p.max_num_batched_tokens * avg_out / (avg_in + avg_out), p.max_num_seqs)
    return max(0, int(n * (avg_in + avg_out / 2)))


@dataclass
class Record:
    """A capacity-store record: live (a replica computed it) or from the Deployment's args."""

    effective: int
    live: bool


@dataclass(frozen=True)
class ReplicaCapacity:
    variant: str
    capacity: int  # min(k1, k2)
    demand: float
    k2_source: str


class TokenWindow:
    """Per pod, the 5-minute averages of input and output tokens per finished request."""

    def __init__(self) -> None:
        self.reads: dict[str, deque[tuple[float, int, int, int, int]]] = {}

    def observe(self, pod: PodCounters) -> tuple[float, float]:
        c = pod.counters
        reads = self.reads.setdefault(pod.name, deque())
        reads.append((c.t, c.prefill_prompt, c.prefilled, c.output_tokens, c.completed))
        while len(reads) > 2 and reads[1][0] <= c.t - TOKEN_WINDOW:
            reads.popleft()
        t0, prompt0, finished0, out0, done0 = reads[0]
        _, prompt1, finished1, out1, done1 = reads[-1]
        avg_in = (prompt1 - prompt0) / (finished1 - finished0) if finished1 > finished0 else 0.0
        avg_out = (out1 - out0) / (done1 - done0) if done1 > done0 else 0.0
        return avg_in, avg_out


class CapacityModel:
    """The analyzer's memory across cycles: the capacity store and the k2 history."""

    def __init__(self, kv_threshold: float = 0.80, queue_threshold: float = 5.0) -> None:
        self.kv_threshold = kv_threshold
        self.queue_threshold = queue_threshold
        self.store: dict[str, Record] = {}
        self.history: dict[tuple[str, str], deque[float]] = {}
        self.tokens = TokenWindow()

    def load_from_deployment(self, cfg: VariantConfig) -> None:
        """LoadFromScaleTarget: a Deployment record (EffectiveMaxBatchedTokens) unless a live one exists."""
        rec = self.store.get(cfg.name)
        if rec is None or not rec.live:
            self.store[cfg.name] = Record(cfg.params.max_num_batched_tokens, live=False)

    def replica(self, cfg: VariantConfig, kv: float, queue: int, avg_in: float, avg_out: float) -> ReplicaCapacity:
        """computeReplicaCapacity for one pod (the main path: `vllm:cache_config_info` present)."""
        p = cfg.params
        total = p.num_gpu_blocks * p.block_size
        in_use = min(total, max(0, round(kv * total)))
        demand = float(in_use) + (queue * (avg_in + avg_out) if queue > 0 else 0.0)
        k1 = int(total * self.kv_threshold)
        key = (cfg.accelerator, output_bucket(avg_out))
        if queue >= int(self.queue_threshold) and in_use > 0:
            self.history.setdefault(key, deque(maxlen=ROLLING_WINDOW)).append(float(in_use))
            k2, source = in_use, "observed"
        elif self.history.get(key):
            k2, source = int(sum(self.history[key]) / len(self.history[key])), "history"
        elif (k2 := derived_k2(cfg, avg_in, avg_out)) > 0:
            source = "derived"
        else:
            k2, source = k1, "k1"
        capacity = min(k1, k2)
        self.store[cfg.name] = Record(capacity, live=True)
        return ReplicaCapacity(cfg.name, capacity, demand, source)

    def stored(self, cfg: VariantConfig, avg_in: float, avg_out: float) -> float:
        """estimateStoredCapacity for a variant without metrics; 0 without a record."""
        rec = self.store.get(cfg.name)
        if rec is None or rec.effective <= 0:
            return 0.0
        if rec.live:
            return float(rec.effective)
        if avg_out > 0 and (k2 := derived_k2(cfg, avg_in, avg_out)) > 0:
            k1 = int(cfg.params.num_gpu_blocks * cfg.params.block_size * self.kv_threshold)
            return float(min(k2, k1) if k1 > 0 else k2)
        return float(rec.effective)


def median(values: list[int]) -> int:
    """The analyzer's integer median (the mean of the two middle values, truncated)."""
    s = sorted(values)
    n = len(s)
    if n == 0:
        return 0
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2
