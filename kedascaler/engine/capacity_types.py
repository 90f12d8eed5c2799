"""Capacity mode's vocabulary: what the cycle keeps and hands in, and the plan the engine hands back. Pure data.

In (`CapacityInputs`, built by `kedascaler.loop.capacity` from the cycle state): the model's recent arrivals as
`DemandSample`s (one per cycle, from the pods' vLLM counters), the needs of past cycles (the hold), and per
variant the evidence of its capacity (`VariantEvidence`: its performance model, the throughput measured while it
was saturated, its vLLM limits, its start-up time). Out (`CapacityPlan`, in `DecisionSteps.capacity_plan`): the
demand in capacity units (`DemandView`), the capacity per replica of every variant and where it comes from
(`VariantCapacity`), the mix chosen and whether the hysteresis held it.

Units: request rates in requests per second *at the model's current request mix* (its mean prompt and output
lengths), the common unit in which every variant's capacity is stated; token rates in tokens per second; times
in seconds; latencies in ms.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from kedascaler.engine.frozen import quick, read_only
from kedascaler.engine.keys import VariantKey
from kedascaler.engine.perfmodel import PerfModel

CapacityRow = tuple[PerfModel, float, float, float | None, float | None]  # a model at (prompt, output, ITL, TTFT)


class CapacitySource(enum.StrEnum):
    """Where a variant's capacity per replica comes from (the first available, in this order)."""

    MODEL = "model"  # the queueing model at the SLO, with given (variantProfile) or learned α β γ δ
    MEASURED = "measured"  # the completion rate its pods sustained while saturated (KV-bound or queueing)
    PRIOR = "prior"  # its vLLM limits and accelerator class, from a variant of the model that ran
    NONE = "none"  # nothing to go on: the variant is not chosen


ONE_POINT = "one-point"  # VariantEvidence.perf_source of a model read from one window (no fitted line yet)


@quick
@dataclass(frozen=True)
class DemandSample:
    """One cycle's arrivals of a model, from its pods' counters over the collector's window (kept between cycles)."""

    at: float  # the cycle's clock
    rate: float  # req/s arriving: Σ completed + Σ backlog growth over the model's pods
    completed: float  # req/s completed
    prompt_rate: float  # prompt tokens/s of the completed requests
    output_rate: float  # output tokens/s
    window: float  # seconds the rates cover
    # req/s of backlog growth taken out of `rate`: requests that pods gone since the last cycle had waiting, which
    # the gateway routed again (they arrived once already)
    handed_back: float = 0.0


_SAMPLE_FIELDS = ("at", "rate", "completed", "prompt_rate", "output_rate", "window", "handed_back")


