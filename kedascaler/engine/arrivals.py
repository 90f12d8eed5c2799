"""A model's demand in capacity units, its short forecast, and the engine-owned hold. Pure, no clock.

Demand is the **arrival rate**, not the backlog: each cycle's `DemandSample` (Σ completed + Σ backlog growth over
the model's pods, from vLLM's counters) goes into a history the cycle keeps; the rate over a short and a long
window comes from it. To it are added:
- a **drain** term for the requests held at the gateway (when it is read): queue ÷ the drain horizon, the
  start-up time (new capacity cannot act sooner) or the TTFT target if longer. Compared with the capacity
  already asked for (ready + starting), so work that pods already starting will absorb never asks for a new
  replica. Requests waiting *at a pod* are not in it: a request stays on the pod it was routed to (vLLM does
  not migrate it), so a new pod cannot take it; the pod drains its own queue once the arrivals it no longer
  gets go to the capacity sized for them (the backlog is reported, not sized for — mechanism 1 of issue 14);
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


def window_rate(history: DemandHistory | Sequence[DemandSample], now: float, span: float
                ) -> tuple[float, float] | None:
    """(rate, seconds covered) over the samples of the last `span` s, each weighted by its window."""
    h = DemandHistory.of(history)
    at = h.at
    picked = (at > now - span + 1e-9) & (at <= now + RECENT)
    windows = h.column("window")[picked]
    covered = math.fsum(windows.tolist())
    if covered <= 0:
        return None
    return math.fsum((h.column("rate")[picked] * windows).tolist()) / covered, min(covered, span)


def mean_lengths(history: DemandHistory | Sequence[DemandSample], now: float, span: float,
                 fallback: tuple[float, float] | None) -> tuple[float, float] | None:
    """Mean (prompt, output) tokens of the requests completed over the last `span` s (else `fallback`)."""
    h = DemandHistory.of(history)
    picked = h.at > now - span + 1e-9
    windows = h.column("window")[picked]
    done = math.fsum((h.column("completed")[picked] * windows).tolist())
    if done > 0:
        prompt = math.fsum((h.column("prompt_rate")[picked] * windows).tolist()) / done
        output = math.fsum((h.column("output_rate")[picked] * windows).tolist()) / done
        if math.isfinite(prompt) and math.isfinite(output) and output > 0:
            return max(0.0, prompt), max(1.0, output)
    return fallback


def latest(history: DemandHistory | Sequence[DemandSample], now: float) -> DemandSample | None:
    """This cycle's sample (None when the pods gave no usage this cycle: the demand is not known now)."""
    h = DemandHistory.of(history)
    if len(h) and abs(float(h.at[-1]) - now) <= RECENT:
        return h[-1]
    return None


def held_need(needs: NeedHistory | Sequence[tuple[float, float]], now: float, window: float, need: float) -> float:
    """The largest need over the last `window` s, this cycle's included."""
    return max([need] + NeedHistory.of(needs).since(now - window + 1e-9))


def rate_now(sample: DemandSample, short: float) -> float:
    """This cycle's rate where it stands out of the short window's noise: the latest sample's lower bound at two
    Poisson standard deviations (a step shows in the first cycle; a fluctuation does not), never below `short`."""
    noise = 2.0 * math.sqrt(max(0.0, sample.rate) / max(sample.window, 1e-9))
    return max(short, sample.rate - noise)


def rising_trend(history: DemandHistory | Sequence[DemandSample], now: float, span: float) -> float:
    """req/s per s: the least-squares slope of the samples of the last `span` s when they rise along a line
    (R² ≥ TREND_R2, at least TREND_SAMPLES of them, both halves rising alike); 0 otherwise. A step is not a line
    (its samples sit on two levels, one half flat): it is met by `rate_now`, not extrapolated; a ramp is."""
    h = DemandHistory.of(history)
    at = h.at
    picked = (at > now - span + 1e-9) & (at <= now + RECENT)
    if int(picked.sum()) < TREND_SAMPLES:
        return 0.0
    xs: list[float] = at[picked].tolist()
    ys: list[float] = h.column("rate")[picked].tolist()
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


def demand_view(inputs: CapacityInputs, now: float, backlog_at_pods: float, gateway_queue: float | None,
                startup: float) -> DemandView | None:
    """The model's demand this cycle. Without a sample this cycle (a pod's first read, a failed usage query) the
    short window's rate stands in (0 without history) and `measured` is False: the caller must not scale down
    on it. None only when there is neither a sample nor anything waiting (nothing to size on)."""
    s = inputs.settings
    last = latest(inputs.history, now)
    measured = last is not None
    if last is None:
        known = window_rate(inputs.history, now, s.short_window)
        if known is None and not (gateway_queue or backlog_at_pods):
            return None
        last = DemandSample(now, known[0] if known else 0.0, 0.0, 0.0, 0.0, s.short_window)
    short = window_rate(inputs.history, now, s.short_window)
    long = window_rate(inputs.history, now, s.long_window)
    lengths = mean_lengths(inputs.history, now, s.long_window, inputs.lengths) or (0.0, 1.0)
    short_rate = short[0] if short else last.rate
    long_rate = long[0] if long else short_rate
    now_rate = rate_now(last, short_rate)
    trend = rising_trend(inputs.history, now, s.trend_window + RECENT) if s.forecast else 0.0
    forecast = now_rate + min(trend * startup, now_rate * MAX_FORECAST_RISE)
    gateway = max(0.0, gateway_queue or 0.0)
    backlog = max(0.0, backlog_at_pods) + gateway
    ttft_s = (inputs.ttft_ms or 0.0) / 1000.0
    horizon = max(startup, ttft_s, 1.0)
    drain = gateway / horizon  # a pod's own queue stays on it (vLLM does not migrate requests): not for new pods
    grow = 1.0 + max(0.0, s.headroom)
    need = (now_rate + drain) * grow
    up = (forecast + drain) * grow
    window = s.hold_window if s.hold_window is not None else startup
    held = held_need(inputs.needs, now, window, max(need, up))
    prompt, output = lengths
    return DemandView(latest=last.rate, short=short_rate, long=long_rate, trend=trend, forecast=forecast,
                      prompt_tokens=prompt, output_tokens=output, tokens_per_s=short_rate * (prompt + output),
                      gateway_queue=gateway, backlog=backlog, drain=drain, drain_horizon=horizon, need=need, up=up,
                      held=held, hold_window=window, target=max(need, up, held), measured=measured)


__all__ = ["MAX_FORECAST_RISE", "TREND_R2", "TREND_SAMPLES", "demand_view", "held_need", "latest", "mean_lengths",
           "rate_now", "rising_trend", "window_rate"]
