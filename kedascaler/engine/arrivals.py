"""A model's demand in capacity units, its short forecast, and the engine-owned hold. Pure, no clock.

Demand is the **arrival rate**, not the backlog: each cycle's `DemandSample` (Σ completed + Σ backlog growth over
the model's pods, from vLLM's counters) goes into a history the cycle keeps; the rate over a short and a long
window comes from it. To it are added:
- a **drain** term for the requests waiting, at the gateway (when it is read) and at the pods: queue ÷ the
  drain horizon, the start-up time (new capacity cannot act sooner) or the TTFT target if longer. Compared with
  the capacity already asked for (ready + starting), so work that pods already starting will absorb never asks
  for a new replica, and the term falls as the queue drains (no runaway: mechanism 1 of issue 14 compared a
  backlog-sized count with one that already held the pods in flight). A request waiting *at a pod* stays there
  (vLLM does not migrate it), so a new pod cannot take it; but the pod burning it takes no new arrivals while it
  does, so the other pods carry them. Over the horizon that share of its capacity is spoken for, and the drain
  counts it (long-outputs-drop at seed 5: an A100 burnt 697 requests down for 90 s while the one H100 took
  every arrival past its capacity, filled its cache and missed a quarter of the run). The pods' queues are read
  as the window's worst (max_over_time), so the window's fall of running + waiting, when it fell, is taken out;
- **headroom** (`CapacitySettings.headroom`) on top.

Two rates drive the hysteresis (`DemandView`):
- *now*: the latest sample where it stands out of the noise (its lower bound at two Poisson standard
  deviations), else the short-window mean: the first cycle whose metrics show a step asks for all of it;
- *up*: the **forecast** one start-up ahead: a rate that rises along a line over the trend window (a ramp,
  not a step) extrapolated over the start-up (at most +50 %), so a rising load is met when the pods asked
  for now are ready;
- *down*: scale-down only to the **largest need of the hold window** (the longest start-up of the model's
  variants, or a configured window): a dip shorter than a start-up never lets go of capacity that would take a
  start-up to get back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kedascaler.engine.capacity_types import CapacityInputs, DemandHistory, DemandSample, DemandView, NeedHistory

RECENT = 1.0  # s of slack: a sample taken at this cycle's clock counts as this cycle's
TREND_SAMPLES = 6  # samples a trend needs
TREND_R2 = 0.8  # ... lying on a line this well
TREND_AGREE = 3.0  # ... rising in both halves of the window, the faster at most this many times the slower
MAX_FORECAST_RISE = 0.5  # the forecast adds at most this fraction of the current rate


_Columns = list[list[float]]  # a history's rows as Python floats: at, rate, completed, prompt_rate, output_rate, window
_AT, _RATE, _COMPLETED, _PROMPT, _OUTPUT, _WINDOW = range(6)


def _columns(history: DemandHistory | Sequence[DemandSample]) -> _Columns:
    """The history's fields as lists of the very floats it holds: a model's few samples are read faster from
    lists than through numpy's per-call cost (the sums and comparisons below are the same float operations)."""
    rows: _Columns = DemandHistory.of(history).data.tolist()
    return rows


def _picked(at: list[float], now: float, span: float, upper: bool = True) -> list[int]:
    """The samples of the last `span` s (taken by this cycle's clock at the latest when `upper`)."""
    low, high = now - span + 1e-9, now + RECENT
    if upper:
        return [i for i, t in enumerate(at) if t > low and t <= high]
    return [i for i, t in enumerate(at) if t > low]


def _window_rate(h: _Columns, now: float, span: float) -> tuple[float, float] | None:
    picked = _picked(h[_AT], now, span)
    windows, rates = h[_WINDOW], h[_RATE]
    covered = math.fsum([windows[i] for i in picked])
    if covered <= 0:
        return None
    return math.fsum([rates[i] * windows[i] for i in picked]) / covered, min(covered, span)


def window_rate(history: DemandHistory | Sequence[DemandSample], now: float, span: float
                ) -> tuple[float, float] | None:
    """(rate, seconds covered) over the samples of the last `span` s, each weighted by its window."""
    return _window_rate(_columns(history), now, span)


def _mean_lengths(h: _Columns, now: float, span: float, fallback: tuple[float, float] | None
                  ) -> tuple[float, float] | None:
    picked = _picked(h[_AT], now, span, upper=False)
    windows = h[_WINDOW]
    completed, prompts, outputs = h[_COMPLETED], h[_PROMPT], h[_OUTPUT]
    done = math.fsum([completed[i] * windows[i] for i in picked])
    if done > 0:
        prompt = math.fsum([prompts[i] * windows[i] for i in picked]) / done
        output = math.fsum([outputs[i] * windows[i] for i in picked]) / done
        if math.isfinite(prompt) and math.isfinite(output) and output > 0:
            return max(0.0, prompt), max(1.0, output)
    return fallback


def mean_lengths(history: DemandHistory | Sequence[DemandSample], now: float, span: float,
                 fallback: tuple[float, float] | None) -> tuple[float, float] | None:
    """Mean (prompt, output) tokens of the requests completed over the last `span` s (else `fallback`)."""
    return _mean_lengths(_columns(history), now, span, fallback)


def _latest(h: _Columns, now: float) -> DemandSample | None:
    if h[_AT] and abs(h[_AT][-1] - now) <= RECENT:
        return DemandSample(*(row[-1] for row in h))
    return None