@quick
@dataclass(frozen=True, eq=False)
class _Columns:
    """A record per cycle, oldest first, as one read-only float64 array: a row per field (row 0 the time), a
    column per record. Not a tuple of records: 30 minutes of them for each of 5,000 models were 600,000 objects
    of ≈ 300 bytes (and as many floats again) for the heap to hold and the collector to walk; here 8 bytes a
    field. The values are the very floats the records held, so every sum over them is the sum it was."""

    data: np.ndarray
    # every time at or after the one before it, none NaN (so `kept` reads the two ends): what `append` keeps true
    # from an empty history; unknown (False) for columns given as they are
    ordered: bool = field(default=False, compare=False, repr=False)

    def __len__(self) -> int:
        return int(self.data.shape[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and np.array_equal(self.data, other.data)

    def __hash__(self) -> int:
        return hash(self.data.tobytes())

    def kept(self, after: float, before: float) -> Self:
        """The records taken strictly between `after` and `before`."""
        data = self.data
        count = data.shape[1]
        if self.ordered and count and float(data[0, 0]) > after and float(data[0, count - 1]) < before:
            return self  # in order: the oldest after `after` and the newest before `before`, so every one is
        at = data[0]
        keep = (at > after) & (at < before)
        return self if keep.all() else type(self)(read_only(data[:, keep]), self.ordered)

    def _appended(self, record: list[float]) -> Self:
        column = np.array(record, dtype=np.float64)[:, None]
        count, at = self.data.shape[1], record[0]
        ordered = (count == 0 or (self.ordered and float(self.data[0, count - 1]) <= at)) and at == at
        return type(self)(read_only(np.concatenate((self.data, column), axis=1)), ordered)

    @classmethod
    def _of_rows(cls, rows: list[list[float]], fields: int) -> Self:
        if not rows:
            return cls(read_only(np.empty((fields, 0), dtype=np.float64)))
        return cls(read_only(np.array(rows, dtype=np.float64).T.copy()))


_NO_SAMPLES = read_only(np.empty((len(_SAMPLE_FIELDS), 0), dtype=np.float64))


@quick
@dataclass(frozen=True, eq=False)
class DemandHistory(_Columns):
    """A model's `DemandSample`s (rows: the sample's fields)."""

    data: np.ndarray = field(default_factory=lambda: _NO_SAMPLES)

    @staticmethod
    def of(samples: Iterable[DemandSample] | DemandHistory) -> DemandHistory:
        if isinstance(samples, DemandHistory):
            return samples
        return DemandHistory._of_rows([[getattr(s, f) for f in _SAMPLE_FIELDS] for s in samples], len(_SAMPLE_FIELDS))

    @property
    def at(self) -> np.ndarray:
        column: np.ndarray = self.data[0]
        return column

    def column(self, name: str) -> np.ndarray:
        found: np.ndarray = self.data[_SAMPLE_FIELDS.index(name)]
        return found

    def __getitem__(self, i: int) -> DemandSample:
        return DemandSample(*(float(v) for v in self.data[:, i]))

    def __iter__(self) -> Iterator[DemandSample]:
        return (DemandSample(*row) for row in self.data.T.tolist())

    def append(self, sample: DemandSample | None) -> DemandHistory:
        return self if sample is None else self._appended([getattr(sample, f) for f in _SAMPLE_FIELDS])


_NO_NEEDS = read_only(np.empty((2, 0), dtype=np.float64))


@quick
@dataclass(frozen=True, eq=False)
class NeedHistory(_Columns):
    """A model's (at, need in req/s) of past cycles: the hold's window."""

    data: np.ndarray = field(default_factory=lambda: _NO_NEEDS)

    @staticmethod
    def of(needs: Iterable[tuple[float, float]] | NeedHistory) -> NeedHistory:
        if isinstance(needs, NeedHistory):
            return needs
        return NeedHistory._of_rows([[float(t), float(n)] for t, n in needs], 2)

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return iter(zip(*self.data.tolist(), strict=True))

    def since(self, after: float) -> list[float]:
        """The needs recorded strictly after `after`, oldest first."""
        values: list[float] = self.data[1][self.data[0] > after].tolist()
        return values

    def append(self, at: float, need: float) -> NeedHistory:
        return self._appended([at, need])


@quick
@dataclass(frozen=True)
class Throughput:
    """What one pod of a variant completed while saturated (queueing or KV-bound), at the lengths of then."""

    per_replica: float  # req/s
    prompt_tokens: float  # mean lengths of the requests it completed
    output_tokens: float
    at: float
    itl_ms: float | None = None  # the highest mean ITL of its pods in the window (None: not measured)


@quick
@dataclass(frozen=True)
class VariantEvidence:
    """What the cycle knows of one variant's capacity and start-up, for the engine to turn into req/s at the SLO."""

    key: VariantKey
    perf: PerfModel | None = None  # given or learned coefficients, with its batch limit and KV size
    perf_source: str = ""  # "variantProfile" | "estimated" | "one-point (…)" (ONE_POINT) | "" (none)
    perf_reason: str = ""  # why perf is None
    saturated: Throughput | None = None  # the throughput measured while saturated (None: never seen saturated)
    max_num_seqs: int | None = None  # vLLM --max-num-seqs (the VA's maxBatchSize)
    kv_capacity_tokens: int | None = None  # num_gpu_blocks × block_size (vllm:cache_config_info)
    startup_s: float | None = None  # measured: pod created → ready (None: not seen yet)
    startup_configured: float | None = None  # configured start-up (wins over the measurement)
    carried: Throughput | None = None  # what one pod carried well within the targets (a replica carries ≥ that)
    recent: tuple[float, ...] = ()  # the capacity per replica of the last cycles (oldest first): smooths outliers
    # s since the oldest replica still starting was asked for (None: none starting; inf: asked for before the
    # scaler saw it, so not known)
    pending_for: float | None = None
    recent_saturated: Throughput | None = None  # the last saturated window (a floor when its ITL was within target)


@quick
@dataclass(frozen=True)
class CapacitySettings:
    """How capacity mode sizes and holds; constant for a run (`--headroom`, `--startup-seconds`, …)."""

    headroom: float = 0.05  # capacity kept above the forecast demand (fraction)
    short_window: float = 60.0  # s: the recent arrival rate
    long_window: float = 300.0  # s: the trend's baseline
    forecast: bool = True  # scale up on the rate forecast over the start-up horizon
    trend_window: float = 120.0  # s: a rise must follow a line this long to be extrapolated (a step does not)
    hold_window: float | None = None  # s: scale down to the largest need of this window (None: the start-up time)
    default_startup: float = 120.0  # s: a variant's start-up before one is measured or configured
    switch_horizon: float = 900.0  # s: a new replica's start-up is charged over this horizon (switching penalty)
    switch_tolerance: float = 0.10  # the last cycle's mix is kept while it costs at most this much more
    length_cv: float = 1.0  # coefficient of variation assumed for request lengths (KV bound at a percentile)
    length_z: float = 1.645  # the KV bound holds at this normal quantile of the batch's total length (p95)
    miss_budget: float = 0.0002  # the share of requests a replica may let miss its targets (`engine.tails`)
    utilization: float = 0.85  # without SLO targets: this fraction of the saturated throughput per replica


@quick
@dataclass(frozen=True)
class CapacityInputs:
    """Everything capacity mode needs for one model beyond the snapshot; built by the cycle from its state."""

    settings: CapacitySettings = field(default_factory=CapacitySettings)
    history: DemandHistory = field(default_factory=DemandHistory)  # oldest first, this cycle's last (a tuple of
    # DemandSamples is taken too, and turned into a DemandHistory)
    needs: NeedHistory = field(default_factory=NeedHistory)  # (at, need in req/s) of past cycles, oldest first
    variants: tuple[VariantEvidence, ...] = ()
    itl_ms: float | None = None  # the service class's targets (None: not constrained)
    ttft_ms: float | None = None
    slo_reason: str = ""  # why there are no targets
    lengths: tuple[float, float] | None = None  # last known mean (prompt, output) tokens when none finished now
    available: tuple[tuple[str, int], ...] = ()  # accelerators free per type (units); types not listed: unlimited
    # capacity per replica already evaluated for some rows (the cycle evaluates every model's at once): the same
    # numbers as evaluating them here
    known: Mapping[CapacityRow, float] = field(default_factory=dict, compare=False, repr=False)
    # (snapshot, start-ups, demand, the capacity candidates or None) when the cycle already worked them out for
    # that very snapshot (`capacity.with_demand`, `capacity.with_rows`): used only for the same object, so a
    # wake-up's new snapshot computes its own
    demand_of: tuple[object, tuple[tuple[float, str], ...], DemandView | None, object] | None = field(
        default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.history, DemandHistory):
            object.__setattr__(self, "history", DemandHistory.of(self.history))
        if not isinstance(self.needs, NeedHistory):
            object.__setattr__(self, "needs", NeedHistory.of(self.needs))

    def carrying(self, *, known: Mapping[CapacityRow, float] | None = None,
                 demand_of: tuple[object, tuple[tuple[float, str], ...], DemandView | None, object] | None = None
                 ) -> CapacityInputs:
        """These inputs with what the cycle worked out for them (`known`, `demand_of`; None: kept as they are):
        `dataclasses.replace`'s value without its cost (neither field is converted by `__post_init__`)."""
        out: CapacityInputs = object.__new__(CapacityInputs)
        state = out.__dict__
        state.update(self.__dict__)
        if known is not None:
            state["known"] = known
        if demand_of is not None:
            state["demand_of"] = demand_of
        return out


@quick
@dataclass(frozen=True)
class VariantCapacity:
    """One variant's capacity per replica at the SLO (req/s at the current mix), each candidate, and why."""

    key: VariantKey
    per_replica: float  # what sizing uses (0: not chosen)
    source: CapacitySource
    reason: str
    estimate: float | None = None  # this cycle's estimate before smoothing (per_replica: the median with recent)
    model: float | None = None  # the queueing model's answer (None: no usable model)
    measured: float | None = None  # the saturated throughput, rescaled to the current lengths
    carried: float | None = None  # what a replica carried well within the targets, rescaled (a lower bound)
    prior: float | None = None  # the configuration prior
    batch_limit: int | None = None  # running requests one replica holds (max_num_seqs, KV at a percentile)
    startup_s: float = 0.0
    startup_source: str = ""  # "configured" | "measured" | "default"


@quick
@dataclass(frozen=True)
class DemandView:
    """The model's demand in capacity units this cycle, and the hysteresis around it (req/s unless stated)."""

    latest: float  # this cycle's sample
    short: float  # mean over the short window
    long: float  # mean over the long window
    trend: float  # req/s per s: the short window's rise above the long one, per second between their centres
    forecast: float  # the rate expected one start-up from now (≥ short; = short without a rising trend)
    prompt_tokens: float  # mean lengths of the current mix
    output_tokens: float
    tokens_per_s: float  # prompt + output tokens/s arriving (at the current mix)
    gateway_queue: float  # requests held at the gateway
    backlog: float  # requests waiting: at the ready pods and at the gateway
    drain: float  # req/s to clear the backlog within the drain horizon
    drain_horizon: float  # s
    need: float  # now: max(latest, short) + drain, with headroom
    up: float  # the forecast need: forecast + drain, with headroom
    held: float  # the largest need over the hold window (what scale-down may not go under)
    hold_window: float  # s
    target: float  # what the mix covers: max(need, up, held)
    measured: bool = True  # False: no usage this cycle (a pod's first read): the short window's rate stands in
    handed_back: float = 0.0  # req/s of this cycle's backlog growth not counted: requests routed again from pods gone


@quick
@dataclass(frozen=True)
class CapacityPlan:
    """Capacity mode's plan for one model: demand, capacity per variant, the mix, and the hysteresis."""

    demand: DemandView
    variants: tuple[VariantCapacity, ...]
    mix: tuple[tuple[VariantKey, int], ...]  # replicas per variant, snapshot order
    mix_capacity: float  # Σ replicas × capacity per replica
    mix_cost: float  # Σ replicas × cost per replica
    current_capacity: float  # Σ current replicas (ready + starting) × capacity per replica
    ready_capacity: float
    switch_note: str = ""  # the switching penalty's account (kept the running variants, or switched)
    held: bool = False  # the hold kept capacity that the demand of this cycle alone does not need
    guard: str = ""  # saturation's guard in capacity units ("" when it did not bind)
    short: bool = False  # the limits do not allow enough capacity
    hold_kept: float | None = None  # the hold asked for more than runs: the req/s it kept instead (it starts none)

    def replicas(self, key: VariantKey) -> int:
        """The mix's replicas of one variant."""
        return next((n for k, n in self.mix if k == key), 0)


__all__ = ["CapacityInputs", "CapacityPlan", "CapacitySettings", "CapacitySource", "DemandHistory", "DemandSample",
           "DemandView", "NeedHistory", "ONE_POINT",
           "Throughput", "VariantCapacity", "VariantEvidence"]
