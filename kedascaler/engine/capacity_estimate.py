"""Capacity per replica of each variant at the SLO, in req/s at the model's current request mix. Pure.

The first available of, per variant (`VariantCapacity.source` says which, `reason` why):
1. **model** — the queueing model (`kedascaler.engine.queueing`) with given (`variantProfile`) or learned α β γ
   δ, or a one-point model from the ITL and prefill its pods showed while no fit is usable yet: the largest
   arrival rate one replica carries with its mean ITL and TTFT within the targets *and* at most `miss_budget`
   of its requests missing them (`kedascaler.engine.tails`: short answers stalled by long prompts, TTFT behind
   other prefills); without targets, `utilization` × the throughput at its batch limit;
2. **measured** — the completion rate one of its pods sustained while saturated (queueing or KV-bound),
   rescaled to the current lengths, × `utilization`: architecture-agnostic, it needs no model at all;
3. **prior** — a variant that never ran: the model (or measured throughput) of a variant of the same model that
   did, moved to this variant's accelerator class (`kedascaler.engine.accelerators`) and bounded by its own vLLM
   limits (max_num_seqs, KV cache), so that it can be chosen on estimated merit and corrected once it runs.
A one-point model is raised to a sibling's fitted model moved to its class when that says more: under load a
request's prefill includes the other prompts admitted with it, which the one-point model reads as its own work
(long-prompts: an H100 at 7 req/s against its A100 sibling's fitted 10, so an A100 was started beside it).
A measured saturated throughput also caps a model that claims more: a replica never carries more than it
completed while requests queued at it. It also floors one that claims less, at `utilization` × what its pods
completed in their last saturated window, when their ITL there was within the target. And a replica carries at
least what it carried well within the targets.
The capacity used is the median of the last SMOOTH_CYCLES cycles' estimates, so that one odd fit (a window of
unusual lengths, a refit on few points) moves nothing.

The batch a replica holds is bounded by its KV cache at a high percentile of the batch's total length, not
the mean: B·m + z·cv·m·√B ≤ KV tokens, cv the coefficient of variation of request lengths (counters give means
only: cv is a setting, 1 by default), z the normal quantile (1.645: p95). m is the mean tokens a request *in
the batch* holds: p + o·(1 + cv²)/2, not a request's mean over its life (p + o/2). A generation of o tokens stays
in the batch o steps, so the batch holds the long ones in proportion to their length (Σ(p + o/2)·o / Σo; with
cv 1, p + o). With long outputs the life mean put an H100's batch at ≈ 470 requests where its cache held ≈ 300,
and its capacity at 16.7 req/s against 12.5. With many requests in the batch this is the mean bound; with few
it keeps room for the long ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from kedascaler.engine.accelerators import accelerator_class, scaled_kv, scaled_model, speed_ratios
from kedascaler.engine.capacity_types import (
    ONE_POINT,
    CapacityRow,
    CapacitySettings,
    CapacitySource,
    Throughput,
    VariantCapacity,
    VariantEvidence,
)
from kedascaler.engine.frozen import quick
from kedascaler.engine.perfmodel import DEFAULT_MAX_BATCH_SIZE, PerfModel
from kedascaler.engine.queueing import QueueSolver, ReplicaArrays, max_arrival_rate
from kedascaler.engine.tails import max_rate_within
from kedascaler.engine.types import VariantSpec

RESCALE_LIMITS = (0.5, 2.0)  # a saturated throughput measured at other lengths is rescaled at most this much
SMOOTH_CYCLES = 5  # the capacity used is the median of this many cycles' estimates: one odd fit moves nothing


def percentile_batch(max_num_seqs: int, kv_tokens: int | None, prompt: float, output: float,
                     settings: CapacitySettings) -> int:
    """The running requests one replica holds: max_num_seqs, or fewer when the KV cache at a high percentile of
    the batch's total length cannot hold that many (see the module docstring)."""
    limit = max(0, max_num_seqs)
    if kv_tokens is None:
        return limit
    m = max(1.0, prompt + output * (1.0 + settings.length_cv ** 2) / 2.0)  # held by a request in the batch
    spread = max(0.0, settings.length_z * settings.length_cv) * m
    root = (-spread + math.sqrt(spread * spread + 4.0 * m * kv_tokens)) / (2.0 * m)
    return max(0, min(limit, math.floor(root * root)))


