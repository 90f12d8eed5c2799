"""Scale to zero and back, in the engine: the idle window to the cycle, minReplicas, missing data, waking."""

from __future__ import annotations

from dataclasses import replace

from kedascaler.engine import decide
from kedascaler.engine.activation import activation
from tests.engine.builders import by_key, snapshot, variant

WINDOW = 300.0


def cold(*variants, t: float, gateway: float | None = 0.0, pushed: float | None = None, window: float = WINDOW):
    return replace(snapshot(*variants, taken_at=t), idle_window=window, gateway_queue=gateway, last_request_at=pushed)


def idle_pods(name="a", cost=10.0, current=1, **kw):
    return variant(name, cost=cost, current=current, loads=[(0.0, 0.0)] * current, **kw)


def run_cycles(times, make):
    """Run decide at each time with the previous decisions carried; returns the decisions per time."""
    previous, out = {}, []
    for t in times:
        decisions = decide(make(t), previous)
        previous = {d.key: d for d in decisions}
        out.append(decisions)
    return out


def busy(name="a", current=1):
    return variant(name, current=current, loads=[(0.3, 1.0)] * current, running=2.0)


class TestIdleWindow:
    def test_inactive_exactly_at_the_first_cycle_at_or_past_the_window(self):
        # busy at t=0, idle from then on; cycles every 15 s: 285 < 300 ≤ 300
        times = [0.0] + [15.0 * i for i in range(1, 22)]
        results = run_cycles(times, lambda t: cold(busy() if t == 0 else idle_pods(), t=t))
        flags = [d[0].active for d in results]
        first_inactive = flags.index(False)
        assert times[first_inactive] == 300.0
        assert all(flags[:first_inactive]) and not any(flags[first_inactive:])
        d = results[first_inactive][0]
        assert d.desired_replicas == 0 and d.reason.action == "inactive"
        assert d.reason.value == 300.0 and d.reason.threshold == WINDOW
        assert "idle 300s" in d.reason.message and "window 300s" in d.reason.message
        assert [r[0].desired_replicas for r in results[:first_inactive]] == [1] * first_inactive

    def test_a_cycle_off_the_grid_turns_inactive_at_the_first_cycle_past_the_window(self):
        times = [0.0, 100.0, 299.0, 301.0]
        results = run_cycles(times, lambda t: cold(busy() if t == 0 else idle_pods(), t=t))
        assert [r[0].active for r in results] == [True, True, True, False]

    def test_the_window_is_per_model(self):
        results = run_cycles([0.0, 60.0], lambda t: cold(busy() if t == 0 else idle_pods(), t=t, window=60.0))
        assert not results[-1][0].active

    def test_every_variant_goes_to_zero_and_inactive(self):
        def make(t):
            if t == 0:
                return cold(busy("a"), busy("b", current=2), t=t)
            return cold(idle_pods("a", cost=10), idle_pods("b", cost=40, current=2), t=t)
        last = by_key(run_cycles([0.0, 150.0, 300.0], make)[-1])
        assert {k: (d.desired_replicas, d.active) for k, d in last.items()} == {"a": (0, False), "b": (0, False)}

    def test_activity_restarts_the_timer(self):
        def make(t):
            return cold(busy() if t in (0.0, 200.0) else idle_pods(), t=t)
        results = run_cycles([0.0, 200.0, 300.0, 499.0, 500.0], make)
        assert [r[0].active for r in results] == [True, True, True, True, False]


class TestMinReplicas:
    def test_a_positive_min_on_any_variant_never_reaches_zero(self):
        def make(t):
            return cold(idle_pods("a"), idle_pods("b", min_replicas=1), t=t)
        for decisions in run_cycles([0.0, 300.0, 3600.0, 86400.0], make):
            assert sum(d.desired_replicas for d in decisions) >= 1
            assert all(d.reason.action != "inactive" for d in decisions)

    def test_no_idle_window_keeps_v1(self):
        snap = replace(snapshot(idle_pods(), taken_at=10_000.0), gateway_queue=0.0)
        assert decide(snap, {})[0].desired_replicas == 1
        assert activation(snap, {}) is None