def latest(history: DemandHistory | Sequence[DemandSample], now: float) -> DemandSample | None:
    """This cycle's sample (None when the pods gave no usage this cycle: the demand is not known now)."""
    return _latest(_columns(history), now)


def held_need(needs: NeedHistory | Sequence[tuple[float, float]], now: float, window: float, need: float) -> float:
    """The largest need over the last `window` s, this cycle's included."""
    at, values = NeedHistory.of(needs).data.tolist()
    after = now - window + 1e-9
    largest: float = max([need] + [n for t, n in zip(at, values, strict=True) if t > after])
    return largest


def rate_now(sample: DemandSample, short: float) -> float:
    """This cycle's rate where it stands out of the short window's noise: the latest sample's lower bound at two
    Poisson standard deviations (a step shows in the first cycle; a fluctuation does not), never below `short`."""
    noise = 2.0 * math.sqrt(max(0.0, sample.rate) / max(sample.window, 1e-9))
    return max(short, sample.rate - noise)


def _rising_trend(h: _Columns, now: float, span: float) -> float:
    picked = _picked(h[_AT], now, span)
    if len(picked) < TREND_SAMPLES:
        return 0.0
    at, rates = h[_AT], h[_RATE]
    xs = [at[i] for i in picked]
    ys = [rates[i] for i in picked]
    mx, my = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return 0.0
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    r2 = sxy * sxy / (sxx * syy)
    half = len(xs) // 2
    early = (ys[half] - ys[0]) / max(xs[half] - xs[0], 1e-9)  # a line rises in both halves, about alike
    late = (ys[-1] - ys[half]) / max(xs[-1] - xs[half], 1e-9)
    steady = early > 0 and late > 0 and max(early, late) <= TREND_AGREE * min(early, late)
    return slope if slope > 0 and r2 >= TREND_R2 and steady else 0.0


def rising_trend(history: DemandHistory | Sequence[DemandSample], now: float, span: float) -> float:
    """req/s per s: the least-squares slope of the samples of the last `span` s when they rise along a line
    (R² ≥ TREND_R2, at least TREND_SAMPLES of them, both halves rising alike); 0 otherwise. A step is not a line
    (its samples sit on two levels, one half flat): it is met by `rate_now`, not extrapolated; a ramp is."""
    return _rising_trend(_columns(history), now, span)


def demand_view(inputs: CapacityInputs, now: float, backlog_at_pods: float, gateway_queue: float | None,
                startup: float) -> DemandView | None:
    """The model's demand this cycle. Without a sample this cycle (a pod's first read, a failed usage query) the
    short window's rate stands in (0 without history) and `measured` is False: the caller must not scale down
    on it. None only when there is neither a sample nor anything waiting (nothing to size on)."""
    s = inputs.settings
    h = _columns(inputs.history)
    last = _latest(h, now)
    measured = last is not None
    if last is None:
        known = _window_rate(h, now, s.short_window)
        if known is None and not (gateway_queue or backlog_at_pods):
            return None
        last = DemandSample(now, known[0] if known else 0.0, 0.0, 0.0, 0.0, s.short_window)
    short = _window_rate(h, now, s.short_window)
    long = _window_rate(h, now, s.long_window)
    lengths = _mean_lengths(h, now, s.long_window, inputs.lengths) or (0.0, 1.0)
    short_rate = short[0] if short else last.rate
    long_rate = long[0] if long else short_rate
    now_rate = rate_now(last, short_rate)
    trend = _rising_trend(h, now, s.trend_window + RECENT) if s.forecast else 0.0
    forecast = now_rate + min(trend * startup, now_rate * MAX_FORECAST_RISE)
    gateway = max(0.0, gateway_queue or 0.0)
    # the pods' queues are read as the worst of the window (max_over_time): a queue that fell in it is counted at
    # its old height. The window's change of running + waiting, when it fell, takes the fall out of it
    fell = min(0.0, last.rate + last.handed_back - last.completed) * last.window if measured else 0.0
    backlog = max(0.0, backlog_at_pods + fell) + gateway
    ttft_s = (inputs.ttft_ms or 0.0) / 1000.0
    horizon = max(startup, ttft_s, 1.0)
    drain = backlog / horizon  # the pods' own queues too: while a pod burns its queue, others carry the arrivals
    grow = 1.0 + max(0.0, s.headroom)
    need = (now_rate + drain) * grow
    up = (forecast + drain) * grow
    window = s.hold_window if s.hold_window is not None else startup
    held = held_need(inputs.needs, now, window, max(need, up))
    prompt, output = lengths
    return DemandView(latest=last.rate, short=short_rate, long=long_rate, trend=trend, forecast=forecast,
                      prompt_tokens=prompt, output_tokens=output, tokens_per_s=short_rate * (prompt + output),
                      gateway_queue=gateway, backlog=backlog, drain=drain, drain_horizon=horizon, need=need, up=up,
                      held=held, hold_window=window, target=max(need, up, held), measured=measured,
                      handed_back=last.handed_back)


__all__ = ["MAX_FORECAST_RISE", "TREND_R2", "TREND_SAMPLES", "demand_view", "held_need", "latest", "mean_lengths",
           "rate_now", "rising_trend", "window_rate"]