def _bounded(perf: PerfModel, prompt: float, output: float, settings: CapacitySettings) -> PerfModel:
    """The model with its batch limit at the KV percentile bound (the queueing model then needs no KV size)."""
    batch = percentile_batch(perf.max_batch_size, perf.kv_capacity_tokens, prompt, output, settings)
    return replace(perf, max_batch_size=max(1, batch), kv_capacity_tokens=None)


def model_capacities(models: Sequence[PerfModel], prompt: float, output: float, itl_ms: float | None,
                     ttft_ms: float | None, settings: CapacitySettings,
                     known: Mapping[CapacityRow, float] | None = None) -> list[float]:
    """req/s one replica of each model carries within the targets, in one vectorised call (0: not even one
    request meets them, or the KV cache holds none); without targets, `utilization` × μ(B). `known`: answers
    already computed for some rows (`row_capacities`, e.g. by the cycle for every model at once): the same
    numbers, taken instead of computed again."""
    rows = [(m, prompt, output, itl_ms, ttft_ms) for m in models]
    if known is None:
        return row_capacities(rows, settings)
    values = [known.get(r) for r in rows]  # each row looked up once (a row hashes its model's fields)
    missing = [r for r, v in zip(rows, values, strict=True) if v is None]
    if not missing:
        return values  # type: ignore[return-value]  # none is None
    found = dict(zip(missing, row_capacities(missing, settings), strict=True))
    return [found[r] if v is None else v for r, v in zip(rows, values, strict=True)]


def row_capacities(rows: Sequence[CapacityRow], settings: CapacitySettings) -> list[float]:
    """`model_capacities` for rows of any models at once, each with its own lengths and targets: one row's answer
    never depends on the other rows (`kedascaler.engine.queueing` sums left to right), so the cycle computes the
    rows of every model in one call and keeps them for the next cycle."""
    if not rows:
        return []
    out = [0.0] * len(rows)
    free = [i for i, r in enumerate(rows) if r[3] is None and r[4] is None]
    bound = [i for i, r in enumerate(rows) if r[3] is not None or r[4] is not None]
    for index, targets in ((free, False), (bound, True)):
        if not index:
            continue
        part = [rows[i] for i in index]
        prompt = np.array([r[1] for r in part], dtype=np.float64)
        output = np.array([r[2] for r in part], dtype=np.float64)
        bounded = [_bounded(r[0], r[1], r[2], settings) for r in part]
        fits = [percentile_batch(r[0].max_batch_size, r[0].kv_capacity_tokens, r[1], r[2], settings) >= 1
                for r in part]
        arrays = ReplicaArrays.from_models(bounded, prompt, np.maximum(1.0, output))
        if not targets:
            found = arrays.peak_rate() * settings.utilization
        else:
            itl = np.array([np.inf if r[3] is None else r[3] for r in part], dtype=np.float64)
            ttft = np.array([np.inf if r[4] is None else r[4] for r in part], dtype=np.float64)
            solver = QueueSolver(arrays)  # one grid for both bisections
            found = max_arrival_rate(arrays, itl, ttft, solver=solver)
            found = max_rate_within(arrays, found, itl, ttft, settings.miss_budget, settings.length_cv,
                                    solver=solver)
        for i, c, ok in zip(index, found.tolist(), fits, strict=True):
            out[i] = c if ok and math.isfinite(c) else 0.0
    return out


def rescaled(evidence: VariantEvidence, prompt: float, output: float, carried: bool = False) -> float | None:
    """The saturated (or the carried) throughput at the current lengths: × the ratio of tokens per request then
    and now."""
    return _at_lengths(evidence.carried if carried else evidence.saturated, prompt, output)


