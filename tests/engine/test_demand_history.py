"""A model's demand and need histories as columns: the samples they were given, kept and dropped as tuples were."""

from __future__ import annotations

import math
import pickle
import random

from kedascaler.engine.arrivals import held_need, mean_lengths, rising_trend, window_rate
from kedascaler.engine.capacity_types import CapacityInputs, DemandHistory, DemandSample, NeedHistory


def samples(n: int, seed: int = 3) -> tuple[DemandSample, ...]:
    rng = random.Random(seed)
    return tuple(DemandSample(15.0 * i + rng.random(), rng.uniform(0, 40), rng.uniform(0, 40), rng.uniform(0, 9e3),
                              rng.uniform(0, 9e3), rng.choice((15.0, 60.0))) for i in range(n))


def test_the_columns_give_back_the_very_samples_and_keep_and_append_as_a_tuple_did():
    given = samples(130)
    h = DemandHistory.of(given)
    assert tuple(h) == given and len(h) == 130 and h[-1] == given[-1]
    now = given[-1].at + 15.0
    as_tuple = tuple(s for s in given if now - 1800.0 < s.at < now) + (given[0],)
    assert tuple(h.kept(now - 1800.0, now).append(given[0])) == as_tuple
    assert h.append(None) is h and DemandHistory.of(()) == DemandHistory()
    assert h == DemandHistory.of(given) and hash(h) == hash(DemandHistory.of(given))
    assert tuple(pickle.loads(pickle.dumps(h))) == given


def test_the_arrival_rates_over_columns_are_the_floats_the_tuples_gave():
    given = samples(60)
    now = given[-1].at
    for span in (60.0, 300.0, 121.0):
        picked = [s for s in given if s.at > now - span + 1e-9 and s.at <= now + 1.0]  # as the tuples were summed
        covered = math.fsum(s.window for s in picked)
        want = (math.fsum(s.rate * s.window for s in picked) / covered, min(covered, span))
        assert window_rate(DemandHistory.of(given), now, span) == want
        done = math.fsum(s.completed * s.window for s in picked)
        assert mean_lengths(DemandHistory.of(given), now, span, None) == (
            math.fsum(s.prompt_rate * s.window for s in picked) / done,
            max(1.0, math.fsum(s.output_rate * s.window for s in picked) / done))
        assert rising_trend(DemandHistory.of(given), now, span) == rising_trend(given, now, span)


def test_needs_as_columns_hold_the_largest_need_of_the_window():
    pairs = tuple((15.0 * i, float(i % 7)) for i in range(40))
    needs = NeedHistory.of(pairs)
    assert tuple(needs) == pairs
    assert held_need(needs, 600.0, 90.0, 1.0) == max([1.0] + [n for t, n in pairs if t > 510.0 + 1e-9])
    kept = needs.kept(300.0, 600.0).append(600.0, 9.0)
    assert tuple(kept) == tuple((t, n) for t, n in pairs if 300.0 < t < 600.0) + ((600.0, 9.0),)
    inputs = CapacityInputs(history=samples(3), needs=pairs)  # tuples given are turned into columns
    assert isinstance(inputs.history, DemandHistory) and isinstance(inputs.needs, NeedHistory)


def test_the_demand_view_reads_its_history_once_and_finds_what_each_window_finds():
    """`demand_view` reads the history's columns once (as lists); its rates, lengths and trend are those the
    window functions give, also for samples out of order and one ahead of the clock."""
    from kedascaler.engine.arrivals import RECENT, demand_view, latest
    from kedascaler.engine.capacity_types import CapacitySettings

    given = list(samples(40, seed=7))
    given[10], given[20] = given[20], given[10]  # out of order
    now = given[-1].at
    given.append(DemandSample(now + 30.0, 99.0, 9.0, 1.0, 1.0, 15.0))  # ahead of the clock: in no window
    given.append(DemandSample(now, 12.0, 11.0, 2e3, 1e3, 15.0))  # this cycle's
    s = CapacitySettings()
    inputs = CapacityInputs(settings=s, history=tuple(given), needs=((now - 30.0, 50.0),))
    view = demand_view(inputs, now, 0.0, None, 120.0)
    assert view is not None and view.measured
    assert view.latest == latest(given, now).rate == 12.0
    assert view.short == window_rate(given, now, s.short_window)[0]
    assert view.long == window_rate(given, now, s.long_window)[0]
    assert (view.prompt_tokens, view.output_tokens) == mean_lengths(given, now, s.long_window, None)
    assert view.trend == rising_trend(given, now, s.trend_window + RECENT)
    assert view.held == held_need(inputs.needs, now, 120.0, max(view.need, view.up)) == 50.0


def test_a_history_built_in_order_keeps_what_the_mask_keeps_reading_only_its_ends():
    """Grown by `append` from empty, a history knows its times are in order: `kept` reads its two ends. Given
    out of order (or with a NaN time), it keeps what the mask over every time keeps."""
    grown = DemandHistory()
    for s in samples(20):
        grown = grown.append(s)
    assert grown.ordered and not DemandHistory.of(samples(20)).ordered
    given = list(samples(20))
    given[3], given[12] = given[12], given[3]
    shuffled = DemandHistory.of(given)
    nan = DemandHistory().append(DemandSample(math.nan, 1.0, 1.0, 1.0, 1.0, 15.0)).append(samples(1)[0])
    assert not nan.ordered
    for h, source in ((grown, list(samples(20))), (shuffled, given)):
        for after, before in ((-1.0, 1e9), (40.0, 1e9), (-1.0, 200.0), (100.0, 150.0), (1e9, 2e9)):
            want = tuple(s for s in source if after < s.at < before)
            got = h.kept(after, before)
            assert tuple(got) == want and (got is h) == (len(want) == len(source))
    assert tuple(nan.kept(-1.0, 1e9)) == (samples(1)[0],)