class TestMissingData:
    def test_unknown_gateway_queue_keeps_an_active_model_active(self):
        def make(t):
            return cold(busy() if t == 0 else idle_pods(), t=t, gateway=None if t >= 300 else 0.0)
        results = run_cycles([0.0, 300.0, 600.0, 3600.0], make)
        assert all(r[0].active and r[0].desired_replicas == 1 for r in results)
        assert "missing data never turns a model inactive" in results[-1][0].reason.message

    def test_pods_without_metrics_keep_it_active(self):
        def make(t):
            if t == 0:
                return cold(busy(), t=t)
            return cold(variant("a", current=1, loads=[]), t=t)  # ready pod, no metrics
        results = run_cycles([0.0, 300.0, 900.0], make)
        assert all(r[0].active for r in results)

    def test_stale_metrics_keep_it_active(self):
        def make(t):
            return cold(busy() if t == 0 else variant("a", current=1, fresh=False), t=t)
        results = run_cycles([0.0, 300.0, 900.0], make)
        assert all(r[0].active and r[0].desired_replicas == 1 for r in results)

    def test_once_back_the_data_lets_it_go(self):
        def make(t):
            return cold(busy() if t == 0 else idle_pods(), t=t, gateway=None if t == 300 else 0.0)
        results = run_cycles([0.0, 300.0, 315.0], make)
        assert [r[0].active for r in results] == [True, True, False]

    def test_an_inactive_model_stays_inactive_without_data(self):
        def make(t):
            if t <= 300:
                return cold(busy() if t == 0 else idle_pods(), t=t)
            return cold(variant("a", current=0), t=t, gateway=None)
        results = run_cycles([0.0, 300.0, 600.0], make)
        assert [r[0].active for r in results] == [True, False, False]


class TestWaking:
    def zero(self, t, **kw):
        return cold(variant("h100", cost=40, current=0), variant("a100", cost=20, current=0, max_replicas=0),
                    variant("l40s", cost=30, current=0), t=t, **kw)

    def test_restart_at_zero_with_no_demand_is_inactive(self):
        d = by_key(decide(self.zero(1000.0), {}))
        assert all(not x.active and x.desired_replicas == 0 for x in d.values())

    def test_gateway_queue_wakes_the_cheapest_variant_that_can_serve(self):
        d = by_key(decide(self.zero(1000.0, gateway=3.0), {}))
        # a100 is cheapest but maxReplicas 0: it cannot serve
        assert {k: x.desired_replicas for k, x in d.items()} == {"h100": 0, "a100": 0, "l40s": 1}
        assert d["l40s"].active and not d["h100"].active and not d["a100"].active
        assert d["l40s"].reason.action == "scale-up" and d["l40s"].reason.signal == "gateway_queue"
        assert "woken from zero" in d["l40s"].reason.message

    def test_a_pushed_request_wakes_it_even_without_gateway_data(self):
        inactive = {x.key: x for x in decide(self.zero(1000.0, gateway=None), {})}
        d = by_key(decide(self.zero(1001.0, gateway=None, pushed=1000.5), inactive))
        assert d["l40s"].desired_replicas == 1 and d["l40s"].active
        assert d["l40s"].last_activity_at == 1000.5

    def test_waking_without_any_metrics_source(self):
        snap = cold(variant("a", current=0, fresh=False), t=50.0, gateway=2.0)
        (d,) = decide(snap, {})
        assert d.desired_replicas == 1 and d.active

    def test_first_sight_of_a_running_idle_model_starts_the_timer(self):
        (d,) = decide(cold(idle_pods(), t=1000.0), {})
        assert d.active and d.desired_replicas == 1 and d.last_activity_at == 1000.0

    def test_while_starting_the_model_stays_at_one(self):
        woken = {x.key: x for x in decide(cold(variant("a", current=0), t=0.0, gateway=1.0), {})}
        (d,) = decide(cold(variant("a", current=1, ready=0), t=2.0, gateway=1.0), woken)
        assert d.desired_replicas == 1 and d.active