def _at_lengths(found: Throughput | None, prompt: float, output: float) -> float | None:
    """A measured throughput at the current lengths (None when there is none)."""
    if found is None or found.per_replica <= 0:
        return None
    now = max(1.0, prompt + output)
    then = max(1.0, found.prompt_tokens + found.output_tokens)
    low, high = RESCALE_LIMITS
    return found.per_replica * min(high, max(low, then / now))


def _saturated_floor(evidence: VariantEvidence, prompt: float, output: float, itl_ms: float | None,
                     settings: CapacitySettings) -> float | None:
    """`utilization` × what the variant's pods completed in their last saturated window, at the current lengths,
    when their ITL there was within the target (None otherwise): a replica that completed that rate at full
    batch within the ITL target carries most of it within the targets, whatever a model read from one point says.
    The last window, not the best: the first minute of a batch of long generations runs on short contexts and
    completes faster than the steady state (long-outputs-drop: 10 req/s against 7)."""
    last = evidence.recent_saturated
    if last is None or (itl_ms is not None and (last.itl_ms is None or last.itl_ms > itl_ms)):
        return None
    rate = _at_lengths(last, prompt, output)
    return None if rate is None else rate * settings.utilization


def _one_point(evidence: VariantEvidence) -> bool:
    return evidence.perf is not None and evidence.perf_source.startswith(ONE_POINT)


def _limits(spec: VariantSpec, evidence: VariantEvidence) -> tuple[int, int | None]:
    return evidence.max_num_seqs or DEFAULT_MAX_BATCH_SIZE, evidence.kv_capacity_tokens


def _sibling(spec: VariantSpec, specs: Sequence[VariantSpec], evidence: dict[str, VariantEvidence],
             own: dict[str, float]) -> tuple[VariantSpec, VariantEvidence] | None:
    """The variant of the model to borrow from: one with a model (else a measurement), the fastest class first."""
    def speed(s: VariantSpec) -> float:
        cls = accelerator_class(s.accelerator)
        return 0.0 if cls is None else cls.bandwidth_tbs * max(1, s.accelerator_count)

    ranked = sorted((s for s in specs if s.key != spec.key and str(s.key) in evidence),
                    key=lambda s: (evidence[str(s.key)].perf is None, str(s.key) not in own, -speed(s), s.key.name))
    for s in ranked:
        ev = evidence[str(s.key)]
        if speed_ratios(spec.accelerator, spec.accelerator_count, s.accelerator, s.accelerator_count) is None:
            continue
        if ev.perf is not None or str(s.key) in own:
            return s, ev
    return None


@quick
@dataclass(frozen=True)
class Candidates:
    """Per variant (by index in `specs`), what its capacity may come from, before any queueing model is run."""

    evidence: list[VariantEvidence]
    with_model: list[tuple[int, PerfModel]]  # its own model
    measured: dict[str, float]  # its saturated throughput, rescaled (by str(key))
    prior_models: list[tuple[int, PerfModel, str]]  # a sibling's model moved to its class, and the sibling
    prior_measured: dict[int, tuple[float, str]]  # a sibling's measurement scaled by decode speed
    prior_kv: dict[int, int | None]  # the KV size lent by the sibling (when its own is unknown)


