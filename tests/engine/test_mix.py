"""The cheapest mix per unit of capacity: of mixes that cost the same, the one that starts nothing wins."""

from __future__ import annotations

from kedascaler.engine.mix import cheapest_mix, keep_starting
from tests.engine.builders import key, variant

STARTUPS = [90.0, 90.0]
HORIZON = 900.0


def running(a100: int, h100: int):
    return [variant("a100", accelerator="A100", cost=20, current=a100),
            variant("h100", accelerator="H100", cost=40, current=h100)]


def test_a_tie_keeps_the_replicas_that_run_and_starts_none():
    # 40 req/s: one running H100 (53 req/s) or two A100s (64 req/s), both for 40; the second A100 would load for
    # 90 s and the H100 beside it until then (make before break) for nothing
    mix = cheapest_mix(running(1, 1), [31.9, 53.1], 40.0, STARTUPS, HORIZON)
    assert mix.replicas == {key("a100"): 0, key("h100"): 1} and mix.cost == 40
    assert mix.note.startswith("over the replicas running now: cost 40 + start-up 0")


def test_a_saving_still_swaps_and_a_shortfall_still_starts_replicas():
    # 60 req/s: the H100 alone falls short; two A100s (40 + 2 while one loads) beat the H100 and the A100 (60)
    mix = cheapest_mix(running(1, 1), [31.9, 53.1], 60.0, STARTUPS, HORIZON)
    assert mix.replicas == {key("a100"): 2, key("h100"): 0} and mix.cost == 40
    # 100 req/s: nothing running covers it; the mix starts what is short
    more = cheapest_mix(running(1, 1), [31.9, 53.1], 100.0, STARTUPS, HORIZON)
    assert more.capacity >= 100.0 and not more.short and "replicas running now" not in more.note.split(" (")[0]


def test_while_short_the_replicas_in_flight_are_not_swapped_for_ones_that_start_later():
    # 16.5 req/s on one ready A100 (7.2 req/s); three more were asked for 15 s ago. One H100 (20.7) would cost less
    # than three A100s, but it would be ready 15 s after them: the A100s in flight stay
    def fleet(ready: int):
        return [variant("a100", accelerator="A100", cost=20, current=4, ready=ready),
                variant("h100", accelerator="H100", cost=40, current=0)]
    short = cheapest_mix(fleet(ready=1), [7.2, 20.7], 16.5, STARTUPS, HORIZON)
    assert short.replicas == {key("a100"): 3, key("h100"): 0}
    assert "nothing started: the replicas asked for cover the demand and are ready sooner" in short.note
    # once the A100s are ready, the cheaper H100 is taken (make before break keeps them until it is)
    covered = cheapest_mix(fleet(ready=4), [7.2, 20.7], 16.5, STARTUPS, HORIZON)
    assert covered.replicas == {key("a100"): 0, key("h100"): 1}


def test_a_replica_asked_for_is_not_cancelled_because_an_estimate_rose_a_few_per_cent():
    # overlapping-jobs-high at the step to 50 req/s: one ready A100, two more asked for 15 s ago; the A100's
    # estimate then rose from 23.8 to 27.1 req/s, and the mix, which two A100s now cover (54.2 for a need of 53),
    # would cancel one of the pods in flight
    fleet = [variant("a100", accelerator="A100", cost=20, current=3, ready=1),
             variant("h100", accelerator="H100", cost=40, current=0)]
    mix = cheapest_mix(fleet, [27.1, 50.0], 53.0, STARTUPS, HORIZON)
    assert mix.replicas == {key("a100"): 2, key("h100"): 0}
    kept, n = keep_starting(fleet, [27.1, 50.0], mix.replicas, 53.0, 0.10)
    assert kept == {key("a100"): 3, key("h100"): 0} and n == 1
    # a mix that carries the need with more than 10 % to spare cancels it; a ready replica is not this rule's
    assert keep_starting(fleet, [27.1, 50.0], mix.replicas, 48.0, 0.10) == (mix.replicas, 0)
    ready = [variant("a100", accelerator="A100", cost=20, current=3, ready=3),
             variant("h100", accelerator="H100", cost=40, current=0)]
    assert keep_starting(ready, [27.1, 50.0], mix.replicas, 53.0, 0.10) == (mix.replicas, 0)
