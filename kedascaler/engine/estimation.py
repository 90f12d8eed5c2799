"""Online estimation of a variant's performance parameters from what its pods report. Pure numpy.

Two straight lines, fitted robustly over a sliding window of observations per variant:
- decode: ITL (ms) against the running batch → α (intercept), β (slope). One pair per pod and scrape window:
  mean `vllm:num_requests_running` and mean ITL (rate of `inter_token_latency_seconds_sum / _count`).
- prefill: prefill time (ms) against prompt tokens prefilled → γ (intercept), δ (slope). One pair per pod and
  window: mean prompt tokens (`request_prompt_tokens`) and mean prefill time (`request_prefill_time_seconds`,
  or TTFT minus `request_queue_time_seconds` when the prefill histogram is missing).
The fit is Theil–Sen (median of pairwise slopes: robust to 29 % outliers) refined by Huber IRLS (efficient
on clean data), both in numpy. Each fit carries its quality and a `usable` flag. Usable when all hold:
- n ≥ MIN_SAMPLES (20) and at least MIN_DISTINCT_X (3) distinct x values (else the slope is not identified);
- no one sample decides the slope: every leverage 1/n + (x − x̄)²/Σ(x − x̄)² ≤ MAX_LEVERAGE (0.5). Twenty
  windows at a light load and the first window of a burst have a high R² and a small standard error, yet the
  slope is that one window's (a burst's first window also carries the stalls of its queued prompts: on the
  flash crowd an A100's slope came out 1.9× its steady one, its capacity 20 req/s against 33);
- intercept > 0, and slope ≥ −2 standard errors (a slope a little below 0 is noise: it is clipped to 0);
- relative spread ≤ MAX_RELATIVE_SPREAD (0.25): the robust σ of residuals (1.4826·MAD) over the median |y|;
- R² ≥ MIN_R2 (0.5), or the line is pinned down anyway: 2·se(slope)·(x range) ≤ PINNED_FRACTION (0.1) of
  the median |y| (a flat cloud — an H100's prefill against prompt length, say — has a low R², yet its line
  is known to within 10 % over the range it was seen on).
Non-dense models (MoE, hybrid state-space) fail these checks more often: that is the point — sizing then
falls back to saturation. User-given parameters (the VA's `variantProfile`) win unless the caller prefers
the estimate (`choose_perf`).

Estimated decode coefficients are *effective* ones: the ITL histogram includes the stalls of prefills
mixed into decode steps, so α̂ + β̂·n already is the mixed model's ITL(n); and γ̂ + δ̂·p is the prefill one
request measured. Size with them in `effective` prefill mode (`prefill_mode_for("estimated")`): nothing is
added to either line; user-given coefficients are step times and go with `mixed`. Checked end to end
against the emulator in tests/engine/test_estimation.py.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from kedascaler.engine.frozen import evolve, quick, read_only
from kedascaler.engine.perfmodel import EFFECTIVE, MIXED, Coefficients, Estimated
from kedascaler.engine.types import ParameterSource

MIN_SAMPLES = 20
MIN_DISTINCT_X = 3
MAX_RELATIVE_SPREAD = 0.25
PINNED_FRACTION = 0.1
MIN_R2 = 0.5
MAX_LEVERAGE = 0.5  # the textbook line for a sample that alone moves the fit
HUBER_K = 1.345  # in robust σ units: 95 % efficiency on Gaussian noise
DEFAULT_MAX_SAMPLES = 512
DEFAULT_MAX_AGE = 1800.0  # seconds
_MAX_PAIRS_POINTS = 100  # Theil–Sen start on at most this many points (evenly spaced): O(n²) pairs
_SMALL_MEDIAN = 256  # up to this many values a median is taken by sorting Python floats (numpy's costs more)


@quick
@dataclass(frozen=True)
class LinearFit:
    """y ≈ intercept + slope·x with its quality."""

    intercept: float
    slope: float
    n: int
    r2: float
    spread: float  # robust σ of the residuals (1.4826·MAD), units of y
    relative_spread: float  # spread / median |y|
    slope_se: float  # standard error of the slope (from `spread`)
    usable: bool
    reason: str  # why not usable ("" when usable)


def median(values: np.ndarray) -> float:
    """`np.median` of a 1-D array, the same float: small arrays sorted as Python floats (numpy's call costs more
    than the sort), the middle value or the mean of the two middle ones, (a + b) / 2 as numpy computes it."""
    n = len(values)
    if n == 0 or n > _SMALL_MEDIAN:
        return float(np.median(values))
    ordered: list[float] = sorted(values.tolist())
    total = sum(ordered)
    if total != total:  # a NaN (or inf − inf) in the values: sorting does not order it, numpy's answer stands
        return float(np.median(values))
    half = n // 2
    return ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2.0


@lru_cache(maxsize=_MAX_PAIRS_POINTS + 1)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    return read_only(i), read_only(j)


def _theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(x) > _MAX_PAIRS_POINTS:
        pick = np.linspace(0, len(x) - 1, _MAX_PAIRS_POINTS).astype(int)
        x, y = x[pick], y[pick]
    i, j = _pairs(len(x))
    dx = x[j] - x[i]
    keep = dx != 0
    slope = median((y[j] - y[i])[keep] / dx[keep]) if keep.any() else 0.0
    return median(y - slope * x), slope


def _mad_sigma(r: np.ndarray) -> float:
    return float(1.4826 * median(np.abs(r - median(r))))


def _huber(x: np.ndarray, y: np.ndarray, start: tuple[float, float], iterations: int = 30) -> tuple[float, float]:
    """Huber M-estimate by iteratively reweighted least squares (2 × 2 normal equations in closed form).

    The scale is fixed at the robust σ of the start's residuals (Huber's proposal with a preliminary scale).
    """
    intercept, slope = start
    scale = _mad_sigma(y - intercept - slope * x)
    if scale <= 0:
        return intercept, slope
    xx, xy = x * x, x * y
    k = HUBER_K * scale  # as `HUBER_K * scale / …` multiplies first
    add = np.add.reduce  # `w.sum()` without its Python wrapper: the same reduction
    for _ in range(iterations):
        r = y - intercept - slope * x
        w = np.minimum(1.0, k / np.maximum(np.abs(r), 1e-300))
        sw, swx, swy = add(w), w @ x, w @ y
        det = sw * (w @ xx) - swx * swx
        if det <= 0:
            break
        new_slope = (sw * (w @ xy) - swx * swy) / det
        new_intercept = (swy - new_slope * swx) / sw
        done = (abs(new_intercept - intercept) <= 1e-9 * (1 + abs(intercept))
                and abs(new_slope - slope) <= 1e-9 * (1 + abs(slope)))
        intercept, slope = float(new_intercept), float(new_slope)
        if done:
            break
    return intercept, slope


def robust_line(x: object, y: object) -> LinearFit:
    """Fit y = a + b·x robustly (Theil–Sen start, Huber IRLS) and judge whether it can be used."""
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    n = int(len(xs))
    distinct = len(set(xs.tolist()))  # what np.unique counts (finite floats; -0.0 is 0.0), without its sort
    if n < 2 or distinct < 2:
        return LinearFit(math.nan, math.nan, n, 0.0, math.nan, math.nan, math.nan, False,
                         f"{n} samples with {distinct if n else 0} distinct x: need ≥ {MIN_SAMPLES} "
                         f"and ≥ {MIN_DISTINCT_X}")
    intercept, slope = _huber(xs, ys, _theil_sen(xs, ys))
    residuals = ys - intercept - slope * xs
    spread = _mad_sigma(residuals)
    level = median(np.abs(ys))
    relative = spread / level if level > 0 else math.inf
    add = np.add.reduce  # np.sum and ndarray.mean without their Python wrappers: the same reductions
    mean_x, mean_y = add(xs) / n, add(ys) / n  # what .mean() gives: the sum over the count, as a float64
    ss_tot = float(add((ys - mean_y) ** 2))
    ss_res = float(add(residuals ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    sxx = float(add((xs - mean_x) ** 2))
    slope_se = spread / math.sqrt(sxx) if sxx > 0 else math.inf
    pinned = 2 * slope_se * float(xs.max() - xs.min()) <= PINNED_FRACTION * level
    far = int(np.argmax(np.abs(xs - mean_x)))
    leverage = (1.0 / n + float((xs[far] - mean_x) ** 2) / sxx) if sxx > 0 else 1.0
    reason = _judge(n, distinct, intercept, slope, slope_se, relative, r2, pinned, (leverage, float(xs[far])))
    if not reason and slope < 0:
        slope = 0.0  # within noise of 0 (checked by _judge): a step cannot get faster with more work
    return LinearFit(intercept, slope, n, r2, spread, relative, slope_se, not reason, reason)


def _judge(n: int, distinct: int, intercept: float, slope: float, slope_se: float, relative: float, r2: float,
           pinned: bool, leverage: tuple[float, float] = (0.0, 0.0)) -> str:
    if n < MIN_SAMPLES:
        return f"{n} samples: need ≥ {MIN_SAMPLES}"
    if distinct < MIN_DISTINCT_X:
        return f"{distinct} distinct x values: need ≥ {MIN_DISTINCT_X} (the load has not varied enough)"
    if leverage[0] > MAX_LEVERAGE:
        return (f"one sample (x = {leverage[1]:.3g}) decides the slope: leverage {leverage[0]:.2f} > {MAX_LEVERAGE} "
                f"(the load has been seen at one other level only)")
    if not intercept > 0:
        return f"intercept {intercept:.3g} ≤ 0: not a physical step time"
    if slope < -2 * slope_se:
        return f"slope {slope:.3g} < 0 beyond noise (se {slope_se:.3g})"
    if relative > MAX_RELATIVE_SPREAD:
        return f"relative spread {relative:.2f} > {MAX_RELATIVE_SPREAD}: the line does not describe the data"
    if r2 < MIN_R2 and not pinned:
        return f"R² {r2:.2f} < {MIN_R2} and the slope is uncertain (se {slope_se:.3g}) over the range seen"
    return ""


_EMPTY = read_only(np.empty((3, 0), dtype=np.float64))


def _finite_floats(values: object) -> bool:
    """A non-empty list of finite Python floats (what `add` may take as it is)."""
    return (type(values) is list and bool(values) and all(type(v) is float for v in values)
            and all(map(math.isfinite, values)))


@quick
@dataclass(frozen=True, eq=False)
class Window:
    """A sliding window of (time, x, y) observations: the newest `max_samples` within `max_age` seconds.

    One read-only float64 array, a row each for the times, x and y, not tuples of Python floats: 10,000 variants
    × 2 lines × 512 points would be 20 million objects for the garbage collector to walk; and one array, not
    three: an observation costs one concatenation (20,000 a cycle at 10,000 VAs)."""

    data: np.ndarray = field(default_factory=lambda: _EMPTY)  # rows: at, x, y; a column per observation
    max_samples: int = DEFAULT_MAX_SAMPLES
    max_age: float = DEFAULT_MAX_AGE
    ordered: bool = True  # every observation so far at or after the one before (times only grow): the oldest
    # one then tells whether any is too old, with no search

    @property
    def at(self) -> np.ndarray:
        row: np.ndarray = self.data[0]
        return row

    @property
    def samples(self) -> int:
        """Observations in the window (`len(self.x)`, without making the row's view)."""
        return int(self.data.shape[1])

    @property
    def x(self) -> np.ndarray:
        row: np.ndarray = self.data[1]
        return row

    @property
    def y(self) -> np.ndarray:
        row: np.ndarray = self.data[2]
        return row

    def add(self, now: float, xs: object, ys: object) -> Window:
        """A new window with these pairs observed at `now`, old ones dropped. Non-finite pairs are ignored."""
        if _finite_floats(xs) and _finite_floats(ys) and len(xs) == len(ys):  # type: ignore[arg-type]  # lists
            block = np.array(([float(now)] * len(xs), xs, ys), dtype=np.float64)  # type: ignore[arg-type]
        else:
            new_x = np.atleast_1d(np.asarray(xs, dtype=np.float64))
            new_y = np.atleast_1d(np.asarray(ys, dtype=np.float64))
            keep = np.isfinite(new_x) & np.isfinite(new_y)
            new_x, new_y = new_x[keep], new_y[keep]
            block = np.array((np.full(len(new_x), float(now)), new_x, new_y), dtype=np.float64)
        data = np.concatenate((self.data, block), axis=1)
        old = self.data.shape[1]
        ordered = self.ordered and (old == 0 or float(self.data[0, -1]) <= now)
        cutoff = now - self.max_age
        if ordered and float(data[0, 0]) >= cutoff:  # times in order, none too old: what the search finds
            first = 0
        else:
            # bisect, not np.searchsorted: that one releases and retakes the GIL around so small a search, 20,000
            # times a cycle at 10,000 VAs, that the waiting event loop kept losing the hand-over
            first = bisect.bisect_left(data[0], cutoff)
        first = max(first, data.shape[1] - self.max_samples)
        return evolve(self, data=read_only(data[:, first:] if first else data), ordered=ordered)

    def fit(self) -> LinearFit:
        return robust_line(self.x, self.y)


@quick
@dataclass(frozen=True)
class VariantObservations:
    """What one variant's pods showed recently: decode pairs (batch, ITL ms), prefill pairs (tokens, ms)."""

    decode: Window = Window()
    prefill: Window = Window()

    def add_decode(self, now: float, batch: object, itl_ms: object) -> VariantObservations:
        return VariantObservations(self.decode.add(now, batch, itl_ms), self.prefill)

    def add_prefill(self, now: float, prompt_tokens: object, prefill_ms: object) -> VariantObservations:
        return VariantObservations(self.decode, self.prefill.add(now, prompt_tokens, prefill_ms))

    def add(self, now: float, batch: list[float], itl_ms: list[float], prompt_tokens: list[float],
            prefill_ms: list[float]) -> VariantObservations:
        """`add_decode` then `add_prefill`, each only when it has pairs: one record, not two."""
        decode = self.decode.add(now, batch, itl_ms) if batch else self.decode
        prefill = self.prefill.add(now, prompt_tokens, prefill_ms) if prompt_tokens else self.prefill
        return self if decode is self.decode and prefill is self.prefill else VariantObservations(decode, prefill)


@quick
@dataclass(frozen=True)
class PerfEstimate:
    """α, β from the decode fit and γ, δ from the prefill fit, with their quality."""

    decode: LinearFit
    prefill: LinearFit

    @property
    def usable(self) -> bool:
        return self.decode.usable and self.prefill.usable

    @property
    def reason(self) -> str:
        parts = [f"decode: {self.decode.reason}" if self.decode.reason else "",
                 f"prefill: {self.prefill.reason}" if self.prefill.reason else ""]
        return "; ".join(p for p in parts if p)

    @property
    def params(self) -> Estimated | None:
        if not self.usable:
            return None
        return Estimated(self.decode.intercept, self.decode.slope, self.prefill.intercept, self.prefill.slope)


def estimate(observations: VariantObservations) -> PerfEstimate:
    """Fit both lines over the window."""
    return PerfEstimate(observations.decode.fit(), observations.prefill.fit())


def choose_perf(user: Coefficients | None, estimated: PerfEstimate | None, *,
                prefer_estimate: bool = False) -> tuple[Coefficients | None, str]:
    """The parameters to size with and their `ParameterSource` (the user's win unless `prefer_estimate`), or
    (None, why there are none)."""
    learned = estimated.params if estimated is not None else None
    if prefer_estimate and learned is not None:
        return learned, ParameterSource.ESTIMATED
    if user is not None:
        return user, ParameterSource.VARIANT_PROFILE
    if learned is not None:
        return learned, ParameterSource.ESTIMATED
    why = estimated.reason if estimated is not None else "no observations"
    return None, f"no variantProfile.perfParms and no usable estimate ({why})"


MAX_PREFILL_SHARE = 0.9  # a pod that carried its load spent less than this share of its time prefilling


def prefill_stall(itl_ms: float, prefill_ms: float, rate: float) -> tuple[float, float]:
    """(ρ, e) from one window of a pod that carried `rate` req/s with mean ITL `itl_ms` and mean prefill
    `prefill_ms`: ρ the share of its time spent on prompts, e the ms one prompt adds to the step it joins.

    The prefill a request measures is not its own work under load: it is the step it joined — a decode step,
    and the prompts of every request admitted with it (its own and the ≈ λ·P that arrived during the step
    before). Two equations from the same window pin both down: the ITL is the decode step stretched by the
    prompts, ITL = step / (1 − ρ), and the prefill is that step plus the prompts in it,
    P = step + e·(1 + λ·P), with ρ = λ·e. So ρ = (P − ITL) / (1/λ + P − ITL) and e = ρ / λ (times in ms,
    λ in req/ms); at light load e → P − ITL. Reading P − ITL as one prompt's work instead charged each prompt
    the others' too: 3× an A100's δ at 24 req/s, a capacity that fell as the load rose."""
    excess = max(0.0, prefill_ms - itl_ms)
    lam = max(0.0, rate) / 1000.0
    stall = excess / (1.0 + lam * excess)
    share = min(MAX_PREFILL_SHARE, lam * stall)
    return share, (share / lam if lam > 0 and share < lam * stall else stall)


def prefill_mode_for(source: str) -> str:
    """The PerfModel prefill mode that goes with coefficients from `source` (see the module docstring)."""
    return EFFECTIVE if source == ParameterSource.ESTIMATED else MIXED