def candidates(specs: Sequence[VariantSpec], evidence: Sequence[VariantEvidence], prompt: float, output: float,
                settings: CapacitySettings) -> Candidates:
    by_key = {str(e.key): e for e in evidence}
    evs = [by_key.get(str(s.key), VariantEvidence(s.key)) for s in specs]
    with_model = [(i, e.perf) for i, e in enumerate(evs) if e.perf is not None]
    measured = {str(specs[i].key): m for i, e in enumerate(evs) if (m := rescaled(e, prompt, output)) is not None}
    # priors: a sibling's model moved to this class, else a sibling's measurement scaled by decode speed
    prior_models: list[tuple[int, PerfModel, str]] = []
    prior_measured: dict[int, tuple[float, str]] = {}
    prior_kv: dict[int, int | None] = {}
    fitted = {k: e for k, e in by_key.items() if e.perf is not None and not _one_point(e)}
    for i, (spec, ev) in enumerate(zip(specs, evs, strict=True)):
        if _one_point(ev):  # its own model is read from one window: a fitted sibling's may say more (docstring)
            found = _sibling(spec, specs, fitted, {})
        elif ev.perf is not None or str(spec.key) in measured:
            continue
        else:
            found = _sibling(spec, specs, by_key, measured)
        if found is None:
            continue
        sib, sib_ev = found
        ratios = speed_ratios(spec.accelerator, spec.accelerator_count, sib.accelerator, sib.accelerator_count)
        assert ratios is not None
        seqs, kv = _limits(spec, ev)
        if kv is None:
            lent = sib_ev.kv_capacity_tokens or (sib_ev.perf.kv_capacity_tokens if sib_ev.perf is not None else None)
            kv = scaled_kv(lent, spec.accelerator, spec.accelerator_count, sib.accelerator, sib.accelerator_count)
            prior_kv[i] = kv
        if sib_ev.perf is not None:
            prior_models.append((i, scaled_model(sib_ev.perf, *ratios, seqs, kv), sib.key.name))
        elif ratios[0] > 0:
            prior_measured[i] = (measured[str(sib.key)] * ratios[0] * settings.utilization, sib.key.name)
    return Candidates(evs, [(i, m) for i, m in with_model if m is not None], measured, prior_models,
                       prior_measured, prior_kv)


def capacity_rows(specs: Sequence[VariantSpec], evidence: Sequence[VariantEvidence], prompt: float, output: float,
                  itl_ms: float | None, ttft_ms: float | None, settings: CapacitySettings) -> list[CapacityRow]:
    """The queueing-model rows `variant_capacities` evaluates for these variants (their own and borrowed models)."""
    return capacity_rows_of_candidates(candidates(specs, evidence, prompt, output, settings), prompt, output, itl_ms,
                                       ttft_ms)


def capacity_rows_of_candidates(found: Candidates, prompt: float, output: float, itl_ms: float | None,
                                ttft_ms: float | None) -> list[CapacityRow]:
    """The rows of `capacity_rows`, from the candidates found at these lengths."""
    return [(m, prompt, output, itl_ms, ttft_ms) for m in
            [m for _, m in found.with_model] + [m for _, m, _ in found.prior_models]]


def variant_capacities(specs: Sequence[VariantSpec], evidence: Sequence[VariantEvidence], prompt: float,
                       output: float, itl_ms: float | None, ttft_ms: float | None, settings: CapacitySettings,
                       startups: Sequence[tuple[float, str]], known: Mapping[CapacityRow, float] | None = None,
                       found: Candidates | None = None) -> tuple[VariantCapacity, ...]:
    """Capacity per replica of every variant (in `specs` order), each with its source and reason; `known`: rows
    already evaluated (see `model_capacities`); `found`: `candidates` of these very arguments, when the caller
    has them."""
    if found is None:
        found = candidates(specs, evidence, prompt, output, settings)
    evs, with_model, measured = found.evidence, found.with_model, found.measured
    prior_models, prior_measured, prior_kv = found.prior_models, found.prior_measured, found.prior_kv
    modelled = dict(zip([i for i, _ in with_model],
                        model_capacities([m for _, m in with_model], prompt, output, itl_ms, ttft_ms, settings,
                                         known), strict=True))
    priors = dict(zip([i for i, _, _ in prior_models],
                      model_capacities([m for _, m, _ in prior_models], prompt, output, itl_ms, ttft_ms, settings,
                                       known), strict=True))
    prior_from = {i: name for i, _, name in prior_models}
    targets = "the ITL/TTFT targets" if itl_ms is not None or ttft_ms is not None else (
        f"{settings.utilization:g} × its throughput at the batch limit (no SLO targets)")
    out = []
    for i, (spec, ev) in enumerate(zip(specs, evs, strict=True)):
        seqs, kv = _limits(spec, ev)
        kv = prior_kv.get(i, kv)
        batch = percentile_batch(seqs, kv, prompt, output, settings)
        if ev.perf is not None:
            batch = percentile_batch(ev.perf.max_batch_size, ev.perf.kv_capacity_tokens, prompt, output, settings)
        startup, startup_source = startups[i]
        model, meas = modelled.get(i), measured.get(str(spec.key))
        prior = priors.get(i, prior_measured.get(i, (None, ""))[0])
        if model is not None:
            cap, source = model, CapacitySource.MODEL
            reason = f"queueing model with {ev.perf_source or 'given'} parameters within {targets}"
            lent = priors.get(i, 0.0) if _one_point(ev) else 0.0
            if lent > cap and (meas is None or meas > cap):
                cap = lent if meas is None else min(lent, meas)
                reason += (f"; raised to the {cap:.3g} req/s of {prior_from[i]}'s fitted model moved to this class (a "
                           f"one-point model reads a busy pod's prefill as its prompts' own work)")
            if meas is not None and meas < cap:
                cap = meas
                reason += f", capped at the {meas:.3g} req/s it completed while saturated"
            floor = _saturated_floor(ev, prompt, output, itl_ms, settings)
            if floor is not None and floor > cap:
                cap = floor
                reason += (f"; raised to {settings.utilization:g} × the {floor / settings.utilization:.3g} req/s its "
                           f"pods completed in their last saturated window, within the ITL target")
        elif meas is not None:
            cap, source = meas * settings.utilization, CapacitySource.MEASURED
            reason = (f"{settings.utilization:g} × {meas:.3g} req/s completed per replica while saturated "
                      f"({ev.perf_reason or 'no usable model'})")
        elif prior is not None:
            cap, source = prior, CapacitySource.PRIOR
            cls = accelerator_class(spec.accelerator)
            lender = prior_from.get(i) or prior_measured.get(i, (0.0, "?"))[1]
            reason = (f"never ran: {lender}'s {'model' if i in priors else 'measured throughput'} moved to "
                      f"{cls.name if cls else spec.accelerator} × {max(1, spec.accelerator_count)}, "
                      f"max_num_seqs {seqs}, KV {kv if kv is not None else 'unknown'} tokens"
                      + (" (the lender's, by memory)" if ev.kv_capacity_tokens is None and kv is not None else ""))
        else:
            cap, source = 0.0, CapacitySource.NONE
            why = ev.perf_reason or "no performance parameters"
            reason = (f"no capacity estimate: {why}; never seen saturated; no variant of the model ran on a known "
                      f"accelerator class to borrow from (accelerator {spec.accelerator or 'not set'})")
        carried = rescaled(ev, prompt, output, carried=True)
        if carried is not None and carried > cap and source != CapacitySource.NONE:
            reason += f"; raised to the {carried:.3g} req/s a replica carried well within the targets"
            cap = carried
        estimate = max(0.0, cap)
        if ev.recent and source != CapacitySource.NONE:
            window = sorted((*ev.recent[-(SMOOTH_CYCLES - 1):], estimate))
            cap = window[len(window) // 2]
            if abs(cap - estimate) > 1e-9 * max(1.0, estimate):
                reason += f"; the median of the last {len(window)} cycles' estimates ({estimate:.3g} now)"
        out.append(VariantCapacity(spec.key, max(0.0, cap), source, reason, estimate, model=model, measured=meas,
                                   carried=carried, prior=prior, batch_limit=batch, startup_s=startup,
                                   startup_source=startup_source))
    return tuple(out)


__all__ = ["RESCALE_LIMITS", "SMOOTH_CYCLES", "CapacityRow", "Candidates", "candidates", "capacity_rows",
           "capacity_rows_of_candidates", "model_capacities", "percentile_batch",
           "rescaled", "row_capacities", "variant_capacities"]
